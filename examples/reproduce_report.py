"""
Reproduce the seed report's three studies
=========================================

The study bloodcell grew from compared class balancing and augmentation, backbones, and how much
of EfficientNetV2S to freeze, each as mean ± std over seeds. This script runs the same three studies
with :func:`bloodcell.experiments.compare` on any dataset:

1. Class balancing and augmentation: none vs oversampling vs SMOTE vs AugMix (EfficientNetV2S).
2. Backbones: EfficientNetV2S vs EfficientNetB0 vs MobileNetV3Small (with AugMix).
3. Freezing EfficientNetV2S: the first 120 conv layers vs the first 220, 420 and 513 layers.

Each study prints a mean ± std table over the seeds (the report's Table 1) and writes it as
``results.md``/``results.csv`` beside the runs. Finished runs are skipped when the script is run
again, and an interrupted run resumes from its last finished epoch.

Usage::

    python examples/reproduce_report.py                                  # the bundled 800-cell sample
    python examples/reproduce_report.py --data pbc96/train --seeds 0 1 2 # class folders, or an .npz
    python examples/reproduce_report.py --smoke                          # a quick check

The seed trained with ImageNet weights (``--weights imagenet``, the default), which Keras
downloads; offline, use ``--weights none`` (training from scratch: expect much lower accuracy with
the seed's frozen layers). ``--smoke`` runs the first and the last row of each study, each for one
epoch on 32 images without pretrained weights, with every backbone replaced by a tiny CNN
registered on the fly (freezing the same fractions of its layers), and writes to a temporary folder
unless ``--out`` is given, so that it finishes in a few minutes: it checks the machinery, not the
science.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "__file__" in globals():  # run from a clone without installing (the docs gallery has no __file__)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bloodcell as bc  # noqa: E402
from bloodcell.experiments import Config  # noqa: E402

# EfficientNetV2S at 96 px: 513 layers, 170 conv layers; used to scale the freezing study to the
# smoke backbone.
V2S_LAYERS, V2S_CONV = 513, 170
SMOKE_BACKBONE = "smoke_cnn"


def register_smoke_backbone() -> str:
    """A four-block CNN, registered like any user backbone: fast to build, for --smoke only."""
    import keras

    @bc.backbones.register_backbone(SMOKE_BACKBONE, family="smoke", preprocessing="none", overwrite=True)
    def smoke_cnn(input_shape=(96, 96, 3), weights=None):
        inputs = keras.Input(input_shape)
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        for i, filters in enumerate((8, 16, 32, 32)):
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
            x = keras.layers.ReLU(name=f"relu{i}")(x)
        return keras.Model(inputs, x, name="smoke_cnn")

    return SMOKE_BACKBONE


def studies(base: Config, smoke: bool) -> dict[str, dict[str, Config]]:
    """The three studies as {study: {row name: Config}}.

    With ``smoke`` every backbone is replaced by a tiny CNN (building and tracing EfficientNetV2S
    alone takes longer than the whole smoke run), and the freezing study freezes the same fractions
    of its layers: the rows keep their names, the numbers mean nothing.
    """

    def backbone(name: str, config: Config) -> Config:
        return config.replace(backbone=SMOKE_BACKBONE if smoke else name)

    if smoke:  # the seed's 120 of EfficientNetV2S's 170 conv layers, scaled to the smoke CNN
        net = bc.backbones.backbone_layers(
            bc.backbones.create(SMOKE_BACKBONE, base.input_shape, weights=None)
        )
        conv = sum(1 for layer in net if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D"))
        base = base.replace(freeze=max(1, round(120 / V2S_CONV * conv)))

    balance = {
        "None": base.replace(augment=None),
        "Oversampling": base.replace(augment=None, balance="oversample"),
        "SMOTE": base.replace(augment=None, balance="smote"),
        "AugMix": base,
    }
    backbones = {
        "EfficientNetV2S": base,
        # The seed's rule freezes 120 conv layers of EfficientNetV2S; the smaller backbones train whole.
        "EfficientNetB0": backbone("efficientnetb0", base.replace(freeze=None)),
        "MobileNetV3Small": backbone("mobilenetv3small", base.replace(freeze=None)),
    }
    layers = {"120 conv layers": 120, "220 layers": 220, "420 layers": 420, "513 layers (all)": 513}
    freezing = {"120 conv layers": base}
    if smoke:
        freezing.update(
            {
                name: base.replace(freeze=None, freeze_layers=max(1, round(n / V2S_LAYERS * len(net))))
                for name, n in list(layers.items())[1:]
            }
        )
    else:
        freezing.update(
            {name: base.replace(freeze=None, freeze_layers=n) for name, n in list(layers.items())[1:]}
        )
    return {"1-balancing": balance, "2-backbones": backbones, "3-freezing": freezing}


def load(path: str | None, smoke: bool):
    if path is None:
        data = bc.datasets.load_sample(per_class=8 if smoke else None)
    elif Path(path).is_dir():
        data = bc.datasets.load_folder(path)
    else:
        data = bc.datasets.load_npz(path)  # one dataset (split later), or MedMNIST's (train, val, test)
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Reproduce the seed report's three studies on any dataset.")
    p.add_argument("--data", default=None, help="class folders or an .npz file (default: the bundled sample)")
    p.add_argument("--studies", nargs="+", default=["1", "2", "3"], choices=["1", "2", "3"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the seed preset's 50)")
    p.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the runs (default runs/reproduce_report; with --smoke a temporary folder)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny, fast run that checks the machinery")
    args, _ = p.parse_known_args(argv)
    if args.out is None:  # a smoke run starts afresh instead of resuming an earlier one
        args.out = (
            Path(tempfile.mkdtemp(prefix="bloodcell-report-"))
            if args.smoke
            else Path("runs/reproduce_report")
        )

    weights = None if str(args.weights).lower() == "none" else args.weights
    changes = {"weights": weights}
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    seeds = args.seeds
    if args.smoke:
        changes.update(
            backbone=register_smoke_backbone(),
            weights=None,
            epochs=1,
            batch_size=16,
            early_stopping_patience=None,
            # Compiling AugMix with XLA takes longer than applying it to 32 images without.
            augment_options={"jit_compile": False},
        )
        seeds = seeds[:1]
        print(
            "SMOKE RUN: every backbone is a tiny CNN with a linear head, and each run is one epoch on 32 images; "
            "it checks the machinery, the numbers mean nothing."
        )
    base = Config.preset("seed", **changes)
    data = load(args.data, args.smoke)
    verbose = 0 if args.smoke else "auto"
    split = (
        {"val": 0.25, "test": 0.25} if args.smoke else {"val": 0.1, "test": 0.1}
    )  # 16 of 64 smoke images each

    for key, configs in studies(base, args.smoke).items():
        if key[0] not in args.studies:
            continue
        if args.smoke:  # the first and the last row of each study: every code path, half the runs
            names = list(configs)
            configs = {name: configs[name] for name in (names[0], names[-1])}
        start = time.perf_counter()
        table = bc.experiments.compare(
            configs, data, seeds=seeds, output_dir=args.out / key, verbose=verbose, **split
        )
        print(
            f"\nStudy {key} ({len(configs)} configs × {len(seeds)} seeds, {time.perf_counter() - start:.0f} s)"
        )
        print(table.to_markdown())


if __name__ == "__main__":
    main()
