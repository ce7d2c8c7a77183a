"""``bloodcell export``: a saved model → Keras, SavedModel, TFLite or a submission package."""

from __future__ import annotations

import argparse
from typing import Any

FORMATS = ("keras", "savedmodel", "tflite", "submission")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "export",
        help="convert a saved model for deployment",
        description="Write MODEL in another format with bloodcell.export.export: 'keras' (a .keras "
        "file), 'savedmodel' (a TensorFlow SavedModel folder), 'tflite' (a TensorFlow Lite file) or "
        "'submission' (a self-contained prediction package).",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the output format")
    parser.add_argument("--out", required=True, metavar="PATH", help="the file or folder to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bloodcell.export import export
    from bloodcell.models import load_model

    written = export(load_model(args.model), args.out, format=args.format)
    print(f"{args.format} export written: {written}")
    return 0
