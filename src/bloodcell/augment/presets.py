"""`RobustAugment`: a few of the lab-shift augmentations per image, RandAugment style, after flips and rotations.

Every image is rotated by any angle, flipped and shifted a little
(:class:`~bloodcell.augment.RandomGeometric`) and gets ``num_ops`` augmentations drawn without
replacement from :data:`ROBUST_OPS`, each with parameters of its own (see :mod:`.domain`). The
chosen ones are applied in the order light meets them: the specimen (stain, deposits, bubbles),
the microscope (illumination, magnification, focus, vibration), the camera (resolution, noise,
colour processing) and the file (JPEG). Each augmentation runs on the images that chose it only;
the zoom is folded into the rotation's affine map, so those images are resampled once.

:func:`preset` names ready-made pipelines: ``preset("robust")`` is ``RobustAugment()``.

In a pipeline: ``bc.pipeline.to_tf_dataset(data, 64, augment=bc.augment.preset("robust"),
shuffle=True, seed=0)``; in an experiment: ``bc.experiments.Config.preset("robust")``.

Example:
    >>> import tensorflow as tf
    >>> from bloodcell.datasets import load_sample
    >>> aug = preset("robust", num_ops=1)
    >>> images = load_sample(per_class=1).images
    >>> out, _ = aug.augment_batch(images, None, tf.constant([0, 1], tf.int64))
    >>> out.shape, out.dtype.name
    (TensorShape([8, 96, 96, 3]), 'uint8')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_int, check_number
from bloodcell.augment import ops as _ops
from bloodcell.augment.artefacts import RandomBubbles, RandomDeposits, RandomIllumination
from bloodcell.augment.base import Augmenter, _as_seed_tensor, _check_batch, _restore_dtype, split_seed
from bloodcell.augment.color import RandomColor, RandomStain
from bloodcell.augment.domain import MAX_SEVERITY, apply_to_subset
from bloodcell.augment.geometric import RandomGeometric
from bloodcell.augment.optics import RandomDefocus, RandomJPEG, RandomMotionBlur, RandomNoise, RandomResample
from bloodcell.augment.scale import RandomZoom, zoom_transforms
from bloodcell.errors import ConfigurationError, UnknownNameError

__all__ = ["RobustAugment", "ROBUST_OPS", "preset", "PRESETS"]

# Name → augmenter, in the order light meets them (the order they are applied in).
_OPS = {
    "stain": RandomStain,
    "deposits": RandomDeposits,
    "bubbles": RandomBubbles,
    "illumination": RandomIllumination,
    "zoom": RandomZoom,
    "defocus": RandomDefocus,
    "motion_blur": RandomMotionBlur,
    "resample": RandomResample,
    "noise": RandomNoise,
    "color": RandomColor,
    "jpeg": RandomJPEG,
}
#: The augmentations :class:`RobustAugment` draws from, in the order it applies them.
ROBUST_OPS = tuple(_OPS)


@keras.saving.register_keras_serializable(package="bloodcell")
class RobustAugment(Augmenter):
    """Flips and rotations, then ``num_ops`` lab-shift augmentations per image, each drawn at random.

    Args:
        severity: 0–5, passed to every augmentation (see :mod:`bloodcell.augment.domain`): each
            image draws each parameter from a range that grows with it. Default 3.
        num_ops: Augmentations per image, drawn without replacement from ``ops`` (default 2),
            besides those of ``always``.
        always: Names of ``ops`` every augmented image gets (e.g. ``("stain", "color")``: other
            labs' colours on every image, not on two of eleven); default none.
        probability: Share of the images that get them (default 1: all). The others get only the
            flips, rotation and shift, so the model also sees the clean images it will mostly meet;
            lower it to trade robustness for clean accuracy.
        ops: Names to draw from, a subset of :data:`ROBUST_OPS` (default: all of them). They
            are applied in the order of :data:`ROBUST_OPS` whatever the order given.
        geometric: Rotate by any angle, flip both ways and shift every image first (default True).
        translation: Largest shift of the geometric step, a fraction of the image size (default 0.05).
        jit_compile: Resample (rotation, zoom) with XLA; False on a platform without XLA.
        seed: Seed for use as a layer or function (``to_tf_dataset`` passes per-batch seeds).
        name: Layer name.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> aug = RobustAugment(severity=3, num_ops=2, seed=0)
        >>> aug(load_sample(per_class=1).images).shape
        TensorShape([8, 96, 96, 3])
    """

    def __init__(
        self,
        severity: float = 3.0,
        num_ops: int = 2,
        ops: Sequence[str] = ROBUST_OPS,
        *,
        always: Sequence[str] = (),
        probability: float = 1.0,
        geometric: bool = True,
        translation: float = 0.05,
        jit_compile: bool = True,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        self.supports_jit = False  # holds RandomJPEG, RandomResample and RandomIllumination
        self.severity = check_number(severity, "severity", low=0.0, high=MAX_SEVERITY)
        if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
            raise ConfigurationError(f"ops must be a non-empty list of names from {ROBUST_OPS}, got {ops!r}.")
        unknown = [op for op in ops if op not in _OPS]
        if unknown:
            raise ConfigurationError(f"unknown augmentation(s) {unknown}; choose from {ROBUST_OPS}.")
        self.ops = tuple(op for op in ROBUST_OPS if op in ops)
        if isinstance(always, str) or not all(op in self.ops for op in always):
            raise ConfigurationError(f"always must name some of ops {self.ops}. Received: always={always!r}.")
        self.always = tuple(op for op in self.ops if op in always)
        drawable = len(self.ops) - len(self.always)
        self.num_ops = check_int(num_ops, "num_ops", minimum=0 if self.always else 1, maximum=drawable)
        self.probability = check_number(probability, "probability", low=0.0, high=1.0)
        self.geometric = bool(geometric)
        self.translation = check_number(translation, "translation", low=0.0, high=1.0)
        self.jit_compile = bool(jit_compile)
        members = {}
        for op in self.ops:
            extra = {"jit_compile": self.jit_compile} if op == "zoom" else {}
            members[op] = _OPS[op](severity=self.severity, **extra)
        self._members = members
        self._flip_rotate = RandomGeometric(
            rotation=180.0, translation=self.translation, flip="both", jit_compile=self.jit_compile
        )

    def choices(self, batch_size: Any, seed: Any) -> Any:
        """Which augmentations each image gets for ``seed``: bool (N, len(ops)).

        ``always`` and ``num_ops`` more per row for a share ``probability`` of the rows, none for
        the others.
        """
        seed = _as_seed_tensor(seed)
        scores = tf.random.stateless_uniform(tf.stack([batch_size, len(self.ops)]), seed)
        if self.always:  # above every draw in [0, 1): always among the top
            scores = tf.where(tf.constant([op in self.always for op in self.ops]), 2.0, scores)
        kth = tf.math.top_k(scores, self.num_ops + len(self.always)).values[:, -1:]
        chosen = scores >= kth
        if self.probability < 1.0:  # a separate draw, so probability=1 keeps the choices above
            augmented = (
                tf.random.stateless_uniform(tf.stack([batch_size, 1]), split_seed(seed, 1)) < self.probability
            )
            chosen = chosen & augmented
        return chosen

    @tf.autograph.experimental.do_not_convert  # plain graph code (see DomainAugmenter)
    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        seed = _as_seed_tensor(seed)
        out = tf.cast(x, tf.float32)
        n = tf.shape(out)[0]
        chosen = self.choices(n, split_seed(seed, 1))
        if self.geometric:
            # Rotation, flips, shift and (where chosen) zoom are one affine map: one resampling.
            geometry = self._flip_rotate.transforms(
                n, tf.shape(out)[1], tf.shape(out)[2], split_seed(seed, 0)
            )
            if "zoom" in self.ops:
                i = self.ops.index("zoom")
                factors = self._members["zoom"].factors(n, split_seed(seed, 2 + i))
                factors = tf.where(chosen[:, i], factors, 1.0)
                geometry = _compose(geometry, zoom_transforms(factors, tf.shape(out)[1], tf.shape(out)[2]))
            out = _ops.affine_transform(out, geometry, fill_mode="reflect", jit_compile=self.jit_compile)
        for i, op in enumerate(self.ops):
            member = self._members[op]
            if op == "zoom":
                if not self.geometric:  # the whole batch, factor 1 where not chosen: one XLA program
                    out = member.apply(out, chosen[:, i], split_seed(seed, 2 + i))
            else:
                out = apply_to_subset(member.transform, out, chosen[:, i], split_seed(seed, 2 + i))
            out = tf.clip_by_value(out, 0.0, 255.0)
        return _restore_dtype(out, x.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            severity=self.severity,
            num_ops=self.num_ops,
            ops=list(self.ops),
            always=list(self.always),
            probability=self.probability,
            geometric=self.geometric,
            translation=self.translation,
            jit_compile=self.jit_compile,
        )
        return config


def _compose(outer: Any, inner: Any) -> Any:
    """The output→input map (N, 6) of ``outer``'s transform applied to ``inner``'s output.

    An output pixel p of the result samples at inner(p) in the intermediate image, which samples
    the input at outer(inner(p)).
    """

    def square(t: Any) -> Any:
        rows = tf.reshape(t, [-1, 2, 3])
        bottom = tf.broadcast_to(tf.constant([[[0.0, 0.0, 1.0]]]), tf.stack([tf.shape(rows)[0], 1, 3]))
        return tf.concat([rows, bottom], axis=1)

    product = tf.linalg.matmul(square(outer), square(inner))
    return tf.reshape(product[:, :2, :], [-1, 6])


def _augmix(**kwargs: Any) -> Any:
    from bloodcell.augment.augmix import AugMix

    return AugMix(**kwargs)


#: Preset name → factory taking the augmenter's keyword arguments.
PRESETS = {"robust": RobustAugment, "geometric": RandomGeometric, "augmix": _augmix}


def preset(name: str, **kwargs: Any) -> Augmenter:
    """A ready-made augmentation pipeline by name, with optional changes to its keywords.

    ``"robust"``: :class:`RobustAugment` (flips, rotations and two lab-shift augmentations per
    image); ``"geometric"``: :class:`~bloodcell.augment.RandomGeometric`; ``"augmix"``:
    :class:`~bloodcell.augment.AugMix`.

    Raises:
        UnknownNameError: for a name that is not a preset.

    Example:
        >>> preset("robust", severity=2).severity
        2.0
    """
    key = str(name).lower()
    if key not in PRESETS:
        raise UnknownNameError(f"Unknown augmentation preset {name!r}; presets: {sorted(PRESETS)}.")
    return PRESETS[key](**kwargs)
