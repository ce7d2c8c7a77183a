"""bloodcell.training.TimeBudget: stopping before an epoch that would overrun the limit."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bloodcell as bc
from _training_utils import tiny_classifier
from bloodcell.errors import ConfigurationError


class StepClock:
    """A clock that moves ``step`` seconds each time it is read: every epoch then lasts ``step``."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def cells():
    data = bc.datasets.load_sample(per_class=4)
    return data, data.subset(np.arange(0, len(data), 2))


def _fit(guard, cells, epochs=3, callbacks=None):
    """Train a tiny model under ``guard``; ``callbacks`` replaces ``[guard]`` to place others around it."""
    train, val = cells
    trainer = bc.Trainer(
        tiny_classifier(),
        batch_size=16,
        early_stopping_patience=None,
        reduce_lr_patience=None,
        callbacks=callbacks if callbacks is not None else [guard],
        verbose=0,
    )
    return trainer.fit(train, val, epochs=epochs).history


def test_stops_before_the_epoch_that_would_overrun(cells):
    # Readings: train begins at 5, epoch 1 runs 10 → 15. Another 5-second epoch would end at 20,
    # past 5 + 12: stop after one epoch.
    guard = bc.training.TimeBudget(12, clock=StepClock(5.0))
    history = _fit(guard, cells)
    assert guard.stopped and len(history["loss"]) == 1
    assert guard.epoch_seconds == [5.0]


def test_runs_every_epoch_that_fits(cells):
    # Epochs at readings 10–15, 20–25, 30–35, 5 s apart (the clock's reading between them): the
    # next one and the 5 s after it would end at 20, 40 and 50, all within 5 + 45.
    guard = bc.training.TimeBudget(45, clock=StepClock(5.0))
    history = _fit(guard, cells)
    assert not guard.stopped and len(history["loss"]) == 3
    assert guard.epoch_seconds == [5.0, 5.0, 5.0]
    assert guard.epoch_ends == [10.0, 20.0, 30.0]  # since training began at 5


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Spend(keras.callbacks.Callback):
    """Moves the clock by ``seconds`` at each epoch end: training before the guard, saving after it."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_epoch_end(self, epoch, logs=None):
        self.clock.now += self.seconds


def test_time_spent_by_later_callbacks_between_epochs_counts(cells):
    # Each epoch trains for 10 s, then a checkpoint after the guard takes 20 s. Epoch 1 ends at 10
    # (its checkpoint to 30), epoch 2 at 40 (to 60). A third would end at 70 and its checkpoint at
    # 90, past the limit of 85; counting the 10 s of training alone (40 + 10 = 50) would have let it
    # run and overrun by 5 s.
    clock = ManualClock()
    guard = bc.training.TimeBudget(85, start=0.0, clock=clock)
    history = _fit(guard, cells, epochs=5, callbacks=[Spend(clock, 10.0), guard, Spend(clock, 20.0)])
    assert guard.stopped and len(history["loss"]) == 2
    assert guard.epoch_ends == [10.0, 40.0]
    assert clock.now == 60.0 <= guard.seconds


def test_a_budget_started_earlier_counts_the_time_before_training(cells):
    # The budget began at 0; set-up took one reading (5), epoch 1 runs 10 → 15, a second would end
    # at 20, past 0 + 19. Counted from the start of training (5) it would still fit.
    clock = StepClock(5.0)
    guard = bc.training.TimeBudget(19, start=0.0, clock=clock)
    clock()  # set-up took one reading
    history = _fit(guard, cells)
    assert guard.stopped and len(history["loss"]) == 1


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf"), True, "30"])
def test_bad_limits_raise(seconds):
    with pytest.raises(ConfigurationError, match="seconds"):
        bc.training.TimeBudget(seconds)
