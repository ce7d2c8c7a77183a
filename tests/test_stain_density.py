"""The colour maths every stain user shares: optical density, stain vectors, stain amounts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.stain.density import (
    LN10,
    STAIN_VECTORS,
    UNMIX,
    optical_density,
    optical_density_tf,
    stain_concentrations,
    stain_concentrations_tf,
    transmitted,
    transmitted_tf,
)

LEVELS = np.arange(256, dtype=np.uint8)


def test_optical_density_round_trips_every_level_and_white_is_zero():
    od = optical_density(LEVELS)
    assert od[255] == 0 and np.all(np.diff(od) < 0)  # darker pixels absorb more
    np.testing.assert_allclose(transmitted(od), LEVELS, atol=1e-9)
    dark = optical_density(LEVELS, background=200.0)
    np.testing.assert_allclose(transmitted(dark, background=200.0), LEVELS, atol=1e-9)


def test_the_graph_twins_compute_the_same_numbers(cells):
    od = optical_density(cells)
    od_tf = optical_density_tf(cells).numpy()
    assert od_tf.dtype == np.float32
    np.testing.assert_allclose(od_tf, od, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(transmitted_tf(od_tf).numpy(), cells, atol=2e-3)


def test_stain_vectors_are_unit_rows_and_unmix_inverts_them():
    np.testing.assert_allclose(np.linalg.norm(STAIN_VECTORS, axis=1), 1.0)
    np.testing.assert_allclose(STAIN_VECTORS @ UNMIX, np.eye(3), atol=1e-12)


def test_stain_concentrations_recover_the_amounts_that_made_a_colour():
    rng = np.random.default_rng(0)
    stains = np.stack([STAIN_VECTORS[0], STAIN_VECTORS[1]], axis=-1)[None]  # (1, 3, 2)
    amounts = rng.uniform(0.0, 2.0, (1, 2, 50))
    od = np.einsum("nij,njp->npi", stains, amounts)
    found, det = stain_concentrations(stains, od)
    np.testing.assert_allclose(found, amounts, atol=1e-10)
    assert det[0] > 0.1
    found_tf, _ = stain_concentrations_tf(stains.astype(np.float32), od.astype(np.float32))
    np.testing.assert_allclose(found_tf.numpy(), amounts, atol=1e-4)


def test_parallel_stains_are_flagged_by_a_zero_determinant():
    same = np.stack([STAIN_VECTORS[0], STAIN_VECTORS[0]], axis=-1)[None]
    _, det = stain_concentrations(same, np.ones((1, 4, 3)))
    assert abs(det[0]) < 1e-12


def test_the_augmenters_hed_densities_are_the_shared_convention_in_decadic_units(cells):
    hed = bc.augment.rgb_to_hed(cells).numpy()
    np.testing.assert_allclose(hed, optical_density(cells) / LN10 @ UNMIX, rtol=1e-4, atol=1e-5)
    assert bc.augment.color.STAIN_VECTORS is STAIN_VECTORS


def test_the_numpy_colour_maths_and_the_corruptions_load_without_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from bloodcell.stain.density import optical_density\n"
        "from bloodcell.robustness import corrupt\n"
        "corrupt(np.full((1, 8, 8, 3), 120, np.uint8), 'hed_shift', 3)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.fixture(scope="module")
def cells():
    return bc.datasets.load_sample(per_class=1).images
