"""Test-time augmentation: dihedral averaging, its wiring into predict/evaluate, and bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bloodcell as bc
from bloodcell import tta
from bloodcell.errors import ConfigurationError

# NumPy versions of the eight symmetries of the square, written independently of bloodcell.tta.
NUMPY_D4 = [
    lambda x: x,
    lambda x: x[:, :, ::-1],
    lambda x: x[:, ::-1],
    lambda x: np.rot90(x, 1, axes=(1, 2)),
    lambda x: np.rot90(x, 2, axes=(1, 2)),
    lambda x: np.rot90(x, 3, axes=(1, 2)),
    lambda x: np.swapaxes(x, 1, 2),
    lambda x: np.rot90(np.swapaxes(x, 1, 2), 2, axes=(1, 2)),
]


def _invariant_model() -> keras.Model:
    """Global average pooling then a dense softmax: exactly invariant to flips and rotations."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="softmax"),
        ]
    )


def _oriented_model() -> keras.Model:
    """A dense layer on pooled pixels: its output depends on where things are."""
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.AveragePooling2D(8),
            keras.layers.Flatten(),
            keras.layers.Dense(
                8, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(0, 0.3)
            ),
        ]
    )


@pytest.fixture(scope="module")
def oriented() -> keras.Model:
    return _oriented_model()


def test_invariant_model_tta_equals_plain_prediction(small_sample):
    model = _invariant_model()
    plain = model.predict(small_sample.images.astype("float32"), verbose=0)
    for group in ("d4", "flips", "rot90"):
        np.testing.assert_allclose(tta.predict(model, small_sample, group), plain, atol=1e-5)


def test_d4_is_the_mean_over_the_eight_transformed_inputs(small_sample, oriented):
    images = small_sample.images
    manual = np.mean([oriented.predict(t(images).astype("float32"), verbose=0) for t in NUMPY_D4], axis=0)
    plain = oriented.predict(images.astype("float32"), verbose=0)
    got = tta.predict(oriented, small_sample, "d4", batch_size=5)
    assert np.abs(plain - manual).max() > 1e-3  # the model does depend on orientation
    np.testing.assert_allclose(got, manual, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("group", "which"), [("flips", [0, 1, 2, 4]), ("rot90", [0, 3, 4, 5])])
def test_groups_average_their_transforms(small_sample, oriented, group, which):
    images = small_sample.images[:6]
    manual = np.mean(
        [oriented.predict(NUMPY_D4[k](images).astype("float32"), verbose=0) for k in which], axis=0
    )
    np.testing.assert_allclose(tta.predict(oriented, images, group), manual, atol=1e-5)


def test_array_dataset_tfdata_and_single_image_inputs_agree(small_sample, oriented):
    from_dataset = tta.predict(oriented, small_sample, "rot90")
    from_array = tta.predict(oriented, np.array(small_sample.images), "rot90")
    assert from_array.dtype == np.float32 and from_array.shape == (16, 8)
    np.testing.assert_allclose(from_array, from_dataset, atol=1e-5)
    one = tta.predict(oriented, small_sample.images[3], "rot90")
    np.testing.assert_allclose(one, from_dataset[3:4], atol=1e-5)
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=4)
    np.testing.assert_allclose(tta.predict(oriented, ds, "rot90"), from_dataset, atol=1e-5)


def test_list_of_names_and_callables(small_sample, oriented):
    images = small_sample.images[:4]
    got = tta.predict(oriented, images, ["identity", lambda x: x[:, ::-1]])
    manual = (
        oriented.predict(images.astype("float32"), verbose=0)
        + oriented.predict(images[:, ::-1].astype("float32"), verbose=0)
    ) / 2
    np.testing.assert_allclose(got, manual, atol=1e-5)
    np.testing.assert_allclose(
        tta.predict(oriented, images, None), oriented.predict(images.astype("float32"), verbose=0), atol=1e-6
    )


@pytest.mark.parametrize("bad", ["d8", "rotate90", ["rotate45"], [], [3]])
def test_unknown_tta_raises_a_clear_error(small_sample, oriented, bad):
    with pytest.raises(ConfigurationError, match="tta|TTA"):
        tta.predict(oriented, small_sample, bad)


def test_rotations_of_non_square_images_are_refused():
    model = keras.Sequential([keras.Input((8, 12, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    images = np.zeros((2, 8, 12, 3), np.uint8)  # an error case: no cell needed
    with pytest.raises(ConfigurationError, match="non-square"):
        tta.predict(model, images, "d4")
    assert tta.predict(model, images, "flips").shape == (2, 2)


def test_evaluate_and_trainer_use_tta(small_sample, oriented):
    expected = tta.predict(oriented, small_sample, "flips")
    report = bc.evaluate(oriented, small_sample, tta="flips")
    np.testing.assert_allclose(report.y_prob, expected, atol=1e-5)
    plain = bc.evaluate(oriented, small_sample)
    assert np.abs(plain.y_prob - report.y_prob).max() > 1e-3
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=6)
    np.testing.assert_allclose(bc.evaluate(oriented, ds, tta="flips").y_prob, expected, atol=1e-5)

    trainer = bc.Trainer(oriented)
    np.testing.assert_allclose(trainer.predict(small_sample, tta="flips"), expected, atol=1e-5)
    np.testing.assert_allclose(trainer.evaluate(small_sample, tta="flips").y_prob, expected, atol=1e-5)
    np.testing.assert_allclose(trainer.predict(small_sample), plain.y_prob, atol=1e-5)
