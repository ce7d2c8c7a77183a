"""``bloodcell adapt``: a trained model adapted to a lab's unlabelled images → a new model file."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bloodcell.cli._inputs import image_files, model_image_size
from bloodcell.cli._types import positive_int, seed
from bloodcell.errors import ConfigurationError


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "adapt",
        help="adapt a model to your lab's images (no labels needed)",
        description="Adapt a trained .keras model to another lab's microscope and stain with the lab's "
        "own images, unlabelled: image files or folders of them (class folders are read as plain "
        "images). 'adabn' re-estimates the BatchNorm statistics on them; 'tent' also tunes the "
        "BatchNorm scales and shifts to make the predictions confident. A model holding a "
        "CellCrop(scale='dataset') learns the lab's cell scale first. The adapted model is written "
        "to --out; the original is left as it is.",
        epilog="Example: bloodcell adapt runs/RUN/seed0/model.keras my_lab_cells/ --out my_lab.keras",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="the lab's image files or folders of them")
    parser.add_argument("--out", required=True, metavar="FILE", help="the adapted model's .keras file")
    parser.add_argument("--method", choices=("adabn", "tent"), default="adabn", help="how to adapt (adabn)")
    parser.add_argument(
        "--classes",
        metavar="C1,C2",
        help="for tent: the classes the lab's images can hold, e.g. "
        "basophil,eosinophil,lymphocyte,monocyte,neutrophil (default: all the model's)",
    )
    parser.add_argument("--steps", type=positive_int, metavar="N", help="for tent: optimisation steps")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.add_argument("--seed", type=seed, default=0, metavar="K", help="seed of the batches drawn (0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bloodcell.adapt import adapt
    from bloodcell.datasets import decode_image
    from bloodcell.models import load_model, save_model

    if args.method != "tent" and (args.steps or args.classes):  # before any loading
        raise ConfigurationError("--steps and --classes apply to --method tent only.")
    files = image_files(args.images)
    model = load_model(args.model)
    size = model_image_size(model)
    images = np.stack([decode_image(f, image_size=size) for f in files])
    options: dict[str, Any] = {"batch_size": args.batch_size, "seed": args.seed}
    if args.method == "tent":
        options.update(steps=args.steps)
        if args.classes:
            options["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    adapted = adapt(model, images, method=args.method, **options)
    save_model(adapted, args.out)
    print(f"Adapted with {args.method} on {len(images)} images; model written: {args.out}")
    return 0
