"""Calibration scores of predicted probabilities: reliability bins, expected calibration error, Brier score.

NumPy only (no TensorFlow), so :class:`bloodcell.metrics.Report` computes them for every evaluation.

A model is calibrated when, of the cells it labels with confidence 0.9, nine in ten are right.
The confidence of a prediction is its top probability; :func:`reliability_bins` sorts predictions
into equal-width confidence bins and compares each bin's mean confidence with its accuracy, and
the expected calibration error (ECE, Guo et al. 2017, "On Calibration of Modern Neural Networks")
is the mean gap, weighted by the bins' counts. The Brier score (Brier 1950) is the mean squared
distance between the probability rows and the one-hot labels: it rewards calibration and
accuracy together.

Example:
    >>> import numpy as np
    >>> y_true = [0, 1]
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4]])  # right at 0.9, wrong at 0.6
    >>> round(expected_calibration_error(y_true, y_prob), 3), round(brier_score(y_true, y_prob), 3)
    (0.35, 0.37)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bloodcell._validation import check_int
from bloodcell.errors import InvalidDataError

__all__ = ["DEFAULT_BINS", "ReliabilityBins", "brier_score", "expected_calibration_error", "reliability_bins"]

#: Equal-width confidence bins of the ECE and the reliability diagram (Guo et al. use 15).
DEFAULT_BINS = 15


class ReliabilityBins(NamedTuple):
    """Predictions grouped by confidence: bin ``k`` holds confidences in ``(edges[k], edges[k + 1]]``.

    The fields: ``edges``, the ``bins + 1`` bin edges from 0 to 1; ``confidence``, the mean top
    probability of each bin, and ``accuracy``, the fraction of correct top-1 predictions in each
    bin (both NaN for an empty bin); ``count``, the predictions in each bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def _checked(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(y_prob, dtype=np.float64)
    true = np.asarray(y_true)
    if prob.ndim != 2 or true.ndim != 1 or len(true) != len(prob) or len(true) == 0:
        raise InvalidDataError(
            "Calibration scores need class indices (N,) and probabilities (N, C) for the same N > 0 "
            f"images. Received: y_true of shape {true.shape}, y_prob of shape {prob.shape}."
        )
    if true.dtype.kind not in "iu" or true.min() < 0 or true.max() >= prob.shape[1]:
        raise InvalidDataError(
            f"y_true must hold integer class indices in 0..{prob.shape[1] - 1}. "
            f"Received: dtype {true.dtype}, values {true.min()}..{true.max()}."
        )
    return true.astype(np.int64), prob


def reliability_bins(y_true: Any, y_prob: Any, bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Mean confidence, accuracy and count of the predictions in each of ``bins`` equal-width bins.

    Args:
        y_true: Integer class indices (N,).
        y_prob: Predicted probabilities (N, C).
        bins: Number of equal-width confidence bins over 0..1.

    Example:
        >>> import numpy as np
        >>> table = reliability_bins([0, 1, 1], np.array([[0.95, 0.05], [0.1, 0.9], [0.7, 0.3]]), bins=2)
        >>> table.count.tolist(), table.accuracy.tolist()
        ([0, 3], [nan, 0.6666666666666666])
    """
    bins = check_int(bins, "bins", minimum=1)
    true, prob = _checked(y_true, y_prob)
    confidence = prob.max(axis=1)
    correct = (prob.argmax(axis=1) == true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin k holds (edges[k], edges[k+1]]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return ReliabilityBins(edges, mean_confidence, accuracy, count)


def expected_calibration_error(y_true: Any, y_prob: Any, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: the count-weighted mean of ``|accuracy - confidence|`` over the bins.

    0 for a perfectly calibrated model; at most 1.

    Args:
        y_true: Integer class indices (N,).
        y_prob: Predicted probabilities (N, C).
        bins: Number of equal-width confidence bins (15, as Guo et al.).

    Example:
        >>> import numpy as np
        >>> expected_calibration_error([0, 0], np.array([[1.0, 0.0], [1.0, 0.0]]))
        0.0
    """
    table = reliability_bins(y_true, y_prob, bins)
    filled = table.count > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    return float(np.sum(gaps * table.count[filled]) / table.count.sum())


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Multi-class Brier score: the mean over images of ``sum_k (p_k - y_k)^2`` with one-hot ``y``.

    0 for confident right answers, 2 for confident wrong ones; a uniform guess over C classes
    scores ``1 - 1/C``.

    Args:
        y_true: Integer class indices (N,).
        y_prob: Predicted probabilities (N, C).

    Example:
        >>> import numpy as np
        >>> brier_score([0, 1], np.array([[1.0, 0.0], [0.5, 0.5]]))
        0.25
    """
    true, prob = _checked(y_true, y_prob)
    onehot = np.zeros_like(prob)
    onehot[np.arange(len(true)), true] = 1.0
    return float(np.mean(np.sum((prob - onehot) ** 2, axis=1)))
