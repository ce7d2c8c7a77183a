"""Experiments: a :class:`Config` per recipe, :func:`run` per seed, :func:`compare` for a results table.

A run is defined entirely by its :class:`Config` (model, augmentation, balancing, optimiser,
schedule, epochs) plus the data and a seed. Each run writes a folder::

    <output_dir>/<name>/seed<k>/
        config.json      the Config, as saved
        train/           the Trainer's logs (its resume state, while the run is unfinished)
        history.json     per-epoch loss, accuracy, learning rate (all phases)
        report.json      the test-set Report, predictions included
        model.keras      the trained model, without optimizer state (bloodcell.models.load_model)
        confusion_matrix.png, training_curves.png, reliability.png
        result.json      written last: its presence means the run finished

A finished run is loaded, not redone; an interrupted one resumes from its last finished epoch.

Example:
    >>> import bloodcell as bc
    >>> cfg = bc.experiments.Config.preset("seed")
    >>> cfg.backbone, cfg.freeze, cfg.augment, cfg.optimizer
    ('efficientnetv2s', 120, 'augmix', 'adam')
    >>> cfg.replace(balance="smote").balance
    'smote'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bloodcell._io import atomic_write_text, write_json
from bloodcell._validation import check_choice, check_int, check_positive, check_seed, suggest
from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError, UnknownNameError
from bloodcell.metrics import SUMMARY_METRICS, Report, Summary, summarize
from bloodcell.training.options import RecipeOptions, with_settings

__all__ = ["Config", "RunResult", "PRESETS", "run", "compare", "AUGMENTERS"]

# Names a Config can use for its augmentation, and the bloodcell.augment class each builds.
AUGMENTERS = {"augmix": "AugMix", "geometric": "RandomGeometric", "robust": "RobustAugment"}
# Config fields left out of to_dict() while at their default, so that configs saved before they
# existed keep their JSON and fingerprints (finished runs are found by fingerprint).
_ADDED_LATER = {
    "stain_normalization": None,
    "batchnorm_recalibration": None,
    "cell_crop": None,
    "precise_batchnorm": None,
    "tta": None,
    "loss": "categorical_crossentropy",
    "consistency_views": 2,
    "restore_best": True,
}
STAIN_NORMALIZATIONS = (None, "macenko", "reinhard")
CELL_CROPS = (None, "image", "dataset", "none")
TTA_MODES = (None, "d4", "flips", "rot90")


@dataclass(frozen=True)
class Config(RecipeOptions):
    """Everything that defines a training run (with the data and the seed).

    Plain values only, so a Config prints, saves to JSON, compares and clones
    (``config.replace(backbone="efficientnetb0")``). The training settings are those of
    :class:`~bloodcell.training.RecipeOptions` (listed below with their defaults, checked the same
    way), given as keywords like the fields of the model and data.

    Attributes:
        backbone: Registered backbone name (:func:`bloodcell.backbones.list_backbones`).
        head: Head preset or name (``"seed"``, ``"linear"``).
        weights: ``"imagenet"``, None (from scratch) or a weights file.
        input_shape: (height, width, channels) of the images.
        freeze: Backbone freezing: an int N freezes up to the N-th Conv2D/DepthwiseConv2D layer (the
            seed's rule, 120); ``"all"``; None.
        freeze_layers: Instead, freeze the first N layers of any kind (the seed's 220, 420, 513).
        batchnorm_momentum: Backbone BatchNorm momentum; ``"auto"``: 0.9 from scratch, Keras's own
            with pretrained weights.
        augment: ``"augmix"``, ``"geometric"``, ``"robust"`` (:class:`~bloodcell.augment.RobustAugment`) or None.
        augment_options: Keyword arguments of that augmenter (e.g. ``{"severity": 3}``).
        epochs: Epochs of the first phase.
        fine_tune_epochs: Epochs of a second, fine-tuning phase (0: none).
        fine_tune_learning_rate: Its learning rate.
        fine_tune_unfreeze: What it unfreezes (see :meth:`bloodcell.Trainer.fine_tune`).
        stain_normalization: ``"macenko"`` or ``"reinhard"``: a :mod:`bloodcell.stain` normaliser
            (default settings) fitted on the training split and built into the model (saved with
            it); None: none.
        cell_crop: ``"image"``, ``"dataset"`` or ``"none"``: the model centres each image on its
            white cell and brings it to PBC's scale (:class:`bloodcell.cells.CellCrop`, saved
            with the model); None: no crop.
        precise_batchnorm: After training, set the BatchNorm statistics to their mean over this
            many training batches without augmentation
            (:func:`bloodcell.training.recalibrate_batchnorm`); None: as training left them.
        tta: Test-time augmentation of the run's evaluation (``"d4"``, ``"flips"``, ``"rot90"``;
            :mod:`bloodcell.tta`): ``report.json`` averages each image's prediction over those
            copies, as ``bloodcell evaluate --tta`` does; None: plain predictions.
    """

    backbone: str = "efficientnetv2s"
    head: str = "seed"
    weights: str | None = "imagenet"
    input_shape: tuple[int, int, int] = (96, 96, 3)
    freeze: int | str | None = 120
    freeze_layers: int | None = None
    batchnorm_momentum: float | str | None = "auto"
    augment: str | None = "augmix"
    augment_options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 50
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    fine_tune_unfreeze: str | int = "all"
    stain_normalization: str | None = None
    cell_crop: str | None = None
    precise_batchnorm: int | None = None
    tta: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # the training settings' checks
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "augment_options", dict(self.augment_options))
        check_choice(self.augment, "augment", (None, *AUGMENTERS))
        if self.freeze is not None and self.freeze_layers is not None:
            raise ConfigurationError(
                "Give freeze (conv layers) or freeze_layers (layers of any kind), not both. "
                f"Received: freeze={self.freeze!r}, freeze_layers={self.freeze_layers!r}."
            )
        object.__setattr__(self, "epochs", check_int(self.epochs, "epochs", minimum=1))
        object.__setattr__(
            self, "fine_tune_epochs", check_int(self.fine_tune_epochs, "fine_tune_epochs", minimum=0)
        )
        check_positive(self.fine_tune_learning_rate, "fine_tune_learning_rate")
        check_choice(self.cell_crop, "cell_crop", CELL_CROPS)
        check_int(self.precise_batchnorm, "precise_batchnorm", minimum=1, allow_none=True)
        check_choice(self.tta, "tta", TTA_MODES)
        check_choice(self.stain_normalization, "stain_normalization", STAIN_NORMALIZATIONS)

    # ------------------------------------------------------------------ presets and copies
    @classmethod
    def preset(cls, name: str, **changes: Any) -> Config:
        """A named recipe (``"seed"``, ``"cpu"``, ``"robust"``), with optional changes.

        Raises:
            UnknownNameError: for a name that is not a preset.
        """
        key = str(name).lower()
        if key not in PRESETS:
            raise UnknownNameError(f"Unknown preset {name!r}; presets: {sorted(PRESETS)}.")
        return PRESETS[key].replace(**changes)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ConfigurationError(f"Config has no field(s) {unknown}.{suggest(unknown[0], names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name, default in _ADDED_LATER.items():  # at their default, they keep older JSON and fingerprints
            if out[name] == default:
                del out[name]
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigurationError(f"Not a bloodcell Config: unknown field(s) {sorted(unknown)}.")
        return cls(**dict(data))

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        return write_json(self.to_dict(), path, sort_keys=True)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def fingerprint(self) -> str:
        """A short hash of the settings: equal configs, equal fingerprints."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]

    # ------------------------------------------------------------------ building
    def build_model(self, num_classes: int = 8, stain_normalizer: Any = None) -> Any:
        """The classifier this config describes (untrained), with a fitted stain normaliser if given."""
        import bloodcell as bc

        freeze: Any = self.freeze
        if self.freeze_layers is not None:
            freeze = {"layers": int(self.freeze_layers)}
        return bc.build_classifier(
            backbone=self.backbone,
            head=self.head,
            num_classes=num_classes,
            input_shape=self.input_shape,
            weights=self.weights,
            freeze=freeze,
            batchnorm_momentum=self.batchnorm_momentum,
            stain_normalization=stain_normalizer,
            cell_crop=self.cell_crop,
        )

    def fit_stain_normalizer(self, train: BloodCellDataset) -> Any:
        """The config's stain normaliser fitted on ``train``, or None when it has none."""
        if self.stain_normalization is None:
            return None
        from bloodcell.stain import make_normalizer

        return make_normalizer(self.stain_normalization).fit(train)

    def build_augmenter(self) -> Any:
        """The augmenter this config describes, or None."""
        if self.augment is None:
            return None
        from bloodcell import augment

        return getattr(augment, AUGMENTERS[self.augment])(**self.augment_options)

    def trainer_kwargs(self) -> dict[str, Any]:
        """The :class:`~bloodcell.Trainer` keyword arguments of this config: its training settings
        (:class:`~bloodcell.training.RecipeOptions`; the augmenter, seed and folder are the run's)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RecipeOptions)}


Config.__doc__ = with_settings(Config.__doc__, RecipeOptions, "Training settings")


PRESETS: dict[str, Config] = {
    # The seed report's recipe: EfficientNetV2S on ImageNet weights, first 120 conv layers frozen, the
    # seed head, AugMix, Adam, ReduceLROnPlateau and EarlyStopping on validation accuracy.
    "seed": Config(),
    # Training from scratch on a CPU (no pretrained weights): MobileNetV3Small with BatchNorm momentum
    # 0.9, AdamW with a cosine schedule, flips/rotations/shifts, weight averaging and the best epoch
    # kept, precise BatchNorm at the end and the report over the 8 flips and rotations (the steps
    # behind the figures quoted for this recipe in benchmarks/RESULTS.md).
    "cpu": Config(
        backbone="mobilenetv3small",
        head="linear",
        weights=None,
        freeze=None,
        batchnorm_momentum=0.9,
        augment="geometric",
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=0.01,
        lr_schedule="cosine",
        warmup_epochs=1.0,
        ema=True,
        ema_momentum=0.99,
        label_smoothing=0.1,
        batch_size=64,
        epochs=22,
        reduce_lr_patience=None,
        early_stopping_patience=None,
        min_learning_rate=1e-5,
        precise_batchnorm=100,
        tta="d4",
    ),
}
# The "cpu" recipe for other labs' images: on 80 % of the images, after the flips and rotations,
# another lab's stain and colours (white balance, hue, saturation...) and one more lab shift drawn
# at random (optics, capture, smear artefacts, zoom); cell-centred crops whose scale
# `bloodcell adapt` fits to a lab's magnification. The harder task gets 30 epochs instead of 22.
PRESETS["robust"] = PRESETS["cpu"].replace(
    augment="robust",
    augment_options={"probability": 0.8, "always": ["stain", "color"], "num_ops": 1},
    epochs=30,
    cell_crop="dataset",
)


# ---------------------------------------------------------------------- one run
@dataclass(frozen=True, eq=False)
class RunResult:
    """What one run produced; the files live in ``directory``.

    Attributes:
        name: The run's name (the key in :func:`compare`).
        seed: Its seed.
        config: Its :class:`Config`.
        report: The test-set :class:`~bloodcell.metrics.Report`.
        history: Per-epoch logs of all phases.
        directory: The run's folder.
        seconds: Training and evaluation time (of the run that produced the files).
    """

    name: str
    seed: int
    config: Config
    report: Report
    history: dict[str, list[float]]
    directory: Path
    seconds: float

    @property
    def model_path(self) -> Path:
        return self.directory / "model.keras"

    def load_model(self) -> Any:
        """The trained model (:func:`bloodcell.models.load_model`, Keras safe mode)."""
        from bloodcell.models import load_model

        return load_model(self.model_path)


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    return keep.strip("-") or "run"


def _load_finished(directory: Path, name: str, seed: int, config: Config) -> RunResult | None:
    marker = directory / "result.json"
    if not marker.exists():
        return None
    saved = Config.from_json(directory / "config.json")
    if saved != config:
        raise ConfigurationError(
            f"{directory} holds a finished run of a different config ({saved.fingerprint()} vs "
            f"{config.fingerprint()}). Give the run another name or output_dir."
        )
    info = json.loads(marker.read_text(encoding="utf-8"))
    history = json.loads((directory / "history.json").read_text(encoding="utf-8"))
    return RunResult(
        name,
        seed,
        config,
        Report.from_json(directory / "report.json"),
        history,
        directory,
        float(info.get("seconds", 0.0)),
    )


def run(
    config: Config,
    train: BloodCellDataset,
    val: BloodCellDataset,
    test: BloodCellDataset | None = None,
    seed: int = 0,
    *,
    name: str | None = None,
    output_dir: str | os.PathLike[str] = "runs",
    plots: bool = True,
    verbose: int | str = "auto",
) -> RunResult:
    """Train and evaluate one config with one seed; skip it if it already finished.

    Args:
        config: The recipe.
        train: Training images.
        val: Validation images (choose the best epoch).
        test: Held-out images for the report (default: ``val``; the report is then a validation
            report, optimistic because the best epoch was chosen on the same images).
        seed: Seeds the model's initial weights, data order, augmentation and balancing.
        name: Folder name of the run (default: ``<backbone>-<fingerprint>``).
        output_dir: Where the run folder goes.
        plots: Also write ``confusion_matrix.png`` and ``training_curves.png``.
        verbose: Keras progress output.

    Returns:
        The :class:`RunResult`.
    """
    import keras

    import bloodcell as bc
    from bloodcell.training.batchnorm import trainable_batchnorm_layers

    if not isinstance(config, Config):
        raise InvalidDtypeError(f"run() takes a bloodcell.experiments.Config, got {type(config).__name__}.")
    for label, data in (("train", train), ("val", val)):
        if not isinstance(data, BloodCellDataset):
            raise InvalidDtypeError(f"{label} must be a BloodCellDataset, got {type(data).__name__}.")
    seed = check_seed(seed)
    if test is None:
        test = val
    name = name or f"{config.backbone}-{config.fingerprint()}"
    directory = Path(output_dir) / _slug(name) / f"seed{int(seed)}"
    finished = _load_finished(directory, name, int(seed), config)
    if finished is not None:
        return finished
    if (directory / "config.json").exists() and Config.from_json(directory / "config.json") != config:
        raise ConfigurationError(
            f"{directory} holds an unfinished run of a different config. Give the run another name or output_dir."
        )
    start = time.perf_counter()
    keras.utils.set_random_seed(int(seed))  # the initial weights and dropout seeds
    model = config.build_model(
        num_classes=train.num_classes, stain_normalizer=config.fit_stain_normalizer(train)
    )
    trainer = bc.Trainer(
        model,
        augment=config.build_augmenter(),
        seed=int(seed),
        output_dir=directory / "train",
        verbose=verbose,
        **config.trainer_kwargs(),
    )
    # Written once the Trainer has accepted the settings, so a bad option leaves no run folder.
    config.to_json(directory / "config.json")
    trainer.fit(train, val, epochs=config.epochs)
    if config.fine_tune_epochs:
        trainer.fine_tune(
            train,
            val,
            unfreeze=config.fine_tune_unfreeze,
            learning_rate=config.fine_tune_learning_rate,
            epochs=config.fine_tune_epochs,
        )
    if config.precise_batchnorm is not None and trainable_batchnorm_layers(model):
        bc.training.recalibrate_batchnorm(
            model, train, batches=config.precise_batchnorm, batch_size=config.batch_size, seed=seed
        )
    report = bc.metrics.evaluate(model, test, batch_size=config.batch_size, tta=config.tta)
    seconds = time.perf_counter() - start

    bc.models.set_model_card(model, **bc.models.training_card(config, train, val, test, report, name=name))
    bc.models.save_model(model, directory / "model.keras")
    atomic_write_text(directory / "history.json", json.dumps(trainer.history, indent=1) + "\n")
    report.to_json(directory / "report.json", include_predictions=True)
    if plots:
        bc.plots.confusion_matrix(
            report,
            directory / "confusion_matrix.png",
            title=f"{name}, seed {seed}: accuracy {report.accuracy:.2%}, macro F1 {report.f1_macro:.2%}",
        )
        bc.plots.training_curves(
            trainer.history, directory / "training_curves.png", title=f"{name}, seed {seed}"
        )
        bc.plots.reliability_diagram(
            report, directory / "reliability.png", title=f"{name}, seed {seed}: ECE {report.ece:.2%}"
        )
    atomic_write_text(
        directory / "result.json",
        json.dumps(
            {
                "name": name,
                "seed": int(seed),
                "accuracy": report.accuracy,
                "f1_macro": report.f1_macro,
                "seconds": seconds,
                "test_size": len(test),
            },
            indent=1,
        )
        + "\n",
    )
    _drop_resume_state(directory / "train")
    return RunResult(name, int(seed), config, report, dict(trainer.history), directory, seconds)


def _drop_resume_state(train_dir: Path) -> None:
    """Remove the Trainer's resume state and checkpoints of a finished run: ``model.keras`` holds its weights.

    A finished run is loaded from its ``result.json``, ``report.json`` and ``model.keras``, never
    resumed, so keeping the optimizer's state and the best-epoch copies would only store the
    weights three times over. The logs (``log.csv``, ``history.json``) stay.
    """
    for phase in sorted(p for p in train_dir.iterdir() if p.is_dir()) if train_dir.is_dir() else ():
        for file in (phase / "state.json", *phase.glob("variables-*.npz"), phase / "best.keras"):
            file.unlink(missing_ok=True)


# ---------------------------------------------------------------------- many runs
def _as_splits(data: Any, val: float, test: float, split_seed: int) -> tuple[BloodCellDataset, ...]:
    from bloodcell.datasets import split

    if isinstance(data, BloodCellDataset):
        return tuple(split(data, val=val, test=test, seed=split_seed))
    if all(hasattr(data, k) for k in ("train", "val", "test")):
        return data.train, data.val, data.test
    if isinstance(data, Sequence) and len(data) == 3 and all(isinstance(d, BloodCellDataset) for d in data):
        return tuple(data)
    raise InvalidDataError(
        "compare() takes a BloodCellDataset (split here), or (train, val, test) datasets; got "
        f"{type(data).__name__}."
    )


def compare(
    configs: Mapping[str, Config],
    data: Any,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    output_dir: str | os.PathLike[str] = "runs/compare",
    val: float = 0.1,
    test: float = 0.1,
    split_seed: int = 0,
    metrics: Sequence[str] = SUMMARY_METRICS,
    verbose: int | str = "auto",
) -> Summary:
    """Run each config with each seed and tabulate mean ± std, like the seed report's Table 1.

    One split serves every run (``split_seed``), so the seeds vary the training alone. Finished
    runs are loaded from ``output_dir``, so an interrupted comparison picks up where it stopped.
    The table is also written as ``results.md`` and ``results.csv``.

    Args:
        configs: ``{row name: Config}``.
        data: A :class:`~bloodcell.datasets.BloodCellDataset` (split into train/val/test here), or
            ``(train, val, test)``.
        seeds: One run per seed per config.
        output_dir: Where the runs and the tables go.
        val, test: Split fractions when ``data`` is one dataset.
        split_seed: Seed of that split.
        metrics: The table's columns (see :func:`bloodcell.metrics.summarize`).
        verbose: Keras progress output.

    Returns:
        A :class:`~bloodcell.metrics.Summary` (``to_markdown()``, ``to_csv()``); its ``runs``
        maps each name to its :class:`RunResult` list.
    """
    if not isinstance(configs, Mapping) or not configs:
        raise ConfigurationError("compare() takes a non-empty {name: Config} mapping.")
    for key, cfg in configs.items():
        if not isinstance(cfg, Config):
            raise InvalidDtypeError(f"compare(): {key!r} is a {type(cfg).__name__}, not a Config.")
    slugs = [_slug(k) for k in configs]
    if len(set(slugs)) != len(slugs):
        raise ConfigurationError(f"compare(): names {list(configs)} give clashing folder names.")
    seeds = [check_seed(s, "seeds") for s in seeds]
    if not seeds:
        raise ConfigurationError("compare() needs at least one seed.")
    train, val_set, test_set = _as_splits(data, val, test, split_seed)
    runs: dict[str, list[RunResult]] = {}
    for key, cfg in configs.items():
        runs[key] = [
            run(cfg, train, val_set, test_set, seed, name=key, output_dir=output_dir, verbose=verbose)
            for seed in seeds
        ]
    table = summarize({k: [r.report for r in v] for k, v in runs.items()}, metrics=metrics)
    table = dataclasses.replace(table, runs=runs)
    atomic_write_text(Path(output_dir) / "results.md", table.to_markdown() + "\n")
    table.to_csv(Path(output_dir) / "results.csv")
    return table
