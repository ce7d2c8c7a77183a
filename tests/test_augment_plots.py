"""The augmentation grid (the report's Figures 1–2) on real cells."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import bloodcell as bc
from bloodcell.errors import InvalidDataError, InvalidDtypeError


def test_augmentation_grid_shows_originals_beside_augmentations(sample, tmp_path):
    path = bc.plots.augmentation_grid(
        sample, bc.augment.AugMix(), tmp_path / "fig1.png", n_images=8, n_augmentations=4, dpi=60
    )
    assert path == tmp_path / "fig1.png"
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape[0] > png.shape[1]  # 8 rows of 5 images
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_augmentation_grid_rejects_what_it_cannot_show(sample, tmp_path):
    with pytest.raises(InvalidDtypeError):
        bc.plots.augmentation_grid(sample.images, bc.augment.AugMix(), tmp_path / "x.png")
    with pytest.raises(InvalidDataError, match="same shape"):
        bc.plots.augmentation_grid(
            sample, bc.augment.MultiView(bc.augment.RandomGeometric()), tmp_path / "x.png", n_images=2
        )
    assert not (tmp_path / "x.png").exists()
