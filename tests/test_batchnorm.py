"""Precise BatchNorm: moving statistics recomputed from batches with the current weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bloodcell as bc
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDtypeError
from bloodcell.training.batchnorm import recalibrate_batchnorm, trainable_batchnorm_layers


@pytest.fixture(scope="module")
def cells():
    """64 real cells from the bundled sample, shrunk to 24 px to keep the convolutions cheap."""
    sample = bc.datasets.load_sample(per_class=8)
    return (
        keras.ops.convert_to_numpy(keras.ops.image.resize(sample.images, (24, 24))).round().astype(np.uint8)
    )


def _model(frozen_second: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(keras.layers.ReLU()(x))
    bn2 = keras.layers.BatchNormalization(momentum=0.9, name="bn2")
    bn2.trainable = not frozen_second
    x = bn2(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _conv1_output(model: keras.Model, images: np.ndarray) -> np.ndarray:
    sub = keras.Model(model.input, model.get_layer("conv1").output)
    return keras.ops.convert_to_numpy(sub(images.astype("float32")))


def test_one_batch_of_everything_gives_the_population_statistics(cells):
    model = _model()
    assert recalibrate_batchnorm(model, cells, batches=1, batch_size=len(cells)) == 2
    features = _conv1_output(model, cells)
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), features.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        bn1.moving_variance.numpy(), features.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-6
    )
    # Inference with the new statistics now computes what training mode computes on that batch.
    x = cells.astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=True)),
        rtol=1e-3,
        atol=1e-4,
    )


def test_the_mean_is_the_average_over_batches_and_the_momentum_comes_back(cells):
    model = _model()
    weights = [w.numpy().copy() for w in model.trainable_weights]
    recalibrate_batchnorm(
        model, bc.datasets.BloodCellDataset(cells, np.zeros(len(cells), np.int64)), batches=4, batch_size=16
    )
    bn1 = model.get_layer("bn1")
    # Four batches of 16 cover all 64 images once, so the mean of the batch means is the overall mean.
    np.testing.assert_allclose(
        bn1.moving_mean.numpy(), _conv1_output(model, cells).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )
    assert all(layer.momentum == 0.9 for layer in trainable_batchnorm_layers(model))
    for before, after in zip(weights, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_frozen_layers_keep_their_statistics(cells):
    model = _model(frozen_second=True)
    bn2 = model.get_layer("bn2")
    assert [layer.name for layer in trainable_batchnorm_layers(model)] == ["bn1"]
    assert recalibrate_batchnorm(model, cells, batches=2, batch_size=32) == 1
    np.testing.assert_array_equal(bn2.moving_mean.numpy(), np.zeros(4, np.float32))
    np.testing.assert_array_equal(bn2.moving_variance.numpy(), np.ones(4, np.float32))


def test_a_failure_puts_the_old_statistics_and_momentum_back(cells):
    model = _model()
    bn1 = model.get_layer("bn1")
    bn1.moving_mean.assign(np.full(4, 0.5, np.float32))
    wrong_size = np.zeros((32, 30, 30, 3), np.uint8)  # the model takes 24 × 24
    with pytest.raises(ValueError):
        recalibrate_batchnorm(model, wrong_size, batches=2, batch_size=16)
    np.testing.assert_array_equal(bn1.moving_mean.numpy(), np.full(4, 0.5, np.float32))
    assert bn1.momentum == 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"batches": 0}, "batches"), ({"batch_size": 0}, "batch_size")]
)
def test_bad_counts_are_refused(cells, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        recalibrate_batchnorm(_model(), cells, **kwargs)


def test_bad_input_is_refused(cells):
    with pytest.raises(ConfigurationError, match="no trainable BatchNormalization"):
        recalibrate_batchnorm(keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Flatten()]), cells)
    with pytest.raises(EmptyDatasetError):
        recalibrate_batchnorm(_model(), cells[:0])
    with pytest.raises(InvalidDtypeError):
        recalibrate_batchnorm(_model(), cells / 255.0)
