"""`to_tf_dataset`: a ``tf.data`` pipeline over the uint8 arrays, with batched in-graph augmentation.

The images never become a graph constant (``from_tensor_slices`` would embed them, which breaks at
2 GB and copies the data): the pipeline shuffles and batches *indices*, and each batch is gathered
from the NumPy array by a ``tf.numpy_function`` (one fancy-index per batch, a few microseconds per
image), then cast to float32 inside the graph. With ``workers=N`` the same pipeline runs in N
separate processes (:mod:`bloodcell.datasets.workers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from bloodcell.datasets.core import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDtypeError

__all__ = ["to_tf_dataset", "batch_seeds"]

Augmenter = Callable[..., Any]


def batch_seeds(seed: int, rerandomize_each_iteration: bool = True) -> Any:
    """An endless ``tf.data`` stream of int64 pairs, one per batch, for stateless random ops.

    Deterministic for ``seed``; with ``rerandomize_each_iteration`` each pass over the data (epoch)
    gets a new, still deterministic, sequence, so augmentation differs between epochs.
    """
    import tensorflow as tf

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=rerandomize_each_iteration).batch(2)


def to_tf_dataset(
    dataset: BloodCellDataset,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    augment: Augmenter | None = None,
    one_hot: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
    repeat: bool = False,
    indices: np.ndarray | None = None,
    prefetch: bool = True,
    workers: int = 0,
) -> Any:
    """Build a ``tf.data.Dataset`` of ``(images, labels)`` batches from a dataset's uint8 arrays.

    Images come out as float32 in 0–255 (every bloodcell model takes that range and does its own
    preprocessing); labels as int32 indices, or float32 one-hot rows with ``one_hot=True``.

    Args:
        dataset: The images and labels.
        batch_size: Images per batch.
        shuffle: Shuffle the order, anew at each pass (epoch).
        augment: Applied to each float batch inside the graph: a bloodcell augmenter (it receives
            an explicit per-batch seed and the labels), a Keras image layer (seeded the same way;
            ``MixUp``/``CutMix`` mix the labels too), or any callable mapping images to images.
        one_hot: Labels as one-hot float rows (needed for MixUp/CutMix and label smoothing).
        seed: Makes shuffling and augmentation deterministic; None draws a fresh seed.
        drop_remainder: Drop a last, smaller batch.
        repeat: Repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        indices: Use only these rows, in this order (e.g. an oversampled index list), without copying images.
        prefetch: Prefetch batches while the model works.
        workers: Gather and augment the batches in this many separate processes instead of this
            one's ``tf.data`` threads (default 0). The batches are the same, bit for bit. The
            worker processes run at the lowest CPU priority, so on a machine with few cores the
            augmentation takes only what the model leaves idle instead of slowing it; on a
            machine whose every core other programs keep busy they would starve, use 0 there.
            See :mod:`bloodcell.datasets.workers` (POSIX only; ``augment`` must be picklable).

    Returns:
        A ``tf.data.Dataset`` yielding ``(images, labels)``.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> ds = to_tf_dataset(load_sample(per_class=4), batch_size=8, shuffle=True, seed=0)
        >>> images, labels = next(iter(ds))
        >>> images.shape, images.dtype.name, labels.dtype.name
        (TensorShape([8, 96, 96, 3]), 'float32', 'int32')
    """
    import tensorflow as tf

    from bloodcell.augment.base import requires_one_hot

    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(
            f"to_tf_dataset() takes a BloodCellDataset, got {type(dataset).__name__}; wrap arrays with "
            "bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    dataset.check_not_empty("to_tf_dataset()")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if augment is not None and requires_one_hot(augment) and not one_hot:
        raise ConfigurationError(
            f"{type(augment).__name__} mixes labels and needs one_hot=True in to_tf_dataset()."
        )
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    images = dataset.images
    labels = dataset.labels.astype(np.int32)
    order = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    if order.size == 0:
        raise ConfigurationError("indices is empty: the pipeline would yield no batches.")
    if order.min() < 0 or order.max() >= len(dataset):
        raise ConfigurationError(
            f"indices must lie in 0..{len(dataset) - 1}, got {order.min()}..{order.max()}."
        )
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ConfigurationError(f"workers must be a non-negative integer, got {workers!r}.")
    settings = PipelineSettings(
        batch_size=int(batch_size),
        shuffle=bool(shuffle),
        augment=augment,
        one_hot=bool(one_hot),
        seed=int(seed),
        drop_remainder=bool(drop_remainder),
        repeat=bool(repeat),
        num_classes=dataset.num_classes,
    )
    if workers:
        from bloodcell.datasets.workers import worker_dataset

        spec = build_pipeline(images, labels, order, settings).element_spec  # traced, never run
        ds = worker_dataset(images, labels, order, settings, spec, int(workers))
        return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds
    ds = build_pipeline(images, labels, order, settings)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything besides the arrays that defines the batches of :func:`to_tf_dataset`."""

    batch_size: int
    shuffle: bool
    augment: Augmenter | None
    one_hot: bool
    seed: int
    drop_remainder: bool
    repeat: bool
    num_classes: int


def build_pipeline(
    images: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    settings: PipelineSettings,
    shard: tuple[int, int] | None = None,
) -> Any:
    """The ``tf.data`` pipeline behind :func:`to_tf_dataset` (arguments already checked), unprefetched.

    ``shard=(n, k)`` keeps batches k, k + n, k + 2n, … of the full sequence, each with the very
    index list and augmentation seed it has there: how worker process k of n makes its share.
    """
    import tensorflow as tf

    from bloodcell.augment.base import apply_augmenter

    h, w, c = images.shape[1:]
    num_classes = settings.num_classes

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[idx], labels[idx]

    def load(idx: Any) -> tuple[Any, Any]:
        x, y = tf.numpy_function(gather, [idx], (tf.uint8, tf.int32), stateful=False)
        x = tf.ensure_shape(x, [None, h, w, c])
        y = tf.ensure_shape(y, [None])
        x = tf.cast(x, tf.float32)
        if settings.one_hot:
            y = tf.one_hot(y, num_classes, dtype=tf.float32)
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(order)  # indices only: 8 bytes per image
    if settings.shuffle:
        ds = ds.shuffle(len(order), seed=settings.seed, reshuffle_each_iteration=True)
    if settings.repeat:
        ds = ds.repeat()
    ds = ds.batch(settings.batch_size, drop_remainder=settings.drop_remainder)
    augment = settings.augment
    if augment is None:
        if shard is not None:
            ds = ds.shard(*shard)
        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # bloodcell augmenters take an explicit per-batch seed (stateless, reproducible in parallel
    # maps) and may change labels; Keras image layers get that seed through their own hook, and
    # MixUp/CutMix receive the labels too; any other callable just maps images. Each batch is
    # paired with its seed before any sharding, so a worker's batches keep their seeds.
    ds = tf.data.Dataset.zip((ds, batch_seeds(settings.seed)))
    if shard is not None:
        ds = ds.shard(*shard)
    ds = ds.map(lambda idx, s: (load(idx), s), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(
        lambda xy, s: apply_augmenter(augment, xy[0], xy[1], s),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
