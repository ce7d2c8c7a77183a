"""The Trainer's settings, each declared once: name, default, type, help text and check.

Two frozen, keyword-only dataclasses hold them:

- :class:`RecipeOptions`: the plain values that decide what a training run learns (optimizer,
  schedule, loss, balancing, batch size, early stopping...). They print, save to JSON and compare,
  so :class:`bloodcell.experiments.Config` is built on them.
- :class:`TrainerOptions`: those and the settings of one run in one process (the augmenter object,
  callbacks, output folder, distribution strategy, seed, XLA, progress output).

:class:`~bloodcell.Trainer` takes the same keywords, :class:`~bloodcell.experiments.Config` the
recipe ones, and ``bloodcell train`` maps its flags onto them (:mod:`bloodcell.cli.settings`): the
defaults, checks and help below serve all three. Importing this module does not import TensorFlow.

Example:
    >>> options = TrainerOptions(learning_rate=2e-3, batch_size=64)
    >>> options.learning_rate, options.batch_size, options.optimizer
    (0.002, 64, 'adam')
    >>> TrainerOptions(batch_size=0)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: batch_size must be a positive integer. Received: batch_size=0.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bloodcell._validation import (
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_seed,
    received,
    suggest,
)
from bloodcell.errors import ConfigurationError
from bloodcell.training.monitors import check_monitor

__all__ = [
    "BALANCE_OPTIONS",
    "LOSSES",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "RecipeOptions",
    "TrainerOptions",
    "option",
    "option_help",
]

BALANCE_OPTIONS = (None, "oversample", "class_weight", "smote")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lion")
LR_SCHEDULES = (None, "cosine")
LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy")
VERBOSE = ("auto", 0, 1, 2, True, False)

Check = Callable[[Any, str], Any]


def option(default: Any, help: str, check: Check | None = None) -> Any:
    """One setting: its default, its help text (no default in it: that is added from ``default``)
    and its check, a function ``check(value, name)`` that returns the value in canonical form or
    raises :class:`~bloodcell.errors.ConfigurationError`."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def option_help(options: type | Any, name: str) -> str:
    """The help text of setting ``name``, with its default.

    >>> option_help(TrainerOptions, "ema_momentum")
    'Momentum of that average. Default: 0.99.'
    """
    field = {f.name: f for f in dataclasses.fields(options)}[name]
    return f"{field.metadata['help']} Default: {field.default!r}."


# ---------------------------------------------------------------------- checks beyond bloodcell._validation
def _bool(value: Any, name: str) -> bool:
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise ConfigurationError(f"{name} must be True or False. {received(name, value)}")
    return bool(value)


def _choice_or_keras(kind: str, choices: Sequence[Any]) -> Check:
    """One of ``choices``, or an instance of ``keras.<kind>`` (Keras is imported only for a non-string)."""

    def check(value: Any, name: str) -> Any:
        if value is None or isinstance(value, str):
            if value in choices:
                return value
        else:
            import keras

            module, cls = kind.split(".")
            if isinstance(value, getattr(getattr(keras, module), cls)):
                return value
        shown = ", ".join(repr(c) for c in choices)
        raise ConfigurationError(
            f"{name} must be one of {shown} or a keras.{kind}.{suggest(value, map(str, choices))} "
            f"{received(name, value)}"
        )

    return check


def _monitor(value: Any, name: str) -> str:
    return check_monitor(value)


def _augmenter(value: Any, name: str) -> Any:
    if value is not None and not (hasattr(value, "augment_batch") or callable(value)):
        raise ConfigurationError(
            f"{name} must be an augmenter with augment_batch() or a callable on image batches, e.g. "
            f"bloodcell.augment.AugMix(). Received: {name} of type {type(value).__name__}."
        )
    return value


def _folder(value: Any, name: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"{name} must be a folder path or None. {received(name, value)}")
    return Path(value)


