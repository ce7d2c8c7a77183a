"""bloodcell.training.TimeBudget: stopping before an epoch that would overrun the limit."""

from __future__ import annotations

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


def _fit(guard, cells, epochs=3):
    train, val = cells
    trainer = bc.Trainer(
        tiny_classifier(),
        batch_size=16,
        early_stopping_patience=None,
        reduce_lr_patience=None,
        callbacks=[guard],
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
    # Epochs at readings 10–15, 20–25, 30–35: the next one would end at 20, 30, 40, all within 5 + 40.
    guard = bc.training.TimeBudget(40, clock=StepClock(5.0))
    history = _fit(guard, cells)
    assert not guard.stopped and len(history["loss"]) == 3
    assert guard.epoch_seconds == [5.0, 5.0, 5.0]


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
