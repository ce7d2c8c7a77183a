"""``bloodcell robustness``: a saved model's accuracy under the corruption suite, with a heat map."""

from __future__ import annotations

import argparse
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset, model_image_size
from bloodcell.cli._types import integers, names, positive_int, seed


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "robustness",
        help="accuracy of a saved model under stain, optics, artefact and scale corruptions",
        description="Load a .keras model (Keras safe mode), corrupt DATA with each kind of the "
        "library's corruption suite at each severity, and report clean accuracy, accuracy per kind "
        "and severity, the mean corrupted accuracy and its ratio to clean accuracy. With --out, also "
        "write robustness.json/.csv/.md and a heat map robustness.png.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file (e.g. a run's model.keras)")
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument(
        "--kinds",
        type=names,
        metavar="K1,K2",
        help="comma-separated corruption kinds (default: the whole suite; see "
        "bloodcell.robustness.list_corruptions())",
    )
    parser.add_argument(
        "--severities",
        type=integers,
        default=[1, 2, 3, 4, 5],
        metavar="S1,S2",
        help="comma-separated severities 1..5 (all)",
    )
    parser.add_argument(
        "--tta", choices=("d4", "flips", "rot90"), help="average predictions over flips/rotations"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the corruptions' random draws (0)")
    parser.add_argument("--out", metavar="DIR", help="write the report files and the heat map here")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use at most N images of each class")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bloodcell.models import load_model
    from bloodcell.robustness import evaluate_robustness, get_corruption

    for kind in args.kinds or ():  # fail on a misspelt kind before any loading
        get_corruption(kind)
    model = load_model(args.model)
    data = load_dataset(args.data, image_size=model_image_size(model), limit=args.limit)
    report = evaluate_robustness(
        model,
        data,
        kinds=args.kinds,
        severities=args.severities,
        batch_size=args.batch_size,
        seed=args.seed,
        tta=args.tta,
        output_dir=args.out,
    )
    print(report)
    if args.out:
        print(f"report and heat map: {args.out}")
    return 0
