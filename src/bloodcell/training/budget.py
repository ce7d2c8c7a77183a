"""`TimeBudget`: stop training at an epoch end when the next epoch would overrun a time limit.

Keras has no such callback (TensorFlow Addons' ``TimeStopping`` went with Addons; it stopped only
once the limit had *already* passed at an epoch end, so the last epoch ran over). Here the next epoch is
assumed to last as long as the one just finished, and training stops before it if it would end
past the limit. The Trainer's best-epoch restore and ``best.keras`` work as after any early stop.

Pair it with a schedule fitted to the budget (a cosine schedule over the epochs that fit): the
guard is the safety net for a machine that slows down, not the plan. ``benchmarks/accuracy_cpu.py``
plans the epochs from a measured epoch time and keeps this guard as the net.

Example:
    >>> import time
    >>> guard = TimeBudget(30 * 60)                      # from when training begins
    >>> guard = TimeBudget(1800, start=time.perf_counter())  # or from an earlier moment
    >>> guard.stopped
    False
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras

from bloodcell.errors import ConfigurationError

__all__ = ["TimeBudget"]


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of an epoch when one more epoch of the same length would overrun ``seconds``.

    Args:
        seconds: The time limit, in seconds.
        start: The moment the budget began, as a ``clock()`` reading (e.g. ``time.perf_counter()``
            taken before data loading, so that set-up counts); default: when training begins. The
            same guard passed to a second ``fit`` (a ``fine_tune`` phase) keeps counting from
            there: one budget for both phases.
        clock: The clock, seconds as a float (``time.perf_counter``; tests pass their own).

    Attributes:
        stopped: True once it has stopped a training run.
        epoch_seconds: How long each epoch took, validation included.

    Example:
        >>> import bloodcell as bc
        >>> guard = bc.training.TimeBudget(25 * 60)
        >>> # bc.Trainer(model, callbacks=[guard]).fit(train, val, epochs=30); guard.stopped
    """

    def __init__(
        self, seconds: float, *, start: float | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        super().__init__()
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ConfigurationError(f"seconds must be a positive number of seconds, got {seconds!r}.")
        self.seconds = float(seconds)
        self.start = start
        self.clock = clock
        self.stopped = False
        self.epoch_seconds: list[float] = []
        self._epoch_start: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.start is None:
            self.start = self.clock()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        took = now - (self._epoch_start if self._epoch_start is not None else now)
        self.epoch_seconds.append(took)
        if now + took > self.start + self.seconds:
            self.model.stop_training = True
            self.stopped = True
