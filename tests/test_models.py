"""Classifiers: building, freezing, saving and loading, feature extraction, training from scratch."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import bloodcell as bc
from bloodcell.backbones import Backbone, create, trainable_summary
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, InvalidDtypeError
from bloodcell.heads import DenseStack
from bloodcell.models import Classifier, build_classifier, feature_extractor, load_model

SMALL = (32, 32, 3)


@pytest.fixture(scope="module")
def cells32(sample) -> np.ndarray:
    """Eight real cells (one per class) at 32 px."""
    idx = [int(np.flatnonzero(sample.labels == k)[0]) for k in range(8)]
    return bc.datasets.resize_images(sample.images[idx], 32)


@pytest.fixture(scope="module")
def seed_model() -> Classifier:
    """The seed's model shape (seed head, first N conv layers frozen) on a small backbone."""
    return build_classifier("mobilenetv3small", head="seed", input_shape=SMALL, weights=None, freeze=20)


def test_build_classifier_outputs_probabilities(seed_model, cells32) -> None:
    assert isinstance(seed_model, Classifier) and isinstance(seed_model, keras.Model)
    assert [layer.name for layer in seed_model.layers] == ["pixels", "mobilenetv3small", "pooled", "head"]
    assert seed_model.name == "mobilenetv3small_classifier"
    assert isinstance(seed_model.backbone, Backbone) and seed_model.num_classes == 8
    probs = seed_model.predict(cells32, verbose=0)
    assert probs.shape == (8, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # uint8 and float32 pixels give the same predictions, bit for bit
    np.testing.assert_array_equal(seed_model.predict(cells32.astype("float32"), verbose=0), probs)
    assert trainable_summary(seed_model).frozen_conv_layers == 20


@pytest.mark.parametrize(
    ("freeze", "frozen_conv", "frozen_layers"),
    [(None, 0, 0), (5, 5, None), ({"layers": 30}, None, 30), ("all", 52, 157)],
)
def test_build_classifier_freeze_argument(freeze, frozen_conv, frozen_layers) -> None:
    model = build_classifier(
        "mobilenetv3small", head="linear", input_shape=SMALL, weights=None, freeze=freeze
    )
    summary = trainable_summary(model)
    if frozen_conv is not None:
        assert summary.frozen_conv_layers == frozen_conv
    if frozen_layers is not None:
        assert summary.frozen_layers == frozen_layers
    head_params = 576 * 8 + 8
    assert summary.trainable_params >= head_params  # the head always trains


def test_build_classifier_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="freeze"):
        build_classifier("mobilenetv3small", input_shape=SMALL, weights=None, freeze=2.5)
    with pytest.raises(ConfigurationError, match="pooling"):
        build_classifier("mobilenetv3small", input_shape=SMALL, weights=None, pooling="median")
    with pytest.raises(InvalidDtypeError, match="backbone"):
        build_classifier(42)
    with pytest.raises(bc.errors.UnknownNameError, match="head"):
        build_classifier("mobilenetv3small", head="mlp", input_shape=SMALL, weights=None)


