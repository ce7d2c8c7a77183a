"""Around Keras's ``fit`` for one training phase: the preset callbacks, the resume state's checks and
the progress output.

The callbacks come in a fixed order: the EMA swap first (validation and the best-model choice see
the average), then precise BatchNorm (for the weights being validated), ReduceLROnPlateau,
EarlyStopping, TensorBoard, the user's callbacks, and last the
:class:`~bloodcell.training.TrainingState` that saves and restores the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import ConfigurationError
from bloodcell.training.batchnorm import RecalibrateBatchNorm
from bloodcell.training.callbacks import SwapEMAWeights, TrainingState, load_state
from bloodcell.training.monitors import monitor_mode
from bloodcell.training.options import TrainerOptions

__all__ = ["check_signature", "load_chief_state", "make_callbacks", "progress_mode"]

# What must match between a saved state and the run that resumes it.
_SIGNATURE_KEYS = ("phase", "train_size", "batch_size", "replicas", "seed", "balance", "consistency")


def make_callbacks(
    options: TrainerOptions,
    *,
    model: keras.Model,
    fit_model: keras.Model,
    directory: Path | None,
    monitor: str,
    signature: dict[str, Any],
    train: BloodCellDataset,
) -> tuple[list[Any], TrainingState]:
    """The phase's callbacks, the user's among them, and the :class:`TrainingState` that ends the list."""
    presets: list[Any] = []
    ema_cb = None
    if options.ema:
        ema_cb = SwapEMAWeights()
        presets.append(ema_cb)
    if options.batchnorm_recalibration is not None:
        presets.append(
            RecalibrateBatchNorm(
                model,
                train.images,
                batches=options.batchnorm_recalibration,
                batch_size=options.batch_size,
                seed=options.seed,
            )
        )
    reduce_lr = None
    if options.reduce_lr_patience is not None and options.lr_schedule is None:
        reduce_lr = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            factor=options.reduce_lr_factor,
            patience=options.reduce_lr_patience,
            min_lr=options.min_learning_rate,
            mode=monitor_mode(monitor),
            verbose=0,
        )
        presets.append(reduce_lr)
    early = None
    if options.early_stopping_patience is not None:
        # Best weights are restored by TrainingState (which also survives a resume).
        early = keras.callbacks.EarlyStopping(
            monitor=monitor,
            patience=options.early_stopping_patience,
            mode=monitor_mode(monitor),
            restore_best_weights=False,
            verbose=1 if options.verbose else 0,
        )
        presets.append(early)
    if options.tensorboard and directory is not None:
        presets.append(keras.callbacks.TensorBoard(log_dir=str(directory / "tensorboard")))
    state = TrainingState(
        directory,
        monitor=monitor,
        restore_best=options.restore_best,
        early_stopping=early,
        reduce_lr=reduce_lr,
        ema=ema_cb,
        signature=signature,
        offset=signature["offset"],
        target=model if fit_model is not model else None,
    )
    return [*presets, *options.callbacks, state], state


def load_chief_state(directory: Path | None) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The saved state of a phase, or None; every worker reads the chief's, so all resume from one point."""
    if directory is None:
        return None
    return load_state(directory)


def check_signature(saved: dict[str, Any], current: dict[str, Any], directory: Path | None) -> None:
    """Refuse to resume a folder that holds the state of a run with other settings."""
    differ = [k for k in _SIGNATURE_KEYS if k in saved and saved[k] != current[k]]
    if differ:
        detail = ", ".join(f"{k}: saved {saved[k]!r}, now {current[k]!r}" for k in differ)
        raise ConfigurationError(
            f"{directory} holds the state of a different run ({detail}). Use another output_dir to start a new "
            "run, or delete that folder."
        )


def progress_mode(verbose: int | str) -> int | str:
    """Keras's ``verbose`` for ``fit``: a bar only on a terminal, whose control characters a log file would keep.

    >>> progress_mode(0), progress_mode(2)
    (0, 2)
    """
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose
