"""Stain normalisation: NumPy and in-model paths agree, shifted stains move back, saved with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bloodcell as bc
from bloodcell import stain
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDtypeError, NotFittedError

METHODS = ["macenko", "reinhard"]


@pytest.fixture(scope="module")
def train_images(sample):
    return sample.subset(np.arange(0, len(sample), 4))  # 200 real cells, 25 per class


@pytest.fixture(scope="module")
def test_images(sample):
    return sample.images[np.arange(1, len(sample), 16)]  # 50 other real cells, all classes


@pytest.fixture(scope="module")
def fitted(train_images):
    return {method: stain.make_normalizer(method).fit(train_images) for method in METHODS}


def _scale_hed(images: np.ndarray, scale: tuple[float, float, float]) -> np.ndarray:
    """Real images re-stained: their haematoxylin/eosin/DAB amounts (Ruifrok deconvolution) scaled."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    od = -np.log((images.astype(np.float64) + 1) / 256)
    hed = (od @ hed_from_rgb) * np.asarray(scale)
    return np.clip(np.rint(256 * np.exp(-(hed @ rgb_from_hed)) - 1), 0, 255).astype(np.uint8)


def _colour_distance(images: np.ndarray, reference: np.ndarray) -> float:
    """Distance between two image sets' per-channel means and standard deviations (grey levels)."""

    def stats(x: np.ndarray) -> np.ndarray:
        pixels = x.reshape(-1, 3).astype(np.float64)
        return np.concatenate([pixels.mean(0), pixels.std(0)])

    return float(np.linalg.norm(stats(images) - stats(reference)))


@pytest.mark.parametrize("method", METHODS)
def test_numpy_and_layer_agree_on_real_images(fitted, test_images, method):
    normalizer = fitted[method]
    images = test_images[:24]
    by_numpy = normalizer.transform(images)
    by_layer = np.asarray(normalizer.to_layer()(images.astype("float32")))
    assert by_numpy.dtype == np.uint8 and by_numpy.shape == images.shape
    diff = np.abs(by_layer - by_numpy.astype(np.float64))
    # float32 in-graph versus float64 rounded to uint8: within one grey level everywhere.
    assert diff.max() <= 1.0
    assert diff.mean() < 0.35
    assert np.abs(by_numpy.astype(float) - images).mean() > 1.0  # it did change the images


@pytest.mark.parametrize("method", METHODS)
def test_shifted_stain_moves_towards_the_target(fitted, train_images, test_images, method):
    normalizer = fitted[method]
    target = train_images.images
    faded = _scale_hed(test_images, (0.6, 0.6, 1.0))  # a paler slide: less of both stains
    before = _colour_distance(faded, target)
    after = _colour_distance(normalizer.transform(faded), target)
    assert after < 0.5 * before, (before, after)
    # Images stained like the training set move much less than the faded ones are corrected by.
    same = _colour_distance(normalizer.transform(test_images), target)
    assert same < 0.5 * before, (same, before)


def test_reinhard_corrects_heavier_and_shifted_stains(fitted, train_images, test_images):
    target = train_images.images
    for scale in ((1.3, 1.3, 1.0), (1.5, 0.6, 1.0), (0.7, 1.4, 1.0)):
        shifted = _scale_hed(test_images, scale)
        before = _colour_distance(shifted, target)
        assert _colour_distance(fitted["reinhard"].transform(shifted), target) < 0.7 * before, scale


@pytest.mark.parametrize("method", METHODS)
def test_images_without_stain_come_back_unchanged(fitted, test_images, method):
    normalizer = fitted[method]
    blank = np.zeros((4, 96, 96, 3), np.uint8)  # error cases: white, black, flat grey, one colour
    blank[0] = 255
    blank[2] = 128
    blank[3] = (200, 120, 180)
    images = np.concatenate([blank, test_images[:2]])
    out = normalizer.transform(images)
    np.testing.assert_array_equal(out[:4], blank)
    layer_out = np.asarray(normalizer.to_layer()(images.astype("float32")))
    assert np.isfinite(layer_out).all()
    np.testing.assert_array_equal(layer_out[:4], blank.astype(np.float32))
    assert np.abs(layer_out[4:] - out[4:]).max() <= 1.0


