"""``bloodcell predict``: image files or folders → the top-k classes of each, as CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell._validation import check_int
from bloodcell.classes import model_class_names
from bloodcell.cli._inputs import image_files, model_image_size
from bloodcell.cli._types import positive_int

#: Files decoded and predicted at a time (bounds memory on large folders).
CHUNK = 512


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "predict",
        help="classify image files with a saved model",
        description="Classify image files (JPEG, PNG, BMP, TIFF) or every image under the folders given. "
        "Images are decoded, centre-cropped to a square and resized to the model's input size as "
        "bloodcell.datasets.load_folder does. Prints, per file, the top-k classes with their "
        "probabilities.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras model file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of them")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (csv)")
    parser.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="classes per image (3)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per batch (64)"
    )
    parser.set_defaults(run=run)


def predict_files(
    model: Any, files: list[Path], *, top_k: int = 3, batch_size: int = 64
) -> list[dict[str, Any]]:
    """``[{"path": ..., "top": [{"class": ..., "probability": ...}, ...]}, ...]``, best class first."""
    from bloodcell.datasets import decode_image

    size = model_image_size(model)
    names = model_class_names(model)
    check_int(top_k, "--top-k", minimum=1, maximum=len(names))  # at most the model's classes
    rows: list[dict[str, Any]] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = np.stack([decode_image(f, image_size=size) for f in chunk])
        prob = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
        order = np.argsort(-prob, axis=1, kind="stable")[:, :top_k]
        for path, p, best in zip(chunk, prob, order):
            rows.append(
                {
                    "path": os.fspath(path),
                    "top": [{"class": names[k], "probability": float(p[k])} for k in best],
                }
            )
    return rows


def to_csv(rows: list[dict[str, Any]], top_k: int) -> str:
    """``path,class_1,probability_1,...,class_K,probability_K``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", *[f"{c}_{i}" for i in range(1, top_k + 1) for c in ("class", "probability")]])
    for row in rows:
        writer.writerow(
            [row["path"], *[v for t in row["top"] for v in (t["class"], f"{t['probability']:.6f}")]]
        )
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from bloodcell.models import load_model

    files = image_files(args.images)
    model = load_model(args.model)
    rows = predict_files(model, files, top_k=args.top_k, batch_size=args.batch_size)
    text = to_csv(rows, args.top_k) if args.format == "csv" else json.dumps(rows, indent=1) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
