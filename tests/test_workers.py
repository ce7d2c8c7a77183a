"""``to_tf_dataset(..., workers=N)`` and ``Trainer(workers=N)``: batches made in worker processes.

Each worker is a real process that imports TensorFlow (several seconds here), so the tests share
the work: one dataset per behaviour, on a few real sample cells.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import bloodcell as bc
from bloodcell.datasets.workers import worker_processes
from bloodcell.errors import ConfigurationError


class TooBright:
    """A picklable augmenter that fails at run time, inside TensorFlow, on any real image."""

    def __call__(self, images):
        tf.debugging.assert_less(tf.reduce_max(images), -1.0, message="pixels too bright")
        return images


class ExitProcess:
    """A picklable augmenter that ends the process running it, as a crash or the OOM killer would."""

    def __call__(self, images):
        return tf.numpy_function(_exit, [images], tf.float32, stateful=True)


def _exit(images):
    os._exit(3)


@pytest.fixture(scope="module")
def cells():
    return bc.datasets.load_sample(per_class=4)  # 32 real cells


def _batches(ds, limit=None):
    out = []
    for x, y in ds:
        out.append((x.numpy(), y.numpy()))
        if limit is not None and len(out) == limit:
            break
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_one_worker_gives_the_in_process_batches_pass_after_pass(cells):
    kwargs = dict(batch_size=6, shuffle=True, augment=bc.augment.AugMix(), one_hot=True, seed=11)
    here = bc.datasets.to_tf_dataset(cells, **kwargs)
    there = bc.datasets.to_tf_dataset(cells, workers=1, **kwargs)
    first = _batches(there)
    _assert_same(first, _batches(here))
    assert len(first) == 6 and first[-1][0].shape[0] == 2  # the smaller last batch is kept
    # An iterator dropped after two batches, then a full pass: shuffling and augmentation move on
    # per pass exactly as in process, whether or not a pass ran to its end.
    _assert_same(_batches(there, limit=2), _batches(here, limit=2))
    second = _batches(there)
    _assert_same(second, _batches(here))
    assert not np.array_equal(first[0][0], second[0][0])  # a new pass is a new draw


def test_two_workers_share_the_batches_in_order_under_tensorflows_global_seed(cells):
    tf.random.set_seed(5)  # seeded tf.data ops read it: the workers must draw as this process does
    try:
        kwargs = dict(batch_size=4, shuffle=True, augment=bc.augment.AugMix(), seed=2, drop_remainder=True)
        here = bc.datasets.to_tf_dataset(cells, **kwargs)
        there = bc.datasets.to_tf_dataset(cells, workers=2, **kwargs)
    finally:
        tf.random.set_seed(None)
    _assert_same(_batches(there), _batches(here))
    _assert_same(_batches(there), _batches(here))


def test_workers_run_at_idle_priority_and_stop_with_their_dataset(cells):
    before = set(worker_processes())
    ds = bc.datasets.to_tf_dataset(cells, 8, augment=bc.augment.AugMix(), seed=0, workers=1)
    (pid,) = set(worker_processes()) - before
    next(iter(ds))
    if hasattr(os, "SCHED_IDLE"):  # Linux
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    else:
        assert os.getpriority(os.PRIO_PROCESS, pid) == 19
    del ds
    gc.collect()
    assert pid not in worker_processes()
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # reaped on collection; allow for a slow machine
            os.kill(pid, 0)
            time.sleep(0.1)


def test_a_worker_error_is_raised_here_with_its_message(cells):
    ds = bc.datasets.to_tf_dataset(cells, 8, augment=TooBright(), seed=0, workers=1)
    # TensorFlow turns an exception from a generator into UnknownError; the message is the worker's.
    with pytest.raises(
        tf.errors.UnknownError, match=r"(?s)WorkerError: Batch worker 0 of 1 raised .*too bright"
    ):
        next(iter(ds))
    with pytest.raises(tf.errors.UnknownError, match="too bright"):  # and again on the next pass
        next(iter(ds))


def test_a_worker_that_dies_raises_instead_of_hanging(cells):
    ds = bc.datasets.to_tf_dataset(cells, 8, augment=ExitProcess(), seed=0, workers=1)
    with pytest.raises(tf.errors.UnknownError, match=r"stopped unexpectedly \(exit code 3\)"):
        next(iter(ds))
    with pytest.raises(tf.errors.UnknownError, match=r"exit code 3"):
        next(iter(ds))


def test_workers_need_a_picklable_augmenter_and_a_count(cells):
    with pytest.raises(ConfigurationError, match="cannot be pickled.*workers=0"):
        bc.datasets.to_tf_dataset(cells, 8, augment=lambda x: x, workers=1)
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigurationError, match="workers must be a non-negative integer"):
            bc.datasets.to_tf_dataset(cells, 8, workers=bad)
    with pytest.raises(ConfigurationError, match="workers must be a non-negative integer"):
        bc.Trainer(lambda: None, workers=-1)


def test_trainer_with_a_worker_trains_exactly_as_without(cells):
    from _training_utils import tiny_classifier

    histories = []
    for workers in (0, 1):
        trainer = bc.Trainer(
            tiny_classifier(seed=0),
            augment=bc.augment.AugMix(),
            batch_size=8,
            seed=3,
            workers=workers,
            verbose=0,
        )
        histories.append(trainer.fit(cells, cells, epochs=2).history)
        assert trainer.get_params()["workers"] == workers
    assert histories[0] == histories[1]
