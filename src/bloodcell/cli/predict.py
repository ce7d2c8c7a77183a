"""``bloodcell predict``: image files or folders → the top-k classes of each, as CSV or JSON.

With ``--reject``, each row also gets a status (accepted / uncertain / not a cell) and its reason
(see :mod:`bloodcell.rejection`).
"""

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
    parser.add_argument(
        "--reject",
        metavar="FILE_OR_THRESHOLD",
        help="add status and reason columns: a rejector JSON file written by 'bloodcell reject' (image "
        "checks, its threshold and TTA), or a bare confidence threshold in [0, 1]",
    )
    parser.set_defaults(run=run)


def predict_files(
    model: Any, files: list[Path], *, top_k: int = 3, batch_size: int = 64, reject: Any = None
) -> list[dict[str, Any]]:
    """``[{"path": ..., "top": [{"class": ..., "probability": ...}, ...]}, ...]``, best class first.

    With ``reject`` (anything :func:`bloodcell.predict` takes), each row also has ``"status"``
    and ``"reason"``; duplicates are looked for across all ``files``.
    """
    from bloodcell.datasets import decode_image
    from bloodcell.prediction import predict
    from bloodcell.rejection import as_rejector

    rejector = as_rejector(reject)
    seen: set[bytes] = set()
    size = model_image_size(model)
    names = model_class_names(model)
    check_int(top_k, "--top-k", minimum=1, maximum=len(names))  # at most the model's classes
    rows: list[dict[str, Any]] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = np.stack([decode_image(f, image_size=size) for f in chunk])
        out = predict(
            model,
            images,
            reject=rejector,
            tta=None if rejector is None else rejector.tta,
            batch_size=batch_size,
            seen=seen,
        )
        prob = np.asarray(out.probabilities, dtype=np.float64)
        order = np.argsort(-prob, axis=1, kind="stable")[:, :top_k]
        for i, (path, p, best) in enumerate(zip(chunk, prob, order)):
            row: dict[str, Any] = {
                "path": os.fspath(path),
                "top": [{"class": names[k], "probability": float(p[k])} for k in best],
            }
            if rejector is not None:
                row.update(status=out.status[i], reason=out.reason[i])
            rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]], top_k: int) -> str:
    """``path,class_1,probability_1,...,class_K,probability_K`` (then ``status,reason`` with a rejector)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rejecting = bool(rows) and "status" in rows[0]
    extra = ["status", "reason"] if rejecting else []
    writer.writerow(
        ["path", *[f"{c}_{i}" for i in range(1, top_k + 1) for c in ("class", "probability")], *extra]
    )
    for row in rows:
        status = [row["status"], row["reason"] or ""] if rejecting else []
        writer.writerow(
            [row["path"], *[v for t in row["top"] for v in (t["class"], f"{t['probability']:.6f}")], *status]
        )
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from bloodcell.models import load_model
    from bloodcell.rejection import STATUSES, as_rejector

    files = image_files(args.images)
    rejector = as_rejector(_threshold_or_path(args.reject))
    model = load_model(args.model)
    rows = predict_files(model, files, top_k=args.top_k, batch_size=args.batch_size, reject=rejector)
    text = to_csv(rows, args.top_k) if args.format == "csv" else json.dumps(rows, indent=1) + "\n"
    if rejector is not None:
        counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
        print(", ".join(f"{n} {status}" for status, n in counts.items()), file=sys.stderr)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _threshold_or_path(text: str | None) -> float | str | None:
    """``--reject``: a number is a bare confidence threshold, anything else a rejector file."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text
