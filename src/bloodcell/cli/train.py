"""``bloodcell train``: one recipe, flags and/or a TOML file → a trained model and its evaluation."""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

from bloodcell._io import atomic_write_text
from bloodcell.cli import settings as settings_mod
from bloodcell.cli._inputs import DATA_HELP, load_dataset
from bloodcell.cli._types import positive_int, seed
from bloodcell.datasets import BloodCellDataset
from bloodcell.datasets.source import require_source
from bloodcell.errors import ConfigurationError

RUN_FILES = (
    "model.keras",
    "history.csv",
    "history.json",
    "training_curves.png",
    "report.json",
    "confusion_matrix.png",
    "reliability.png",
    "config.json",
)


def add_parser(sub: Any) -> None:
    from bloodcell.experiments import PRESETS

    parser = sub.add_parser(
        "train",
        help="train and evaluate a classifier (a recipe, flags, or a TOML file)",
        description="Train a classifier and evaluate it on a held-out split. A recipe sets every "
        "default, a TOML file (--config) overrides it, flags override both. The run goes to "
        "OUT/NAME/seedK/: model.keras, history.csv/json, training_curves.png, report.json, "
        "confusion_matrix.png, config.json. A finished run is loaded, not trained again; an "
        "interrupted one resumes from its last finished epoch.",
        epilog="Example: bloodcell train --data sample --recipe cpu --epochs 5 --out runs",
    )
    what = parser.add_argument_group("what to train")
    what.add_argument(
        "--config", metavar="FILE", help="TOML file of settings (keys: flag names or Config fields)"
    )
    what.add_argument(
        "--recipe",
        choices=sorted(PRESETS),
        help="the defaults: 'seed' (the report's "
        "EfficientNetV2S on ImageNet weights, for a GPU; default) or 'cpu' (MobileNetV3Small "
        "from scratch)",
    )
    what.add_argument(
        "--weights",
        metavar="W",
        help="'auto' (ImageNet if it can be had, else from scratch, said on stderr; the default for recipes "
        "with ImageNet weights), 'imagenet', 'none' or a weights file",
    )
    what.add_argument(
        "--image-size", type=positive_int, metavar="PX", help="train at PX×PX (images are resized)"
    )

    settings_mod.add_flags(what, [f for f in settings_mod.FLAGS if not _is_training_setting(f.field)])
    settings_mod.add_flags(
        parser.add_argument_group(
            "training settings (default: the recipe's; see bloodcell.training.TrainerOptions)"
        ),
        [f for f in settings_mod.FLAGS if _is_training_setting(f.field)],
    )

    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="DATA", help=DATA_HELP)
    data.add_argument("--val", type=_fraction, metavar="F", help="validation share of DATA (0.1)")
    data.add_argument(
        "--test", type=_fraction, metavar="F", help="test share of DATA (0.1; 0: report on validation)"
    )
    data.add_argument("--val-data", metavar="DATA", help="a separate validation set instead of --val")
    data.add_argument("--test-data", metavar="DATA", help="a separate test set instead of --test")
    data.add_argument("--split-seed", type=seed, metavar="K", help="seed of the split (0)")
    data.add_argument(
        "--limit", type=positive_int, metavar="N", help="use at most N images of each class (quick trials)"
    )

    speed = parser.add_argument_group(
        "speed (TensorFlow's CPU threads; the results may differ in the last digits)"
    )
    speed.add_argument(
        "--intra-op-threads",
        type=int,
        metavar="N",
        help="threads per op (default: TensorFlow's choice); 1 trained MobileNetV3Small 1.3x as fast on 2 cores",
    )
    speed.add_argument(
        "--inter-op-threads", type=int, metavar="N", help="ops run at once (default: TensorFlow's choice)"
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--seed", type=seed, metavar="K", help="seed of weights, data order and augmentation (0)"
    )
    out.add_argument("--out", metavar="DIR", help="folder of runs (runs)")
    out.add_argument("--name", help="the run's folder name (default: BACKBONE-FINGERPRINT of the settings)")
    out.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), help="Keras progress: 0 none, 1 bar, 2 a line per epoch"
    )
    out.add_argument(
        "--print-config",
        action="store_true",
        help="print the merged settings as TOML (usable with --config) and exit",
    )
    parser.set_defaults(run=run)


def _is_training_setting(name: str) -> bool:
    import dataclasses

    from bloodcell.training.options import RecipeOptions

    return name in {f.name for f in dataclasses.fields(RecipeOptions)}


