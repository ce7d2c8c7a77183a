"""The :class:`Trainer`: the seed's training recipe as one object with explicit, documented settings."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell._validation import check_seed
from bloodcell.datasets import BloodCellDataset, to_tf_dataset
from bloodcell.errors import BloodcellWarning, ConfigurationError, InvalidDataError, InvalidDtypeError
from bloodcell.training import distribute
from bloodcell.training.batchnorm import RecalibrateBatchNorm
from bloodcell.training.callbacks import SwapEMAWeights, TrainingState, load_state
from bloodcell.training.monitors import check_monitor, monitor_mode
from bloodcell.training.schedules import WarmupCosine

__all__ = ["Trainer", "BALANCE_OPTIONS", "OPTIMIZERS"]

BALANCE_OPTIONS = (None, "oversample", "class_weight", "smote")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lion")
LR_SCHEDULES = (None, "cosine")
LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy")


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
        optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"`` (Nesterov, momentum 0.9),
            ``"rmsprop"``, ``"lion"``, or a Keras optimizer instance (its class and settings are reused;
            the learning rate comes from ``learning_rate``).
        learning_rate: Initial learning rate (default 1e-3, Keras's Adam default).
        weight_decay: Decoupled weight decay; None uses the optimizer's default (AdamW: 0.004,
            others: none).
        lr_schedule: None (constant, lowered by ReduceLROnPlateau) or ``"cosine"`` (cosine decay to
            ``min_learning_rate`` over the phase's steps, after ``warmup_epochs`` of linear warm-up;
            ReduceLROnPlateau is then off).
        warmup_epochs: Linear warm-up length for the cosine schedule (default 0).
        ema: Keep an exponential moving average of the weights (Keras's ``use_ema``); validation,
            checkpoints and the final weights use the average (default False).
        ema_momentum: Momentum of that average (default 0.99).
        batchnorm_recalibration: Before each validation pass, recompute the BatchNorm statistics
            for the weights being validated (the average with ``ema``) as the mean over this many
            batches of training images without augmentation (precise BatchNorm, see
            :func:`bloodcell.training.recalibrate_batchnorm`); costs one forward pass per batch.
            None (default): off. Not available with more than one replica.
        loss: ``"categorical_crossentropy"`` (default), ``"categorical_focal_crossentropy"``, or a
            Keras loss instance.
        label_smoothing: Label smoothing of the cross-entropy (default 0.0).
        augment: An augmenter applied to each training batch inside ``tf.data`` (any bloodcell
            augmenter, Keras preprocessing layer or callable on image batches); see
            :func:`bloodcell.datasets.to_tf_dataset`. None (default) trains on the images as they are.
        consistency: λ of the AugMix paper's Jensen–Shannon consistency training (the paper: 12.0);
            None (default) turns it off. Each training image then goes through the model clean and
            as ``consistency_views`` augmented views (``bloodcell.augment.MultiView``), and the loss
            is ``CE(clean) + λ·JS(clean, views...)`` (``bloodcell.augment.ConsistencyModel``); a step
            costs about ``1 + consistency_views`` times as much. Needs ``augment``.
        consistency_views: Augmented views per image for consistency training (default 2, the paper's).
        balance: Class balancing: None (default); ``"oversample"`` (each epoch draws a new
            random oversampling of the minority classes, as row indices, without copying images);
            ``"class_weight"`` (loss weights inversely proportional to class frequency);
            ``"smote"`` (synthetic minority images by SMOTE in pixel space, drawn once).
        batch_size: Images per batch and replica (default 32); the global batch is
            ``batch_size × replicas`` under a distribution strategy.
        monitor: The metric that chooses the best epoch and drives the callbacks: ``"val_accuracy"``
            (default), ``"val_loss"``, ``"accuracy"`` or ``"loss"`` (the training metric of the same
            name is used when no validation set is given).
        reduce_lr_patience: Epochs without improvement before the learning rate is multiplied by
            ``reduce_lr_factor`` (default 5); None turns ReduceLROnPlateau off.
        reduce_lr_factor: Multiplier of ReduceLROnPlateau (default 0.2).
        min_learning_rate: Floor of ReduceLROnPlateau and end of the cosine schedule (default 1e-6).
        early_stopping_patience: Epochs without improvement before training stops (default 10);
            None turns EarlyStopping off.
        restore_best: End each phase with the weights of its best epoch (default True).
        tensorboard: Also write TensorBoard logs to ``output_dir/<phase>/tensorboard`` (default False).
        callbacks: More Keras callbacks, run after the preset ones.
        output_dir: Folder for checkpoints, logs and the resume state; None (default) writes nothing
            (and a killed run cannot resume).
        strategy: A ``tf.distribute`` strategy (e.g. ``MirroredStrategy``,
            ``MultiWorkerMirroredStrategy``); None uses the enclosing scope's or TF's default.
        seed: Seeds Python, NumPy, TensorFlow and Keras at the start of each phase, and the data order,
            oversampling, SMOTE and augmentation (default 0). One seed gives identical metrics on
            CPU when the model was built after ``keras.utils.set_random_seed`` (its initial weights
            and dropout seeds are fixed when it is built) and the augmenter draws from the
            pipeline's per-batch seed, as bloodcell augmenters and Keras image layers do (other
            callables with random state of their own may not be repeatable).
        deterministic: Also make TensorFlow's ops deterministic
            (``tf.config.experimental.enable_op_determinism``; process-wide and somewhat slower).
            On CPU, training is repeatable for a seed without it (default False).
        jit_compile: XLA compilation (default False: measured much slower on CPU; try True on GPU).
        steps_per_execution: Batches per compiled call (default 1): fewer trips through Python
            per batch (8 gave no measurable gain for MobileNetV3Small on a 2-core CPU,
            ``benchmarks/RESULTS.md``). Rounded down to a divisor of the steps per epoch: Keras
            runs whole calls, and one that crossed an epoch's end would train on the next
            epoch's batches.
        verbose: Keras progress output: ``"auto"`` (default: a progress bar on a terminal, one line
            per epoch when the output goes to a file or pipe), 0 (none), 1 (a bar) or 2 (a line per
            epoch).

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
        _check_choice("optimizer", optimizer, OPTIMIZERS, instance_of=keras.optimizers.Optimizer)
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        _check_choice("loss", loss, LOSSES, instance_of=keras.losses.Loss)
        _check_choice("balance", balance, BALANCE_OPTIONS)
        check_monitor(monitor)
        _check_positive("learning_rate", learning_rate)
        _check_positive("batch_size", batch_size, integer=True)
        _check_positive("steps_per_execution", steps_per_execution, integer=True)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigurationError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}.")
        if not 0.0 < ema_momentum < 1.0:
            raise ConfigurationError(f"ema_momentum must lie in (0, 1), got {ema_momentum!r}.")
        if not 0.0 < reduce_lr_factor < 1.0:
            raise ConfigurationError(f"reduce_lr_factor must lie in (0, 1), got {reduce_lr_factor!r}.")
        for name, value in (
            ("reduce_lr_patience", reduce_lr_patience),
            ("early_stopping_patience", early_stopping_patience),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigurationError(f"{name} must be a non-negative integer or None, got {value!r}.")
        if warmup_epochs < 0:
            raise ConfigurationError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}.")
        check_seed(seed)
        if augment is not None and not (hasattr(augment, "augment_batch") or callable(augment)):
            raise ConfigurationError(
                f"augment must be an augmenter with augment_batch() or a callable on image batches, got "
                f"{type(augment).__name__}."
            )
        if consistency is not None:
            if isinstance(consistency, bool) or not isinstance(consistency, (int, float)) or consistency < 0:
                raise ConfigurationError(
                    f"consistency (λ) must be a non-negative number or None, got {consistency!r}."
                )
            if augment is None:
                raise ConfigurationError(
                    "consistency training compares clean and augmented views: give augment= too, e.g. "
                    "augment=bloodcell.augment.AugMix()."
                )
        _check_positive("consistency_views", consistency_views, integer=True)
        if batchnorm_recalibration is not None:
            _check_positive("batchnorm_recalibration", batchnorm_recalibration, integer=True)
        if not (isinstance(model, keras.Model) or callable(model)):
            raise InvalidDtypeError(
                f"Trainer() takes a keras.Model or a function that builds one, got {type(model).__name__}."
            )

        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.warmup_epochs = float(warmup_epochs)
        self.ema = bool(ema)
        self.ema_momentum = float(ema_momentum)
        self.batchnorm_recalibration = (
            None if batchnorm_recalibration is None else int(batchnorm_recalibration)
        )
        self.loss = loss
        self.label_smoothing = float(label_smoothing)
        self.augment = augment
        self.consistency = None if consistency is None else float(consistency)
        self.consistency_views = int(consistency_views)
        self.balance = balance
        self.batch_size = int(batch_size)
        self.monitor = monitor
        self.reduce_lr_patience = reduce_lr_patience
        self.reduce_lr_factor = float(reduce_lr_factor)
        self.min_learning_rate = float(min_learning_rate)
        self.early_stopping_patience = early_stopping_patience
        self.restore_best = bool(restore_best)
        self.tensorboard = bool(tensorboard)
        self.callbacks = list(callbacks)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.strategy = distribute.current_strategy(strategy)
        if self.batchnorm_recalibration is not None and self.num_replicas > 1:
            raise ConfigurationError(
                f"batchnorm_recalibration runs on one replica; this strategy has {self.num_replicas}. Train "
                "without it and call bloodcell.training.recalibrate_batchnorm(model, train) afterwards."
            )
        self.seed = int(seed)
        self.deterministic = bool(deterministic)
        self.jit_compile = jit_compile
        self.steps_per_execution = int(steps_per_execution)
        self.verbose = verbose

        self._user_model: keras.Model | None = None
        self.model = self._place_model(model)
        self._fit_model = self.model  # what Keras trains: the model, or a consistency wrapper around it
        self.history: dict[str, list[float]] = {}  # all phases, epoch after epoch
        self.epochs_done = 0

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
        _check_positive("learning_rate", learning_rate)
        self._unfreeze(unfreeze, train_batchnorm)
        return self._run_phase(
            "fine_tune", train, val, epochs, learning_rate=float(learning_rate), offset=self.epochs_done
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

            with _keras_multi_worker_fix(self.model, self.strategy):
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
        with _keras_multi_worker_fix(self.model, self.strategy):
            return np.asarray(self.model.predict(ds, verbose=0))

    def evaluate(
        self, data: BloodCellDataset, *, batch_size: int | None = None, tta: str | Sequence[Any] | None = None
    ) -> Any:
        """A :class:`bloodcell.metrics.Report` of the current model on ``data`` (``tta``: see :meth:`predict`)."""
        from bloodcell.metrics import evaluate

        with _keras_multi_worker_fix(self.model, self.strategy):
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

    def get_params(self) -> dict[str, Any]:
        """The settings as a dict (the model, augmenter, strategy and callbacks as their type names)."""
        out = {}
        for key in (
            "optimizer",
            "learning_rate",
            "weight_decay",
            "lr_schedule",
            "warmup_epochs",
            "ema",
            "ema_momentum",
            "batchnorm_recalibration",
            "loss",
            "label_smoothing",
            "augment",
            "consistency",
            "consistency_views",
            "balance",
            "batch_size",
            "monitor",
            "reduce_lr_patience",
            "reduce_lr_factor",
            "min_learning_rate",
            "early_stopping_patience",
            "restore_best",
            "tensorboard",
            "output_dir",
            "seed",
            "deterministic",
            "jit_compile",
            "steps_per_execution",
            "verbose",
        ):
            value = getattr(self, key)
            if not isinstance(value, (str, int, float, bool, type(None))):
                value = str(value) if isinstance(value, Path) else type(value).__name__
            out[key] = value
        out["strategy"] = type(self.strategy).__name__
        out["num_replicas"] = self.num_replicas
        return out

    def __repr__(self) -> str:
        shown = {
            k: v
            for k, v in self.get_params().items()
            if k in ("optimizer", "learning_rate", "batch_size", "augment", "balance", "seed", "output_dir")
        }
        return f"Trainer({self.model.name!r}, " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    # ------------------------------------------------------------------ model placement
    def _place_model(self, model: keras.Model | Callable[[], keras.Model]) -> keras.Model:
        strategy = self.strategy
        is_default = not _has_custom_strategy(strategy)
        if not isinstance(model, keras.Model):
            with strategy.scope():
                built = model()
            if not isinstance(built, keras.Model):
                raise InvalidDtypeError(
                    f"The model function returned a {type(built).__name__}, not a keras.Model."
                )
            return built
        # Keras binds a model to the strategy in force when the model was created.
        if is_default or getattr(model, "_distribute_strategy", None) is strategy:
            return model
        with strategy.scope():
            try:
                copy = keras.models.clone_model(model)
            except Exception as err:  # subclassed models cannot always be cloned
                raise ConfigurationError(
                    f"{type(model).__name__} was built outside the strategy's scope and cannot be copied into "
                    "it; pass a function that builds the model, e.g. Trainer(lambda: bc.build_classifier(...), "
                    "strategy=...)."
                ) from err
            copy.set_weights(model.get_weights())
        self._user_model = model
        return copy

    def _sync_user_model(self) -> None:
        if self._user_model is not None:
            self._user_model.set_weights(self.model.get_weights())

    # ------------------------------------------------------------------ compiling
    def _make_optimizer(self, learning_rate: Any) -> keras.optimizers.Optimizer:
        common: dict[str, Any] = {"learning_rate": learning_rate}
        if self.ema:
            common.update(use_ema=True, ema_momentum=self.ema_momentum)
        if self.weight_decay is not None:
            common["weight_decay"] = float(self.weight_decay)
        if isinstance(self.optimizer, keras.optimizers.Optimizer):
            config = self.optimizer.get_config()
            config.pop("learning_rate", None)
            config.update(common)
            return type(self.optimizer).from_config(config)
        classes = {
            "adam": keras.optimizers.Adam,
            "adamw": keras.optimizers.AdamW,
            "rmsprop": keras.optimizers.RMSprop,
            "lion": keras.optimizers.Lion,
        }
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(momentum=0.9, nesterov=True, **common)
        return classes[self.optimizer](**common)

    def _make_loss(self) -> keras.losses.Loss:
        if isinstance(self.loss, keras.losses.Loss):
            return self.loss
        if self.loss == "categorical_focal_crossentropy":
            return keras.losses.CategoricalFocalCrossentropy(label_smoothing=self.label_smoothing)
        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)

    def _compile(self, learning_rate: Any, steps_per_epoch: int) -> None:
        with self.strategy.scope():
            fit_model = self.model
            if self.consistency is not None:
                from bloodcell.augment import ConsistencyModel

                # Shares the classifier's weights: training the wrapper trains self.model.
                fit_model = ConsistencyModel(self.model, weight=self.consistency)
            fit_model.compile(
                optimizer=self._make_optimizer(learning_rate),
                loss=self._make_loss(),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=self.jit_compile,
                steps_per_execution=_steps_per_call(steps_per_epoch, self.steps_per_execution),
            )
            fit_model.optimizer.build(fit_model.trainable_variables)
        self._fit_model = fit_model

    # ------------------------------------------------------------------ data
    def _seed_everything(self, phase: str) -> None:
        keras.utils.set_random_seed(self.seed)
        if self.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()

    def _balanced(self, train: BloodCellDataset) -> tuple[BloodCellDataset, dict[int, float] | None]:
        if self.balance == "smote":
            from bloodcell import augment as bc_augment

            return bc_augment.smote(train, seed=self.seed), None
        if self.balance == "class_weight":
            from bloodcell import augment as bc_augment

            return train, {int(k): float(v) for k, v in bc_augment.class_weights(train).items()}
        return train, None

    def _epoch_indices(self, train: BloodCellDataset, epoch: int, batches: int) -> np.ndarray:
        """Row order of one epoch: a function of (seed, epoch) alone, so a resumed run sees the same order."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.balance == "oversample":
            from bloodcell import augment as bc_augment

            rows = np.asarray(
                bc_augment.oversample_indices(
                    train.labels, strategy="auto", seed=self.seed * 100_003 + epoch
                ),
                np.int64,
            )
        else:
            rows = np.arange(len(train), dtype=np.int64)
        rows = rng.permutation(rows)
        need = batches * self.global_batch_size
        if need > len(rows):  # fill the last batch with other rows of this epoch: every batch is full
            rows = np.concatenate(
                [rows, rng.choice(rows, need - len(rows), replace=need - len(rows) > len(rows))]
            )
        return rows[:need]

    def _steps_per_epoch(self, train: BloodCellDataset) -> int:
        if self.balance == "oversample":
            from bloodcell import augment as bc_augment

            n = len(bc_augment.oversample_indices(train.labels, strategy="auto", seed=self.seed))
        else:
            n = len(train)
        return max(1, math.ceil(n / self.global_batch_size))

    def _train_dataset(self, train: BloodCellDataset, first_epoch: int, last_epoch: int, steps: int) -> Any:
        order = np.concatenate([self._epoch_indices(train, e, steps) for e in range(first_epoch, last_epoch)])
        # A seed per resume point: augmentation stays deterministic for a given history of kills.
        aug_seed = zlib.crc32(f"{self.seed}/{first_epoch}".encode())
        ds = to_tf_dataset(
            train,
            batch_size=self.global_batch_size,
            shuffle=False,  # the order above is already shuffled, per epoch
            augment=self._pipeline_augment(),
            one_hot=True,
            seed=aug_seed,
            drop_remainder=True,
            indices=order,
        )
        return self._distribute_options(ds)

    def _pipeline_augment(self) -> Any:
        if self.consistency is None:
            return self.augment
        from bloodcell.augment import MultiView

        return MultiView(self.augment, num_views=self.consistency_views)

    def _eval_dataset(self, data: BloodCellDataset) -> Any:
        return self._distribute_options(to_tf_dataset(data, batch_size=self.global_batch_size, one_hot=True))

    def _distribute_options(self, ds: Any) -> Any:
        import tensorflow as tf

        options = tf.data.Options()
        # The pipeline starts from an index list, not files: shard by data across workers.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    # ------------------------------------------------------------------ the training loop
    def _callbacks(
        self, directory: Path | None, monitor: str, signature: dict[str, Any], train: BloodCellDataset
    ) -> tuple[list[Any], Any]:
        presets: list[Any] = []
        ema_cb = None
        if self.ema:
            ema_cb = SwapEMAWeights()
            presets.append(ema_cb)  # first: validation and the best-model choice see the average
        if self.batchnorm_recalibration is not None:
            # After the EMA swap: the statistics are recomputed for the weights that are validated.
            presets.append(
                RecalibrateBatchNorm(
                    self.model,
                    train.images,
                    batches=self.batchnorm_recalibration,
                    batch_size=self.batch_size,
                    seed=self.seed,
                )
            )
        reduce_lr = None
        schedule = self.lr_schedule is not None
        if self.reduce_lr_patience is not None and not schedule:
            reduce_lr = keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=self.reduce_lr_factor,
                patience=self.reduce_lr_patience,
                min_lr=self.min_learning_rate,
                mode=monitor_mode(monitor),
                verbose=0,
            )
            presets.append(reduce_lr)
        early = None
        if self.early_stopping_patience is not None:
            # Best weights are restored by TrainingState (which also survives a resume).
            early = keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=self.early_stopping_patience,
                mode=monitor_mode(monitor),
                restore_best_weights=False,
                verbose=1 if self.verbose else 0,
            )
            presets.append(early)
        if self.tensorboard and directory is not None:
            presets.append(keras.callbacks.TensorBoard(log_dir=str(directory / "tensorboard")))
        state = TrainingState(
            directory,
            monitor=monitor,
            restore_best=self.restore_best,
            early_stopping=early,
            reduce_lr=reduce_lr,
            ema=ema_cb,
            signature=signature,
            offset=signature["offset"],
            target=self.model if self._fit_model is not self.model else None,
        )
        return [*presets, *self.callbacks, state], state

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
        _check_data(train, "train", self.model)
        if val is not None:
            _check_data(val, "val", self.model)
            if val.num_classes != train.num_classes:
                raise InvalidDataError(
                    f"train has {train.num_classes} classes but val has {val.num_classes}."
                )
            _warn_missing_classes(train, val)
        _check_positive("epochs", epochs, integer=True)
        out_classes = self.model.output_shape[-1]
        if out_classes != train.num_classes:
            raise InvalidDataError(
                f"The model outputs {out_classes} classes but the data has {train.num_classes}; build the model "
                f"with num_classes={train.num_classes}."
            )
        monitor = self.monitor if val is not None else self.monitor.removeprefix("val_")
        directory = self.phase_dir(phase)

        self._seed_everything(phase)
        train_used, class_weight = self._balanced(train)
        steps = self._steps_per_epoch(train_used)
        total_steps = max(1, steps * epochs)
        warmup = int(round(self.warmup_epochs * steps))
        if self.lr_schedule == "cosine":
            # Same values as Keras's CosineDecay with warm-up, without its per-variable conditional.
            lr: Any = WarmupCosine(
                learning_rate,
                total_steps=total_steps,
                warmup_steps=min(warmup, total_steps),
                alpha=min(1.0, self.min_learning_rate / learning_rate),
            )
        else:
            lr = learning_rate
        self._compile(lr, steps)

        signature = {
            "phase": phase,
            "train_size": len(train),
            "val_size": None if val is None else len(val),
            "batch_size": self.batch_size,
            "replicas": self.num_replicas,
            "seed": self.seed,
            "balance": self.balance,
            "consistency": self.consistency,
            "epochs": epochs,
            "offset": offset,
        }
        # Saving reads variables with collective ops, so every worker saves; the others write to a
        # scratch folder of their own (removed at the end), and all of them resume from the chief's.
        write_dir = directory if directory is None or self._chief else self._scratch_dir() / phase
        callbacks, state = self._callbacks(write_dir, monitor, signature, train)
        done = 0
        saved = _load_chief_state(directory)
        if saved is not None:
            saved_state, arrays = saved
            _check_signature(saved_state.get("signature", {}), signature, directory)
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

        train_ds = self._train_dataset(train_used, done, epochs, steps)
        val_ds = self._eval_dataset(val) if val is not None else None
        with _keras_multi_worker_fix(self._fit_model, self.strategy):
            self._fit_model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=offset + epochs,
                initial_epoch=offset + done,
                steps_per_epoch=steps,
                class_weight=class_weight,
                callbacks=callbacks,
                shuffle=False,
                verbose=_progress_mode(self.verbose),
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
                    f"bloodcell.backbones.unfreeze arguments (e.g. {{'layers': 100}}), or a function; got {unfreeze!r}."
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


