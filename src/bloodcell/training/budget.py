"""`TimeBudget`: stop training at an epoch end when the next epoch would overrun a time limit.

Keras has no such callback (TensorFlow Addons' ``TimeStopping`` went with Addons; it stopped only
once the limit had *already* passed at an epoch end, so the last epoch ran over). Here the next epoch is
assumed to cost what the last one did, from one epoch end to the next, so that the work other
callbacks do between epochs (checkpoints, training state) counts too; and after it, that
between-epoch work once more, for the saving that follows the last epoch. Training stops before an
epoch that would end past the limit. The Trainer's best-epoch restore and ``best.keras`` work as
after any early stop.

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

import time
from collections.abc import Callable
from typing import Any

import keras

from bloodcell._validation import check_positive

__all__ = ["TimeBudget"]


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of an epoch when one more epoch like the last would overrun ``seconds``.

    "Like the last" counts the epoch itself and the time other callbacks took after the previous
    one (checkpoints, the Trainer's training state), which also follows the final epoch.

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
        epoch_ends: When each epoch ended, in seconds since ``start``.

    Example:
        >>> import bloodcell as bc
        >>> guard = bc.training.TimeBudget(25 * 60)
        >>> # bc.Trainer(model, callbacks=[guard]).fit(train, val, epochs=30); guard.stopped
    """

    def __init__(
        self, seconds: float, *, start: float | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        super().__init__()
        self.seconds = check_positive(seconds, "seconds")
        self.start = start
        self.clock = clock
        self.stopped = False
        self.epoch_seconds: list[float] = []
        self.epoch_ends: list[float] = []
        self._epoch_start: float | None = None
        self._last_end: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.start is None:
            self.start = self.clock()
        self._last_end = None  # a second phase (fine_tune) recompiles first: not a between-epoch cost

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        begin = self._epoch_start if self._epoch_start is not None else now
        took = now - begin
        # The time between the last epoch's end and this one's begin went to the callbacks that
        # run after this one (checkpoints, training state): it comes again before the next epoch
        # and once more after it, when the last epoch's files are written.
        between = max(0.0, begin - self._last_end) if self._last_end is not None else 0.0
        self.epoch_seconds.append(took)
        self.epoch_ends.append(now - self.start)
        self._last_end = now
        if now + between + took + between > self.start + self.seconds:
            self.model.stop_training = True
            self.stopped = True
