"""Scale: cells that fill a different share of the frame (another objective, camera or crop size).

:class:`RandomZoom` zooms each image in or out about its centre by its own factor. Zooming out
uncovers a margin, filled by default by reflecting the image (the smear of red cells goes on), or
with the slide's background colour, estimated per image as the median of its border pixels
(``fill="background"``).

Example:
    >>> from bloodcell.datasets import load_sample
    >>> images = load_sample(per_class=1).images
    >>> RandomZoom(severity=3, seed=0)(images).shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_choice, check_number
from bloodcell.augment import ops as _ops
from bloodcell.augment.base import _as_seed_tensor, _check_batch, _restore_dtype, split_seed
from bloodcell.augment.domain import DomainAugmenter, uniform

__all__ = ["RandomZoom", "border_colour", "resample", "zoom", "zoom_transforms"]

FILLS = ("background", "reflect", "nearest", "constant")


def border_colour(images: Any) -> Any:
    """The median colour (N, 3) of each image's outermost rows and columns: the slide background.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> border_colour(load_sample(per_class=1).images).shape
        TensorShape([8, 3])
    """
    x = tf.cast(images, tf.float32)
    edge = tf.concat([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)  # (N, 2W + 2H − 4, 3)
    ordered = tf.sort(edge, axis=1)
    return ordered[:, tf.shape(ordered)[1] // 2]


def zoom_transforms(factor: Any, height: Any, width: Any) -> Any:
    """The output→input affine maps (N, 6) of :func:`zoom` for factors (N,): factor 1 is the identity."""
    f = tf.cast(factor, tf.float32)
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    inv = 1.0 / f
    zero = tf.zeros_like(f)
    # Output pixel p samples the input at centre + (p − centre) / factor.
    return tf.stack([inv, zero, cx - inv * cx, zero, inv, cy - inv * cy], axis=-1)


def zoom(
    images: Any, factor: Any, *, fill: str = "reflect", fill_value: float = 0.0, jit_compile: bool = True
) -> Any:
    """Zoom each image about its centre by its own ``factor`` (> 1 enlarges, < 1 shrinks); float32 out.

    Args:
        images: Batch (N, H, W, 3), uint8 or float in 0–255.
        factor: One number or one per image.
        fill: What fills the margin a factor below 1 uncovers: ``"reflect"`` (the image mirrored
            about its edge), ``"background"`` (each image's border median), ``"nearest"`` or
            ``"constant"`` (``fill_value``).
        fill_value: The value for ``fill="constant"``.
        jit_compile: Resample with XLA (see :func:`bloodcell.augment.ops.affine_transform`).

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images[:2]
        >>> out = zoom(images, [1.0, 1.0], jit_compile=False)
        >>> float(np.abs(out - images).max()) < 0.01
        True
    """
    x = _ops._check_images(images, channels=3)
    x = tf.cast(x, tf.float32)
    transforms = zoom_transforms(_ops._per_image(factor, x, "factor"), tf.shape(x)[1], tf.shape(x)[2])
    return resample(x, transforms, fill=fill, fill_value=fill_value, jit_compile=jit_compile)


def resample(
    images: Any, transforms: Any, *, fill: str = "reflect", fill_value: float = 0.0, jit_compile: bool = True
) -> Any:
    """Each image under its own affine map (see :func:`bloodcell.augment.ops.affine_transform`),
    float32 out, with ``fill="background"`` besides the resampler's own fills.

    ``"background"`` fills what the map uncovers with each image's border median (the slide's
    colour) instead of a copy of the image, which would repeat a large cell in the margin.
    """
    check_choice(fill, "fill", FILLS)
    x = tf.cast(images, tf.float32)
    if fill != "background":
        return _ops.affine_transform(
            x, transforms, fill_mode=fill, fill_value=fill_value, jit_compile=jit_compile
        )
    # Resample a coverage channel with the image: 1 where the image was, 0 in the margin.
    moved = _ops.affine_transform(
        tf.concat([x, tf.ones_like(x[..., :1])], -1),
        transforms,
        fill_mode="constant",
        jit_compile=jit_compile,
    )
    coverage = moved[..., 3:]
    return moved[..., :3] + (1.0 - coverage) * border_colour(x)[:, None, None, :]


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomZoom(DomainAugmenter):
    """Zoom in or out about the centre by a factor per image, exp(U(−z, z)), z = ln(1 + ``max_zoom``·s).

    Args:
        severity: 0–5 (0: identity); s = severity/5.
        p: Probability that an image is augmented.
        max_zoom: At severity 5 the factor lies in [1/(1 + max_zoom), 1 + max_zoom] (default 0.6:
            a 60 px cell appears between 38 and 96 px wide: other labs' crops frame cells anywhere
            in that range).
        fill: The margin uncovered by zooming out: ``"reflect"`` (default: the smear goes on,
            as in :class:`~bloodcell.augment.RandomGeometric`), ``"background"`` (each image's
            border median: a plain margin), ``"nearest"`` or ``"constant"``.
        fill_value: The value for ``fill="constant"``.
        jit_compile: Resample with XLA (faster on a CPU); False on a platform without XLA.
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> out = RandomZoom(severity=5, fill="background", seed=0)(load_sample(per_class=1).images)
        >>> out.dtype.name
        'uint8'
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_zoom: float = 0.6,
        fill: str = "reflect",
        fill_value: float = 0.0,
        jit_compile: bool = True,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_zoom = check_number(max_zoom, "max_zoom", low=0.0, high=3.0)
        self.fill = check_choice(fill, "fill", FILLS)
        self.fill_value = check_number(fill_value, "fill_value", low=0.0, high=255.0)
        self.jit_compile = bool(jit_compile)

    def factors(self, batch_size: Any, seed: Any) -> Any:
        """The zoom factor of each image for ``seed`` (N,)."""
        z = math.log1p(self.max_zoom * self.strength)
        return tf.exp(uniform(batch_size, seed, -z, z))

    def apply(self, images: Any, chosen: Any, seed: Any) -> Any:
        """Zoom the ``chosen`` images (bool (N,)) of a float32 batch; the others keep factor 1.

        The whole batch is resampled (factor 1 copies an image exactly), so the batch size, and
        with it the XLA program, stays the same from batch to batch.
        """
        factors = tf.where(chosen, self.factors(tf.shape(images)[0], seed), 1.0)
        return zoom(images, factors, fill=self.fill, fill_value=self.fill_value, jit_compile=self.jit_compile)

    @tf.autograph.experimental.do_not_convert
    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        seed = _as_seed_tensor(seed)
        chosen = uniform(tf.shape(x)[0], split_seed(seed, 1)) < self.p
        out = self.apply(tf.cast(x, tf.float32), chosen, split_seed(seed, 0))
        return _restore_dtype(tf.clip_by_value(out, 0.0, 255.0), x.dtype)

    def transform(self, images: Any, seed: Any) -> Any:
        return zoom(
            images,
            self.factors(tf.shape(images)[0], seed),
            fill=self.fill,
            fill_value=self.fill_value,
            jit_compile=self.jit_compile,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_zoom=self.max_zoom, fill=self.fill, fill_value=self.fill_value, jit_compile=self.jit_compile
        )
        return config
