import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDtypeError
from bloodcell.pipeline import to_tf_dataset


def _labels(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


def test_batches_are_float_images_and_int_labels(small_sample):
    ds = to_tf_dataset(small_sample, batch_size=5)
    batches = list(ds)
    assert [len(x) for x, _ in batches] == [5, 5, 5, 1]
    x, y = batches[0]
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    np.testing.assert_array_equal(x.numpy(), small_sample.images[:5].astype(np.float32))
    np.testing.assert_array_equal(_labels(ds), small_sample.labels)


def test_one_hot_and_drop_remainder(small_sample):
    ds = to_tf_dataset(small_sample, batch_size=5, one_hot=True, drop_remainder=True)
    ys = _labels(ds)
    assert ys.shape == (15, 8) and ys.dtype == np.float32
    np.testing.assert_array_equal(ys.argmax(1), small_sample.labels[:15])


def test_shuffle_is_seeded_and_reshuffles_each_epoch(sample):
    ds = to_tf_dataset(sample, batch_size=64, shuffle=True, seed=7)
    epoch1, epoch2 = _labels(ds), _labels(ds)
    again = _labels(to_tf_dataset(sample, batch_size=64, shuffle=True, seed=7))
    other = _labels(to_tf_dataset(sample, batch_size=64, shuffle=True, seed=8))
    assert np.array_equal(epoch1, again)
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, other)
    assert sorted(epoch1) == sorted(sample.labels)


def test_batches_depend_on_the_global_seed_as_documented(sample):
    def labels() -> np.ndarray:
        return _labels(to_tf_dataset(sample, batch_size=64, shuffle=True, seed=7))

    try:
        tf.random.set_seed(1)
        first = labels()
        tf.random.set_seed(1)
        again = labels()
        tf.random.set_seed(2)
        other = labels()
    finally:
        tf.random.set_seed(None)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_images_are_not_embedded_in_the_graph(sample):
    # from_tensor_slices(images) would put all 22 MB of pixels into the serialized graph.
    ds = to_tf_dataset(sample, batch_size=32, shuffle=True, seed=0)
    graph_bytes = len(ds._as_serialized_graph().numpy())
    assert graph_bytes < 200_000, graph_bytes
    assert sample.nbytes > 100 * graph_bytes


def test_dropping_the_pipeline_frees_its_images(small_sample):
    # TensorFlow keeps every tf.numpy_function for the life of the program; the pipeline's must
    # not keep the images with it (a leak of one dataset per pipeline built).
    data = small_sample.subset(np.arange(10))  # arrays of its own
    images = weakref.ref(data.images)
    ds = to_tf_dataset(data, batch_size=4, shuffle=True, seed=0, augment=lambda x: x + 0.0)
    batches = iter(ds)
    del data, ds
    gc.collect()
    assert sum(len(y) for _, y in batches) == 10  # an iterator alone keeps the images
    assert images() is not None
    del batches
    gc.collect()
    assert images() is None


def test_indices_repeat_rows_without_copies(small_sample):
    order = np.array([3, 3, 3, 0])
    ys = _labels(to_tf_dataset(small_sample, batch_size=2, indices=order))
    np.testing.assert_array_equal(ys, small_sample.labels[order])
    with pytest.raises(ConfigurationError, match="indices must lie"):
        to_tf_dataset(small_sample, indices=np.array([99]))


def test_plain_callables_and_keras_layers_augment_images(small_sample):
    import keras

    flipped = to_tf_dataset(small_sample, batch_size=16, augment=lambda x: x[:, :, ::-1, :])
    x, _ = next(iter(flipped))
    np.testing.assert_array_equal(x.numpy(), small_sample.images[:, :, ::-1, :].astype(np.float32))
    scaled = to_tf_dataset(small_sample, batch_size=16, augment=keras.layers.Rescaling(0.5))
    x, _ = next(iter(scaled))
    np.testing.assert_allclose(x.numpy(), small_sample.images.astype(np.float32) * 0.5)


class _SeedRecorder:
    """A protocol augmenter that adds its per-batch seed to the labels, so tests can see the seeds."""

    def augment_batch(self, images, labels, seed):
        return images, tf.cast(seed[0] % 1000, tf.int32) + 0 * labels


def test_protocol_augmenters_get_fresh_deterministic_seeds(small_sample):
    ds = to_tf_dataset(small_sample, batch_size=4, augment=_SeedRecorder(), seed=1)
    epoch1 = [int(y[0]) for _, y in ds]
    epoch2 = [int(y[0]) for _, y in ds]
    rerun = [int(y[0]) for _, y in to_tf_dataset(small_sample, batch_size=4, augment=_SeedRecorder(), seed=1)]
    assert len(set(epoch1)) == len(epoch1)  # a new seed for every batch
    assert epoch1 != epoch2  # and for every epoch
    assert epoch1 == rerun  # reproducible for the pipeline seed


class _Mixer:
    requires_one_hot = True

    def augment_batch(self, images, labels, seed):
        return images, labels


def test_label_mixing_augmenters_demand_one_hot(small_sample):
    with pytest.raises(ConfigurationError, match="one_hot=True"):
        to_tf_dataset(small_sample, augment=_Mixer())
    assert next(iter(to_tf_dataset(small_sample, augment=_Mixer(), one_hot=True)))[1].shape == (16, 8)


def test_keras_label_mixing_layers_get_labels_and_need_one_hot(small_sample):
    import keras

    with pytest.raises(ConfigurationError, match="one_hot=True"):
        to_tf_dataset(small_sample, augment=keras.layers.MixUp())
    ds = to_tf_dataset(
        small_sample, batch_size=16, augment=keras.layers.MixUp(alpha=1.0), one_hot=True, seed=0
    )
    _, y = next(iter(ds))
    assert y.shape == (16, 8)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert (y.numpy().max(axis=1) < 1.0).any()  # some labels were mixed


def test_bad_arguments(small_sample):
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        to_tf_dataset(small_sample.images)
    with pytest.raises(EmptyDatasetError):
        to_tf_dataset(BloodCellDataset(np.zeros((0, 8, 8, 3), np.uint8), []))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigurationError, match="batch_size"):
            to_tf_dataset(small_sample, batch_size=bad)
