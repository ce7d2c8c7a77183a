"""StainProfile: images whose colours are not those of stained smears, robust to mass copies."""

from __future__ import annotations

import numpy as np
import pytest

from _outliers_utils import resize
from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import EmptyDatasetError
from bloodcell.outliers import StainProfile


def test_stain_profile_is_robust_to_mass_copies(sample):
    """1,600 copies in AN2DL were 12 % of the data; here 200 copies are 20 % of the sample."""
    skd = pytest.importorskip("skimage.data")
    cartoon = resize(skd.logo())
    data = sample.concat(BloodCellDataset(np.repeat(cartoon[None], 200, 0), np.arange(200) % 8))
    det = StainProfile().fit(data)
    flags = det.predict(data)
    assert flags[800:].all() and not flags[:800].any()
    # Fitted centre stays on the cells: the copies count once.
    clean_center = StainProfile().fit(sample).center_
    assert np.abs(det.center_ - clean_center).max() < 3


def test_stain_profile_needs_three_distinct_images():
    with pytest.raises(EmptyDatasetError, match="distinct"):
        StainProfile().fit(np.zeros((5, 8, 8, 3), np.uint8))
