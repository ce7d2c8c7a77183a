"""``bloodcell few-shot``: a trained model and a few labelled cells of a lab → a fine-tuned model file."""

from __future__ import annotations

import argparse
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset, model_image_size
from bloodcell.cli._types import positive_int, seed
from bloodcell.datasets.source import require_source


def add_parser(sub: Any) -> None:
    from bloodcell.adapt.finetune import TRAINABLE

    parser = sub.add_parser(
        "few-shot",
        help="fine-tune a model on a few labelled cells of your lab",
        description="Fine-tune a trained .keras model on a few labelled cells of your lab (say 10 "
        "per class: a folder of class folders named as the model's classes; a subset of them is "
        "fine), with flips and rotations and a low learning rate (bloodcell.adapt.few_shot). "
        "--replay mixes in as many images of each of the model's own training classes, so that it "
        "keeps what it knew. The fine-tuned model is written to --out; the original is left as it is.",
        epilog="Example: bloodcell few-shot runs/RUN/seed0/model.keras my_lab_labelled/ --replay "
        "pbc96/train --out my_lab.keras",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("data", metavar="DATA", help=f"the lab's labelled cells: {DATA_HELP}")
    parser.add_argument("--out", required=True, metavar="FILE", help="the fine-tuned model's .keras file")
    parser.add_argument(
        "--replay", metavar="DATA", help=f"images of the model's training classes to replay: {DATA_HELP}"
    )
    parser.add_argument(
        "--train", choices=TRAINABLE, default="all", help="which layers learn (all; or batchnorm_head, head)"
    )
    parser.add_argument("--epochs", type=positive_int, default=30, metavar="N", help="passes (30)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, metavar="N", help="images per step (32)"
    )
    parser.add_argument(
        "--seed", type=seed, default=0, metavar="K", help="seed of the replay draw and order (0)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bloodcell.adapt import few_shot
    from bloodcell.models import load_model, save_model

    for source in (args.data, args.replay):  # a mistyped path fails before the model is loaded
        if source is not None:
            require_source(source)
    model = load_model(args.model)
    size = model_image_size(model)
    support = load_dataset(args.data, image_size=size).drop_absent_classes()
    replay = None if args.replay is None else load_dataset(args.replay, image_size=size)
    tuned = few_shot(
        model, support, source=replay, train=args.train, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed,
    )  # fmt: skip
    save_model(tuned, args.out)
    counts = ", ".join(f"{name} {n}" for name, n in support.class_counts().items())
    print(f"Fine-tuned on {len(support)} cells ({counts}); model written: {args.out}")
    return 0
