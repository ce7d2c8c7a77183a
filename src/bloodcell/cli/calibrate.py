"""``bloodcell calibrate``: a trained model and labelled validation cells → a calibrated model file."""

from __future__ import annotations

import argparse
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset, model_image_size
from bloodcell.cli._types import positive_int
from bloodcell.datasets.source import require_source


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="make a model's probabilities mean what they say (temperature scaling)",
        description="Fit one temperature on labelled validation cells the model did not train on "
        "(bloodcell.calibrate) and write the calibrated model to --out: the same labels, "
        "probabilities that match how often it is right. The temperature is saved in the model "
        "and shown by 'bloodcell info'; the original file is left as it is.",
        epilog="Example: bloodcell calibrate runs/RUN/seed0/model.keras my_val_cells/ --out calibrated.keras",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--out", required=True, metavar="FILE", help="the calibrated model's .keras file")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use at most N images per class")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bloodcell.calibration import calibrate, temperature_of
    from bloodcell.models import load_model, model_card, save_model

    require_source(args.data)  # a mistyped path fails before the model is loaded
    model = load_model(args.model)
    data = load_dataset(args.data, image_size=model_image_size(model), limit=args.limit)
    calibrated = calibrate(model, data, batch_size=args.batch_size)
    save_model(calibrated, args.out)
    fit = model_card(calibrated).get("calibration", {})
    before, after = fit.get("ece_before"), fit.get("ece_after")
    summary = (
        f" (ECE on these cells {before:.2%} → {after:.2%})"
        if before is not None and after is not None
        else ""
    )
    print(
        f"Temperature {temperature_of(calibrated):.3f} fitted on {len(data)} cells{summary}; model written: {args.out}"
    )
    return 0
