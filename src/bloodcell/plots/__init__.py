"""Figures as PNG files: confusion matrices, training curves, augmentation grids, outlier galleries.

Every function writes a PNG (atomically) and returns its path; matplotlib runs on the non-interactive
Agg backend, so plots work on servers without a display.

Every figure lives in the module of its family (:mod:`~bloodcell.plots.evaluation`,
:mod:`~bloodcell.plots.trust`, :mod:`~bloodcell.plots.galleries`); this package holds them all.
"""

from __future__ import annotations

from bloodcell.plots.evaluation import confusion_matrix, per_class_f1, training_curves
from bloodcell.plots.galleries import augmentation_grid, label_gallery, outlier_gallery
from bloodcell.plots.trust import (
    coverage_accuracy,
    grad_cam_overlays,
    reliability_diagram,
    top_losses_gallery,
)

__all__ = [
    "augmentation_grid",
    "confusion_matrix",
    "coverage_accuracy",
    "grad_cam_overlays",
    "label_gallery",
    "outlier_gallery",
    "per_class_f1",
    "reliability_diagram",
    "top_losses_gallery",
    "training_curves",
]
