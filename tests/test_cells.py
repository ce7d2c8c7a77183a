"""The cell finder and cell-centred crops, on the bundled real cells and crops made from them."""

from __future__ import annotations

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import run_python
from bloodcell.augment import ops
from bloodcell.augment.scale import zoom
from bloodcell.cells import PBC_CELL_FRACTION, CellCrop, crop_cells, find_cells, same_cell_groups
from bloodcell.errors import ConfigurationError, InvalidDtypeError

TARGET = PBC_CELL_FRACTION * 96


@pytest.fixture(scope="module")
def cells():
    """Two real cells of each white-cell class (no platelets or erythroblasts: their nuclei are small)."""
    data = bc.datasets.load_sample(per_class=4)
    keep = np.isin(data.labels, [0, 1, 3, 4, 5, 6])
    return data.images[keep]


def _uint8(x):
    return np.round(np.asarray(x)).astype(np.uint8)


def _moved(images, dx, dy):
    """The cells shifted by (dx, dy) pixels, the uncovered margin the slide's background colour."""
    t = np.tile(np.array([1, 0, -dx, 0, 1, -dy], np.float32), (len(images), 1))
    moved = ops.affine_transform(
        np.concatenate([images, np.full(images.shape[:3] + (1,), 255, np.uint8)], -1), t, jit_compile=False
    )
    coverage = moved.numpy()[..., 3:] / 255.0
    background = bc.augment.scale.border_colour(images).numpy()[:, None, None, :]
    return _uint8(moved.numpy()[..., :3] * coverage + (1 - coverage) * background)


def test_the_cell_of_every_real_sample_image_is_found_near_the_centre():
    data = bc.datasets.load_sample()
    found = find_cells(data)
    assert found.found.all() and len(found) == len(data)
    near = (np.abs(found.centre_y - 47.5) < 15) & (np.abs(found.centre_x - 47.5) < 15)
    assert near.mean() > 0.97  # PBC crops are centred on their cell
    white = np.isin(data.labels, [0, 1, 3, 4, 5, 6])
    assert 24 < np.median(found.size[white]) < 36  # about PBC_CELL_FRACTION of the frame
    platelets = data.labels == 7
    assert np.median(found.size[platelets]) < 0.7 * np.median(found.size[white])


def test_a_tiny_cell_and_one_that_fills_the_frame_are_measured_and_brought_to_pbc_scale(cells):
    measured = find_cells(cells).size
    for factor in (0.5, 2.2):
        scaled = _uint8(zoom(cells, factor, fill="background", jit_compile=False))
        found = find_cells(scaled)
        assert found.found.all()
        ratio = found.size / measured
        assert np.median(np.abs(ratio / factor - 1)) < 0.15, (factor, ratio)
        crops, _ = crop_cells(scaled)
        again = find_cells(crops).size
        assert np.median(np.abs(again / TARGET - 1)) < 0.2, (factor, again)


def test_a_cell_at_the_border_is_found_there_and_moved_to_the_centre(cells):
    shifted = _moved(cells, 30, -25)
    found = find_cells(shifted)
    assert found.found.all()
    assert np.median(found.centre_x) > 47.5 + 20 and np.median(found.centre_y) < 47.5 - 15
    crops, _ = crop_cells(shifted, CellCrop(scale="none"))
    centred = find_cells(crops)
    assert np.median(np.abs(centred.centre_x - 47.5)) < 5 and np.median(np.abs(centred.centre_y - 47.5)) < 5


def test_a_crop_without_a_white_cell_is_left_as_it_is_and_flagged():
    # The top-left corners of the first six sample images, enlarged: red cells and background only
    # (looked at); corners 6 and 12 hold a platelet and are found.
    data = bc.datasets.load_sample(per_class=2)
    corners = np.asarray(bc.datasets.resize_images(np.ascontiguousarray(data.images[:, :32, :32]), 96))
    found = find_cells(corners)
    assert found.found[[6, 12]].all()
    red_cells_only = corners[:6]
    crops, measured = crop_cells(red_cells_only)
    assert not measured.found.any() and (measured.size == 0).all()
    np.testing.assert_array_equal(crops, red_cells_only)


def test_dataset_scale_learns_a_labs_magnification(cells):
    magnified = _uint8(zoom(cells, 2.0, fill="background", jit_compile=False))
    crop = CellCrop(scale="dataset").fit(magnified)
    assert crop.reference_fraction == pytest.approx(2 * np.median(find_cells(cells).size) / 96, rel=0.15)
    again = find_cells(crop_cells(magnified, crop)[0]).size
    assert np.median(again) == pytest.approx(TARGET, rel=0.2)
    assert CellCrop(scale="dataset").get_config()["reference_fraction"] is None  # unfitted: no zoom
    with pytest.raises(ConfigurationError, match="none of the 2 images shows a cell"):
        CellCrop(scale="dataset").fit(np.full((2, 96, 96, 3), 230, np.uint8))


