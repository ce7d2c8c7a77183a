"""``bloodcell reject``: fit the rejector ``bloodcell predict --reject`` reads, on labelled validation cells."""

from __future__ import annotations

import argparse
from typing import Any

from bloodcell._validation import check_number
from bloodcell.cli._inputs import DATA_HELP, load_dataset, model_image_size
from bloodcell.cli._types import positive_int
from bloodcell.errors import ConfigurationError


def coverage(text: str) -> float:
    """A share of cells to accept, in (0, 1]."""
    try:
        return float(check_number(float(text), "coverage", low=0.0, high=1.0, low_open=True))  # type: ignore[arg-type]
    except (ValueError, ConfigurationError):
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}") from None


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "reject",
        help="fit a rejector: which predictions to leave to a person",
        description="Choose the confidence threshold that accepts a share (--coverage) of the cells of "
        "DATA (validation cells the model was not trained on), fit the image checks (blank, dark, "
        "overexposed, blurry, grayscale, not a blood smear) on real cells, and write it all as JSON "
        "for 'bloodcell predict --reject FILE'.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--output", metavar="FILE", required=True, help="the rejector JSON file to write")
    parser.add_argument(
        "--coverage", type=coverage, default=0.95, metavar="C", help="share of DATA to accept (0.95)"
    )
    parser.add_argument(
        "--reference",
        metavar="DATA",
        help="real cells to fit the image checks on, e.g. the training set (default: DATA)",
    )
    parser.add_argument(
        "--tta", choices=("d4", "flips", "rot90"), help="confidences averaged over flips/rotations"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use at most N images of each class")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import bloodcell as bc

    model = bc.models.load_model(args.model)
    size = model_image_size(model)
    data = load_dataset(args.data, image_size=size, limit=args.limit)
    reference = None if args.reference is None else load_dataset(args.reference, image_size=size)
    rejector = bc.rejection.fit_rejector(
        model, data, coverage=args.coverage, tta=args.tta, reference=reference, batch_size=args.batch_size
    )
    out = bc.predict(model, data, reject=rejector, tta=args.tta, batch_size=args.batch_size)
    accepted = out.accepted
    correct = out.label_indices == data.labels
    print(f"threshold:         {rejector.threshold:.4f} (confidence)")
    print(f"accepted:          {accepted.mean():.1%} of {len(data)} cells (target {args.coverage:.1%})")
    if accepted.any():
        print(f"accuracy accepted: {correct[accepted].mean():.1%} (all cells: {correct.mean():.1%})")
    print(f"counts:            {out.counts()}")
    rejector.to_json(args.output)
    print(f"rejector:          {args.output}")
    return 0