def _callbacks(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigurationError(f"{name} must be a list of Keras callbacks. {received(name, value)}")
    return tuple(value)


def _anything(value: Any, name: str) -> Any:
    return value


def _between(low: float, high: float | None, **kw: Any) -> Check:
    return functools.partial(check_number, low=low, high=high, **kw)


def _count(minimum: int, allow_none: bool = False) -> Check:
    return functools.partial(check_int, minimum=minimum, allow_none=allow_none)


def _choice(choices: Sequence[Any]) -> Check:
    return functools.partial(check_choice, choices=choices)


# ---------------------------------------------------------------------- the settings
class _Checked:
    """Runs each field's check in ``__post_init__`` and keeps the canonical value it returns."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            check = field.metadata.get("check")
            if check is not None:
                object.__setattr__(self, field.name, check(getattr(self, field.name), field.name))

    def replace(self, **changes: Any) -> Any:
        """A copy with some settings changed (checked like the original)."""
        unknown_settings(type(self), changes)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def unknown_settings(options: type, names: Any, what: str | None = None) -> None:
    """Raise one clear error for names that are not settings of ``options``, with a "did you mean"."""
    known = [f.name for f in dataclasses.fields(options)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"{what or options.__name__} has no setting {unknown[0]!r}.{suggest(unknown[0], known)} "
            f"Settings: {', '.join(known)}."
        )


@dataclass(frozen=True, kw_only=True)
class RecipeOptions(_Checked):
    """The plain-valued training settings: what a run learns, independent of where it runs.

    Each field below is documented by its help text (:func:`option_help`); :class:`TrainerOptions`
    adds the settings of one run, and :class:`bloodcell.experiments.Config` adds the model and data.

    Example:
        >>> RecipeOptions(optimizer="adamw", lr_schedule="cosine").lr_schedule
        'cosine'
    """

    optimizer: Any = option(
        "adam",
        "``'adam'``, ``'adamw'``, ``'sgd'`` (Nesterov, momentum 0.9), ``'rmsprop'``, ``'lion'``, or a "
        "Keras optimizer instance (its class and settings are reused; the learning rate comes from "
        "``learning_rate``).",
        _choice_or_keras("optimizers.Optimizer", OPTIMIZERS),
    )
    learning_rate: float = option(1e-3, "Initial learning rate.", check_positive)
    weight_decay: float | None = option(
        None,
        "Decoupled weight decay; None uses the optimizer's default (AdamW: 0.004, others: none).",
        _between(0, None, allow_none=True),
    )
    lr_schedule: str | None = option(
        None,
        "None (constant, lowered by ReduceLROnPlateau) or ``'cosine'`` (cosine decay to "
        "``min_learning_rate`` over the phase's steps after ``warmup_epochs`` of linear warm-up; "
        "ReduceLROnPlateau is then off).",
        _choice(LR_SCHEDULES),
    )
    warmup_epochs: float = option(
        0.0, "Linear warm-up length of the cosine schedule, in epochs.", _between(0, None)
    )
    ema: bool = option(
        False,
        "Keep an exponential moving average of the weights (Keras's ``use_ema``); validation, "
        "checkpoints and the final weights use the average.",
        _bool,
    )
    ema_momentum: float = option(
        0.99, "Momentum of that average.", _between(0, 1, low_open=True, high_open=True)
    )
    batchnorm_recalibration: int | None = option(
        None,
        "Precise BatchNorm before each validation pass: recompute the BatchNorm statistics of the "
        "weights being validated over this many batches of training images without augmentation "
        "(:func:`bloodcell.training.recalibrate_batchnorm`; one forward pass per batch; one replica "
        "only). None: off.",
        _count(1, allow_none=True),
    )
    loss: Any = option(
        "categorical_crossentropy",
        "``'categorical_crossentropy'``, ``'categorical_focal_crossentropy'`` or a Keras loss instance.",
        _choice_or_keras("losses.Loss", LOSSES),
    )
    label_smoothing: float = option(
        0.0, "Label smoothing of the cross-entropy.", _between(0, 1, high_open=True)
    )
    consistency: float | None = option(
        None,
        "λ of AugMix's Jensen–Shannon consistency training (the paper: 12.0); None: off. Each "
        "training image goes through the model clean and as ``consistency_views`` augmented views "
        "(``bloodcell.augment.MultiView``), and the loss is ``CE(clean) + λ·JS(clean, views...)`` "
        "(``bloodcell.training.consistency.ConsistencyModel``); a step costs about ``1 + consistency_views`` "
        "times as much. Needs an augmenter.",
        _between(0, None, allow_none=True),
    )
    consistency_views: int = option(
        2, "Augmented views per image for consistency training (the paper's 2).", _count(1)
    )
    balance: str | None = option(
        None,
        "Class balancing: None; ``'oversample'`` (each epoch draws a new random oversampling of the "
        "minority classes, as row indices, without copying images); ``'class_weight'`` (loss "
        "weights inversely proportional to class frequency); ``'smote'`` (synthetic minority "
        "images by SMOTE in pixel space, drawn once).",
        _choice(BALANCE_OPTIONS),
    )
    batch_size: int = option(
        32,
        "Images per batch and replica; the global batch is ``batch_size × replicas`` under a "
        "distribution strategy.",
        _count(1),
    )
    monitor: str = option(
        "val_accuracy",
        "The metric that chooses the best epoch and drives the callbacks: ``'val_accuracy'``, "
        "``'val_loss'``, ``'accuracy'`` or ``'loss'`` (the training metric of the same name is "
        "used when no validation set is given).",
        _monitor,
    )
    reduce_lr_patience: int | None = option(
        5,
        "Epochs without improvement before the learning rate is multiplied by ``reduce_lr_factor``; "
        "None turns ReduceLROnPlateau off.",
        _count(0, allow_none=True),
    )
    reduce_lr_factor: float = option(
        0.2, "Multiplier of ReduceLROnPlateau.", _between(0, 1, low_open=True, high_open=True)
    )
    min_learning_rate: float = option(
        1e-6, "Floor of ReduceLROnPlateau and end of the cosine schedule.", _between(0, None)
    )
    early_stopping_patience: int | None = option(
        10,
        "Epochs without improvement before training stops; None turns EarlyStopping off.",
        _count(0, allow_none=True),
    )
    restore_best: bool = option(True, "End each phase with the weights of its best epoch.", _bool)


@dataclass(frozen=True, kw_only=True)
class TrainerOptions(RecipeOptions):
    """Every :class:`~bloodcell.Trainer` setting: the recipe's and those of one run in one process.

    ``Trainer(model, **options.to_kwargs())`` and ``trainer.options`` go back and forth.

    Example:
        >>> options = TrainerOptions(seed=3, output_dir="runs/a")
        >>> options.seed, options.output_dir.as_posix()
        (3, 'runs/a')
        >>> options.replace(seed=4).seed
        4
    """

    augment: Any = option(
        None,
        "An augmenter applied to each training batch inside ``tf.data`` (any bloodcell augmenter, "
        "Keras preprocessing layer or callable on image batches; see "
        ":func:`bloodcell.pipeline.to_tf_dataset`). None trains on the images as they are.",
        _augmenter,
    )
    tensorboard: bool = option(
        False, "Also write TensorBoard logs to ``output_dir/<phase>/tensorboard``.", _bool
    )
    callbacks: Sequence[Any] = option((), "More Keras callbacks, run after the preset ones.", _callbacks)
    output_dir: str | os.PathLike[str] | None = option(
        None,
        "Folder for checkpoints, logs and the resume state; None writes nothing (and a killed run "
        "cannot resume).",
        _folder,
    )
    strategy: Any = option(
        None,
        "A ``tf.distribute`` strategy (e.g. ``MirroredStrategy``, ``MultiWorkerMirroredStrategy``); "
        "None uses the enclosing scope's or TensorFlow's default.",
        _anything,
    )
    seed: int = option(
        0,
        "Seeds Python, NumPy, TensorFlow and Keras at the start of each phase, and the data order, "
        "oversampling, SMOTE and augmentation. One seed gives identical metrics on CPU when the "
        "model was built after ``keras.utils.set_random_seed`` and the augmenter draws from the "
        "pipeline's per-batch seed, as bloodcell augmenters and Keras image layers do.",
        check_seed,
    )
    deterministic: bool = option(
        False,
        "Also make TensorFlow's ops deterministic (``tf.config.experimental.enable_op_determinism``; "
        "process-wide and somewhat slower). On CPU, training is repeatable for a seed without it.",
        _bool,
    )
    jit_compile: bool | str = option(
        False,
        "XLA compilation: True, False or ``'auto'`` (False suits CPUs; try True on a GPU).",
        _choice((True, False, "auto")),
    )
    steps_per_execution: int = option(
        1,
        "Batches per compiled call: fewer trips through Python per batch. Rounded down to a divisor "
        "of the steps per epoch, since a call that crossed an epoch's end would train on the next "
        "epoch's batches.",
        _count(1),
    )
    verbose: int | str = option(
        "auto",
        "Keras progress output: ``'auto'`` (a progress bar on a terminal, one line per epoch when the "
        "output goes to a file or pipe), 0 (none), 1 (a bar) or 2 (a line per epoch).",
        _choice(VERBOSE),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.consistency is not None and self.augment is None:
            raise ConfigurationError(
                "consistency training compares clean and augmented views: give augment= too, e.g. "
                f"augment=bloodcell.augment.AugMix(). {received('augment', None)}"
            )

    def to_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments (of :class:`~bloodcell.Trainer` and of this class)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def settings_section(options: type, title: str = "Settings", indent: str = "    ") -> str:
    """A Google-style docstring section listing each setting with its help and default.

    Appended to the docstrings of the options classes and of the Trainer, so that the help written
    once beside each field also shows in ``help()`` and the API reference.
    """
    lines = [f"{indent}{title}:"]
    for field in dataclasses.fields(options):
        lines.append(f"{indent}    {field.name}: {option_help(options, field.name)}")
    return "\n".join(lines)


def with_settings(doc: str | None, options: type, title: str = "Settings") -> str:
    """``doc`` followed by the :func:`settings_section` of ``options``."""
    return f"{(doc or '').rstrip()}\n\n{settings_section(options, title)}\n"


RecipeOptions.__doc__ = with_settings(RecipeOptions.__doc__, RecipeOptions)
TrainerOptions.__doc__ = with_settings(TrainerOptions.__doc__, TrainerOptions)