# ---------------------------------------------------------------------- helpers
def _steps_per_call(steps_per_epoch: int, requested: int) -> int:
    """The largest batch count up to ``requested`` that divides the epoch into whole calls.

    Keras runs ``steps_per_execution`` batches per call whatever the epoch has left, so with 4
    steps per epoch and 3 per call the second call would take two of the next epoch's batches.

    >>> _steps_per_call(64, 8), _steps_per_call(4, 3), _steps_per_call(7, 4)
    (8, 2, 1)
    """
    return max(k for k in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


def _has_custom_strategy(strategy: Any) -> bool:
    """False for TF's default (no-op) strategy, True for any real one."""
    import tensorflow as tf

    return strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy()


@contextlib.contextmanager
def _keras_multi_worker_fix(model: keras.Model, strategy: Any) -> Iterator[None]:
    """Let Keras 3 ``fit`` run under ``MultiWorkerMirroredStrategy``.

    Keras 3 (3.15 at least; keras-team/keras#20585, tensorflow/tensorflow#72388) fails there twice:

    1. A model bound to the strategy gets a "symbolic build" that calls ``strategy.reduce`` on a
       whole input batch, which the collective strategy cannot do. A model not bound to a strategy
       skips that step and takes the strategy from the enclosing scope, with the same training step.
    2. Each step's scalar metrics are averaged across workers with ``reduce("MEAN", v, axis=0)``,
       which needs at least one dimension: the step's scalars are returned with shape [1] (the
       reduction brings them back to scalars).
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return

    def with_one_dim(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapped(data: Any) -> Any:
            logs = step(data)
            return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v for k, v in logs.items()}

        return wrapped

    bound = model._distribute_strategy
    model._distribute_strategy = None
    model.train_step = with_one_dim(model.train_step)
    model.test_step = with_one_dim(model.test_step)
    try:
        with strategy.scope():
            yield
    finally:
        model._distribute_strategy = bound
        del model.train_step, model.test_step  # back to the class's methods


def _load_chief_state(directory: Path | None) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    # Every worker reads the chief's state, so all of them resume from the same point.
    if directory is None:
        return None
    return load_state(directory)


def _check_signature(saved: dict[str, Any], current: dict[str, Any], directory: Path | None) -> None:
    keys = ("phase", "train_size", "batch_size", "replicas", "seed", "balance", "consistency")
    differ = [k for k in keys if k in saved and saved[k] != current[k]]
    if differ:
        detail = ", ".join(f"{k}: saved {saved[k]!r}, now {current[k]!r}" for k in differ)
        raise ConfigurationError(
            f"{directory} holds the state of a different run ({detail}). Use another output_dir to start a new "
            "run, or delete that folder."
        )


def _check_choice(name: str, value: Any, choices: Sequence[Any], instance_of: type | None = None) -> None:
    if instance_of is not None and isinstance(value, instance_of):
        return
    if value not in choices:
        extra = f" or a {instance_of.__module__.split('.')[0]}.{instance_of.__name__}" if instance_of else ""
        raise ConfigurationError(f"{name} must be one of {list(choices)}{extra}, got {value!r}.")


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}.")


def _progress_mode(verbose: int | str) -> int | str:
    """Keras's ``verbose`` for ``fit``: a bar only on a terminal, whose control characters a log file would keep."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def _warn_missing_classes(train: BloodCellDataset, val: BloodCellDataset) -> None:
    """Warn when validation lacks classes that training has: its accuracy then ignores them."""
    missing = sorted(set(np.unique(train.labels)) - set(np.unique(val.labels)))
    if missing:
        names = ", ".join(train.class_names[k] for k in missing)
        warnings.warn(
            f"The validation set holds no images of {len(missing)} class(es) that training has ({names}): "
            "the best epoch is chosen without them. Give a larger validation set or split with "
            "bloodcell.datasets.split (stratified).",
            BloodcellWarning,
            stacklevel=4,
        )


def _check_data(data: Any, name: str, model: keras.Model) -> None:
    if not isinstance(data, BloodCellDataset):
        raise InvalidDtypeError(
            f"{name} must be a BloodCellDataset, got {type(data).__name__}; wrap arrays with "
            "bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    data.check_not_empty(f"Trainer ({name})")
    expected = tuple(model.input_shape[1:])
    if len(expected) == 3 and all(d is not None for d in expected) and tuple(data.image_shape) != expected:
        raise InvalidDataError(
            f"{name} images are {data.image_shape} but the model takes {expected}; resize with "
            "bloodcell.datasets.resize_images or build the model with input_shape="
            f"{data.image_shape}."
        )
