"""Likely label errors, from out-of-fold predicted probabilities (confident learning)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell.errors import ConfigurationError, InvalidDataError
from bloodcell.outliers.base import Detection, ImageData, OutlierDetector

__all__ = ["LabelIssues"]


class LabelIssues(OutlierDetector):
    """Images whose label the model confidently disagrees with, by the confident-learning rule.

    Give it *out-of-fold* predicted probabilities: for each image, the probabilities from a model
    that did not train on it (e.g. one model per fold of :func:`bloodcell.datasets.kfold`). In-sample
    probabilities hide label errors, because a network memorises its training labels.

    :meth:`fit` computes each class's confidence threshold ``t_j``: the mean probability of class
    ``j`` over the images labelled ``j`` (Northcutt, Jiang & Chuang, "Confident Learning",
    JAIR 2021). An image labelled ``y`` is flagged (reason ``"label_issue"``) when some other class
    ``k`` reaches its own threshold (``p_k >= t_k``) and beats the given label by ``margin``
    (``p_k > p_y + margin``): the off-diagonal of the confident joint. The score is
    ``max_k≠y p_k - p_y`` (positive when another class is more probable than the given label).

    Args:
        pred_probs: float array (N, C), one row per image of the dataset passed to ``fit`` and
            ``detect`` (same order). Rows are renormalised to sum to 1.
        margin: How much more probable the other class must be than the given label.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.BloodCellDataset(np.zeros((4, 8, 8, 3), np.uint8), [0, 0, 1, 1])
        >>> probs = np.zeros((4, 8)); probs[:, 0] = [0.9, 0.1, 0.2, 0.1]; probs[:, 1] = 1 - probs[:, 0]
        >>> LabelIssues(pred_probs=probs).fit(data).predict(data).tolist()
        [False, True, False, False]
    """

    name = "label_issues"
    reasons = ("label_issue",)

    def __init__(self, *, pred_probs: Any = None, margin: float = 0.0) -> None:
        self.pred_probs = pred_probs
        self.margin = margin

    def _probs(self, data: ImageData) -> tuple[np.ndarray, np.ndarray]:
        if data.labels is None:
            raise ConfigurationError("LabelIssues needs labels: pass a BloodCellDataset, not a bare array.")
        if self.pred_probs is None:
            raise ConfigurationError(
                "LabelIssues needs pred_probs=(N, C) out-of-fold predicted probabilities, one row per image."
            )
        probs = np.asarray(self.pred_probs, np.float64)
        n, c = len(data.labels), len(data.class_names or ()) or int(data.labels.max()) + 1
        if probs.shape != (n, c):
            raise InvalidDataError(
                f"pred_probs must have shape (images, classes) = ({n}, {c}), got {probs.shape}; "
                "give one row of class probabilities per image, in the dataset's order."
            )
        if not np.isfinite(probs).all() or (probs < 0).any():
            raise InvalidDataError("pred_probs must be finite and non-negative.")
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
        return probs, np.asarray(data.labels)

    def _fit(self, data: ImageData, verbose: bool) -> None:
        probs, labels = self._probs(data)
        thresholds = np.ones(probs.shape[1])  # a class with no images can never be "confident"
        for j in np.unique(labels):
            thresholds[j] = probs[labels == j, j].mean()
        self.thresholds_ = thresholds

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        probs, labels = self._probs(data)
        rows = np.arange(len(labels))
        given = probs[rows, labels]
        others = probs.copy()
        others[rows, labels] = -np.inf
        scores = others.max(axis=1) - given
        confident = (probs >= self.thresholds_[None, :]) & (probs > given[:, None] + float(self.margin))
        confident[rows, labels] = False
        flags = confident.any(axis=1)
        reasons = [("label_issue",) if f else () for f in flags]
        return Detection(scores, flags, reasons)
