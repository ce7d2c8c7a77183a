"""Training settings from a recipe, a TOML file and command-line flags, in that order of precedence.

The recipe (:meth:`bloodcell.experiments.Config.preset`) gives every default; a TOML file
(``--config run.toml``) overrides the recipe; flags given on the command line override both. The
file's keys are the flag names (``batch-size`` or ``batch_size``) and any
:class:`~bloodcell.experiments.Config` field, including those without a flag (``augment_options``
as a table). TOML has no null: write ``"none"``.

The flags that set Config fields come from one table, :data:`FLAGS`: each names its field, and
takes its default from the recipe and its check and help from the training setting
(:class:`~bloodcell.training.RecipeOptions`). :data:`WITHOUT_FLAGS` lists the settings that have
no flag of their own, and why.

Example:
    >>> import argparse
    >>> args = argparse.Namespace(recipe="cpu", epochs=3, config=None)
    >>> settings = resolve(args)
    >>> settings.config.backbone, settings.config.epochs, settings.weights
    ('mobilenetv3small', 3, None)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bloodcell._validation import check_choice, check_int, check_seed, received
from bloodcell.cli._types import non_negative_int, positive_int
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, UnreadableFileError

#: Value of ``--weights``: ImageNet weights when they can be had, otherwise from scratch.
AUTO = "auto"
DEFAULT_RECIPE = "seed"

# Settings of the run itself (not of the Config), with their defaults.
RUN_DEFAULTS: dict[str, Any] = {
    "data": None,
    "out": "runs",
    "name": None,
    "seed": 0,
    "val": 0.1,
    "test": 0.1,
    "val_data": None,
    "test_data": None,
    "split_seed": 0,
    "limit": None,
    "verbose": "auto",
    "intra_op_threads": None,
    "inter_op_threads": None,
}


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``bloodcell train`` needs: the Config, where the data is, where the run goes.

    ``weights`` is ``"auto"``, ``"imagenet"``, None or a file path; :func:`resolve_weights` turns
    ``"auto"`` into one of the others before training.
    """

    config: Any
    weights: str | None
    data: str | None = None
    out: str = "runs"
    name: str | None = None
    seed: int = 0
    val: float = 0.1
    test: float = 0.1
    val_data: str | None = None
    test_data: str | None = None
    split_seed: int = 0
    limit: int | None = None
    verbose: int | str = "auto"
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    notes: tuple[str, ...] = ()  # what resolving changed in the recipe, told the user before training

    def to_dict(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("config", "notes")
        }
        out["config"] = self.config.to_dict()
        return out


