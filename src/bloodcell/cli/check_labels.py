"""``bloodcell check-labels``: out-of-fold predictions, then the suspect labels ranked, with a gallery."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset
from bloodcell.cli._types import non_negative_int, positive_int
from bloodcell.datasets.source import require_source

SUSPECTS_CSV, GALLERY_PNG, PROBABILITIES_NPZ = "suspect_labels.csv", "suspect_labels.png", "out_of_fold.npz"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "check-labels",
        help="find images whose label is probably wrong",
        description="Train one model per fold on the other folds (bloodcell.label_check), predict the "
        "held-out images, and rank the labels the out-of-fold models disagree with (confident "
        f"learning). Writes, in the output folder: {SUSPECTS_CSV} (most suspect first), {GALLERY_PNG} "
        f"and {PROBABILITIES_NPZ}; the fold runs go to OUT/folds, so an interrupted call resumes.",
    )
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--recipe", default="cpu", help="recipe of each fold's model (cpu)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="override its epochs")
    parser.add_argument("--folds", type=positive_int, default=5, metavar="K", help="folds and models (5)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="K", help="seed of folds and models"
    )
    parser.add_argument(
        "--image-size", type=positive_int, default=None, metavar="PX", help="resize the images to PX×PX first"
    )
    parser.add_argument(
        "--top", type=positive_int, default=24, metavar="N", help="images in the gallery (24)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from bloodcell._io import atomic_path
    from bloodcell.experiments import Config
    from bloodcell.label_check import check_labels

    require_source(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data, image_size=args.image_size)
    config = Config.preset(args.recipe, input_shape=data.image_shape)
    if args.epochs is not None:
        config = config.replace(epochs=args.epochs)
    print(f"Checking {len(data)} labels with {args.folds} {args.recipe} models...", flush=True)
    check = check_labels(data, config=config, folds=args.folds, seed=args.seed, directory=out / "folds")
    with atomic_path(out / PROBABILITIES_NPZ) as tmp:
        np.savez(
            tmp,
            probabilities=check.probabilities,
            labels=data.labels,
            class_names=np.array(data.class_names),
        )
    csv_path = check.to_csv(data, out / SUSPECTS_CSV)
    gallery = check.gallery(data, out / GALLERY_PNG, top=args.top)
    print(f"{len(check.ranked)} of {len(data)} labels are suspect.")
    for row in check.rows(data, 5):
        print(
            f"  #{row['position']}: labelled {row['given']}, looks like {row['suggested']} ({row['score']:+.2f})"
        )
    print(
        f"{'suspects:':<16}{csv_path}\n{'gallery:':<16}{gallery}\n{'probabilities:':<16}{out / PROBABILITIES_NPZ}"
    )
    return 0
