"""Feeding a training phase: checking the data, class balancing, each epoch's row order and the
``tf.data`` pipelines.

The row order of an epoch is a function of (seed, epoch) alone, so a resumed run sees the batches
an uninterrupted one would have seen.
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import Any

import numpy as np

from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import BloodcellWarning, InvalidDataError, InvalidDtypeError
from bloodcell.pipeline import to_tf_dataset
from bloodcell.training.options import TrainerOptions

__all__ = [
    "balanced",
    "check_data",
    "epoch_indices",
    "eval_dataset",
    "steps_per_epoch",
    "train_dataset",
    "warn_missing_classes",
]


def check_data(data: Any, name: str, model: Any) -> None:
    """One clear error when ``data`` is not a non-empty BloodCellDataset of the model's image size."""
    if not isinstance(data, BloodCellDataset):
        raise InvalidDtypeError(
            f"{name} must be a BloodCellDataset, got {type(data).__name__}; wrap arrays with "
            "bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    data.check_not_empty(f"Trainer ({name})")
    expected = tuple(model.input_shape[1:])
    if len(expected) == 3 and all(d is not None for d in expected) and tuple(data.image_shape) != expected:
        raise InvalidDataError(
            f"{name} images are {data.image_shape} but the model takes {expected}; resize with "
            "bloodcell.datasets.resize_images or build the model with input_shape="
            f"{data.image_shape}."
        )


def warn_missing_classes(train: BloodCellDataset, val: BloodCellDataset) -> None:
    """Warn when validation lacks classes that training has: its accuracy then ignores them."""
    missing = sorted(set(np.unique(train.labels)) - set(np.unique(val.labels)))
    if missing:
        names = ", ".join(train.class_names[k] for k in missing)
        warnings.warn(
            f"The validation set holds no images of {len(missing)} class(es) that training has ({names}): "
            "the best epoch is chosen without them. Give a larger validation set or split with "
            "bloodcell.datasets.split (stratified).",
            BloodcellWarning,
            stacklevel=4,  # the caller of fit()
        )


def balanced(
    train: BloodCellDataset, options: TrainerOptions
) -> tuple[BloodCellDataset, dict[int, float] | None]:
    """The training set after SMOTE, or the class weights; ``oversample`` works on the row order instead."""
    if options.balance == "smote":
        from bloodcell.datasets.balance import smote

        return smote(train, seed=options.seed), None
    if options.balance == "class_weight":
        from bloodcell.datasets.balance import class_weights

        return train, {int(k): float(v) for k, v in class_weights(train).items()}
    return train, None


def epoch_indices(
    train: BloodCellDataset, epoch: int, batches: int, options: TrainerOptions, global_batch: int
) -> np.ndarray:
    """Row order of one epoch: a function of (seed, epoch) alone, so a resumed run sees the same order."""
    rng = np.random.default_rng([options.seed, epoch])
    if options.balance == "oversample":
        from bloodcell.datasets.balance import oversample_indices

        rows = np.asarray(
            oversample_indices(train.labels, strategy="auto", seed=options.seed * 100_003 + epoch),
            np.int64,
        )
    else:
        rows = np.arange(len(train), dtype=np.int64)
    rows = rng.permutation(rows)
    need = batches * global_batch
    if need > len(rows):  # fill the last batch with other rows of this epoch: every batch is full
        rows = np.concatenate(
            [rows, rng.choice(rows, need - len(rows), replace=need - len(rows) > len(rows))]
        )
    return rows[:need]


def steps_per_epoch(train: BloodCellDataset, options: TrainerOptions, global_batch: int) -> int:
    """Full batches per epoch (the last one filled with other rows), oversampled rows counted."""
    if options.balance == "oversample":
        from bloodcell.datasets.balance import oversample_indices

        n = len(oversample_indices(train.labels, strategy="auto", seed=options.seed))
    else:
        n = len(train)
    return max(1, math.ceil(n / global_batch))


def train_dataset(
    train: BloodCellDataset,
    first_epoch: int,
    last_epoch: int,
    steps: int,
    options: TrainerOptions,
    global_batch: int,
) -> Any:
    """The batches of epochs ``first_epoch`` to ``last_epoch - 1``, augmented, one-hot, sharded by data."""
    order = np.concatenate(
        [epoch_indices(train, e, steps, options, global_batch) for e in range(first_epoch, last_epoch)]
    )
    # A seed per resume point: augmentation stays deterministic for a given history of kills.
    aug_seed = zlib.crc32(f"{options.seed}/{first_epoch}".encode())
    ds = to_tf_dataset(
        train,
        batch_size=global_batch,
        shuffle=False,  # the order above is already shuffled, per epoch
        augment=_pipeline_augment(options),
        one_hot=True,
        seed=aug_seed,
        drop_remainder=True,
        indices=order,
    )
    return _shard_by_data(ds)


def eval_dataset(data: BloodCellDataset, global_batch: int) -> Any:
    """Validation batches, one-hot, sharded by data."""
    return _shard_by_data(to_tf_dataset(data, batch_size=global_batch, one_hot=True))


def _pipeline_augment(options: TrainerOptions) -> Any:
    if options.consistency is None:
        return options.augment
    from bloodcell.augment import MultiView

    return MultiView(options.augment, num_views=options.consistency_views)


def _shard_by_data(ds: Any) -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    # The pipeline starts from an index list, not files: shard by data across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
