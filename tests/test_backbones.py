"""Backbone registry, creation, preprocessing, weights and freezing."""

from __future__ import annotations

import dataclasses
import socket
import urllib.error
import warnings

import keras
import numpy as np
import pytest

import bloodcell as bc
from bloodcell.backbones import (
    Backbone,
    BackboneSpec,
    PixelPreprocessing,
    backbone_layers,
    create,
    freeze,
    get_spec,
    list_backbones,
    register_backbone,
    trainable_summary,
    unfreeze,
    unregister_backbone,
)
from bloodcell.errors import (
    ConfigurationError,
    DataFileNotFoundError,
    IncompatibleWeightsError,
    InvalidDataError,
    PixelRangeWarning,
    UnknownNameError,
    WeightsUnavailableError,
)

SMALL = (32, 32, 3)  # the smallest input the Keras applications accept: fast tests

REQUIRED = [
    *(f"efficientnetv2{v}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")),
    *(f"efficientnetb{i}" for i in range(8)),
    "mobilenetv3small",
    "mobilenetv3large",
    "resnet50v2",
    "densenet121",
    "convnexttiny",
]


def images_of(data: bc.datasets.BloodCellDataset, n: int = 2) -> np.ndarray:
    return np.ascontiguousarray(data.images[:n])


@pytest.fixture(scope="module")
def tiny_backbone() -> Backbone:
    """MobileNetV3Small at 32 px from scratch: the cheapest real Keras application."""
    return create("mobilenetv3small", SMALL, weights=None)


# -- registry -----------------------------------------------------------------------------------------


def test_registry_holds_every_required_entry() -> None:
    names = list_backbones()
    assert set(REQUIRED) <= set(names)
    assert names == sorted(set(names))  # canonical names, each once


def test_list_backbones_wildcards_are_case_and_separator_insensitive() -> None:
    assert list_backbones("efficientnetb*") == [f"efficientnetb{i}" for i in range(8)]
    assert list_backbones("EfficientNet_V2_B?") == [
        "efficientnetv2b0",
        "efficientnetv2b1",
        "efficientnetv2b2",
        "efficientnetv2b3",
    ]
    assert list_backbones("*net121") == ["densenet121"]
    assert list_backbones("no-such-thing*") == []
    assert list_backbones(family="mobilenetv3") == ["mobilenetv3large", "mobilenetv3small"]
    # an alias matches, the canonical name comes back
    assert list_backbones("tf_efficientnetv2_s") == ["efficientnetv2s"]


@pytest.mark.parametrize(
    "alias",
    [
        "efficientnetv2s",
        "EfficientNetV2S",
        "efficientnet_v2_s",
        "EFFICIENTNET-V2-S",
        "tf_efficientnetv2_s",
        " EfficientNetV2-S ",
    ],
)
def test_names_and_aliases_resolve_to_one_entry(alias: str) -> None:
    assert get_spec(alias) is get_spec("efficientnetv2s")


def test_unknown_name_suggests_the_closest_entries() -> None:
    with pytest.raises(UnknownNameError, match=r"efficientnetv2x.*Did you mean 'efficientnetv2\w+'") as info:
        get_spec("efficientnetv2x")
    assert isinstance(info.value, KeyError)  # a failed lookup, like a dict's
    assert "list_backbones()" in str(info.value)
    with pytest.raises(UnknownNameError, match="mobilenetv3small"):
        create("mobilenet_v3_smal", SMALL, weights=None)
    with pytest.raises(UnknownNameError) as info:
        get_spec("vgg16")
    assert "Did you mean" not in str(info.value)  # nothing close: no misleading suggestion


