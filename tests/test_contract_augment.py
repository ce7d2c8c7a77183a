"""The contract every augmenter of ``bloodcell.augment`` keeps, checked on each one.

In the spirit of scikit-learn's ``check_estimator``: the augmenters are found by introspection of
the package's public names (every Keras layer it exports), so a new augmenter is checked without
being listed here. What :mod:`bloodcell.augment.base` promises, and what is checked:

* its hyper-parameters are in ``get_config``, and ``from_config`` rebuilds the same augmenter;
  inside a model it survives ``bloodcell.models.save_model`` / ``load_model``;
* a uint8 batch comes back uint8, a float batch float32 in 0–255 (the same values, unrounded),
  of the input's shape, with the labels untouched;
* the seed decides: the same per-batch seed gives the same images, another seed others; as a
  layer, ``seed=`` does the same;
* a batch of one image works; a lone image (no batch axis) or a grey batch gets one clear error;
* inside a model it is the identity at inference (``training=False``);
* in a ``to_tf_dataset`` pipeline every image and every batch draws its own parameters;
* an augmenter that lets Keras compile it with XLA (``supports_jit``) runs inside XLA.

Class-specific behaviour (what each augmenter does to a cell) is tested in ``test_augment*.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import bloodcell as bc
from bloodcell.errors import ConfigurationError, InvalidDataError

# Public Keras layers of bloodcell.augment that are not image-to-image augmenters, and why. A name
# that has moved to another subpackage may be absent from bloodcell.augment; that is fine.
NOT_AUGMENTERS = {
    "Augmenter": "the abstract base class: subclasses implement augment_images",
    "DomainAugmenter": "the abstract base class of the lab-shift augmenters: subclasses implement transform",
    "MultiView": "stacks views, (B, H, W, 3) in and (B, 1 + V, H, W, 3) out (tests of its own)",
    "ConsistencyModel": "a keras.Model that trains a classifier, not a layer applied to images",
}


def _imgaug_pipeline() -> Any:
    iaa = bc.augment.import_imgaug()
    return iaa.Sequential([iaa.Fliplr(0.5), iaa.Affine(rotate=(-180, 180), mode="reflect")])


# Augmenters whose constructor needs arguments: a typical instance, given seed=. Compose holds a
# member XLA cannot compile (JPEG), so the XLA check sees Compose pass that on to the model.
NEEDS_ARGUMENTS: dict[str, Callable[..., Any]] = {
    "Compose": lambda **kw: bc.augment.Compose([bc.augment.RandomStain(), bc.augment.RandomJPEG()], **kw),
    "ImgaugAugmenter": lambda **kw: bc.augment.ImgaugAugmenter(_imgaug_pipeline(), **kw),
}

# Augmenters that refuse to be saved, with one clear error, and why.
NOT_SAVEABLE = {"ImgaugAugmenter": "it holds an imgaug pipeline: Python objects a .keras file cannot hold"}


def _public_layers() -> list[str]:
    names = []
    for name in sorted(bc.augment.__all__):
        obj = getattr(bc.augment, name)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            names.append(name)
    return names


AUGMENTERS = [name for name in _public_layers() if name not in NOT_AUGMENTERS]
SEED = tf.constant([4, 2], tf.int64)


def build(name: str, *, seed: int | None = None, fast: bool = True) -> Any:
    """A typical instance of the augmenter ``name``.

    ``fast`` takes the portable path (``jit_compile=False``) where there is one: the checks then
    need no XLA compilation; ``test_augmenters_that_claim_xla_run_inside_xla`` covers XLA.
    """
    cls = getattr(bc.augment, name)
    if name in NEEDS_ARGUMENTS:
        return NEEDS_ARGUMENTS[name](seed=seed)
    kwargs: dict[str, Any] = {"seed": seed}
    if fast and "jit_compile" in inspect.signature(cls).parameters:
        kwargs["jit_compile"] = False
    return cls(**kwargs)


def run(aug: Any, images: Any, seed: Any = SEED) -> np.ndarray:
    return aug.augment_batch(images, None, seed)[0].numpy()


@pytest.fixture(scope="module")
def cells(small_sample) -> np.ndarray:
    return np.asarray(small_sample.images[::4])  # 4 real cells of 4 classes: enough for a contract


def test_introspection_finds_the_augmenters():
    assert {"AugMix", "Compose", "RandomGeometric", "RandomStain", "RandomZoom", "RobustAugment"} <= set(
        AUGMENTERS
    )
    for name in AUGMENTERS:
        assert issubclass(getattr(bc.augment, name), bc.augment.Augmenter), name


@pytest.mark.parametrize("name", AUGMENTERS)
def test_every_augmenter_can_be_built_for_the_contract(name):
    cls = getattr(bc.augment, name)
    required = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert not required or name in NEEDS_ARGUMENTS, (
        f"{name} needs {required}: add a typical instance to NEEDS_ARGUMENTS so the contract checks it"
    )
    assert isinstance(build(name), cls)


@pytest.mark.parametrize("name", AUGMENTERS)
def test_config_holds_every_parameter_and_rebuilds_the_augmenter(cells, name):
    aug = build(name, seed=3)
    if name in NOT_SAVEABLE:
        with pytest.raises(ConfigurationError, match="cannot be saved"):
            aug.get_config()
        return
    config = aug.get_config()
    params = [
        p.name
        for p in inspect.signature(type(aug)).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert not set(params) - set(config), f"get_config misses {sorted(set(params) - set(config))}"
    assert config["seed"] == 3
    clone = type(aug).from_config(config)
    assert type(clone) is type(aug) and clone.get_config() == config
    np.testing.assert_array_equal(run(clone, cells), run(aug, cells))


@pytest.mark.parametrize("name", AUGMENTERS)
def test_survives_save_model_and_load_model_and_is_off_at_inference(cells, name, tmp_path):
    aug = build(name, seed=5)
    inputs = keras.Input((96, 96, 3))
    model = keras.Model(inputs, aug(inputs))
    x = cells.astype(np.float32)
    np.testing.assert_array_equal(model(x, training=False).numpy(), x)
    assert np.abs(model(x, training=True).numpy() - x).mean() > 0.5
    path = tmp_path / "model.keras"
    if name in NOT_SAVEABLE:
        with pytest.raises(ConfigurationError, match="cannot be saved"):
            bc.models.save_model(model, path)
        assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
        return
    loaded = bc.models.load_model(bc.models.save_model(model, path))
    layer = next(layer for layer in loaded.layers if type(layer) is type(aug))
    assert layer.get_config() == aug.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), x)
    np.testing.assert_array_equal(run(layer, cells), run(aug, cells))


@pytest.mark.parametrize("name", AUGMENTERS)
def test_keeps_dtype_shape_range_and_labels(cells, name):
    aug = build(name)
    labels = tf.range(len(cells))
    out, labels_out = aug.augment_batch(cells, labels, SEED)
    assert out.dtype == tf.uint8 and tuple(out.shape) == cells.shape
    np.testing.assert_array_equal(labels_out.numpy(), labels.numpy())
    out = out.numpy()
    assert np.abs(out.astype(int) - cells).mean() > 0.5  # it does augment
    as_float, _ = aug.augment_batch(cells.astype(np.float32), None, SEED)
    assert as_float.dtype == tf.float32 and tuple(as_float.shape) == cells.shape
    as_float = as_float.numpy()
    assert np.isfinite(as_float).all() and as_float.min() >= 0.0 and as_float.max() <= 255.0
    assert np.abs(np.rint(as_float) - out).max() <= 1  # uint8 out is the float result, rounded


@pytest.mark.parametrize("name", AUGMENTERS)
def test_the_seed_decides(cells, name):
    aug = build(name)
    a = run(aug, cells, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(a, run(aug, cells, tf.constant([1, 2], tf.int64)))
    # Another seed, other images (a subtle one, such as a mild resampling, by a fraction of a level).
    assert np.abs(a.astype(int) - run(aug, cells, tf.constant([1, 3], tf.int64))).mean() > 0.1
    # As a layer or a function, the seed= argument decides.
    p, q, r = (build(name, seed=s)(cells).numpy() for s in (7, 7, 8))
    np.testing.assert_array_equal(p, q)
    assert np.abs(p.astype(int) - r).mean() > 0.1


@pytest.mark.parametrize("name", AUGMENTERS)
def test_one_image_works_and_bad_batches_get_one_clear_error(cells, name):
    aug = build(name, seed=0)
    one = cells[:1]
    assert run(aug, one).shape == one.shape
    assert tuple(aug(one).shape) == one.shape
    with pytest.raises(InvalidDataError, match=r"images\[None\]"):
        aug(cells[0])  # a lone image: the error says how to make it a batch
    with pytest.raises(InvalidDataError, match="RGB"):
        aug(cells[..., :1])
    with pytest.raises(InvalidDataError, match="uint8 or float"):
        aug(cells.astype(np.int32))


@pytest.mark.parametrize("name", AUGMENTERS)
def test_inference_is_the_identity(cells, name):
    aug = build(name, seed=0)
    for x in (cells, cells.astype(np.float32)):
        out = aug(x, training=False)
        assert out.dtype == x.dtype
        np.testing.assert_array_equal(np.asarray(out), x)


@pytest.mark.parametrize("name", AUGMENTERS)
def test_draws_per_image_and_per_batch_in_a_pipeline(small_sample, name):
    aug = build(name)
    idx = np.zeros(16, np.int64)  # the same real cell, 16 times

    ds = bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=0, indices=idx)
    first, second = (x.numpy() for x, _ in ds)
    assert first.dtype == np.float32 and first.shape == (8, 96, 96, 3)
    # Parameters drawn per image: most copies differ (a blur under a pixel wide may repeat one).
    assert len({im.tobytes() for im in first}) >= 4
    assert np.abs(first - second).mean() > 0.5  # and per batch


@pytest.mark.parametrize("name", AUGMENTERS)
def test_augmenters_that_claim_xla_run_inside_xla(cells, name):
    # Keras compiles a model with XLA (jit_compile="auto", on a GPU) only when every layer's
    # supports_jit is true; an augmenter that claims it must run inside an XLA program.
    aug = build(name, seed=3, fast=False)
    model = keras.Sequential([keras.Input((96, 96, 3)), aug])
    supported = all(layer.supports_jit for layer in model._flatten_layers())
    x = tf.constant(cells[:4], tf.float32)
    inside = tf.function(lambda x, s: aug.augment_batch(x, None, s)[0], jit_compile=True, autograph=False)
    if supported:
        out = inside(x, tf.constant([1, 2], tf.int64)).numpy()
        assert out.shape == x.shape and np.isfinite(out).all()
    else:
        with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)):
            inside(x, tf.constant([1, 2], tf.int64))
