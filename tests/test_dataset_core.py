import numpy as np
import pytest

from bloodcell.classes import CLASS_NAMES
from bloodcell.datasets import BloodCellDataset, as_images, as_label_indices, concat
from bloodcell.errors import (
    EmptyDatasetError,
    InvalidDataError,
    InvalidDtypeError,
    UnknownClassError,
)


def test_sample_is_real_and_balanced(sample):
    assert len(sample) == 800
    assert sample.images.dtype == np.uint8 and sample.images.shape == (800, 96, 96, 3)
    assert sample.class_counts() == {name: 100 for name in CLASS_NAMES}
    # ids are the original PBC file names, under the folder of their own class
    for image_id, label in zip(sample.ids, sample.labels):
        assert image_id.split("/")[1] == CLASS_NAMES[label]
    assert len(set(sample.ids)) == 800
    # real micrographs, not constant frames: every image has texture
    assert (sample.images.reshape(800, -1).std(axis=1) > 10).all()


def test_dataset_is_immutable(sample):
    with pytest.raises(ValueError, match="read-only"):
        sample.images[0, 0, 0, 0] = 0
    with pytest.raises(ValueError, match="read-only"):
        sample.labels[0] = 3
    with pytest.raises(AttributeError):
        sample.labels = np.zeros(800)  # type: ignore[misc]


def test_constructor_does_not_copy_uint8_images():
    images = np.zeros((3, 8, 8, 3), np.uint8)
    data = BloodCellDataset(images, [0, 1, 2])
    assert np.shares_memory(data.images, images)


def test_indexing_subset_drop_and_mask(sample):
    image, label = sample[5]
    assert image.shape == (96, 96, 3) and label == sample.labels[5]
    part = sample[10:20]
    assert len(part) == 10 and np.array_equal(part.ids, sample.ids[10:20])
    picked = sample.subset([3, 3, 1])
    assert np.array_equal(picked.images[0], picked.images[1])
    assert list(picked.ids) == [sample.ids[3], sample.ids[3], sample.ids[1]]
    mask = sample.labels == 7
    assert sample[mask].class_counts()["platelet"] == 100 and len(sample[mask]) == 100
    dropped = sample.drop(np.flatnonzero(mask))
    assert len(dropped) == 700 and dropped.class_counts()["platelet"] == 0
    assert sample[-1][1] == sample.labels[-1]


def test_bad_indices_are_rejected(sample):
    with pytest.raises(InvalidDataError, match="out of range"):
        sample.subset([800])
    with pytest.raises(InvalidDataError, match="boolean mask"):
        sample.subset(np.ones(10, bool))
    with pytest.raises(InvalidDtypeError):
        sample.subset([0.5])


def test_concat_and_mismatches(sample):
    both = concat([sample[:10], sample[790:]])
    assert len(both) == 20 and both.ids[-1] == sample.ids[-1]
    assert len(sample[:3].concat(sample[:2])) == 5
    other_classes = BloodCellDataset(np.zeros((1, 96, 96, 3), np.uint8), [0], ("a", "b"))
    with pytest.raises(UnknownClassError, match="different class names"):
        concat([sample[:1], other_classes])
    with pytest.raises(InvalidDataError, match="different sizes"):
        concat([sample[:1], BloodCellDataset(np.zeros((1, 64, 64, 3), np.uint8), [0])])
    with pytest.raises(EmptyDatasetError):
        concat([])


