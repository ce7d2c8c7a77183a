"""The learning-rate range test (Smith 2017, fastai's ``lr_find``): a short run with a growing rate.

:func:`find_lr` (``Trainer.find_lr``) trains the trainer's model for at most ``num_steps`` batches
while the learning rate grows exponentially from ``start_lr`` to ``end_lr``, records the loss of
each batch, and stops early once the loss diverges. Then every variable of the model (weights,
BatchNorm statistics, dropout seeds) gets back the value it had, so the trainer and the model are
exactly as before: the sweep only looks.

It feeds the batches the way ``Trainer.fit`` does (the trainer's batch size, class balancing,
augmentation and seed) and steps a fresh optimizer built from the trainer's settings (optimizer
kind, weight decay, EMA) with the trainer's loss (label smoothing, focal loss); the optimizer of
the model, if it is compiled, is not used or touched. With ``consistency`` on, the sweep uses the
plain loss on augmented images, without the consistency term.

The suggested rate (:attr:`LRFinderResult.suggestion`) follows the minimum/10 rule by default: a
tenth of the rate at which the smoothed loss was lowest, one order of magnitude before things go
wrong. ``method="steepest"`` takes instead the rate where the smoothed loss falls fastest (per
decade of rate), before its minimum; both are kept on the result.

Example:
    >>> import bloodcell as bc, keras
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Rescaling(1 / 255),
    ...                           keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(8, activation="softmax")])
    >>> result = bc.Trainer(model, batch_size=8).find_lr(data, num_steps=20)
    >>> len(result.lrs) <= 20 and 1e-7 <= result.suggestion <= 10.0
    True
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._validation import check_choice, check_int, check_number
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError

__all__ = ["LRFinderResult", "SUGGESTION_METHODS", "find_lr"]

#: How :func:`find_lr` turns the curve into one rate.
SUGGESTION_METHODS = ("minimum", "steepest")

# Points of the smoothed curve at the start left out of the steepest-slope search: the bias-corrected
# average is still settling there.
_SKIP_START = 3


@dataclass(frozen=True, eq=False)  # holds arrays
class LRFinderResult:
    """The loss along a learning-rate sweep and the rate it suggests.

    Attributes:
        lrs: The learning rate of each step taken (increasing).
        losses: The loss after each step, smoothed (exponential moving average, bias-corrected).
        raw_losses: The loss of each batch as measured.
        suggestion: The suggested learning rate (see ``method``).
        method: ``"minimum"`` (a tenth of the rate at the lowest smoothed loss) or ``"steepest"``
            (the rate where the smoothed loss falls fastest before its minimum).
        minimum: The minimum/10 rate.
        steepest: The steepest-descent rate (the minimum/10 rate when the curve is too short).
        diverged: Whether the sweep stopped early because the loss blew up.
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    method: str
    minimum: float
    steepest: float
    diverged: bool

    def plot(self, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
        """Draw the smoothed loss against the learning rate (log scale) as a PNG; return the path."""
        from bloodcell.plots._figure import _pyplot, _save

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        ax.plot(self.lrs, self.raw_losses, color="0.75", linewidth=0.8, label="loss per batch")
        ax.plot(self.lrs, self.losses, color="tab:blue", label="smoothed")
        ax.axvline(
            self.minimum,
            color="tab:green",
            linestyle="--",
            linewidth=1,
            label=f"minimum/10: {self.minimum:.2g}",
        )
        ax.axvline(
            self.steepest,
            color="tab:orange",
            linestyle=":",
            linewidth=1,
            label=f"steepest: {self.steepest:.2g}",
        )
        ax.set_xscale("log")
        finite = self.losses[np.isfinite(self.losses)]
        if finite.size:  # the diverging tail would squash the interesting part
            low, high = float(finite.min()), float(finite[: max(1, int(np.argmin(finite)) + 1)].max())
            ax.set_ylim(low - 0.1 * (high - low + 1e-3), high + 0.5 * (high - low + 1e-3))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(
            f"learning-rate range test: suggestion {self.suggestion:.2g} ({self.method})", fontsize=10
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, path, dpi)

    def __repr__(self) -> str:
        return (
            f"LRFinderResult(suggestion={self.suggestion:.3g}, method={self.method!r}, steps={len(self.lrs)}, "
            f"diverged={self.diverged})"
        )


def _suggestions(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, float]:
    """(minimum/10 rate, steepest-descent rate) of a smoothed curve."""
    finite = np.where(np.isfinite(losses), losses, np.inf)
    best = int(np.argmin(finite))
    minimum = float(lrs[best] / 10.0)
    lo = min(_SKIP_START, max(0, best - 2))
    if best - lo < 2:
        return minimum, minimum
    slope = np.gradient(finite[lo : best + 1], np.log10(lrs[lo : best + 1]))
    # The minimum itself is left out: its one-sided slope is the last drop into it.
    return minimum, float(lrs[lo + int(np.argmin(slope[:-1]))])


def find_lr(
    trainer: Any,
    train: Any,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    diverge: float = 4.0,
    method: str = "minimum",
) -> LRFinderResult:
    """Sweep the learning rate exponentially over a short run and suggest one; the model is left as it was.

    Args:
        trainer: A :class:`~bloodcell.Trainer` (its model, optimizer settings, loss, batch size,
            balancing, augmentation and seed are used).
        train: The training :class:`~bloodcell.datasets.BloodCellDataset`.
        start_lr: The first learning rate.
        end_lr: The last (reached only if the loss does not diverge before).
        num_steps: Batches in the sweep (at most; the data is cycled through as often as needed).
        smoothing: Weight of the past in the loss's moving average (fastai's 0.98).
        diverge: Stop once the smoothed loss exceeds this many times its lowest value so far
            (fastai's 4), or is no longer finite.
        method: How the suggestion is chosen: ``"minimum"`` (minimum/10) or ``"steepest"``.

    Returns:
        A :class:`LRFinderResult`; ``.plot(path)`` draws the curve.

    Raises:
        ConfigurationError: bad settings, or a trainer with more than one replica (run the sweep
            on one device).
    """
    import tensorflow as tf

    from bloodcell.datasets import BloodCellDataset
    from bloodcell.pipeline import to_tf_dataset
    from bloodcell.training import compiling, feeding

    start_lr = check_number(start_lr, "start_lr", low=0.0, low_open=True)
    end_lr = check_number(end_lr, "end_lr", low=0.0, low_open=True)
    if end_lr <= start_lr:
        raise ConfigurationError(
            f"end_lr must be larger than start_lr. Received: start_lr={start_lr!r}, end_lr={end_lr!r}."
        )
    num_steps = check_int(num_steps, "num_steps", minimum=2)
    smoothing = check_number(smoothing, "smoothing", low=0.0, high=1.0, high_open=True)
    diverge = check_number(diverge, "diverge", low=1.0, low_open=True)
    method = check_choice(method, "method", SUGGESTION_METHODS)
    if not isinstance(train, BloodCellDataset):
        raise InvalidDtypeError(
            f"find_lr() takes the training BloodCellDataset. Received: train={type(train).__name__}."
        )
    train.check_not_empty("find_lr()")
    model = trainer.model
    if int(model.output_shape[-1]) != train.num_classes:
        raise InvalidDataError(
            f"The model outputs {model.output_shape[-1]} classes but the data has {train.num_classes}."
        )
    if trainer.num_replicas > 1:
        raise ConfigurationError(
            f"find_lr() runs on one device; this trainer's strategy has {trainer.num_replicas} replicas. "
            "Find the rate with a Trainer without a strategy, then train with it."
        )

    # The trainer's own data feeding: balancing, row order per (seed, epoch), augmentation.
    options = trainer.options
    train_used, class_weight = feeding.balanced(train, options)
    batch = trainer.global_batch_size
    steps_per_epoch = feeding.steps_per_epoch(train_used, options, batch)
    epochs = math.ceil(num_steps / steps_per_epoch)
    order = np.concatenate(
        [feeding.epoch_indices(train_used, e, steps_per_epoch, options, batch) for e in range(epochs)]
    )
    data = to_tf_dataset(
        train_used,
        batch_size=batch,
        shuffle=False,
        augment=options.augment,
        one_hot=True,
        seed=options.seed,
        drop_remainder=True,
        indices=order[: num_steps * batch],
    )
    weights_by_class = np.ones(train.num_classes, np.float32)
    if class_weight:
        for k, w in class_weight.items():
            weights_by_class[int(k)] = w
    weights_by_class = tf.constant(weights_by_class)

    variables = list(model.variables)
    saved = [np.array(v.numpy(), copy=True) for v in variables]
    optimizer = compiling.make_optimizer(options, start_lr)
    loss_fn = compiling.make_loss(options)
    trainable = model.trainable_variables
    optimizer.build(trainable)

    @tf.function(reduce_retracing=True)
    def step(x: Any, y: Any) -> Any:
        sample_weight = tf.gather(weights_by_class, tf.argmax(y, axis=-1))
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True), sample_weight=sample_weight)
            total = loss + tf.add_n(model.losses) if model.losses else loss
        optimizer.apply_gradients(zip(tape.gradient(total, trainable), trainable))
        return loss

    lrs, raw, smooth = [], [], []
    ratio = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    average, best, diverged = 0.0, math.inf, False
    try:
        for i, (x, y) in enumerate(data.take(num_steps)):
            lr = start_lr * ratio**i
            optimizer.learning_rate = lr
            loss = float(step(x, y))
            average = smoothing * average + (1.0 - smoothing) * loss
            smoothed = average / (1.0 - smoothing ** (i + 1)) if smoothing else loss
            lrs.append(lr)
            raw.append(loss)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                diverged = True
                break
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
    lrs_arr, smooth_arr = np.asarray(lrs), np.asarray(smooth)
    if len(lrs_arr) == 0:
        raise InvalidDataError("find_lr(): the training data gave no full batch; use a smaller batch_size.")
    minimum, steepest = _suggestions(lrs_arr, smooth_arr)
    return LRFinderResult(
        lrs=lrs_arr,
        losses=smooth_arr,
        raw_losses=np.asarray(raw),
        suggestion=minimum if method == "minimum" else steepest,
        method=method,
        minimum=minimum,
        steepest=steepest,
        diverged=diverged,
    )
