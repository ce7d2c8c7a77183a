"""Adapting a trained model to another lab's images: without labels (AdaBN, TENT, the lab's cell
scale) or with a few labelled cells (few-shot fine-tuning). Every function returns a new model.

Example:
    >>> import bloodcell as bc
    >>> sorted(bc.adapt.METHODS)
    ['adabn', 'tent']
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports

_ATTRIBUTES = {
    "DEFAULT_TENT_STEPS": "bloodcell.adapt.test_time",
    "METHODS": "bloodcell.adapt.test_time",
    "TRAINABLE": "bloodcell.adapt.finetune",
    "adapt": "bloodcell.adapt.test_time",
    "adapt_batchnorm": "bloodcell.adapt.test_time",
    "few_shot": "bloodcell.adapt.finetune",
    "fit_cell_scale": "bloodcell.adapt.test_time",
    "sample_support": "bloodcell.adapt.finetune",
    "tent": "bloodcell.adapt.test_time",
}

__all__ = sorted(_ATTRIBUTES)

__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES)