def test_repr_summary_and_replace(sample):
    text = repr(sample[:3])
    assert "n=3" in text and "basophil=3" in text and "96x96x3" in text
    summary = sample.summary()
    assert summary.splitlines()[0].startswith("800 images of 96×96×3")
    assert "platelet" in summary and "12.5%" in summary
    relabelled = sample[:2].replace(labels=[7, 7])
    assert relabelled.class_counts()["platelet"] == 2
    with pytest.raises(TypeError):
        sample.replace(colour="blue")


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (np.zeros((2, 8, 8), np.uint8), InvalidDataError, "4 dimensions"),
        (np.zeros((8, 8, 3), np.uint8), InvalidDataError, "single image"),
        (np.zeros((2, 8, 8, 1), np.uint8), InvalidDataError, "grayscale"),
        (np.zeros((2, 8, 8, 4), np.uint8), InvalidDataError, "RGBA"),
        (np.zeros((2, 3, 8, 8), np.uint8), InvalidDataError, "channels"),
        (np.zeros((2, 8, 8, 3), np.float32), InvalidDtypeError, "cast=True"),
        (np.zeros((2, 8, 8, 3), object), InvalidDtypeError, "object"),
        (np.full((2, 8, 8, 3), "a"), InvalidDtypeError, "numeric"),
    ],
)
def test_bad_images_raise_one_clear_error(images, error, message):
    with pytest.raises(error, match=message):
        as_images(images)


def test_cast_converts_floats_and_catches_nan_and_range():
    unit = np.full((1, 4, 4, 3), 0.5, np.float32)
    assert as_images(unit, cast=True).max() == 128  # 0–1 floats are scaled by 255
    full = np.full((1, 4, 4, 3), 200.4, np.float64)
    assert as_images(full, cast=True).max() == 200
    ints = np.full((1, 4, 4, 3), 17, np.int32)
    assert as_images(ints, cast=True).dtype == np.uint8
    nan = unit.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        as_images(nan, cast=True)
    with pytest.raises(InvalidDataError, match="0–255"):
        as_images(np.full((1, 4, 4, 3), 300.0), cast=True)
    with pytest.raises(InvalidDataError, match="0–255"):
        as_images(np.full((1, 4, 4, 3), -1, np.int16), cast=True)


def test_label_forms():
    assert as_label_indices([1, 2], 8).tolist() == [1, 2]
    assert as_label_indices(np.array([[1], [2]], np.uint8), 8).tolist() == [1, 2]
    assert as_label_indices(np.eye(8)[[3, 5]], 8).tolist() == [3, 5]
    assert as_label_indices(np.array(["IG", "Platelets"]), 8).tolist() == [3, 7]
    assert as_label_indices(np.array([1.0, 2.0]), 8).tolist() == [1, 2]


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([0, 8], InvalidDataError, "0..7"),
        ([-1, 0], InvalidDataError, "0..7"),
        ([0.5, 1.0], InvalidDataError, "fractional"),
        ([np.nan, 1.0], InvalidDataError, "NaN"),
        (np.full((2, 8), 0.125), InvalidDataError, "one-hot"),
        (np.zeros((2, 5)), InvalidDataError, "8 columns"),
        (np.zeros((2, 2, 2)), InvalidDataError, "shape"),
        (np.array([None, 1], dtype=object), InvalidDtypeError, "object"),
        (np.array(["basophil", "macrophage"]), UnknownClassError, "macrophage"),
        (np.array([True, False]), InvalidDtypeError, "integer"),
    ],
)
def test_bad_labels_raise_one_clear_error(labels, error, message):
    with pytest.raises(error, match=message):
        as_label_indices(labels, 8)


def test_length_mismatch_and_bad_metadata():
    with pytest.raises(InvalidDataError, match="3 images, 2 labels"):
        BloodCellDataset(np.zeros((3, 8, 8, 3), np.uint8), [0, 1])
    with pytest.raises(InvalidDataError, match="ids"):
        BloodCellDataset(np.zeros((2, 8, 8, 3), np.uint8), [0, 1], ids=["a"])
    with pytest.raises(InvalidDataError, match="distinct"):
        BloodCellDataset(np.zeros((2, 8, 8, 3), np.uint8), [0, 0], ("a", "a"))


def test_empty_dataset_is_allowed_but_refused_where_images_are_needed():
    empty = BloodCellDataset(np.zeros((0, 96, 96, 3), np.uint8), [])
    assert len(empty) == 0 and empty.class_counts()["ig"] == 0
    with pytest.raises(EmptyDatasetError, match="empty dataset"):
        empty.check_not_empty("training")
