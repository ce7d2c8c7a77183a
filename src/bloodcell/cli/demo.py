"""``bloodcell demo``: the whole method on the bundled real cells, in a few minutes on a CPU.

Clean (outliers), split (stratified 80/10/10, seed 0), train (the "cpu" recipe shortened:
MobileNetV3Small at 96 px, 15 epochs; ImageNet weights when they can be had, otherwise from scratch,
said plainly), evaluate on the test split, and write every artifact under one folder. The CLI guide
gives what it takes and what it reaches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset
from bloodcell.cli._types import positive_int, seed

#: The demo's training length, batch and image size: chosen to learn in a few minutes on two CPU cores.
DEMO_BACKBONE = "mobilenetv3small"
DEMO_EPOCHS = 15
DEMO_BATCH_SIZE = 32
DEMO_IMAGE_SIZE = 96
DEMO_SPLIT = {"val": 0.1, "test": 0.1, "seed": 0}


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="the main job: clean, split, train and evaluate on the bundled real cells",
        description="Run the whole method on the 800 real PBC cells bundled with bloodcell (or DATA): "
        "find and remove outliers, split 80/10/10 (stratified, seed 0), train the 'cpu' recipe "
        "(MobileNetV3Small; ImageNet weights if they can be had, else from scratch), evaluate on the "
        "test split, and write the outlier report and gallery, model, history, curves, report and "
        "confusion matrix under OUT. A few minutes on a 2-core CPU.",
    )
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (runs/demo)")
    parser.add_argument("--data", default="sample", metavar="DATA", help=f"{DATA_HELP} (sample)")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=DEMO_EPOCHS,
        metavar="N",
        help=f"training epochs ({DEMO_EPOCHS})",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=DEMO_IMAGE_SIZE,
        metavar="PX",
        help=f"image side ({DEMO_IMAGE_SIZE})",
    )
    parser.add_argument(
        "--backbone",
        default=DEMO_BACKBONE,
        metavar="NAME",
        help=f"a registered backbone ({DEMO_BACKBONE}; see bloodcell.backbones.list_backbones())",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use at most N images of each class")
    parser.add_argument(
        "--weights", default="auto", metavar="W", help="'auto' (default), 'imagenet', 'none' or a file"
    )
    parser.add_argument("--seed", type=seed, default=0, metavar="K", help="training seed (0)")
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="Keras progress: 0 none, 1 bar, 2 a line per epoch",
    )
    parser.set_defaults(run=run)


def demo_config(
    epochs: int = DEMO_EPOCHS, image_size: int = DEMO_IMAGE_SIZE, backbone: str = DEMO_BACKBONE
) -> Any:
    """The "cpu" recipe, shortened to the ~20 steps per epoch that 640 training images give.

    Weight averaging (EMA, momentum 0.99) is off: it averages over ~100 steps, so on so few steps
    the averaged weights lag near their random start (validation stayed at chance for 10 epochs).
    BatchNorm momentum "auto" is 0.9 from scratch and Keras's own with ImageNet weights.
    """
    from bloodcell.experiments import Config

    return Config.preset(
        "cpu",
        backbone=backbone,
        epochs=epochs,
        batch_size=DEMO_BATCH_SIZE,
        ema=False,
        input_shape=(image_size, image_size, 3),
        batchnorm_momentum="auto",
    )


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/5] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from bloodcell.cli.clean import clean_dataset
    from bloodcell.cli.settings import resolve_weights
    from bloodcell.cli.train import print_result, train_run
    from bloodcell.datasets import split

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # fail before the work, not after
    _step(1, f"Loading {args.data}")
    data = load_dataset(args.data, image_size=args.image_size, limit=args.limit)
    print(data.summary())

    _step(2, "Cleaning: duplicates, image quality, stain profile")
    _, cleaned, outlier_files = clean_dataset(data, out)

    _step(3, "Splitting 80/10/10, stratified, identical images kept together")
    train, val, test = split(cleaned, val=DEMO_SPLIT["val"], test=DEMO_SPLIT["test"], seed=DEMO_SPLIT["seed"])
    print(f"train {len(train)}, validation {len(val)}, test {len(test)} images")

    _step(4, "Training")
    weights = None if str(args.weights).lower() == "none" else args.weights
    config = resolve_weights(demo_config(args.epochs, args.image_size, args.backbone), weights)
    result = train_run(
        config,
        train,
        val,
        test,
        seed=args.seed,
        out=out,
        verbose="auto" if args.verbose is None else args.verbose,
    )

    _step(5, "Evaluating on the test split")
    print_result(result)
    chance = 1 / cleaned.num_classes
    print(
        f"\nTest accuracy {result.report.accuracy:.1%} on {result.report.n} held-out cells "
        f"(chance: {chance:.1%}); macro F1 {result.report.f1_macro:.1%}."
    )
    print(f"Outlier report: {outlier_files['report']}\nOutlier gallery: {outlier_files['gallery']}")
    print(f"Done in {time.perf_counter() - started:.0f} s. Everything is under {out}.")
    return 0