def test_specs_describe_the_keras_constructors() -> None:
    v2s = get_spec("efficientnetv2s")
    assert v2s.constructor == "keras.applications.EfficientNetV2S"
    assert v2s.get_constructor() is keras.applications.EfficientNetV2S
    assert (v2s.family, v2s.min_size, v2s.preprocessing, v2s.input_range) == (
        "efficientnetv2",
        32,
        "none",
        (0.0, 255.0),
    )
    assert v2s.params == 20_331_360 and v2s.pretrained == ("imagenet",)
    assert dict(v2s.constructor_kwargs) == {"include_top": False, "include_preprocessing": True}
    # the two entries whose networks do not preprocess 0-255 themselves
    assert get_spec("resnet50v2").preprocessing == "tf"
    assert get_spec("densenet121").preprocessing == "torch"
    for name in REQUIRED:  # every constructor exists in this Keras (resolved without building)
        spec = get_spec(name)
        assert callable(spec.get_constructor()), name
        assert spec.params and spec.params > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        v2s.min_size = 8  # type: ignore[misc]


def test_efficientnetv2l_spec_without_building_it() -> None:
    spec = get_spec("EfficientNet_V2_L")
    assert spec.get_constructor() is keras.applications.EfficientNetV2L
    assert spec.params == 117_746_848
    assert spec.display_name == "EfficientNetV2L"


@pytest.fixture
def user_entry():
    """A user-registered backbone whose 'feature maps' are its input, to observe the preprocessing."""
    names = []

    def register(name: str, **kwargs):
        @register_backbone(name, min_size=4, **kwargs)
        def passthrough(input_shape, weights=None):
            inputs = keras.Input(input_shape)
            return keras.Model(inputs, keras.layers.Identity()(inputs), name=f"{name}_net")

        names.append(name)
        return passthrough

    yield register
    for name in names:
        if name in list_backbones(name):
            unregister_backbone(name)


def test_users_register_and_create_their_own_backbone(user_entry) -> None:
    user_entry("my_tiny_net", aliases=("tinynet",), family="tiny")
    assert "mytinynet" in list_backbones() and list_backbones(family="tiny") == ["mytinynet"]
    assert get_spec("TinyNet").name == "mytinynet"
    backbone = create("My-Tiny-Net", input_shape=(8, 8, 3), weights=None)
    assert isinstance(backbone, Backbone) and backbone.spec is get_spec("mytinynet")
    x = np.arange(8 * 8 * 3, dtype="uint8").reshape(1, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(backbone(x)), x.astype("float32"))
    with pytest.raises(ConfigurationError, match="already registered"):
        user_entry("tinynet")
    with pytest.raises(WeightsUnavailableError, match="weights=None"):  # no pretrained weights declared
        create("tinynet", (8, 8, 3), weights="imagenet")
    unregister_backbone("tinynet")
    with pytest.raises(UnknownNameError):
        get_spec("my_tiny_net")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", lambda x: x),
        ("unit", lambda x: x / 255.0),
        ("tf", lambda x: x / 127.5 - 1.0),
        ("torch", lambda x: (x / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]),
        ("caffe", lambda x: x[..., ::-1] - [103.939, 116.779, 123.68]),
    ],
)
def test_each_entry_owns_its_preprocessing(user_entry, mode, expected) -> None:
    user_entry(f"pass_{mode}", preprocessing=mode)
    backbone = create(f"pass_{mode}", (4, 4, 3), weights=None)
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype("uint8")
    np.testing.assert_allclose(np.asarray(backbone(x)), expected(x.astype("float64")), rtol=1e-5, atol=1e-4)
    assert get_spec(f"pass_{mode}").input_range[0] <= float(np.min(expected(np.zeros(3))))


def test_register_rejects_bad_specs() -> None:
    with pytest.raises(ConfigurationError, match="preprocessing"):
        BackboneSpec(name="x", constructor=lambda **kw: None, preprocessing="imagenet")
    with pytest.raises(ConfigurationError, match="min_size"):
        BackboneSpec(name="x", constructor=lambda **kw: None, min_size=0)
    with pytest.raises(ConfigurationError, match="name"):
        BackboneSpec(name="__", constructor=lambda **kw: None)


# -- building and inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels"),
    [("efficientnetv2s", 1280), ("efficientnetb0", 1280), ("mobilenetv3small", 576)],
)
def test_seed_backbones_build_at_96_px_and_run_on_real_cells(name, channels, small_sample, request) -> None:
    if name == "efficientnetv2s":  # built once for this module (the freezing tests use it too)
        backbone = request.getfixturevalue("v2s_backbone")
    else:
        backbone = create(name, input_shape=(96, 96, 3), weights=None)
    x = images_of(small_sample)
    features = np.asarray(backbone(x))
    assert features.shape == (2, 3, 3, channels)
    assert np.isfinite(features).all() and features.std() > 0
    # uint8 and the same pixels as float32 give the same features, bit for bit
    np.testing.assert_array_equal(np.asarray(backbone(x.astype("float32"))), features)