def _maybe(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with ``none`` kept as the text ``"none"`` (a flag's None would read as "not given")."""

    def convert(text: str) -> Any:
        return "none" if text.strip().lower() == "none" else parse(text)

    return convert


def _augmenters() -> Sequence[str]:
    from bloodcell.experiments import AUGMENTERS

    return list(AUGMENTERS)


def _number_or_auto(text: str) -> Any:
    return "auto" if text.strip().lower() == "auto" else float(text)


@dataclass(frozen=True)
class Flag:
    """A ``bloodcell train`` flag that sets the Config field of the same name (``--batch-size`` → ``batch_size``).

    Its default is the recipe's; its check is the setting's own (a training setting's from
    :class:`~bloodcell.training.RecipeOptions`, run as the flag is read; the others when the Config
    is made); its help is ``help`` or the first sentence of the setting's help.
    """

    field: str
    metavar: str | None = "X"  # None: a switch, --name / --no-name
    parse: Callable[[str], Any] = str
    help: str | None = None
    choices: Callable[[], Sequence[str]] | None = (
        None  # for argparse; a function: read when the parser is made
    )

    @property
    def option_string(self) -> str:
        return "--" + self.field.replace("_", "-")


# The flags that set Config fields, in --help's order; "what to train" first, then the training settings.
FLAGS = (
    Flag("backbone", "NAME", help="a registered backbone (bloodcell.backbones.list_backbones())"),
    Flag("head", "NAME", help="head preset: 'seed' or 'linear'"),
    Flag(
        "freeze",
        "N|all|none",
        _maybe(lambda t: freeze_value(t)),
        "freeze the backbone up to its N-th conv layer (the seed: 120)",
    ),
    Flag("freeze_layers", "N", non_negative_int, "freeze the first N backbone layers of any kind"),
    Flag("batchnorm_momentum", "M|auto|none", _maybe(_number_or_auto), "backbone BatchNorm momentum"),
    Flag("augment", None, str, "training augmentation", choices=lambda: (*_augmenters(), "none")),
    Flag("epochs", "N", positive_int, "training epochs"),
    Flag("fine_tune_epochs", "N", non_negative_int, "epochs of a second phase with the backbone unfrozen"),
    Flag("fine_tune_learning_rate", "LR", float, "learning rate of the fine-tuning phase"),
    Flag(
        "fine_tune_unfreeze",
        "N|all",
        lambda t: freeze_value(t),
        help="what fine-tuning unfreezes: all, or the last N conv layers",
    ),
    Flag(
        "stain_normalization",
        "HOW",
        _maybe(str),
        "stain normaliser built into the model: macenko, reinhard or none",
    ),
    Flag("cell_crop", "HOW", _maybe(str), "centre each image on its cell: image, dataset or none"),
    Flag("precise_batchnorm", "N", _maybe(int), "after training, BatchNorm statistics over N batches"),
    Flag("tta", "HOW", _maybe(str), "test-time augmentation of the report: d4, flips, rot90 or none"),
    # bloodcell.training.RecipeOptions: every training setting of a Config.
    Flag("optimizer", "NAME", help="adam, adamw, sgd, rmsprop or lion"),
    Flag("learning_rate", "LR", float),
    Flag("weight_decay", "W", _maybe(float)),
    Flag("lr_schedule", "NAME", _maybe(str), "none (ReduceLROnPlateau) or cosine (with warm-up)"),
    Flag("warmup_epochs", "N", float),
    Flag("ema", None),
    Flag("ema_momentum", "M", float),
    Flag(
        "batchnorm_recalibration", "N", _maybe(int), "precise BatchNorm over N batches before each validation"
    ),
    Flag("loss", "NAME", help="categorical_crossentropy or categorical_focal_crossentropy"),
    Flag("label_smoothing", "S", float),
    Flag(
        "consistency",
        "LAMBDA",
        _maybe(float),
        "λ of AugMix's Jensen–Shannon consistency training (the paper: 12)",
    ),
    Flag("consistency_views", "N", int),
    Flag("balance", "HOW", _maybe(str), "class balancing: oversample, class_weight, smote or none"),
    Flag("batch_size", "N", positive_int, "images per batch"),
    Flag("monitor", "METRIC", help="what chooses the best epoch: val_accuracy, val_loss, accuracy or loss"),
    Flag("reduce_lr_patience", "N", _maybe(int)),
    Flag("reduce_lr_factor", "F", float),
    Flag("min_learning_rate", "LR", float),
    Flag("early_stopping_patience", "N", _maybe(int)),
    Flag("restore_best", None),
)
# Settings of the Trainer and fields of the Config that no flag above sets, and why. Every other
# one has its flag (tests/test_cli.py checks that this list and FLAGS cover them all).
WITHOUT_FLAGS = {
    "augment_options": "a table: the TOML file's [augment_options]",
    "input_shape": "--image-size",
    "weights": "--weights (auto, imagenet, none or a file)",
    "seed": "--seed",
    "verbose": "--verbose",
    "output_dir": "--out and --name",
    "callbacks": "Python objects: use bloodcell.Trainer",
    "strategy": "a tf.distribute strategy, a Python object: use bloodcell.Trainer",
    "tensorboard": "not a Config setting (experiments.run trains without TensorBoard logs)",
    "deterministic": "not a Config setting (process-wide; experiments.run leaves it off)",
    "jit_compile": "not a Config setting (experiments.run compiles without XLA)",
    "steps_per_execution": "not a Config setting (experiments.run runs one batch per call)",
}


def flag_help(flag: Flag) -> str:
    """The flag's help: its own, or the first sentence of the training setting's help, in plain text.

    >>> flag_help(Flag("label_smoothing", "S", float))
    'label smoothing of the cross-entropy'
    """
    if flag.help is not None:
        return flag.help
    from bloodcell.training.options import RecipeOptions

    text = {f.name: f.metadata["help"] for f in dataclasses.fields(RecipeOptions)}[flag.field]
    first = text.replace("``", "").split(". ")[0].split("; ")[0].rstrip(".")
    return first[0].lower() + first[1:]


def flag_type(flag: Flag) -> Callable[[str], Any]:
    """argparse's ``type`` for ``flag``: parse the text, then run the setting's own check."""
    from bloodcell.training.options import RecipeOptions

    checks = {f.name: f.metadata.get("check") for f in dataclasses.fields(RecipeOptions)}

    def convert(text: str) -> Any:
        try:
            value = flag.parse(text)
        except ConfigurationError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a valid {flag.metavar}: {text!r}") from None
        check = checks.get(flag.field)
        if check is not None and value != "none":
            try:
                value = check(value, flag.field)
            except ConfigurationError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return value

    convert.__name__ = flag.field  # argparse names the type in its messages
    return convert


def add_flags(group: Any, flags: Sequence[Flag] = FLAGS) -> None:
    """Add ``flags`` to an argparse group, each defaulting to None (not given: the recipe's value)."""
    for flag in flags:
        if flag.metavar is None and flag.choices is None:
            group.add_argument(
                flag.option_string, action=argparse.BooleanOptionalAction, help=flag_help(flag)
            )
        elif flag.choices is not None:
            group.add_argument(flag.option_string, choices=list(flag.choices()), help=flag_help(flag))
        else:
            group.add_argument(
                flag.option_string, type=flag_type(flag), metavar=flag.metavar, help=flag_help(flag)
            )


def _none(value: Any) -> Any:
    """TOML has no null: ``"none"`` (any case) means None."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


def freeze_value(text: str | int) -> int | str | None:
    """``--freeze``: an integer N (the first N conv layers), ``all`` or ``none``
    (:func:`bloodcell.backbones.freezing.parse_freeze`)."""
    from bloodcell.backbones.freezing import parse_freeze

    value = parse_freeze(text)
    if isinstance(value, dict):  # a count of layers of any kind has its own setting
        raise ConfigurationError(
            f"freeze must be a number of conv layers, 'all' or 'none' (freeze_layers counts layers "
            f"of any kind). {received('freeze', text)}"
        )
    return value


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a TOML file, keys normalised (``batch-size`` → ``batch_size``).

    Raises:
        DataFileNotFoundError: no such file.
        UnreadableFileError: not valid TOML.
        ConfigurationError: a key that is neither a flag nor a Config field.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from bloodcell.experiments import Config

    file = Path(path)
    if not file.is_file():
        raise DataFileNotFoundError(f"no such config file: {os.fspath(path)!r}.")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UnreadableFileError(f"{os.fspath(path)!r} is not valid TOML: {err}.") from err
    values = {str(k).replace("-", "_"): v for k, v in raw.items()}
    known = set(RUN_DEFAULTS) | {f.name for f in dataclasses.fields(Config)} | {"recipe", "image_size"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigurationError(
            f"{os.fspath(path)!r} has unknown key(s) {unknown}; use flag names of 'bloodcell train' "
            f"or Config fields: {sorted(known)}."
        )
    return values


def resolve(args: argparse.Namespace) -> TrainSettings:
    """Merge recipe, TOML file (``args.config``) and flags (attributes of ``args`` that are not None).

    Raises:
        UnknownNameError: an unknown recipe.
        ConfigurationError: settings that do not fit together.
    """
    from bloodcell.experiments import Config

    values: dict[str, Any] = read_toml(args.config) if getattr(args, "config", None) else {}
    flag_keys = (*RUN_DEFAULTS, *(flag.field for flag in FLAGS), "recipe", "weights", "image_size")
    values.update({k: getattr(args, k) for k in flag_keys if getattr(args, k, None) is not None})

    config = Config.preset(str(values.pop("recipe", DEFAULT_RECIPE)))
    run_values = {k: _none(values.pop(k, default)) for k, default in RUN_DEFAULTS.items()}
    _check_run_values(run_values)
    # Default weights: what the recipe uses, or "auto" when that is ImageNet (tried, else from scratch).
    weights = _none(values.pop("weights", AUTO if config.weights == "imagenet" else config.weights))
    changes: dict[str, Any] = {k: _none(v) for k, v in values.items() if k != "image_size"}
    if "freeze" in changes:
        changes["freeze"] = freeze_value(changes["freeze"] if changes["freeze"] is not None else "none")
    if changes.get("fine_tune_unfreeze") is not None:
        changes["fine_tune_unfreeze"] = freeze_value(changes["fine_tune_unfreeze"])
    if changes.get("freeze_layers") is not None and "freeze" not in changes:
        changes["freeze"] = None  # freezing by layer count replaces the recipe's conv-layer freezing
    if values.get("image_size") is not None:
        if "input_shape" in changes:
            raise ConfigurationError("Give image_size or input_shape, not both.")
        size = check_int(values["image_size"], "image_size", minimum=8)
        changes["input_shape"] = (size, size, 3)
    recipe = config
    config = config.replace(weights=None, **changes)
    config, notes = _drop_recipe_freezing(recipe, config, changes, weights)
    if weights not in (AUTO, "imagenet", None):
        weights = os.fspath(weights)
        if not Path(weights).expanduser().is_file():
            raise DataFileNotFoundError(
                f"no such weights file: {weights!r}. Give 'auto', 'imagenet', 'none' or the path of a "
                ".weights.h5/.h5/.keras file."
            )
    return TrainSettings(config=config, weights=weights, notes=notes, **run_values)


def _check_run_values(values: dict[str, Any]) -> None:
    """Seeds, counts and the progress setting of a run, checked before any work (a TOML file skips argparse)."""
    for name in ("seed", "split_seed"):
        values[name] = check_seed(values[name], name)
    values["limit"] = check_int(values["limit"], "limit", minimum=1, allow_none=True)
    check_choice(values["verbose"], "verbose", ("auto", 0, 1, 2))


def _drop_recipe_freezing(
    recipe: Any, config: Any, changes: dict[str, Any], weights: Any
) -> tuple[Any, tuple[str, ...]]:
    """The recipe's freezing unless it no longer fits (another backbone, no pretrained weights), and a note.

    A freeze depth counts one backbone's conv layers (the "seed" recipe's 120 of EfficientNetV2S's
    170), so it does not carry over to another backbone; and frozen layers with random initial
    weights would never learn. Freezing given by the user (a flag or the TOML file) is kept.
    """
    if "freeze" in changes or "freeze_layers" in changes:
        return config, ()
    frozen = {k: getattr(recipe, k) for k in ("freeze", "freeze_layers") if getattr(recipe, k) is not None}
    if not frozen:
        return config, ()
    what = ", ".join(f"{k}={v}" for k, v in frozen.items())
    if config.backbone != recipe.backbone:
        reason = f"it counts {recipe.backbone}'s layers, not {config.backbone}'s"
    elif weights is None:
        reason = "frozen layers with random initial weights would never learn"
    else:
        return config, ()
    note = f"not applying the recipe's freezing ({what}): {reason}; give --freeze N to freeze anyway."
    return config.replace(freeze=None, freeze_layers=None), (note,)


def resolve_weights(config: Any, weights: str | None, *, stream: Any = None) -> Any:
    """The Config with its weights set; ``"auto"`` tries ImageNet and falls back to training from scratch.

    The fallback is said on ``stream`` (default stderr), and with it any backbone freezing goes:
    layers frozen at random initial values would never learn.
    """
    stream = sys.stderr if stream is None else stream
    if weights != AUTO:
        return config.replace(weights=weights)
    from bloodcell.backbones import create
    from bloodcell.errors import WeightsUnavailableError

    try:
        create(config.backbone, input_shape=config.input_shape, weights="imagenet")
    except WeightsUnavailableError as err:
        reason = str(err).strip().splitlines()[0]
        if len(reason) > 200:  # the root cause (e.g. "Name or service not known") ends the line
            reason = "..." + reason[-160:]
        print(
            f"bloodcell: NOTE: ImageNet weights for {config.backbone!r} cannot be had ({reason}). "
            "Training FROM SCRATCH (random initial weights) instead: expect lower accuracy than with "
            "pretrained weights. Give --weights PATH to use a weights file you have.",
            file=stream,
            flush=True,
        )
        changes: dict[str, Any] = {"weights": None}
        frozen = {
            k: getattr(config, k) for k in ("freeze", "freeze_layers") if getattr(config, k) is not None
        }
        if frozen:
            what = ", ".join(f"{k}={v}" for k, v in frozen.items())
            print(
                f"bloodcell: NOTE: dropping the backbone freezing ({what}) too: frozen layers with random "
                "weights would never learn.",
                file=stream,
                flush=True,
            )
            changes.update(freeze=None, freeze_layers=None)
        return config.replace(**changes)
    return config.replace(weights="imagenet")


def as_toml(settings: TrainSettings) -> str:
    """The settings as TOML text that ``--config`` reads back (None written as ``"none"``)."""
    lines = []
    values: Mapping[str, Any] = {**{k: v for k, v in settings.to_dict().items() if k != "config"}}
    config = settings.config.to_dict()
    config.pop("weights")
    for key, value in {**values, **config}.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a TOML basic string is a JSON string
