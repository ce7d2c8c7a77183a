"""imgaug in tf.data: the NumPy 2 import fix and a real pipeline on real cells."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import bloodcell as bc
from bloodcell._compat.imgaug import import_imgaug
from bloodcell.augment import ImgaugAugmenter
from bloodcell.errors import ConfigurationError


@pytest.fixture(scope="module")
def iaa():
    return import_imgaug()


def test_imgaug_imports_on_numpy_2(iaa):
    assert hasattr(np, "sctypes") and np.uint8 in np.sctypes["uint"]  # noqa: NPY201 - restored on purpose
    assert iaa.Sequential.__module__.startswith("imgaug")
    assert bc.augment.import_imgaug is import_imgaug  # the public name of the one fix


def real_pipeline(iaa):
    return iaa.Sequential(
        [
            iaa.Affine(rotate=(-180, 180), mode="reflect"),
            iaa.Fliplr(0.5),
            iaa.AddToHueAndSaturation((-20, 20)),
            iaa.RandAugment(n=2, m=9),
        ]
    )


def test_a_real_imgaug_pipeline_runs_seeded_in_tf_data(iaa, small_sample):
    aug = ImgaugAugmenter(real_pipeline(iaa))

    def run(seed):
        return [x.numpy() for x, _ in bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=seed)]

    a, b, c = run(4), run(4), run(5)
    assert a[0].shape == (8, 96, 96, 3) and a[0].dtype == np.float32
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # the same seed, the same images
    assert np.abs(a[0] - c[0]).mean() > 1.0
    assert np.abs(a[0] - small_sample.images[:8]).mean() > 5.0  # really augmented
    assert len({x.tobytes() for x in a[0]}) == 8


def test_imgaug_augmenter_keeps_uint8_and_works_as_a_layer(iaa, small_sample):
    out = ImgaugAugmenter(iaa.Fliplr(1.0))(small_sample.images[:4])
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), small_sample.images[:4, :, ::-1])


def test_imgaug_augmenter_rejects_what_it_cannot_run(iaa, small_sample):
    with pytest.raises(ConfigurationError, match="imgaug augmenter"):
        ImgaugAugmenter(lambda x: x)
    resize = ImgaugAugmenter(iaa.Resize(48))
    with pytest.raises(Exception, match="changed the batch shape"):
        resize(small_sample.images[:2])
    with pytest.raises(ConfigurationError, match="cannot be saved"):
        ImgaugAugmenter(iaa.Fliplr(0.5)).get_config()


def test_missing_imgaug_gives_install_advice(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imgaug", None)
    monkeypatch.setitem(sys.modules, "imgaug.augmenters", None)
    with pytest.raises(ImportError, match=r"bloodcell\[imgaug\]"):
        import_imgaug()
