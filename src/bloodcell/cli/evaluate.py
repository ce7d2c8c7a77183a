"""``bloodcell evaluate``: a saved model on a labelled dataset → the metrics report."""

from __future__ import annotations

import argparse
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset, model_image_size
from bloodcell.cli._types import positive_int
from bloodcell.errors import ConfigurationError

GALLERY_SIZE = 16  # images in the top-losses gallery unless --gallery-size says otherwise


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="metrics of a saved model on a labelled dataset",
        description="Load a .keras model (Keras safe mode), predict DATA at the model's input size and "
        "print accuracy, macro and weighted precision/recall/F1, ROC-AUC, log-loss, per-class metrics "
        "and the confusion matrix.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file (e.g. a run's model.keras)")
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--json", metavar="PATH", help="also write the report, predictions included, as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also write the confusion matrix as a PNG")
    parser.add_argument(
        "--gallery",
        metavar="DIR",
        help="also write an error analysis into DIR: top_losses.png, confused_pairs.csv, gradcam.png, index.md",
    )
    parser.add_argument(
        "--gallery-size",
        type=positive_int,
        default=None,
        metavar="K",
        help=f"with --gallery: images in the top-losses gallery ({GALLERY_SIZE})",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use at most N images of each class")
    parser.add_argument(
        "--classes",
        choices=("all", "present"),
        default="all",
        help="'present': score on the classes DATA holds only, the prediction restricted to them (another "
        "lab's five white-cell classes); 'all' (default): the model's classes",
    )
    parser.add_argument(
        "--tta", choices=("d4", "flips", "rot90"), help="average predictions over flips/rotations"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import bloodcell as bc
    from bloodcell.models import load_model

    if args.gallery_size is not None and not args.gallery:  # before any loading
        raise ConfigurationError("--gallery-size applies with --gallery DIR only.")
    model = load_model(args.model)
    data = load_dataset(args.data, image_size=model_image_size(model), limit=args.limit)
    if args.classes == "present":
        data = data.drop_absent_classes()
    report = bc.evaluate(model, data, batch_size=args.batch_size, tta=args.tta)
    print(report)
    if args.json:
        report.to_json(args.json, include_predictions=True)
        print(f"report:           {args.json}")
    if args.plot:
        print(f"confusion matrix: {bc.plots.confusion_matrix(report, args.plot)}")
    if args.gallery:
        from bloodcell.analysis import write_gallery

        files = write_gallery(
            model,
            data,
            args.gallery,
            report=report,
            k=args.gallery_size or GALLERY_SIZE,
            batch_size=args.batch_size,
        )
        print(f"error analysis:   {files['index']}")
    return 0
