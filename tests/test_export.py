"""bloodcell.export: .keras, SavedModel, TFLite and the AN2DL submission zip, checked on real sample cells."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import SUBMISSION_GRADER
from bloodcell.errors import (
    ConfigurationError,
    DataFileNotFoundError,
    InvalidDataError,
    PixelRangeWarning,
    UnreadableFileError,
)
from bloodcell.export import TFLiteModel, export, load, save, to_savedmodel, to_submission, to_tflite

TINY = "export_test_cnn"


@pytest.fixture(scope="module")
def tiny_backbone():
    """A two-layer CNN registered like any user backbone, so the classifier holds bloodcell's own layers.

    No BatchNorm: after a few steps its moving statistics would still lag, and the model would
    predict one class in inference mode, which would make the label comparisons weak.
    """
    import keras

    @bc.backbones.register_backbone(TINY, family="test", preprocessing="unit", overwrite=True)
    def export_test_cnn(input_shape=(96, 96, 3), weights=None):
        inputs = keras.Input(input_shape)
        x = inputs
        for i, filters in enumerate((8, 16)):
            x = keras.layers.Conv2D(
                filters, 3, strides=2, padding="same", activation="relu", name=f"conv{i}"
            )(x)
        return keras.Model(inputs, x, name=TINY)

    yield bc.backbones.normalize_name(TINY)
    bc.backbones.unregister_backbone(TINY)


@pytest.fixture(scope="module")
def model(tiny_backbone, sample):
    """A bloodcell Classifier trained briefly on real cells, so its predicted classes differ between images."""
    import keras

    keras.utils.set_random_seed(0)
    classifier = bc.build_classifier(tiny_backbone, head="linear", weights=None, input_shape=(96, 96, 3))
    train = sample.subset(np.concatenate([np.flatnonzero(sample.labels == k)[:8] for k in range(8)]))
    classifier.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    classifier.fit(train.images, train.labels, batch_size=16, epochs=10, verbose=0)
    return classifier


@pytest.fixture(scope="module")
def images(sample):
    """24 real cells (3 per class) the model did not train on."""
    return sample.images[np.concatenate([np.flatnonzero(sample.labels == k)[-3:] for k in range(8)])]


@pytest.fixture(scope="module")
def expected(model, images):
    probabilities = model.predict(images, verbose=0)
    assert len(set(probabilities.argmax(axis=1))) >= 3, "the test model should tell some cells apart"
    return probabilities


@pytest.fixture(scope="module")
def savedmodel_dir(model, tmp_path_factory):
    return to_savedmodel(model, tmp_path_factory.mktemp("savedmodel") / "served")


@pytest.fixture(scope="module")
def tflite_path(model, tmp_path_factory):
    return to_tflite(model, tmp_path_factory.mktemp("tflite") / "model.tflite")


def test_save_and_load_round_trip(model, images, expected, tmp_path):
    path = save(model, tmp_path / "model.keras")
    save(model, path)  # replacing an existing file works
    loaded = load(path)
    assert isinstance(loaded, bc.models.Classifier)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary file left


def test_save_and_load_refuse_other_formats(model, savedmodel_dir, tmp_path):
    with pytest.raises(ConfigurationError, match=r"end in '\.keras'.*model\.keras"):
        save(model, tmp_path / "model.h5")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UnreadableFileError, match="is a folder, not a model file"):
        load(tmp_path)
    with pytest.raises(UnreadableFileError, match="SavedModel folder.*tf.saved_model.load"):
        load(savedmodel_dir)
    (tmp_path / "model.tflite").write_bytes(b"")
    with pytest.raises(UnreadableFileError, match="TFLiteModel"):
        load(tmp_path / "model.tflite")
    with pytest.raises(DataFileNotFoundError, match="missing.keras"):
        load(tmp_path / "missing.keras")
    with pytest.raises(TypeError, match="keras.Model or the path"):
        save(np.zeros(3), tmp_path / "model.keras")


def test_savedmodel_serves_uint8_and_float32_like_predict(savedmodel_dir, images, expected):
    import tensorflow as tf

    served = tf.saved_model.load(str(savedmodel_dir))  # keep this reference: it owns the variables
    np.testing.assert_allclose(served.serve(images).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(served.serve(images.astype("float32")).numpy(), expected, atol=1e-5)
    default = served.signatures["serving_default"]
    assert default.structured_input_signature[1]["images"].dtype == tf.float32
    np.testing.assert_allclose(
        default(images=tf.constant(images, tf.float32))["output_0"].numpy(), expected, atol=1e-5
    )
    by_uint8 = served.signatures["serve_uint8"](images=tf.constant(images))["output_0"].numpy()
    np.testing.assert_allclose(by_uint8, expected, atol=1e-5)


def test_savedmodel_replaces_only_savedmodels(model, savedmodel_dir, images, expected, tmp_path):
    import tensorflow as tf

    directory = tmp_path / "served"
    shutil.copytree(savedmodel_dir, directory)
    (directory / "stale.txt").write_text("from the earlier export")
    assert to_savedmodel(model, directory) == directory  # replaces the earlier export as a whole
    assert not (directory / "stale.txt").exists() and (directory / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]  # nothing temporary left beside it
    served = tf.saved_model.load(str(directory))
    np.testing.assert_allclose(served.serve(images).numpy(), expected, atol=1e-5)

    other = tmp_path / "results"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="holding other files"):
        to_savedmodel(model, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigurationError, match="is a file"):
        to_savedmodel(model, other / "notes.txt")


def test_tflite_predicts_like_keras_on_real_cells(tflite_path, images, expected):
    tflite = TFLiteModel(tflite_path, batch_size=10)  # 24 images: batches of 10, 10 and 4
    assert tflite.input_shape == (None, 96, 96, 3) and tflite.num_classes == 8
    probabilities = tflite.predict(images)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(tflite.predict(images.astype("float32")), probabilities, atol=1e-6)
    np.testing.assert_allclose(tflite.predict(images[:1]), probabilities[:1], atol=1e-6)
    assert tflite.predict(images[:0]).shape == (0, 8)
    with pytest.warns(PixelRangeWarning):
        tflite.predict(images[:2] / 255.0)
    with pytest.raises(InvalidDataError, match="one image"):
        tflite.predict(images[0])
    with pytest.raises(InvalidDataError, match="resize"):
        tflite.predict(images[:, :48, :48])


@pytest.mark.parametrize("quantize", ["dynamic", pytest.param("float16", marks=pytest.mark.slow)])
def test_quantized_tflite_stays_close(model, tflite_path, images, expected, tmp_path, quantize):
    path = export(model, tmp_path / f"{quantize}.tflite", format="tflite", quantize=quantize)
    assert path.stat().st_size < tflite_path.stat().st_size
    probabilities = TFLiteModel(path).predict(images)
    # Stated tolerance for quantised weights: probabilities within 0.05, same class for ≥ 90 % of cells.
    assert np.abs(probabilities - expected).max() < 0.05
    assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= 0.9


def test_tflite_rejects_bad_arguments(model, tmp_path):
    with pytest.raises(ConfigurationError, match="quantize must be one of"):
        to_tflite(model, tmp_path / "model.tflite", quantize="int4")
    with pytest.raises(DataFileNotFoundError):
        TFLiteModel(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(InvalidDataError, match="not a readable TFLite model"):
        TFLiteModel(tmp_path / "junk.tflite")
    assert not (tmp_path / "model.tflite").exists()


def test_submission_zip_runs_without_bloodcell(model, images, expected, tmp_path):
    path = to_submission(model, tmp_path / "submission.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "model.py" in names and "saved_model/saved_model.pb" in names
        assert all(name == "model.py" or name.startswith("saved_model/") for name in names)
        archive.extractall(tmp_path / "unzipped")
    np.save(tmp_path / "X.npy", images)
    grader_cwd = tmp_path / "elsewhere"  # the weights are found beside model.py, not in the cwd
    grader_cwd.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", "-c", SUBMISSION_GRADER, str(tmp_path / "unzipped"), str(tmp_path / "X.npy")],
        capture_output=True,
        text=True,
        cwd=grader_cwd,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == [len(images)] and out["dtype"] == "int64"
    np.testing.assert_array_equal(out["labels"], expected.argmax(axis=1))


def test_submission_refuses_models_the_grader_cannot_feed(tiny_backbone, tmp_path):
    small = bc.build_classifier(tiny_backbone, head="linear", weights=None, input_shape=(48, 48, 3))
    with pytest.raises(ConfigurationError, match="96x96 images.*48x48"):
        to_submission(small, tmp_path / "submission.zip")
    binary = bc.build_classifier(
        tiny_backbone, head="linear", num_classes=2, weights=None, input_shape=(96, 96, 3)
    )
    with pytest.raises(ConfigurationError, match="2 classes"):
        to_submission(binary, tmp_path / "submission.zip")
    assert not list(tmp_path.iterdir())


def test_export_dispatches_and_takes_a_keras_file(model, images, expected, tmp_path):
    import tensorflow as tf

    keras_file = export(model, tmp_path / "model.keras")  # format="keras" by default
    assert keras_file == tmp_path / "model.keras" and keras_file.is_file()
    directory = export(str(keras_file), tmp_path / "served", format="saved_model")
    served = tf.saved_model.load(str(directory))
    np.testing.assert_allclose(served.serve(images).numpy(), expected, atol=1e-5)
    with pytest.raises(ConfigurationError, match="keras, savedmodel, tflite, submission"):
        export(model, tmp_path / "model.onnx", format="onnx")
    with pytest.raises(
        ConfigurationError, match="format='keras' takes the options.*include_optimizer.*quantize"
    ):
        export(model, tmp_path / "model2.keras", quantize="dynamic")
    assert not (tmp_path / "model2.keras").exists()
