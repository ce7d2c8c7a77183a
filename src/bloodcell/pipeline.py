"""The pipeline stage: `to_tf_dataset` turns a dataset's uint8 arrays into ``tf.data`` batches, with
batched in-graph augmentation and prefetching.

The images never become a graph constant (``from_tensor_slices`` would embed them, which breaks at
2 GB and copies the data): the pipeline shuffles and batches *indices*, and each batch is gathered
from the NumPy array by a ``tf.numpy_function`` (one fancy-index per batch, a few microseconds per
image), then cast to float32 inside the graph.

TensorFlow keeps every ``tf.numpy_function`` it has seen for the life of the program (it ties them
to the outermost graph), so the gathering function reaches the arrays only through a weak
reference; the strong one lives on the pipeline's first ``Dataset`` object, which every dataset
built on it, and every iterator over them, keeps alive. Dropping the pipeline frees the arrays.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from bloodcell._validation import check_int, check_seed
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDtypeError

__all__ = ["to_tf_dataset", "batch_seeds"]

Augmenter = Callable[..., Any]


class _Arrays:
    """The arrays one pipeline gathers from; its gathering function holds it only weakly."""

    __slots__ = ("images", "labels", "__weakref__")

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels


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
        seed: Makes shuffling and augmentation deterministic; None draws a fresh seed. Like every
            seeded TensorFlow op, the batches also depend on TensorFlow's global seed
            (``tf.random.set_seed``): the same ``seed`` repeats them only under the same global seed
            (or none). ``Trainer`` sets the global seed from its own ``seed``.
        drop_remainder: Drop a last, smaller batch.
        repeat: Repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        indices: Use only these rows, in this order (e.g. an oversampled index list), without copying images.
        prefetch: Prefetch batches while the model works.

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

    # bloodcell augmenters take an explicit per-batch seed (stateless, reproducible in parallel
    # maps) and may change labels; Keras image layers get that seed through their own hook, and
    # MixUp/CutMix receive the labels too; any other callable just maps images.
    from bloodcell.augment.base import apply_augmenter, requires_one_hot

    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(
            f"to_tf_dataset() takes a BloodCellDataset, got {type(dataset).__name__}; wrap arrays with "
            "bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    dataset.check_not_empty("to_tf_dataset()")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if augment is not None and requires_one_hot(augment) and not one_hot:
        raise ConfigurationError(
            f"{type(augment).__name__} mixes labels and needs one_hot=True in to_tf_dataset()."
        )
    if check_seed(seed, allow_none=True) is None:
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
    h, w, c = dataset.image_shape
    num_classes = dataset.num_classes

    arrays = _Arrays(images, labels)
    arrays_ref = weakref.ref(arrays)

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        held = arrays_ref()
        if held is None:  # only a copy of the pipeline made from its graph alone gets here
            raise RuntimeError(
                "to_tf_dataset(): the images behind this pipeline were freed because no Python "
                "object of the pipeline is left; keep the tf.data.Dataset that to_tf_dataset() "
                "returned (or an iterator made from it) alive while iterating."
            )
        return held.images[idx], held.labels[idx]

    def load(idx: Any) -> tuple[Any, Any]:
        x, y = tf.numpy_function(gather, [idx], (tf.uint8, tf.int32), stateful=False)
        x = tf.ensure_shape(x, [None, h, w, c])
        y = tf.ensure_shape(y, [None])
        x = tf.cast(x, tf.float32)
        if one_hot:
            y = tf.one_hot(y, num_classes, dtype=tf.float32)
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(order)  # indices only: 8 bytes per image
    ds._bloodcell_arrays = arrays  # the strong reference; every later stage holds this dataset
    if shuffle:
        ds = ds.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None:
        _check_augmenter(
            augment, images[order[:batch_size]], labels[order[:batch_size]], one_hot, num_classes
        )
        seeds = batch_seeds(seed)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: apply_augmenter(augment, xy[0], xy[1], s),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def _check_augmenter(
    augment: Augmenter, images: np.ndarray, labels: np.ndarray, one_hot: bool, num_classes: int
) -> None:
    """Run the augmenter once on the first batch and refuse pixels a model cannot take.

    Every model of the library expects pixels in 0–255; an augmenter that returns more (a
    brightness change without clipping) or 0–1 (a rescaling) would train the model on values it
    never sees at prediction time, silently.
    """
    import tensorflow as tf

    from bloodcell.augment.base import apply_augmenter

    y = tf.one_hot(labels, num_classes, dtype=tf.float32) if one_hot else tf.constant(labels)
    out, _ = apply_augmenter(augment, tf.constant(images, tf.float32), y, tf.constant([0, 1], tf.int64))
    pixels = np.asarray(out, np.float64)
    name = getattr(augment, "name", None) or getattr(augment, "__qualname__", None) or type(augment).__name__
    problem = None
    if not np.isfinite(pixels).all():
        problem = "NaN or infinite values"
    elif pixels.min() < -1e-3 or pixels.max() > 255 + 1e-3:
        problem = f"values in {pixels.min():.4g}..{pixels.max():.4g}"
    elif pixels.max() <= 1.0 < float(images.max()):
        problem = f"values in {pixels.min():.4g}..{pixels.max():.4g} (scaled to 0–1)"
    if problem is not None:
        raise ConfigurationError(
            f"The augmenter {name!r} returned {problem} for images in 0–255. Augmenters must return "
            "pixels in 0–255, as the models take them: clip the result (e.g. keras.ops.clip(x, 0, 255)) "
            f"and leave rescaling to the model. Received: augment={name!r}."
        )
