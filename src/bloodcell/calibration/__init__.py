"""Calibration: probabilities a haematologist can read as confidences, and the scores that check them.

:func:`calibrate` fits a temperature on validation images and returns a new model whose softmax is
calibrated (the temperature is a layer saved with the model); :func:`expected_calibration_error`,
:func:`brier_score` and :func:`reliability_bins` measure how far a model's confidences are from
its accuracy (``bloodcell.evaluate`` reports the first two).

Example:
    >>> import numpy as np
    >>> import bloodcell as bc
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> round(bc.calibration.expected_calibration_error([0, 1], y_prob), 2)
    0.35
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports

_ATTRIBUTES = {
    "BOUNDS": "bloodcell.calibration.temperature",
    "DEFAULT_BINS": "bloodcell.calibration.scores",
    "ReliabilityBins": "bloodcell.calibration.scores",
    "TemperatureScaling": "bloodcell.calibration.temperature",
    "brier_score": "bloodcell.calibration.scores",
    "calibrate": "bloodcell.calibration.temperature",
    "expected_calibration_error": "bloodcell.calibration.scores",
    "fit_temperature": "bloodcell.calibration.temperature",
    "reliability_bins": "bloodcell.calibration.scores",
    "temperature_of": "bloodcell.calibration.temperature",
}

__all__ = sorted(_ATTRIBUTES)

__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES)
