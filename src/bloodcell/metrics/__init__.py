"""Honest evaluation: one :class:`Report` per model and test set, and mean ± std tables over runs.

Every number comes from scikit-learn (``sklearn.metrics``) on the model's predicted probabilities,
so the figures match what a reviewer recomputes from the saved predictions.

Example:
    >>> import numpy as np
    >>> y_true = np.array([0, 1, 2, 2])
    >>> y_prob = np.eye(3)[[0, 1, 2, 1]] * 0.7 + 0.1
    >>> report = Report.from_predictions(y_true, y_prob, class_names=("a", "b", "c"))
    >>> round(report.accuracy, 2), round(report.recall_macro, 2)
    (0.75, 0.83)
"""

from __future__ import annotations

from bloodcell.metrics.evaluation import evaluate, restrict_to_classes
from bloodcell.metrics.report import SUMMARY_METRICS, Report
from bloodcell.metrics.summary import Summary, summarize

__all__ = ["Report", "Summary", "evaluate", "restrict_to_classes", "summarize", "SUMMARY_METRICS"]
