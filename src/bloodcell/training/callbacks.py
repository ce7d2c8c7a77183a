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
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bloodcell._io import atomic_path, atomic_write_text
from bloodcell.errors import ConfigurationError

__all__ = ["TrainingState", "monitor_mode", "STATE_FILE"]

STATE_FILE = "state.json"
_MAX_KEYS = ("acc", "auc", "f1", "precision", "recall")


def monitor_mode(monitor: str) -> str:
    """``"max"`` for accuracy-like metrics, ``"min"`` for losses (Keras's ``mode="auto"`` rule)."""
    return "max" if any(key in monitor for key in _MAX_KEYS) else "min"


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _to_float(value: Any) -> float:
    return float(np.asarray(value))


class TrainingState(keras.callbacks.Callback):
    """Resumable run state, best-model checkpoint and CSV log of one training phase (see the module doc).

    Args:
        directory: Where ``state.json``, the variables, ``best.keras`` and ``log.csv`` go; None keeps
            everything in memory (the best weights are still restored at the end).
        monitor: The logged metric that defines "best".
        restore_best: Load the best epoch's weights when training ends.
        write: False on non-chief workers: they track the best weights but write nothing.
        early_stopping, reduce_lr: The Keras callbacks whose counters are saved and restored.
        ema: The ``keras.callbacks.SwapEMAWeights`` in use, if any (its swapped weights are saved in
            their un-swapped places, so a resumed run continues both the raw and averaged weights).
        signature: Facts about the run (data size, batch, seed) stored with the state and checked
            when resuming.
        offset: Epochs of earlier phases (Keras numbers a second phase's epochs after the first's).
        target: The model whose best weights are kept and saved as ``best.keras``, when Keras trains
            a wrapper around it (e.g. :class:`bloodcell.augment.ConsistencyModel`); default: the
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
                with atomic_path(self.directory / "best.keras") as tmp:
                    self._target_model.save(tmp)
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

    def _arrays(self, best_is_current: bool) -> dict[str, np.ndarray]:
        model_vars = [np.array(v.numpy()) for v in self.model.variables]
        opt = self.model.optimizer
        opt_vars = [np.array(v.numpy()) for v in opt.variables] if opt is not None else []
        if self.ema is not None and getattr(self.ema, "_ema_weights_in_model", False):
            # SwapEMAWeights has put the averages into the model for evaluation: save each
            # raw weight and its average in their own places.
            _unswap_ema(self.model, opt, model_vars, opt_vars)
        arrays = {f"model/{i}": a for i, a in enumerate(model_vars)}
        arrays.update({f"optimizer/{i}": a for i, a in enumerate(opt_vars)})
        if self.best_weights is not None and not best_is_current:
            arrays.update({f"best/{i}": a for i, a in enumerate(self.best_weights)})
        return arrays

    def _save(self, best_is_current: bool, finished: bool = False) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"variables-{self.epochs_done:04d}{'-final' if finished else ''}.npz"
        with atomic_path(self.directory / name) as tmp:
            np.savez(tmp, **self._arrays(best_is_current))
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


def _unswap_ema(model: Any, optimizer: Any, model_vars: list[np.ndarray], opt_vars: list[np.ndarray]) -> None:
    index_model = {id(v): i for i, v in enumerate(model.variables)}
    index_opt = {id(v): i for i, v in enumerate(optimizer.variables)}
    for var, avg in zip(
        optimizer._trainable_variables, optimizer._model_variables_moving_average, strict=False
    ):
        i, j = index_model.get(id(var)), index_opt.get(id(avg))
        if i is not None and j is not None:
            model_vars[i], opt_vars[j] = opt_vars[j], model_vars[i]


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
    saved = json.loads(state_path.read_text(encoding="utf-8"))
    with np.load(directory / saved["variables"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return saved, arrays
