"""ExactDuplicates and NearDuplicates: copies found as groups, on real cells."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import ConfigurationError
from bloodcell.outliers import ExactDuplicates, NearDuplicates


def test_exact_duplicates_scores_and_keep_none():
    images = np.zeros((5, 8, 8, 3), np.uint8)
    images[3:] = 50
    data = BloodCellDataset(images, [0, 0, 0, 4, 4])
    det = ExactDuplicates().fit(data)
    assert det.score(data).tolist() == [2, 2, 2, 1, 1]
    assert det.predict(data).tolist() == [False, True, True, False, True]
    assert ExactDuplicates(keep="none").fit(data).predict(data).all()
    # Arrays without labels work too (no label conflicts then).
    assert det.predict(images).tolist() == [False, True, True, False, True]


def test_near_duplicates_catch_re_encoded_copies_but_not_distinct_cells(sample):
    data = sample[:200]
    buf = io.BytesIO()
    Image.fromarray(data.images[7]).save(buf, "JPEG", quality=60)
    shifted = np.roll(np.asarray(Image.open(buf)), 1, axis=1)
    both = data.concat(BloodCellDataset(shifted[None], data.labels[7:8]))
    for method in ("phash", "dhash"):
        det = NearDuplicates(method=method, max_distance=40 if method == "phash" else 60).fit(both)
        assert np.flatnonzero(det.predict(both)).tolist() == [200], method
        groups = det.detect(both).groups
        assert [g.indices.tolist() for g in groups] == [[7, 200]]
    scores = NearDuplicates().fit(both).score(both)
    assert scores[200] == scores[7] > 0.8 > np.delete(scores, [7, 200]).max()


def test_bad_settings_get_one_clear_error(sample):
    with pytest.raises(ConfigurationError, match="max_distance"):
        NearDuplicates(max_distance=300).fit(sample)
    with pytest.raises(ConfigurationError, match="keep"):
        ExactDuplicates(keep="last").fit(sample)
