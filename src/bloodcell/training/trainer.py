"""The :class:`Trainer`: the seed's training recipe as one object with explicit, documented settings.

Its settings are declared once, in :mod:`bloodcell.training.options`; compiling
(:mod:`~bloodcell.training.compiling`), feeding the data (:mod:`~bloodcell.training.feeding`), the
callbacks and resume checks of a phase (:mod:`~bloodcell.training.phase_callbacks`) and the distribution
strategy (:mod:`~bloodcell.training.distribute`) each have a module of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell._validation import check_int, check_positive
from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError
from bloodcell.pipeline import to_tf_dataset
from bloodcell.training import distribute, feeding, phase_callbacks
from bloodcell.training.compiling import compile_for_training
from bloodcell.training.options import (
    BALANCE_OPTIONS,
    OPTIMIZERS,
    TrainerOptions,
    unknown_settings,
    with_settings,
)
from bloodcell.training.schedules import WarmupCosine

__all__ = ["Trainer", "BALANCE_OPTIONS", "OPTIMIZERS"]

_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainerOptions))


class Trainer:
    """Trains a Keras classifier on :class:`~bloodcell.datasets.BloodCellDataset` objects.

    The defaults are the seed report's recipe: Adam, categorical cross-entropy, ReduceLROnPlateau
    and EarlyStopping on validation accuracy with the best weights restored. Every setting is a
    keyword argument; nothing is read from globals.

    The model may be compiled or not (the Trainer compiles it with its own optimizer and loss), and
    must map 0–255 images (N, H, W, 3) to class probabilities (N, C), as
    :func:`bloodcell.build_classifier` models do.

    Files: with ``output_dir`` each phase (``fit``, ``fine_tune``) writes to ``output_dir/<phase>/``:
    ``best.keras`` (the best epoch's full model, loadable with ``keras.saving.load_model``),
    ``log.csv`` (one row per epoch), ``history.json``, ``tensorboard/`` when asked, and the resume
    state (``state.json`` + variables). Calling the same ``fit`` again after the process was killed
    continues from the last finished epoch, with the optimizer's state, learning-rate reductions,
    early-stopping patience, best score and data order as they were (without augmentation the
    result is bit-identical to an uninterrupted run). Calling it after it finished (or stopped
    early) restores the final weights and history without training. ``epochs`` is the phase's
    total, as in Keras's ``BackupAndRestore``: asking for more continues the phase from its final
    weights.

    Args:
        model: A ``keras.Model``, or a function without arguments that builds one (needed to build
            the model inside a distribution strategy's scope; a model built outside is copied into
            the scope and the trained weights copied back).

    Every other keyword is a setting of :class:`~bloodcell.training.options.TrainerOptions`,
    listed under "Settings" below with its default. :meth:`get_params` returns them,
    :meth:`set_params` changes them (checked again) and ``Trainer(model, **trainer.get_params())``
    or :meth:`clone` builds an equivalent Trainer.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Rescaling(1 / 255),
        ...                           keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> trainer = bc.Trainer(model, batch_size=8, verbose=0)
        >>> history = trainer.fit(data, data, epochs=2)
        >>> len(history.history["val_accuracy"])
        2
    """

    def __init__(
        self,
        model: keras.Model | Callable[[], keras.Model],
        *,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        learning_rate: float = 1e-3,
        weight_decay: float | None = None,
        lr_schedule: str | None = None,
        warmup_epochs: float = 0.0,
        ema: bool = False,
        ema_momentum: float = 0.99,
        batchnorm_recalibration: int | None = None,
        loss: str | keras.losses.Loss = "categorical_crossentropy",
        label_smoothing: float = 0.0,
        augment: Any = None,
        consistency: float | None = None,
        consistency_views: int = 2,
        balance: str | None = None,
        batch_size: int = 32,
        monitor: str = "val_accuracy",
        reduce_lr_patience: int | None = 5,
        reduce_lr_factor: float = 0.2,
        min_learning_rate: float = 1e-6,
        early_stopping_patience: int | None = 10,
        restore_best: bool = True,
        tensorboard: bool = False,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        output_dir: str | os.PathLike[str] | None = None,
        strategy: Any = None,
        seed: int = 0,
        deterministic: bool = False,
        jit_compile: bool | str = False,
        steps_per_execution: int = 1,
        verbose: int | str = "auto",
    ) -> None:
        # The keywords above mirror TrainerOptions (tests/test_training_options.py checks that they match),
        # so that IDEs, help() and the API reference show them; TrainerOptions checks them.
        settings = {name: value for name, value in locals().items() if name in _SETTINGS}
        if not (isinstance(model, keras.Model) or callable(model)):
            raise InvalidDtypeError(
                f"Trainer() takes a keras.Model or a function that builds one, got {type(model).__name__}."
            )
        self._model_source = model  # what clone() builds its model from
        self._user_model: keras.Model | None = None
        self._store(TrainerOptions(**settings))
        self.model, self._user_model = distribute.place_model(model, self.strategy)
        self._fit_model = self.model  # what Keras trains: the model, or a consistency wrapper around it
        self.history: dict[str, list[float]] = {}  # all phases, epoch after epoch
        self.epochs_done = 0

    def _store(self, options: TrainerOptions) -> None:
        """Keep each setting as an attribute of the same name (scikit-learn's convention)."""
        strategy = distribute.current_strategy(options.strategy)
        replicas = int(strategy.num_replicas_in_sync)
        if options.batchnorm_recalibration is not None and replicas > 1:
            raise ConfigurationError(
                f"batchnorm_recalibration runs on one replica; this strategy has {replicas}. Train "
                "without it and call bloodcell.training.recalibrate_batchnorm(model, train) afterwards."
            )
        for name in _SETTINGS:
            setattr(self, name, getattr(options, name))
        self.strategy = strategy

    # ------------------------------------------------------------------ settings
    @property
    def options(self) -> TrainerOptions:
        """The current settings as a (checked) :class:`~bloodcell.training.options.TrainerOptions`."""
        return TrainerOptions(**self.get_params())

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The settings, as keyword arguments that rebuild an equivalent Trainer.

        ``Trainer(model, **trainer.get_params())`` has the same settings (``strategy`` is the
        strategy in use). ``deep`` is accepted for scikit-learn's API; no setting holds nested
        parameters.
        """
        return {name: getattr(self, name) for name in _SETTINGS}

    def set_params(self, **params: Any) -> Trainer:
        """Change settings, checked as in the constructor; returns the Trainer.

        A new ``strategy`` moves the model into that strategy's scope (the weights come along).

        Raises:
            ConfigurationError: an unknown setting or a bad value; the Trainer is then unchanged.
        """
        unknown_settings(TrainerOptions, params, "Trainer")
        old_strategy = self.strategy
        self._store(dataclasses.replace(self.options, **params))
        if self.strategy is not old_strategy:
            source = self._user_model if self._user_model is not None else self.model
            self.model, self._user_model = distribute.place_model(source, self.strategy)
            self._fit_model = self.model
        return self

    def clone(self, model: keras.Model | Callable[[], keras.Model] | None = None, **changes: Any) -> Trainer:
        """A new Trainer with the same settings (``changes`` aside) and no history (scikit-learn's ``clone``).

        Args:
            model: The new Trainer's model. Default: the Trainer's model function called again when
                it was given one (a fresh model), else a copy of its model with the current weights
                (``keras.models.clone_model``).
            **changes: Settings to change in the copy.
        """
        if model is None:
            model = (
                self._model_source if not isinstance(self._model_source, keras.Model) else self._copy_model()
            )
        return type(self)(model, **{**self.get_params(), **changes})

    __sklearn_clone__ = clone

    def _copy_model(self) -> keras.Model:
        original = self._user_model if self._user_model is not None else self.model
        try:
            copy = keras.models.clone_model(original)
        except Exception as err:  # subclassed models cannot always be cloned
            raise ConfigurationError(
                f"{type(original).__name__} cannot be copied by keras.models.clone_model; pass the new "
                "model: trainer.clone(model=...)."
            ) from err
        copy.set_weights(original.get_weights())
        return copy

    def _sync_user_model(self) -> None:
        if self._user_model is not None:
            self._user_model.set_weights(self.model.get_weights())

    def __repr__(self) -> str:
        defaults = TrainerOptions()
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if name != "strategy" and not _same(value, getattr(defaults, name))
        ]
        return f"Trainer({self.model.name!r}" + "".join(f", {c}" for c in changed) + ")"

    # ------------------------------------------------------------------ public API
    @property
    def num_replicas(self) -> int:
        """Replicas sharing each global batch (1 without a distribution strategy)."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def global_batch_size(self) -> int:
        """``batch_size × num_replicas``: images per optimizer step."""
        return self.batch_size * self.num_replicas

    def fit(
        self,
        train: BloodCellDataset,
        val: BloodCellDataset | None = None,
        epochs: int = 10,
    ) -> keras.callbacks.History:
        """Train on ``train``, choosing the best epoch on ``val``.

        Args:
            train: The training images.
            val: Validation images (recommended: without them the best epoch is chosen on the
                training metric).
            epochs: Total epochs of this phase (a resumed or finished phase counts its done epochs).

        Returns:
            The Keras ``History`` of the whole phase (resumed epochs included), with
            ``learning_rate`` logged per epoch.
        """
        return self._run_phase("fit", train, val, epochs, learning_rate=self.learning_rate)

    def fine_tune(
        self,
        train: BloodCellDataset,
        val: BloodCellDataset | None = None,
        *,
        unfreeze: Any = "all",
        learning_rate: float = 1e-5,
        epochs: int = 10,
        train_batchnorm: bool = False,
    ) -> keras.callbacks.History:
        """Second phase of the two-phase recipe: unfreeze, recompile at a lower rate, continue.

        Phase one (:meth:`fit`) trains the head with the backbone (partly) frozen; this one makes
        more layers trainable and continues with a fresh optimizer at ``learning_rate``.
        Recompiling is what makes Keras pick up the changed ``trainable`` flags. Epochs continue the
        numbering of phase one, so the curves join.

        Args:
            train, val: As for :meth:`fit`.
            unfreeze: What to make trainable, by :func:`bloodcell.backbones.unfreeze`: ``"all"``
                (default: the whole backbone); an int N: the backbone's last N Conv2D/DepthwiseConv2D
                layers and everything after the first of them (the seed's way of counting); a dict of
                that function's arguments, e.g. ``{"layers": 100}`` (the last 100 layers of any kind);
                or a function ``f(model)`` that sets ``trainable`` itself. The head stays trainable.
            learning_rate: The new initial learning rate (default 1e-5, 100× below Adam's default).
            epochs: Epochs of this phase.
            train_batchnorm: Let the unfrozen BatchNormalization layers train (default False: they stay
                in inference mode, Keras's advice when fine-tuning pretrained weights on small data).

        Returns:
            The ``History`` of this phase.
        """
        learning_rate = check_positive(learning_rate, "learning_rate")
        self._unfreeze(unfreeze, train_batchnorm)
        return self._run_phase(
            "fine_tune", train, val, epochs, learning_rate=learning_rate, offset=self.epochs_done
        )

    def predict(
        self,
        data: BloodCellDataset | np.ndarray,
        *,
        batch_size: int | None = None,
        tta: str | Sequence[Any] | None = None,
    ) -> np.ndarray:
        """Class probabilities (N, C) for a dataset or uint8 images (N, H, W, 3) / one image (H, W, 3).

        ``tta`` averages them over flipped/rotated copies (``"d4"``, ``"flips"``, ``"rot90"`` or a
        list of transforms, see :mod:`bloodcell.tta`); None: a plain prediction.
        """
        from bloodcell.datasets import as_images

        if tta is not None:
            from bloodcell import tta as tta_module

            with distribute.keras_multi_worker_fix(self.model, self.strategy):
                return tta_module.predict(
                    self.model, data, tta, batch_size=batch_size or self.global_batch_size
                )
        if isinstance(data, BloodCellDataset):
            data.check_not_empty("predict()")
            images = data.images
        else:
            arr = np.asarray(data)
            images = as_images(arr[None] if arr.ndim == 3 else arr)
        ds = to_tf_dataset(
            BloodCellDataset(images, np.zeros(len(images), np.int64)),
            batch_size=batch_size or self.global_batch_size,
        ).map(lambda x, y: x)
        with distribute.keras_multi_worker_fix(self.model, self.strategy):
            return np.asarray(self.model.predict(ds, verbose=0))

    def evaluate(
        self, data: BloodCellDataset, *, batch_size: int | None = None, tta: str | Sequence[Any] | None = None
    ) -> Any:
        """A :class:`bloodcell.metrics.Report` of the current model on ``data`` (``tta``: see :meth:`predict`)."""
        from bloodcell.metrics import evaluate

        with distribute.keras_multi_worker_fix(self.model, self.strategy):
            return evaluate(self.model, data, batch_size=batch_size or self.global_batch_size, tta=tta)

    @property
    def _chief(self) -> bool:
        return distribute.is_chief(self.strategy)

    def _scratch_dir(self) -> Path:
        assert self.output_dir is not None
        return self.output_dir / ".workers" / distribute.worker_id(self.strategy)

    def phase_dir(self, phase: str) -> Path | None:
        """The folder a phase writes to (``output_dir/<phase>``), or None without an output_dir."""
        return None if self.output_dir is None else self.output_dir / phase

    # ------------------------------------------------------------------ one phase
    def _run_phase(
        self,
        phase: str,
        train: BloodCellDataset,
        val: BloodCellDataset | None,
        epochs: int,
        *,
        learning_rate: float,
        offset: int = 0,
    ) -> keras.callbacks.History:
        feeding.check_data(train, "train", self.model)
        if val is not None:
            feeding.check_data(val, "val", self.model)
            if val.num_classes != train.num_classes:
                raise InvalidDataError(
                    f"train has {train.num_classes} classes but val has {val.num_classes}."
                )
            feeding.warn_missing_classes(train, val)
        epochs = check_int(epochs, "epochs", minimum=1)
        out_classes = self.model.output_shape[-1]
        if out_classes != train.num_classes:
            raise InvalidDataError(
                f"The model outputs {out_classes} classes but the data has {train.num_classes}; build the model "
                f"with num_classes={train.num_classes}."
            )
        monitor = self.monitor if val is not None else self.monitor.removeprefix("val_")
        directory = self.phase_dir(phase)

        options = self.options
        global_batch = self.global_batch_size
        keras.utils.set_random_seed(options.seed)
        if options.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        train_used, class_weight = feeding.balanced(train, options)
        steps = feeding.steps_per_epoch(train_used, options, global_batch)
        total_steps = max(1, steps * epochs)
        warmup = int(round(options.warmup_epochs * steps))
        if options.lr_schedule == "cosine":
            # Same values as Keras's CosineDecay with warm-up, without its per-variable conditional.
            lr: Any = WarmupCosine(
                learning_rate,
                total_steps=total_steps,
                warmup_steps=min(warmup, total_steps),
                alpha=min(1.0, options.min_learning_rate / learning_rate),
            )
        else:
            lr = learning_rate
        self._fit_model = compile_for_training(self.model, options, lr, steps, self.strategy)

        signature = {
            "phase": phase,
            "train_size": len(train),
            "val_size": None if val is None else len(val),
            "batch_size": options.batch_size,
            "replicas": self.num_replicas,
            "seed": options.seed,
            "balance": options.balance,
            "consistency": options.consistency,
            "epochs": epochs,
            "offset": offset,
        }
        # Saving reads variables with collective ops, so every worker saves; the others write to a
        # scratch folder of their own (removed at the end), and all of them resume from the chief's.
        write_dir = directory if directory is None or self._chief else self._scratch_dir() / phase
        callbacks, state = phase_callbacks.make_callbacks(
            options,
            model=self.model,
            fit_model=self._fit_model,
            directory=write_dir,
            monitor=monitor,
            signature=signature,
            train=train,
        )
        done = 0
        saved = phase_callbacks.load_chief_state(directory)
        if saved is not None:
            saved_state, arrays = saved
            phase_callbacks.check_signature(saved_state.get("signature", {}), signature, directory)
            with self.strategy.scope():
                state.restore(self._fit_model, saved_state, arrays)
            done = state.epochs_done
            if saved_state.get("stopped_early") or done >= epochs:
                if self.verbose:
                    print(
                        f"{phase}: already finished in {directory} ({done} epochs); weights and history restored."
                    )
                return self._finish(phase, state, directory, train, epochs, offset, ran=False)
            if self.verbose:
                print(f"{phase}: resuming from {directory} after epoch {done} of {epochs}.")

        train_ds = feeding.train_dataset(train_used, done, epochs, steps, options, global_batch)
        val_ds = feeding.eval_dataset(val, global_batch) if val is not None else None
        with distribute.keras_multi_worker_fix(self._fit_model, self.strategy):
            self._fit_model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=offset + epochs,
                initial_epoch=offset + done,
                steps_per_epoch=steps,
                class_weight=class_weight,
                callbacks=callbacks,
                shuffle=False,
                verbose=phase_callbacks.progress_mode(options.verbose),
            )
        return self._finish(phase, state, directory, train, epochs, offset, ran=True)

    def _finish(
        self,
        phase: str,
        state: Any,
        directory: Path | None,
        train: BloodCellDataset,
        epochs: int,
        offset: int,
        ran: bool,
    ) -> keras.callbacks.History:
        if ran:
            state.finish()
        history = keras.callbacks.History()
        history.set_model(self.model)
        history.history = {k: list(v) for k, v in state.history.items() if k != "epoch"}
        history.epoch = list(state.history.get("epoch", []))
        history.params = {"epochs": offset + epochs, "phase": phase}
        for key, values in history.history.items():
            self.history.setdefault(key, []).extend(values)
        self.history.setdefault("epoch", []).extend(history.epoch)
        self.epochs_done = offset + state.epochs_done
        if directory is not None and not self._chief:
            shutil.rmtree(self._scratch_dir(), ignore_errors=True)
            with contextlib.suppress(OSError):  # the last worker to finish removes the parent
                self._scratch_dir().parent.rmdir()
        if directory is not None and self._chief:
            atomic_write_text(
                directory / "history.json",
                json.dumps(
                    {
                        "phase": phase,
                        "best_epoch": state.best_epoch,
                        "best": state.best,
                        "monitor": state.monitor,
                        "epoch": history.epoch,
                        **history.history,
                    },
                    indent=1,
                )
                + "\n",
            )
        self._sync_user_model()
        return history

    # ------------------------------------------------------------------ unfreezing
    def _unfreeze(self, unfreeze: Any, train_batchnorm: bool) -> None:
        from bloodcell import backbones

        def apply(model: keras.Model) -> None:
            if callable(unfreeze) and not isinstance(unfreeze, (str, int, Mapping)):
                unfreeze(model)
            elif unfreeze == "all":
                backbones.unfreeze(model, train_batchnorm=train_batchnorm)
            elif isinstance(unfreeze, (int, np.integer)) and not isinstance(unfreeze, bool):
                backbones.unfreeze(model, last=int(unfreeze), train_batchnorm=train_batchnorm)
            elif isinstance(unfreeze, Mapping):
                backbones.unfreeze(model, **{"train_batchnorm": train_batchnorm, **unfreeze})
            else:
                raise ConfigurationError(
                    "unfreeze must be 'all', a number of conv layers counted from the end, a dict of "
                    f"bloodcell.backbones.unfreeze arguments (e.g. {{'layers': 100}}), or a function. "
                    f"Received: unfreeze={unfreeze!r}."
                )

        apply(self.model)
        if self._user_model is not None:
            apply(self._user_model)

    # ------------------------------------------------------------------ learning-rate finder
    def find_lr(self, train: BloodCellDataset, **kwargs: Any) -> Any:
        """The learning-rate range test on ``train``; the model and the trainer are left as they were.

        See :func:`bloodcell.training.lr_finder.find_lr` for the arguments (``start_lr``, ``end_lr``,
        ``num_steps``, ``method``...). Returns a :class:`~bloodcell.training.lr_finder.LRFinderResult`.
        """
        from bloodcell.training.lr_finder import find_lr

        return find_lr(self, train, **kwargs)


Trainer.__doc__ = with_settings(Trainer.__doc__, TrainerOptions)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # objects whose == is not a bool
        return a is b