@pytest.mark.slow
def test_efficientnetv2l_builds_at_96_px_and_runs(small_sample) -> None:
    backbone = create("efficientnetv2l", input_shape=(96, 96, 3), weights=None)
    assert backbone.count_params() == get_spec("efficientnetv2l").params
    assert np.asarray(backbone(images_of(small_sample))).shape == (2, 3, 3, 1280)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in REQUIRED if n != "efficientnetv2l"])
def test_every_entry_builds_with_its_recorded_parameter_count(name) -> None:
    backbone = create(name, SMALL, weights=None)
    assert backbone.count_params() == get_spec(name).params
    assert np.isfinite(np.asarray(backbone(np.full((1, *SMALL), 128, "uint8")))).all()


@pytest.mark.parametrize(
    "name", ["resnet50v2", pytest.param("densenet121", marks=pytest.mark.slow)]
)  # the two entries whose preprocessing bloodcell does ("tf", "torch"; each mode is checked exactly above)
def test_other_families_take_0_255_pixels(name) -> None:
    backbone = create(name, SMALL, weights=None)
    features = np.asarray(backbone(np.random.default_rng(1).integers(0, 256, (1, *SMALL)).astype("uint8")))
    assert features.ndim == 4 and np.isfinite(features).all()
    assert backbone.preprocessing.mode == get_spec(name).preprocessing


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((16, 16, 3), "at least 32x32"),
        ((96, 31, 3), "at least 32x32"),
        ((96, 96, 1), "3 channels"),
        ((96, 96, 4), "3 channels"),
        ((96, 96), "height, width, channels"),
        ("96x96", "integers"),
    ],
)
def test_bad_input_shapes_raise_one_clear_error(shape, match) -> None:
    with pytest.raises(ConfigurationError, match=match):
        create("efficientnetv2s", input_shape=shape, weights=None)


def test_wrong_images_at_predict_time_raise_invalid_data(tiny_backbone) -> None:
    with pytest.raises(InvalidDataError, match=r"\(2, 32, 32, 1\).*np.repeat"):
        tiny_backbone.predict(np.zeros((2, 32, 32, 1), "uint8"), verbose=0)
    with pytest.raises(InvalidDataError, match="resize_images"):
        tiny_backbone.predict(np.zeros((2, 40, 40, 3), "uint8"), verbose=0)
    with pytest.raises(InvalidDataError, match="batch axis"):
        tiny_backbone.predict(np.zeros((32, 32, 3), "uint8"), verbose=0)
    import tensorflow as tf

    grey = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), "float32")).batch(2)
    with pytest.raises(InvalidDataError, match="channels|np.repeat"):
        tiny_backbone.predict(grey, verbose=0)


# -- the 0-1 pixel check ------------------------------------------------------------------------------