def _fraction(text: str) -> float:
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def make_splits(
    data: BloodCellDataset,
    *,
    val: float = 0.1,
    test: float = 0.1,
    val_data: str | None = None,
    test_data: str | None = None,
    split_seed: int = 0,
    limit: int | None = None,
) -> tuple[BloodCellDataset, BloodCellDataset, BloodCellDataset | None]:
    """``(train, val, test)`` from fractions of ``data`` or separate sets (test None: report on val)."""
    from bloodcell.datasets import split

    size = data.image_shape[0]
    val_set = load_dataset(val_data, image_size=size, limit=limit) if val_data else None
    test_set = load_dataset(test_data, image_size=size, limit=limit) if test_data else None
    val_share = 0 if val_set is not None else val
    test_share = 0 if test_set is not None else test
    if val_set is None and not val_share:
        raise ConfigurationError("training needs a validation set: give --val > 0 or --val-data.")
    parts = list(split(data, val=val_share, test=test_share, seed=split_seed))
    train = parts.pop(0)
    if val_set is None:
        val_set = parts.pop(0)
    if test_set is None and parts:
        test_set = parts.pop(0)
    return train, val_set, test_set


def write_history_csv(history: dict[str, list[float]], path: Path) -> Path:
    """One row per epoch (all phases), counted from 1, and one column per logged value.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "history.csv"
        >>> print(write_history_csv({"epoch": [0, 1], "loss": [0.9, 0.5]}, path).read_text().strip())
        epoch,loss
        1,0.9
        2,0.5
    """
    keys = [k for k in history if k != "epoch"]
    rows = max((len(v) for v in history.values()), default=0)
    epochs = [int(e) + 1 for e in history.get("epoch", [])]  # Keras counts from 0, its log shows 1
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i in range(rows):
        epoch = epochs[i] if i < len(epochs) else i + 1
        writer.writerow([epoch, *[history[k][i] if i < len(history[k]) else "" for k in keys]])
    return atomic_write_text(path, buf.getvalue())


def train_run(
    config: Any,
    train: BloodCellDataset,
    val: BloodCellDataset,
    test: BloodCellDataset | None,
    *,
    seed: int = 0,
    out: str | Path = "runs",
    name: str | None = None,
    verbose: int | str = "auto",
) -> Any:
    """Train and evaluate with :func:`bloodcell.experiments.run`, add ``history.csv``, print the result."""
    from bloodcell.experiments import run as run_experiment

    weights = "ImageNet weights" if config.weights == "imagenet" else config.weights or "from scratch"
    print(
        f"Training {config.backbone} ({weights}) on {len(train)} images at {config.input_shape[0]} px, "
        f"validating on {len(val)}, testing on {len(test) if test is not None else len(val)}; "
        f"{config.epochs} epochs{f' + {config.fine_tune_epochs} fine-tuning' if config.fine_tune_epochs else ''}.",
        flush=True,
    )
    started = time.time()
    result = run_experiment(config, train, val, test, seed, name=name, output_dir=out, verbose=verbose)
    write_history_csv(result.history, result.directory / "history.csv")
    if (result.directory / "result.json").stat().st_mtime < started:
        print(
            f"{result.directory} holds this run finished: loaded, not trained again (delete it or give "
            "another --name to retrain)."
        )
    else:
        print(f"Trained and evaluated in {result.seconds:.0f} s.")
    return result


def print_result(result: Any, evaluated_on: str = "test") -> None:
    """The report and the files of a run."""
    print(f"\n{result.report}\n")
    print(f"Files of the run (report on the {evaluated_on} set) in {result.directory}:")
    for name in RUN_FILES:
        if (result.directory / name).exists():
            print(f"  {result.directory / name}")


def _print_notes(settings: Any) -> None:
    for note in settings.notes:
        print(f"bloodcell: NOTE: {note}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    settings = settings_mod.resolve(args)
    if args.print_config:
        _print_notes(settings)
        print(settings_mod.as_toml(settings), end="")
        return 0
    from bloodcell.training.threads import set_cpu_threads

    # Before any TensorFlow work: TensorFlow fixes its thread pools when it runs its first op.
    set_cpu_threads(settings.intra_op_threads, settings.inter_op_threads)
    if settings.data is None:
        raise ConfigurationError(f"bloodcell train needs --data: {DATA_HELP}.")
    for source in (settings.data, settings.val_data, settings.test_data):
        if source is not None:
            require_source(source)  # a mistyped path fails before the output folder is made
    Path(settings.out).mkdir(parents=True, exist_ok=True)  # fail before the work, not after
    _print_notes(settings)
    data = load_dataset(settings.data, image_size=settings.config.input_shape[0], limit=settings.limit)
    train, val, test = make_splits(
        data,
        val=settings.val,
        test=settings.test,
        val_data=settings.val_data,
        test_data=settings.test_data,
        split_seed=settings.split_seed,
        limit=settings.limit,
    )
    config = settings_mod.resolve_weights(settings.config, settings.weights)
    result = train_run(
        config,
        train,
        val,
        test,
        seed=settings.seed,
        out=settings.out,
        name=settings.name,
        verbose=settings.verbose,
    )
    print_result(result, "test" if test is not None else "validation")
    return 0