def _scramble_batchnorm_statistics(model: keras.Model, seed: int = 0) -> None:
    """Give every BatchNorm layer non-default moving statistics (as training would), cheaply."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))


def test_save_and_load_keep_predictions_and_frozen_layers(seed_model, cells32, tmp_path) -> None:
    _scramble_batchnorm_statistics(seed_model)
    expected = seed_model.predict(cells32, verbose=0)
    path = tmp_path / "model.keras"
    seed_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # bloodcell's classes are registered
    assert type(loaded) is Classifier and type(loaded.backbone) is Backbone
    assert loaded.backbone.backbone_name == "mobilenetv3small"
    np.testing.assert_array_equal(loaded.predict(cells32, verbose=0), expected)
    assert trainable_summary(loaded).to_dict() == trainable_summary(seed_model).to_dict()
    assert loaded.backbone.preprocessing.mode == "none"
    momenta = {
        layer.momentum for layer in bc.backbones.backbone_layers(loaded) if hasattr(layer, "moving_mean")
    }
    assert momenta == {0.9}  # the from-scratch momentum is part of the saved model
    again = load_model(path, compile=False)
    eager = keras.ops.convert_to_numpy  # eager calls on both: the same kernels, so bit for bit again
    np.testing.assert_array_equal(eager(again(cells32)), eager(seed_model(cells32)))
    with pytest.raises(DataFileNotFoundError):
        load_model(tmp_path / "missing.keras")


def test_classifier_by_hand(cells32) -> None:
    backbone = create("mobilenetv3small", input_shape=SMALL, weights=None)
    bc.backbones.freeze(backbone, first=10)
    model = Classifier(backbone, DenseStack(units=(64, 32), dropout=0.2), num_classes=8, pooling="max")
    assert isinstance(model.get_layer("pooled"), keras.layers.GlobalMaxPooling2D)
    assert [type(layer).__name__ for layer in model.head.layers][-1] == "Dense"
    assert model.predict(cells32, verbose=0).shape == (8, 8)
    assert trainable_summary(model).frozen_conv_layers == 10
    custom_head = keras.Sequential([keras.layers.Dense(3, activation="softmax")], name="head")
    assert Classifier(backbone, custom_head, num_classes=3).output_shape == (None, 3)
    with pytest.raises(ConfigurationError, match="num_classes=8"):
        Classifier(backbone, keras.layers.Dense(3), num_classes=8)
    with pytest.raises(ConfigurationError, match="needs a backbone"):
        Classifier()
    with pytest.raises(InvalidDtypeError, match="head"):
        Classifier(backbone, head=3.0)


def test_feature_extractor_from_a_name(cells32) -> None:
    extractor = feature_extractor("MobileNetV3Small", input_shape=SMALL, weights=None)
    features = extractor.predict(cells32, verbose=0)
    assert features.shape == (8, 576) and np.isfinite(features).all()


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 rounding, whatever the scale (untrained features can be ~1e-10)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))


def test_feature_extractor_of_a_trained_classifier(seed_model, cells32) -> None:
    eager = keras.ops.convert_to_numpy  # eager calls: no graph to trace for each new model

    def backbone_pooled() -> np.ndarray:
        return eager(seed_model.backbone(cells32)).mean(axis=(1, 2))

    extractor = feature_extractor(seed_model)
    pooled = eager(extractor(cells32))
    assert pooled.shape == (8, 576) and np.abs(pooled).max() > 0
    assert_close(pooled, backbone_pooled())
    penultimate = eager(feature_extractor(seed_model, layer="penultimate")(cells32))
    assert penultimate.shape == (8, 32)  # the last hidden block of the seed head
    assert_close(eager(seed_model.head.layers[-1](penultimate)), eager(seed_model(cells32)))
    assert feature_extractor(seed_model, layer="dense_1").output_shape == (None, 1024)
    assert_close(eager(feature_extractor(seed_model.backbone)(cells32)), pooled)
    # weights are shared, not copied: the extractor follows the classifier
    last = [layer for layer in bc.backbones.backbone_layers(seed_model) if layer.weights][-1]
    original = last.weights[0].numpy()
    try:
        last.weights[0].assign(original * 2.0 + 0.5)
        changed = eager(extractor(cells32))
        assert np.abs(changed - pooled).max() > 0.01 * np.abs(pooled).max()
        assert_close(changed, backbone_pooled())
    finally:
        last.weights[0].assign(original)
    with pytest.raises(ConfigurationError, match="layer="):
        feature_extractor(seed_model, layer="nope")
    with pytest.raises(ConfigurationError, match="input_shape"):
        feature_extractor(seed_model, input_shape=(96, 96, 3))


def test_training_from_scratch_leaves_chance_on_real_cells(sample) -> None:
    """weights=None must train out of the box: validation accuracy well above 1/8 after a short run.

    MobileNetV3Small with Keras's BatchNorm momentum (0.999) stays at 1/8 here (see the slow test
    below); bloodcell's from-scratch momentum (0.9) reaches about 0.7.
    """
    data = bc.datasets.BloodCellDataset(bc.datasets.resize_images(sample.images, 48), sample.labels)
    train, val = bc.datasets.split(data, val=0.2, test=0.0, seed=0)
    accuracy = _from_scratch_accuracy(train, val, batchnorm_momentum="auto", epochs=8)
    assert accuracy >= 0.4, accuracy


@pytest.mark.slow
def test_keras_batchnorm_momentum_stalls_from_scratch(sample) -> None:
    data = bc.datasets.BloodCellDataset(bc.datasets.resize_images(sample.images, 48), sample.labels)
    train, val = bc.datasets.split(data, val=0.2, test=0.0, seed=0)
    assert _from_scratch_accuracy(train, val, batchnorm_momentum=None, epochs=8) <= 0.2


def _from_scratch_accuracy(train, val, *, batchnorm_momentum, epochs: int) -> float:
    keras.utils.set_random_seed(0)
    model = build_classifier(
        "mobilenetv3small",
        head="linear",
        input_shape=(48, 48, 3),
        weights=None,
        batchnorm_momentum=batchnorm_momentum,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    train_ds = bc.pipeline.to_tf_dataset(train, batch_size=32, shuffle=True, seed=0)
    model.fit(train_ds, epochs=epochs, shuffle=False, verbose=0)  # the pipeline shuffles
    return float(model.evaluate(val.images, val.labels, verbose=0, return_dict=True)["accuracy"])


def test_every_module_that_registers_keras_objects_is_imported_by_the_loader():
    """A module missing from the list would leave its classes unknown to a fresh process's loader."""
    import re

    from bloodcell._keras_objects import KERAS_OBJECT_MODULES

    src = Path(bc.__file__).resolve().parent
    registering = {
        "bloodcell." + ".".join(path.relative_to(src).with_suffix("").parts)
        for path in src.rglob("*.py")
        if re.search(r"^@keras\.saving\.register_keras_serializable", path.read_text(), re.MULTILINE)
    }
    assert registering and set(KERAS_OBJECT_MODULES) == registering