def test_unit_range_floats_warn_in_eager_calls(tiny_backbone, small_sample) -> None:
    pixels = np.asarray(bc.datasets.resize_images(small_sample.images[:4], 32))
    with pytest.warns(PixelRangeWarning, match="0-255"):
        tiny_backbone(pixels.astype("float32") / 255.0)
    with pytest.warns(PixelRangeWarning):  # -1..1 is the same mistake
        tiny_backbone(pixels.astype("float32") / 127.5 - 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        tiny_backbone(pixels)  # uint8
        tiny_backbone(pixels.astype("float32"))  # floats in 0-255
        tiny_backbone(np.zeros((2, *SMALL), "float32"))  # black: no evidence either way


def test_unit_range_floats_warn_in_predict(small_sample) -> None:
    pixels = bc.datasets.resize_images(small_sample.images[:4], 16)
    model = _tiny_image_model()
    with pytest.warns(PixelRangeWarning):
        model.predict(pixels.astype("float32") / 255.0, verbose=0)
    with pytest.warns(PixelRangeWarning):
        model.predict_on_batch(pixels.astype("float32") / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        model.predict(pixels, verbose=0)
        model.predict(pixels.astype("float32"), verbose=0)


def _tiny_image_model() -> bc.backbones.ImageModel:
    """An ImageModel with a two-layer network: fit() traces in a second, the checks are the same."""
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = PixelPreprocessing("unit")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = bc.backbones.ImageModel(inputs, keras.layers.Dense(8, activation="softmax")(x))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_unit_range_floats_warn_in_fit_with_arrays_and_datasets(small_sample) -> None:
    import tensorflow as tf

    data = bc.datasets.BloodCellDataset(
        bc.datasets.resize_images(small_sample.images, 16), small_sample.labels
    )
    model = _tiny_image_model()
    scaled = data.images.astype("float32") / 255.0
    with pytest.warns(PixelRangeWarning):
        model.fit(scaled, data.labels, epochs=1, batch_size=8, verbose=0)
    with pytest.warns(PixelRangeWarning):  # also checked: validation data
        model.fit(data.images, data.labels, validation_data=(scaled, data.labels), epochs=1, verbose=0)
    with pytest.warns(PixelRangeWarning):
        model.fit(
            bc.pipeline.to_tf_dataset(data, batch_size=8).map(lambda x, y: (x / 255.0, y)),
            epochs=1,
            shuffle=False,
            verbose=0,
        )
    with pytest.warns(PixelRangeWarning):
        model.evaluate(scaled, data.labels, verbose=0)
    with pytest.warns(PixelRangeWarning):
        model.train_on_batch(scaled[:8], data.labels[:8])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        model.fit(
            bc.pipeline.to_tf_dataset(data, batch_size=8), epochs=1, shuffle=False, verbose=0
        )  # float 0-255
        uint8 = tf.data.Dataset.from_tensor_slices((data.images, data.labels)).batch(8)
        model.fit(uint8, epochs=1, shuffle=False, verbose=0)


# -- weights ------------------------------------------------------------------------------------------


def test_imagenet_offline_raises_one_clear_error(monkeypatch, tmp_path) -> None:
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    calls = []

    def no_network(url, *args, **kwargs):  # what urllib raises without DNS
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # an empty cache: Keras must download
    with pytest.raises(WeightsUnavailableError) as info:
        create("mobilenetv3small", input_shape=(96, 96, 3), weights="imagenet")
    message = str(info.value)
    assert calls and calls[0].startswith("https://")  # Keras's own download was attempted
    assert "weights=None" in message
    assert "weights='/path/to/weights_mobilenet_v3_small" in message  # the local-file option
    assert calls[0] in message and str(tmp_path / "models") in message
    assert isinstance(info.value.__cause__, Exception)


def test_weights_file_round_trips_exactly(tmp_path, tiny_backbone, small_sample) -> None:
    x = np.asarray(bc.datasets.resize_images(small_sample.images[:3], 32))
    expected = np.asarray(tiny_backbone(x))
    tiny_backbone.save_weights(tmp_path / "backbone.weights.h5")  # bloodcell backbone layout
    tiny_backbone.network.save_weights(tmp_path / "network.weights.h5")  # bare Keras application layout
    bc.build_classifier(tiny_backbone, head="linear").save(tmp_path / "classifier.keras")
    for name in ("backbone.weights.h5", "network.weights.h5", "classifier.keras"):
        loaded = create("MobileNetV3Small", SMALL, weights=tmp_path / name)
        np.testing.assert_array_equal(np.asarray(loaded(x)), expected, err_msg=name)
    fresh = create("mobilenetv3small", SMALL, weights=None)
    assert not np.array_equal(np.asarray(fresh(x)), expected)  # so the equalities above mean something


def test_keras_h5_weight_files_load(tmp_path, tiny_backbone) -> None:
    # Keras's downloaded ImageNet files are legacy .h5 weights of the bare application
    tiny_backbone.network.save(tmp_path / "legacy.h5")
    loaded = create("mobilenetv3small", SMALL, weights=str(tmp_path / "legacy.h5"))
    for a, b in zip(loaded.network.get_weights(), tiny_backbone.network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_file_errors(tmp_path, tiny_backbone) -> None:
    tiny_backbone.save_weights(tmp_path / "mnv3.weights.h5")
    with pytest.raises(IncompatibleWeightsError, match="efficientnetb0"):
        create("efficientnetb0", SMALL, weights=tmp_path / "mnv3.weights.h5")
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        create("mobilenetv3small", SMALL, weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ConfigurationError, match="imagenet"):
        create("mobilenetv3small", SMALL, weights="imagenet21k")
    with pytest.raises(ConfigurationError):
        create("mobilenetv3small", SMALL, weights=3)


# -- BatchNorm momentum -------------------------------------------------------------------------------


def _momenta(backbone) -> set[float]:
    return {
        layer.momentum
        for layer in backbone_layers(backbone)
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_from_scratch_batchnorm_momentum(tiny_backbone, tmp_path) -> None:
    assert _momenta(tiny_backbone) == {0.9}  # weights=None: from-scratch friendly
    assert _momenta(create("mobilenetv3small", SMALL, weights=None, batchnorm_momentum=None)) == {
        0.999
    }  # Keras's
    assert _momenta(create("mobilenetv3small", SMALL, weights=None, batchnorm_momentum=0.95)) == {0.95}
    tiny_backbone.save_weights(tmp_path / "w.weights.h5")  # pretrained weights: Keras's own momentum
    assert _momenta(create("mobilenetv3small", SMALL, weights=tmp_path / "w.weights.h5")) == {0.999}
    for bad in (1.0, 0, "fast", True):
        with pytest.raises(ConfigurationError, match="batchnorm_momentum"):
            create("mobilenetv3small", SMALL, weights=None, batchnorm_momentum=bad)


# -- freezing -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2s_backbone() -> Backbone:
    return create("efficientnetv2s", input_shape=(96, 96, 3), weights=None)


@pytest.fixture
def v2s(v2s_backbone) -> Backbone:
    return unfreeze(v2s_backbone)  # each test starts fully trainable


def test_efficientnetv2s_layer_counts(v2s) -> None:
    layers = backbone_layers(v2s)
    kinds = [type(layer).__name__ for layer in layers]
    assert len(layers) == 513
    assert (kinds.count("Conv2D"), kinds.count("DepthwiseConv2D")) == (140, 30)
    summary = trainable_summary(v2s)
    assert (summary.layers, summary.conv_layers, summary.frozen_layers) == (513, 170, 0)
    assert summary.last_frozen is None


def test_freeze_first_120_conv_layers_like_the_seed(v2s) -> None:
    freeze(v2s, first=120)
    layers = backbone_layers(v2s)
    assert isinstance(layers[0], keras.layers.InputLayer)  # weightless: left alone, counted with layer 1
    assert [layer.trainable for layer in layers[1:]] == [False] * 360 + [True] * 152
    summary = trainable_summary(v2s)
    assert (summary.last_frozen, summary.last_frozen_index) == ("block6f_expand_conv", 360)
    assert (summary.frozen_layers, summary.frozen_conv_layers) == (361, 120)
    assert summary.frozen_batchnorm_layers == sum(
        isinstance(layer, keras.layers.BatchNormalization) for layer in layers[:361]
    )
    assert summary.trainable_params + summary.non_trainable_params == v2s.count_params()
    assert summary.trainable_params == sum(int(np.prod(w.shape)) for w in v2s.trainable_weights)
    assert "block6f_expand_conv (index 360)" in str(summary)


@pytest.mark.parametrize("n", [220, 420, 513])
def test_freeze_first_n_layers_of_any_kind(v2s, n) -> None:
    freeze(v2s, layers=n)
    assert [not layer.trainable for layer in backbone_layers(v2s)[1:]] == [True] * (n - 1) + [False] * (
        513 - n
    )
    summary = trainable_summary(v2s)
    assert (summary.frozen_layers, summary.last_frozen_index) == (n, n - 1)


def test_frozen_batchnorm_can_keep_training(v2s) -> None:
    freeze(v2s, first=120, train_batchnorm=True)
    frozen_part = backbone_layers(v2s)[1:361]  # the input layer is left alone
    bns = [layer for layer in frozen_part if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.trainable for layer in bns)
    assert not any(
        layer.trainable for layer in frozen_part if not isinstance(layer, keras.layers.BatchNormalization)
    )


def test_unfreeze_and_freeze_errors(v2s) -> None:
    freeze(v2s)  # everything
    assert trainable_summary(v2s).trainable_params == 0
    unfreeze(v2s, last=10, train_batchnorm=False)
    layers = backbone_layers(v2s)
    start = [i for i, layer in enumerate(layers) if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")][
        -10
    ]
    assert not any(layer.trainable for layer in layers[1:start])
    assert all(
        layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in layers[start:]
    )
    with pytest.raises(ConfigurationError, match="only 170"):
        freeze(v2s, first=171)
    with pytest.raises(ConfigurationError, match="only 513"):
        freeze(v2s, layers=514)
    with pytest.raises(ConfigurationError, match="not both"):
        freeze(v2s, first=10, layers=10)
    with pytest.raises(ConfigurationError, match="non-negative"):
        freeze(v2s, first=-1)


@pytest.mark.parametrize(
    ("value", "spec", "arguments"),
    [
        (None, None, None),
        (False, None, None),
        ("None", None, None),
        (True, "all", {}),
        (" all ", "all", {}),
        (120, 120, {"first": 120}),
        (np.int64(7), 7, {"first": 7}),
        ("120", 120, {"first": 120}),
        ({"layers": 220}, {"layers": 220}, {"layers": 220}),
    ],
)
def test_one_reader_of_the_freeze_setting(value, spec, arguments) -> None:
    from bloodcell.backbones.freezing import freeze_arguments, parse_freeze

    assert parse_freeze(value) == spec and freeze_arguments(value) == arguments


@pytest.mark.parametrize("value", [2.5, -1, "-1", "half", "1e2", object()])
def test_freeze_setting_refuses_anything_else(value) -> None:
    from bloodcell.backbones.freezing import parse_freeze

    with pytest.raises(ConfigurationError, match=r"freeze must be None.*Received: freeze="):
        parse_freeze(value)


def test_unfreeze_after_keras_whole_model_freeze(tiny_backbone) -> None:
    tiny_backbone.trainable = False  # the Keras way
    assert trainable_summary(tiny_backbone).frozen_layers == 157
    unfreeze(tiny_backbone, layers=7)
    summary = trainable_summary(tiny_backbone)
    assert summary.frozen_layers == 150 and summary.trainable_params > 0
    unfreeze(tiny_backbone)
    assert trainable_summary(tiny_backbone).frozen_layers == 0


def test_frozen_layers_do_not_change_in_training(small_sample) -> None:
    data = bc.datasets.resize_images(small_sample.images, 32)
    model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=SMALL, weights=None, freeze=20)
    layers = backbone_layers(model)
    frozen = [layer for layer in layers if not layer.trainable and layer.weights]
    trained = [layer for layer in layers if layer.trainable and layer.trainable_weights]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in frozen)
    before = {id(layer): [w.numpy() for w in layer.weights] for layer in frozen + trained}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(data, small_sample.labels, batch_size=8, epochs=1, verbose=0)
    for layer in frozen:  # weights and BatchNorm statistics (inference mode) untouched
        for old, new in zip(before[id(layer)], layer.weights, strict=True):
            np.testing.assert_array_equal(old, new.numpy(), err_msg=layer.name)
    assert any(
        not np.array_equal(old, new.numpy())
        for layer in trained
        for old, new in zip(before[id(layer)], layer.weights, strict=True)
    )


def test_pixel_preprocessing_serializes() -> None:
    layer = PixelPreprocessing("torch", check_range=False, name="pp")
    clone = PixelPreprocessing.from_config(layer.get_config())
    assert (clone.mode, clone.check_range, clone.name) == ("torch", False, "pp")
    with pytest.raises(ConfigurationError, match="mode"):
        PixelPreprocessing("imagenet")
