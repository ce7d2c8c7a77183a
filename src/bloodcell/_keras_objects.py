"""The modules that register bloodcell's Keras objects, imported wherever a saved model is read.

Keras finds a custom class in a ``.keras`` file only if the class was registered in the loading
process, and it imports the module named in the file only for Keras's own packages. So every
module below, each holding ``@keras.saving.register_keras_serializable`` classes (layers, models,
augmenters, learning-rate schedules), is imported by :mod:`bloodcell.models` at import time. A
test checks that this list names every such module of the package.
"""

from __future__ import annotations

import importlib

KERAS_OBJECT_MODULES = (
    "bloodcell.augment.artefacts",
    "bloodcell.augment.augmix",
    "bloodcell.augment.base",
    "bloodcell.augment.color",
    "bloodcell.augment.geometric",
    "bloodcell.augment.multiview",
    "bloodcell.augment.optics",
    "bloodcell.augment.presets",
    "bloodcell.augment.scale",
    "bloodcell.backbones.imagemodel",
    "bloodcell.backbones.preprocessing",
    "bloodcell.calibration.temperature",
    "bloodcell.cells.crop",
    "bloodcell.models",
    "bloodcell.stain.layer",
    "bloodcell.training.schedules",
)


def register_keras_objects() -> None:
    """Import every module of :data:`KERAS_OBJECT_MODULES` (each registers its classes on import)."""
    for name in KERAS_OBJECT_MODULES:
        importlib.import_module(name)
