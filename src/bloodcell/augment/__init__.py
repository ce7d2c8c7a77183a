"""Augmentation: image-to-image layers only: AugMix and its primitive ops, geometric, lab-shift and imgaug augmenters.

Every augmenter works in three places: in a ``tf.data`` pipeline built by
:func:`bloodcell.pipeline.to_tf_dataset` (which passes an explicit per-batch seed), inside a Keras
model as a layer (active only in training), and on its own as ``aug(images)``.

Class balancing now lives in :mod:`bloodcell.datasets.balance` and consistency training in
:mod:`bloodcell.training.consistency`; their old names here still work for one release, with a
:class:`DeprecationWarning`.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> ds = bc.pipeline.to_tf_dataset(data, batch_size=8, augment=bc.augment.AugMix(), seed=0)
    >>> images, labels = next(iter(ds))
    >>> images.shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

from bloodcell._deprecation import moved_names
from bloodcell._lazy import lazy_exports

# Public names and the module that defines each (PEP 562 lazy loading).
_ATTRIBUTES = {
    "Augmenter": "bloodcell.augment.base",
    "Compose": "bloodcell.augment.base",
    "AugMix": "bloodcell.augment.augmix",
    "AugMixPlan": "bloodcell.augment.augmix",
    "AUGMIX_OPS": "bloodcell.augment.augmix",
    "AUGMIX_ALL_OPS": "bloodcell.augment.augmix",
    "RandomGeometric": "bloodcell.augment.geometric",
    "ImgaugAugmenter": "bloodcell.augment.imgaug_adapter",
    "import_imgaug": "bloodcell._compat.imgaug",
    "MultiView": "bloodcell.augment.multiview",
    "DomainAugmenter": "bloodcell.augment.domain",
    "RandomStain": "bloodcell.augment.color",
    "RandomColor": "bloodcell.augment.color",
    "rgb_to_hed": "bloodcell.augment.color",
    "hed_to_rgb": "bloodcell.augment.color",
    "RandomDefocus": "bloodcell.augment.optics",
    "RandomMotionBlur": "bloodcell.augment.optics",
    "RandomNoise": "bloodcell.augment.optics",
    "RandomJPEG": "bloodcell.augment.optics",
    "RandomResample": "bloodcell.augment.optics",
    "RandomDeposits": "bloodcell.augment.artefacts",
    "RandomBubbles": "bloodcell.augment.artefacts",
    "RandomIllumination": "bloodcell.augment.artefacts",
    "RandomZoom": "bloodcell.augment.scale",
    "RobustAugment": "bloodcell.augment.presets",
    "ROBUST_OPS": "bloodcell.augment.presets",
    "preset": "bloodcell.augment.presets",
}
# Names that moved out of augment: served for one release with a DeprecationWarning.
_MOVED = {
    "oversample": "bloodcell.datasets.balance",
    "oversample_indices": "bloodcell.datasets.balance",
    "undersample": "bloodcell.datasets.balance",
    "undersample_indices": "bloodcell.datasets.balance",
    "smote": "bloodcell.datasets.balance",
    "class_weights": "bloodcell.datasets.balance",
    "ConsistencyModel": "bloodcell.training.consistency",
    "jensen_shannon": "bloodcell.training.consistency",
}
_SUBMODULES = (
    "ops",
    "base",
    "augmix",
    "geometric",
    "multiview",
    "imgaug_adapter",
    "domain",
    "color",
    "optics",
    "artefacts",
    "scale",
    "presets",
)

__all__ = sorted(_ATTRIBUTES) + list(_SUBMODULES)


# The old modules ``balance`` and ``consistency`` are shims that warn on use.
__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES, (*_SUBMODULES, "balance", "consistency"))
__getattr__ = moved_names(__name__, _MOVED, __getattr__)
