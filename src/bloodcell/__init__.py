"""bloodcell: peripheral blood cell classification by transfer learning on Keras backbones.

Subpackages load on first use, so ``import bloodcell`` is instant and TensorFlow is imported
only by the parts that need it.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample()
    >>> data.class_counts()["ig"]
    100
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bloodcell._lazy import lazy_exports

__version__ = "0.1.0"

# Public subpackages and modules, imported lazily (PEP 562).
_SUBMODULES = (
    "adapt",
    "analysis",
    "augment",
    "backbones",
    "calibration",
    "cells",
    "classes",
    "cli",
    "datasets",
    "errors",
    "experiments",
    "export",
    "heads",
    "label_check",
    "metrics",
    "modelcard",
    "models",
    "outliers",
    "pipeline",
    "plots",
    "prediction",
    "rejection",
    "robustness",
    "stain",
    "training",
    "tta",
)
# Top-level names and the module that defines each.
_ATTRIBUTES = {
    "build_classifier": "bloodcell.models",
    "calibrate": "bloodcell.calibration.temperature",
    "check_labels": "bloodcell.label_check",
    "Trainer": "bloodcell.training",
    "evaluate": "bloodcell.metrics",
    "predict": "bloodcell.prediction",
    "fit_rejector": "bloodcell.rejection",
}

if TYPE_CHECKING:  # for type checkers and IDEs
    from bloodcell import classes, datasets, errors  # noqa: F401

__all__ = ["__version__", *sorted(_ATTRIBUTES), *_SUBMODULES]


__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES, _SUBMODULES)
