"""Callbacks: the run state that makes training resumable, keeps the best model, and writes the log.

:class:`TrainingState` replaces three Keras callbacks with one that agrees with itself:

* ``keras.callbacks.BackupAndRestore`` saves only the model weights, non-atomically. A resumed run
  then restarts the optimizer's moments and step count, forgets learning-rate reductions, early
  stopping patience and the best score so far, and a kill during the save can leave a corrupt
  file. Here every epoch end writes the model's variables (dropout seed states included), the
  optimizer's variables, the best weights and the counters of ``EarlyStopping`` and
  ``ReduceLROnPlateau`` to a new file, then points ``state.json`` at it with an atomic rename.
* ``ModelCheckpoint(save_best_only=True)`` writes in place; here ``best.keras`` is written
  atomically, and the in-memory best weights are restored at the end of training.
* ``CSVLogger`` appends a row per epoch, so a kill between the row and the checkpoint duplicates
  epochs after a resume; here ``log.csv`` is rewritten from the saved history.

:class:`SwapEMAWeights` puts the moving average of the weights in the model for validation and
checkpoints, like Keras's callback of that name with ``swap_on_epoch=True``, but swaps exactly, so
that a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bloodcell._io import atomic_path, atomic_write_text
from bloodcell.errors import ConfigurationError, UnreadableFileError
from bloodcell.training.monitors import monitor_mode

__all__ = ["TrainingState", "SwapEMAWeights", "STATE_FILE"]

STATE_FILE = "state.json"


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _to_float(value: Any) -> float:
    return float(np.asarray(value))


class SwapEMAWeights(keras.callbacks.Callback):
    """Validate, checkpoint and finish with the optimizer's moving average of the weights (``use_ema``).

    The averages are put in the model for each validation pass and from the end of each epoch to
    the start of the next (so the callbacks after this one, and the checkpoints, see them), and
    stay in the model when training ends. Unlike Keras's ``SwapEMAWeights(swap_on_epoch=True)``:

    * the raw weights wait in a copy, exactly, while the optimizer keeps the averages (Keras swaps
      in place with ``a = a + b; b = a - b; a = a - b``, which rounds, so a run resumed from a saved
      state drifted from an uninterrupted one);
    * training may end at any epoch: Keras's ``fit`` then writes the optimizer's averages into the
      model, which here are still the averages (Keras's callback prepares for that only at the
      last planned epoch, so a run stopped early ended with the raw weights).

    Attributes:
        averages_in_model: Whether the model holds the averages now.
    """

    def __init__(self) -> None:
        super().__init__()
        self._raw: list[tuple[Any, np.ndarray]] | None = None

    @property
    def averages_in_model(self) -> bool:
        return self._raw is not None

    def raw_weights(self) -> list[tuple[Any, np.ndarray]]:
        """``(variable, raw value)`` of each trainable variable while the averages are in the model."""
        return list(self._raw or [])

    def _pairs(self) -> list[tuple[Any, Any]]:
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if not hasattr(optimizer, "_model_variables_moving_average"):
            raise ConfigurationError(
                "SwapEMAWeights needs an optimizer built with use_ema=True. "
                f"Received: use_ema={getattr(optimizer, 'use_ema', None)!r}."
            )
        return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))

    def _averages_in(self) -> None:
        if self._raw is None:
            pairs = self._pairs()
            self._raw = [(variable, keras.ops.convert_to_numpy(variable)) for variable, _ in pairs]
            for variable, average in pairs:
                variable.assign(average)

    def _averages_out(self) -> None:
        if self._raw is not None:
            for variable, raw in self._raw:
                variable.assign(raw)
            self._raw = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._averages_out()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._averages_in()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        # Validation inside fit ends before on_epoch_end, which puts the averages back in.
        self._averages_out()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._averages_in()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._raw = None  # the averages are the trained weights from now on


class TrainingState(keras.callbacks.Callback):
    """Resumable run state, best-model checkpoint and CSV log of one training phase (see the module doc).

    Args:
        directory: Where ``state.json``, the variables, ``best.keras`` and ``log.csv`` go; None keeps
            everything in memory (the best weights are still restored at the end).
        monitor: The logged metric that defines "best".
        restore_best: Load the best epoch's weights when training ends.
        write: False on non-chief workers: they track the best weights but write nothing.
        early_stopping, reduce_lr: The Keras callbacks whose counters are saved and restored.
        ema: The :class:`SwapEMAWeights` in use, if any (its swapped weights are saved in their
            un-swapped places, so a resumed run continues both the raw and averaged weights).
        signature: Facts about the run (data size, batch, seed) stored with the state and checked
            when resuming.
        offset: Epochs of earlier phases (Keras numbers a second phase's epochs after the first's).
        target: The model whose best weights are kept and saved as ``best.keras``, when Keras trains
            a wrapper around it (e.g. :class:`bloodcell.training.consistency.ConsistencyModel`); default: the
            trained model itself.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        monitor: str = "val_accuracy",
        restore_best: bool = True,
        write: bool = True,
        early_stopping: Any = None,
        reduce_lr: Any = None,
        ema: Any = None,
        signature: dict[str, Any] | None = None,
        offset: int = 0,
        target: Any = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory) if directory is not None else None
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.restore_best = restore_best
        self.write = write and self.directory is not None
        self.early_stopping = early_stopping
        self.reduce_lr = reduce_lr
        self.ema = ema
        self.history: dict[str, list[float]] = {}
        self.signature = dict(signature or {})
        self.offset = int(offset)
        self.target = target
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_done = 0
        self.stopped_early = False
        self._pending: dict[str, Any] | None = None  # counters to put back after on_train_begin resets

    # -------------------------------------------------------------- restoring
    def restore(self, model: Any, saved: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Put a saved state back into the model and optimizer (called before ``fit``)."""
        _assign(model.variables, arrays, "model")
        if model.optimizer is not None:
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            _assign(model.optimizer.variables, arrays, "optimizer")
        if "best/0" in arrays:
            n = sum(1 for k in arrays if k.startswith("best/"))
            self.best_weights = [arrays[f"best/{i}"] for i in range(n)]
        elif saved.get("best_is_current"):
            self.best_weights = [np.array(w) for w in (self.target or model).get_weights()]
        self.best = saved.get("best")
        self.best_epoch = saved.get("best_epoch")
        self.epochs_done = int(saved["epoch"])
        self.stopped_early = bool(saved.get("stopped_early", False))
        self.history = {k: list(v) for k, v in saved.get("history", {}).items()}
        self._pending = saved.get("callbacks", {})

    @property
    def _target_model(self) -> Any:
        return self.target if self.target is not None else self.model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # EarlyStopping and ReduceLROnPlateau reset their counters in their own on_train_begin,
        # which runs before this one (this callback comes last): put the saved ones back.
        pending = self._pending or {}
        for name, cb in (("early_stopping", self.early_stopping), ("reduce_lr", self.reduce_lr)):
            if cb is not None and name in pending:
                for attr, value in pending[name].items():
                    setattr(cb, attr, value)
        self._pending = None

    # -------------------------------------------------------------- each epoch
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        if "learning_rate" not in logs and optimizer is not None:
            # logs is shared with History and the progress bar, which run after this callback
            logs["learning_rate"] = _to_float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(_to_float(value))
        self.history.setdefault("epoch", []).append(int(epoch))
        self.epochs_done = epoch + 1 - self.offset

        value = logs.get(self.monitor)
        best_is_current = False
        if value is not None and _improved(_to_float(value), self.best, self.mode):
            self.best, self.best_epoch = _to_float(value), int(epoch)
            self.best_weights = [np.array(w) for w in self._target_model.get_weights()]
            best_is_current = True
            if self.write:
                from bloodcell.models import save_model

                save_model(self._target_model, self.directory / "best.keras")
        self.stopped_early = bool(getattr(self.model, "stop_training", False))
        if self.write:
            self._save(best_is_current)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best and self.best_weights is not None:
            self._target_model.set_weights(self.best_weights)

    # -------------------------------------------------------------- writing
    def _callback_counters(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if self.early_stopping is not None:
            es = self.early_stopping
            out["early_stopping"] = {
                "wait": int(es.wait),
                "best": None if es.best is None else _to_float(es.best),
                "best_epoch": int(es.best_epoch),
            }
        if self.reduce_lr is not None:
            rl = self.reduce_lr
            out["reduce_lr"] = {
                "wait": int(rl.wait),
                "best": None if rl.best is None else _to_float(rl.best),
                "cooldown_counter": int(rl.cooldown_counter),
            }
        return out

    def _arrays(self, best_is_current: bool) -> tuple[dict[str, np.ndarray], bool]:
        """The arrays to save, and whether the saved model weights are the best ones."""
        model_vars = [np.array(v.numpy()) for v in self.model.variables]
        opt = self.model.optimizer
        opt_vars = [np.array(v.numpy()) for v in opt.variables] if opt is not None else []
        swapped = self.ema is not None and self.ema.averages_in_model
        if swapped:
            # The averages are in the model (the optimizer keeps them too): save the raw weights in
            # their place, to train on. The best weights (averages) are then not the saved model's.
            index = {id(v): i for i, v in enumerate(self.model.variables)}
            for variable, raw in self.ema.raw_weights():
                model_vars[index[id(variable)]] = np.array(raw)
        best_is_saved_model = best_is_current and not swapped
        arrays = {f"model/{i}": a for i, a in enumerate(model_vars)}
        arrays.update({f"optimizer/{i}": a for i, a in enumerate(opt_vars)})
        if self.best_weights is not None and not best_is_saved_model:
            arrays.update({f"best/{i}": a for i, a in enumerate(self.best_weights)})
        return arrays, best_is_saved_model

    def _save(self, best_is_current: bool, finished: bool = False) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"variables-{self.epochs_done:04d}{'-final' if finished else ''}.npz"
        arrays, best_is_current = self._arrays(best_is_current)
        with atomic_path(self.directory / name) as tmp:
            np.savez(tmp, **arrays)
        state = {
            "epoch": self.epochs_done,
            "finished": finished,
            "stopped_early": self.stopped_early,
            "variables": name,
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_is_current": best_is_current,
            "callbacks": self._callback_counters(),
            "signature": self.signature,
            "history": self.history,
        }
        atomic_write_text(self.directory / STATE_FILE, json.dumps(state, indent=1) + "\n")
        for old in self.directory.glob("variables-*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)
        _write_csv(self.directory / "log.csv", self.history)

    def finish(self) -> None:
        """Record that this phase is complete (the final weights are the ones kept)."""
        if self.write:
            self._save(best_is_current=True, finished=True)


def _assign(variables: list[Any], arrays: dict[str, np.ndarray], prefix: str) -> None:
    n = sum(1 for k in arrays if k.startswith(prefix + "/"))
    if n != len(variables):
        raise ConfigurationError(
            f"The saved training state holds {n} {prefix} variables but this {prefix} has {len(variables)}: "
            "the output directory belongs to a different model or optimizer. Use another output_dir, or "
            "delete it to start afresh."
        )
    for i, var in enumerate(variables):
        value = arrays[f"{prefix}/{i}"]
        if tuple(value.shape) != tuple(var.shape):
            raise ConfigurationError(
                f"Saved {prefix} variable {i} has shape {value.shape} but {var.path if hasattr(var, 'path') else var.name} "
                f"has {tuple(var.shape)}: the output directory belongs to a different run."
            )
        var.assign(value)


def _write_csv(path: Path, history: dict[str, list[float]]) -> None:
    keys = ["epoch"] + sorted(k for k in history if k != "epoch")
    n = len(history.get("epoch", []))
    lines = [",".join(keys)]
    for row in range(n):
        cells = []
        for k in keys:
            series = history.get(k, [])
            cells.append(repr(series[row]) if row < len(series) else "")
        lines.append(",".join(cells))
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_state(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The saved state of a phase directory, or None if there is none."""
    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.exists():
        return None
    try:
        saved = json.loads(state_path.read_text(encoding="utf-8"))
        with np.load(directory / saved["variables"], allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        # A state written by this callback is complete (written aside, then renamed): this one was
        # edited, copied in part or damaged on disk, and cannot be resumed from.
        raise UnreadableFileError(
            f"The resume state in {str(directory)!r} is damaged ({type(err).__name__}: {err}). Delete that "
            "folder to start the run afresh, or write the run to another folder (--out, output_dir)."
        ) from err
    return saved, arrays
