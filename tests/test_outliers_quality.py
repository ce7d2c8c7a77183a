"""ImageQuality: dark, overexposed, blank, blurry and grey images against the typical real cell."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.errors import ConfigurationError
from bloodcell.outliers import ImageQuality


def test_image_quality_thresholds_and_disabling(sample):
    det = ImageQuality().fit(sample)
    assert 150 < det.typical_["brightness"] < 230
    dark = (sample.images[:3] * 0.3).astype(np.uint8)
    assert det.explain(dark) == [("dark",)] * 3
    assert (det.score(dark) > 1).all() and (det.score(sample) < 1).all()
    assert not ImageQuality(dark=None).fit(sample).predict(dark).any()
    gray = np.repeat(sample.images[:2].mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8)
    assert det.explain(gray) == [("grayscale",)] * 2
    with pytest.raises(ConfigurationError, match="dark"):
        ImageQuality(dark=1.5).fit(sample)
