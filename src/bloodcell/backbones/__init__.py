"""Backbones: a registry of Keras feature extractors that take pixels in 0–255, and layer freezing.

The registry works in the manner of timm: :func:`list_backbones` finds names by wildcard,
:func:`get_spec` describes an entry (:class:`BackboneSpec`), :func:`create` builds it, and
:func:`register_backbone` adds your own. Names are case- and separator-insensitive
(``"EfficientNetV2S"``, ``"efficientnet_v2_s"``). Every backbone owns its preprocessing, so models
take uint8 or float images in 0–255 whatever the network expects inside.

:func:`freeze` / :func:`unfreeze` set which layers train, by the seed study's rule (the first *N*
Conv2D/DepthwiseConv2D layers) or by plain layer count; :func:`trainable_summary` reports the result.

Listing and inspecting entries does not import TensorFlow; building does.

Example:
    >>> import bloodcell as bc
    >>> bc.backbones.list_backbones("mobilenet*")
    ['mobilenetv3large', 'mobilenetv3small']
    >>> spec = bc.backbones.get_spec("EfficientNetV2S")
    >>> spec.family, spec.min_size, spec.preprocessing
    ('efficientnetv2', 32, 'none')
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports
from bloodcell.backbones import entries as _entries  # noqa: F401  (registers the Keras applications)
from bloodcell.backbones.registry import (
    PREPROCESSING_MODES,
    BackboneSpec,
    get_spec,
    list_backbones,
    normalize_name,
    register_backbone,
    unregister_backbone,
)

# Names that need Keras, imported on first use (PEP 562).
_LAZY = {
    "create": "bloodcell.backbones.factory",
    "load_backbone_weights": "bloodcell.backbones.factory",
    "FROM_SCRATCH_BATCHNORM_MOMENTUM": "bloodcell.backbones.factory",
    "Backbone": "bloodcell.backbones.imagemodel",
    "ImageModel": "bloodcell.backbones.imagemodel",
    "PixelPreprocessing": "bloodcell.backbones.preprocessing",
    "freeze": "bloodcell.backbones.freezing",
    "unfreeze": "bloodcell.backbones.freezing",
    "trainable_summary": "bloodcell.backbones.freezing",
    "TrainableSummary": "bloodcell.backbones.freezing",
    "backbone_layers": "bloodcell.backbones.freezing",
}

__all__ = [
    "PREPROCESSING_MODES",
    "BackboneSpec",
    "get_spec",
    "list_backbones",
    "normalize_name",
    "register_backbone",
    "unregister_backbone",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