def test_fit_learns_a_plausible_target(fitted):
    macenko, reinhard = fitted["macenko"], fitted["reinhard"]
    assert macenko.n_fitted_images_ == 200
    np.testing.assert_allclose(np.linalg.norm(macenko.stain_matrix_, axis=0), 1.0)
    nuclear, pink = macenko.stain_matrix_.T
    assert nuclear[0] - nuclear[2] > pink[0] - pink[2]  # purple absorbs red, pink absorbs blue
    assert (macenko.max_concentrations_ > 0).all()
    assert reinhard.stds_.shape == (3,) and (reinhard.stds_ > 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_config_round_trip_is_plain_json(fitted, test_images, method):
    normalizer = fitted[method]
    config = json.loads(json.dumps(normalizer.get_config()))
    copy = stain.from_config(config)
    assert type(copy) is type(normalizer) and copy.get_params() == normalizer.get_params()
    np.testing.assert_array_equal(copy.transform(test_images[:3]), normalizer.transform(test_images[:3]))


def test_transform_of_a_dataset_and_of_one_image(fitted, small_sample):
    normalizer = fitted["reinhard"]
    out = normalizer.transform(small_sample)
    assert isinstance(out, bc.datasets.BloodCellDataset)
    np.testing.assert_array_equal(out.labels, small_sample.labels)
    np.testing.assert_array_equal(normalizer.transform(small_sample.images[5]), out.images[5])


def test_model_with_stain_layer_saves_and_loads_in_safe_mode(fitted, small_sample, tmp_path):
    normalizer = fitted["macenko"]
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(  # a tiny backbone keeps the test fast; the layer is what is tested
        [keras.Input((96, 96, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 5, strides=4)],
        name="tiny",
    )
    model = bc.build_classifier(backbone, head="linear", stain_normalization=normalizer)
    assert [layer.name for layer in model.layers][:3] == ["pixels", "stain_normalization", "tiny"]
    images = small_sample.images[:6]
    expected = model.predict(images, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = bc.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    layer = loaded.get_layer("stain_normalization")
    np.testing.assert_array_equal(layer.normalizer.stain_matrix_, normalizer.stain_matrix_)
    # The layer sits in front of the backbone: the backbone sees normalised pixels.
    normalised = np.asarray(layer(images.astype("float32")))
    backbone_out = loaded.backbone.predict(normalised, verbose=0)
    features = bc.models.feature_extractor(loaded).predict(images, verbose=0)
    np.testing.assert_allclose(backbone_out.mean(axis=(1, 2)), features, rtol=1e-4, atol=1e-5)


def test_experiment_run_fits_the_normaliser_on_train_and_saves_it(sample, tmp_path):
    import keras

    from bloodcell.backbones import register_backbone, unregister_backbone

    @register_backbone("stain_test_cnn", family="test", preprocessing="none", overwrite=True)
    def tiny_cnn(input_shape=(96, 96, 3), weights=None):
        inputs = keras.Input(input_shape)
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        return keras.Model(inputs, keras.layers.Conv2D(8, 5, strides=4)(x), name="tiny_cnn")

    assert "stain_normalization" not in bc.experiments.Config.preset("cpu").to_dict()  # old JSON unchanged
    config = bc.experiments.Config(
        backbone="stain_test_cnn",
        weights=None,
        freeze=None,
        head="linear",
        augment=None,
        epochs=1,
        batch_size=16,
        early_stopping_patience=None,
        stain_normalization="reinhard",
    )
    assert bc.experiments.Config.from_dict(json.loads(config.to_json())) == config
    data = sample.subset(np.concatenate([np.flatnonzero(sample.labels == k)[:4] for k in range(8)]))
    train, val = data.subset(np.arange(0, 32, 2)), data.subset(np.arange(1, 32, 2))
    try:
        result = bc.experiments.run(config, train, val, output_dir=tmp_path, plots=False, verbose=0)
    finally:
        unregister_backbone("stain_test_cnn")
    layer = result.load_model().get_layer("stain_normalization")
    expected = stain.ReinhardNormalizer().fit(train)  # fitted on the training split, not on val
    np.testing.assert_allclose(layer.normalizer.means_, expected.means_)
    np.testing.assert_allclose(layer.normalizer.stds_, expected.stds_)
    with pytest.raises(ConfigurationError, match="stain_normalization"):
        bc.experiments.Config(stain_normalization="vahadane")


def test_bad_input_raises_clear_errors(fitted, test_images):
    with pytest.raises(NotFittedError, match="fit"):
        stain.MacenkoNormalizer().transform(test_images[:1])
    with pytest.raises(NotFittedError, match="fit"):
        stain.StainNormalization(stain.ReinhardNormalizer())
    with pytest.raises(ConfigurationError, match="vahadane"):
        stain.make_normalizer("vahadane")
    with pytest.raises(ConfigurationError, match="alpha"):
        stain.MacenkoNormalizer(alpha=60)
    with pytest.raises(InvalidDtypeError, match="uint8"):
        fitted["macenko"].transform(test_images[:2].astype(np.float32))
    with pytest.raises(EmptyDatasetError, match="stained pixels"):
        stain.MacenkoNormalizer().fit(np.full((3, 16, 16, 3), 255, np.uint8))
    with pytest.raises(InvalidDtypeError, match="stain_normalization"):
        bc.build_classifier(
            "mobilenetv3small", weights=None, input_shape=(32, 32, 3), stain_normalization="macenko"
        )


@pytest.mark.parametrize("q", [0.0, 1.0, 50.0, 99.0, 100.0])
def test_masked_percentiles_match_numpy(q):
    import tensorflow as tf

    from bloodcell.stain import _np_masked_percentile, _tf_masked_percentile

    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 300))
    mask = rng.random((5, 300)) < 0.3
    mask[0] = True
    expected = np.array([np.percentile(v[m], q) for v, m in zip(values, mask)])
    np.testing.assert_allclose(_np_masked_percentile(values, mask, q), expected)
    np.testing.assert_allclose(_tf_masked_percentile(tf.constant(values), tf.constant(mask), q), expected)
    np.testing.assert_allclose(_np_masked_percentile(values, None, q), np.percentile(values, q, axis=1))