def test_zoom_is_bounded_and_settings_are_checked(cells):
    small = _uint8(zoom(cells[:4], 0.45, fill="background", jit_compile=False))
    bounded = find_cells(crop_cells(small, CellCrop(max_zoom=1.5))[0]).size
    free = find_cells(crop_cells(small, CellCrop(max_zoom=4.0))[0]).size
    assert (bounded > 0).all() and (bounded < free).all() and np.median(bounded / free) < 0.85
    for kwargs, match in (
        ({"scale": "lab"}, "scale must be one of"),
        ({"cell_fraction": 0}, "cell_fraction must be a number"),
        ({"fill": "wrap"}, "fill must be one of"),
        ({"max_zoom": 0.5}, "max_zoom"),
    ):
        with pytest.raises(ConfigurationError, match=match):
            CellCrop(**kwargs)
    with pytest.raises(ConfigurationError, match="crop must be a CellCrop"):
        crop_cells(cells, crop="image")


def test_crop_cells_keeps_a_datasets_labels():
    data = bc.datasets.load_sample(per_class=1)
    cropped, measured = crop_cells(data)
    assert isinstance(cropped, bc.datasets.BloodCellDataset) and len(measured) == 8
    np.testing.assert_array_equal(cropped.labels, data.labels)
    assert not np.array_equal(cropped.images, data.images)


def test_the_layer_in_a_model_matches_crop_cells_and_reloads_in_a_new_process(tmp_path):
    data = bc.datasets.load_sample(per_class=1)
    model = bc.build_classifier("mobilenetv3small", head="linear", weights=None, cell_crop="image")
    assert [layer.name for layer in model.layers][:2] == ["pixels", "cell_crop"]
    crop_layer = model.get_layer("cell_crop")
    np.testing.assert_allclose(
        crop_layer(data.images.astype("float32")).numpy(), crop_cells(data.images)[0], atol=0.51
    )
    assert CellCrop.from_config(crop_layer.get_config()).get_config() == crop_layer.get_config()
    path = bc.models.save_model(model, tmp_path / "model.keras")
    np.save(tmp_path / "cells.npy", data.images)
    done = run_python(
        "import sys, numpy as np, bloodcell as bc; m = bc.models.load_model(sys.argv[1]); "
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0)); "
        "print(type(m.get_layer('cell_crop')).__name__, m.get_layer('cell_crop').scale)",
        str(path),
        str(tmp_path / "cells.npy"),
        str(tmp_path / "out.npy"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CellCrop", "image"]
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), model.predict(data.images, verbose=0), atol=1e-6
    )


def test_a_model_holding_the_crop_exports_to_savedmodel_and_tflite(tmp_path):
    import tensorflow as tf

    data = bc.datasets.load_sample(per_class=1)
    model = bc.build_classifier("mobilenetv3small", head="linear", weights=None, cell_crop="image")
    expected = model.predict(data.images, verbose=0)
    served = tf.saved_model.load(str(bc.export.to_savedmodel(model, tmp_path / "served")))
    np.testing.assert_allclose(served.serve(data.images).numpy(), expected, atol=1e-5)
    lite = bc.export.TFLiteModel(bc.export.to_tflite(model, tmp_path / "model.tflite"))
    np.testing.assert_allclose(lite.predict(data.images), expected, atol=1e-4)


def test_bad_cell_crop_argument_of_build_classifier():
    with pytest.raises(InvalidDtypeError, match="cell_crop must be"):
        bc.build_classifier("mobilenetv3small", weights=None, input_shape=(32, 32, 3), cell_crop=True)


def test_copies_of_a_cell_share_a_group_and_distinct_cells_do_not(cells):
    """Shifted (margin in the slide's colour), padded with a black bar and recoloured copies of real
    cells: each joins its own cell's group, as LISC's copies must for a leak-free draw."""
    shifted = _moved(cells[:4], 7, -5)
    barred = cells[4:8].copy()
    barred[:, :, :4] = 0
    recoloured = _uint8(np.clip(cells[8:12].astype(np.float32) * [0.85, 0.9, 1.1], 0, 255))
    groups = same_cell_groups(np.concatenate([cells, shifted, barred, recoloured]))
    n = len(cells)
    assert len(np.unique(groups[:n])) == n  # distinct real cells stay apart
    np.testing.assert_array_equal(groups[n:], groups[np.r_[0:4, 4:8, 8:12]])
    dataset = bc.datasets.BloodCellDataset(cells, np.zeros(n, np.int64))
    np.testing.assert_array_equal(same_cell_groups(dataset), groups[:n])


def test_same_cell_groups_checks_its_distance(cells):
    with pytest.raises(ConfigurationError, match="max_distance"):
        same_cell_groups(cells, max_distance=256)
    joined = same_cell_groups(cells, max_distance=255)
    assert len(np.unique(joined)) == 1
