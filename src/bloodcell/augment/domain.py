"""`DomainAugmenter`: the common frame of the augmentations for the shifts between labs.

Images of the same cell differ between labs because the smear, the stain, the microscope, the
camera and the file format differ. Each of those shifts is one augmenter (:mod:`.color`,
:mod:`.optics`, :mod:`.artefacts`, :mod:`.scale`), and every one of them follows the same rules:

* ``severity`` (0–5, default 3) sets how far the parameters may go. Each image draws its own
  parameters uniformly within a range that grows linearly with the severity and reaches the
  augmenter's documented maximum at 5 (so a severity-3 augmenter draws from the first 60 % of
  that range). Severity 0 changes nothing.
* ``p`` is the probability that an image is augmented at all; the images left out are returned
  unchanged, and the work runs on the chosen ones only.
* The parameters are drawn per image, inside the graph, from the stateless per-batch seed, so a
  ``tf.data`` pipeline gets new ones for every image and batch and the same ones for the same seed.

Subclasses implement :meth:`DomainAugmenter.transform` on a float32 batch.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from bloodcell._validation import check_number
from bloodcell.augment.base import Augmenter, _as_seed_tensor, _check_batch, _restore_dtype, split_seed

__all__ = ["DomainAugmenter", "MAX_SEVERITY", "apply_to_subset", "uniform"]

#: The largest severity: every augmenter reaches its documented maximum here.
MAX_SEVERITY = 5.0


def uniform(n: Any, seed: Any, low: Any = 0.0, high: Any = 1.0, *, extra: tuple[int, ...] = ()) -> Any:
    """Stateless U(low, high) draws of shape ``(n, *extra)``, float32."""
    shape = tf.concat([tf.reshape(tf.cast(n, tf.int32), [1]), tf.constant(extra, tf.int32)], 0)
    u = tf.random.stateless_uniform(shape, seed)
    return low + (high - low) * u


def apply_to_subset(fn: Any, images: Any, chosen: Any, seed: Any) -> Any:
    """``fn(images[chosen], seed)`` written back into ``images``; the other images are untouched.

    ``images`` is float32 (N, H, W, C), ``chosen`` bool (N,). Nothing runs when no image is chosen.
    """
    idx = tf.where(chosen)[:, 0]

    def run() -> Any:
        out = fn(tf.gather(images, idx), seed)
        return tf.tensor_scatter_nd_update(images, idx[:, None], tf.cast(out, images.dtype))

    return tf.cond(tf.size(idx) > 0, run, lambda: images)


class DomainAugmenter(Augmenter):
    """Base class of the lab-shift augmenters: a severity, a probability, per-image parameters.

    Args:
        severity: 0–5; each image draws its parameters uniformly within a range that grows
            linearly with it (the subclass documents the range at 5). 0 is the identity.
        p: Probability that an image is augmented.
        seed: Seed for use as a layer or function (``to_tf_dataset`` passes per-batch seeds).
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        self.severity = check_number(severity, "severity", low=0.0, high=MAX_SEVERITY)
        self.p = check_number(p, "p", low=0.0, high=1.0)

    @property
    def strength(self) -> float:
        """The severity as a fraction of the largest, 0–1: the share of each range an image draws from."""
        return self.severity / MAX_SEVERITY

    def transform(self, images: Any, seed: Any) -> Any:
        """Augment every image of a float32 batch (N, H, W, 3) in 0–255; float32 out (clipped later)."""
        raise NotImplementedError(f"{type(self).__name__} must implement transform(images, seed)")

    # Plain graph code: AutoGraph has nothing to convert, and converting it would slow tracing.
    @tf.autograph.experimental.do_not_convert
    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        seed = _as_seed_tensor(seed)
        xf = tf.cast(x, tf.float32)
        if self.p >= 1.0:
            out = self.transform(xf, split_seed(seed, 0))
        else:
            chosen = uniform(tf.shape(xf)[0], split_seed(seed, 1)) < self.p
            out = apply_to_subset(self.transform, xf, chosen, split_seed(seed, 0))
        out = tf.clip_by_value(out, 0.0, 255.0)
        return _restore_dtype(out, x.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(severity=self.severity, p=self.p)
        return config
