"""``bloodcell clean``: find outliers, write the report, the gallery and the cleaned dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bloodcell.cli._inputs import DATA_HELP, load_dataset
from bloodcell.cli._types import positive_int
from bloodcell.datasets import BloodCellDataset
from bloodcell.datasets.source import require_source

REPORT_CSV, GALLERY_PNG, CLEAN_NPZ = "outliers.csv", "outliers.png", "clean.npz"
USES_TENSORFLOW = False  # the outlier detectors of this command run on NumPy and scikit-learn


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "clean",
        help="find duplicates and bad images; write the cleaned dataset",
        description="Run bloodcell.outliers.find_outliers (exact and near duplicates, image quality, "
        f"stain profile) and write, in the output folder: {REPORT_CSV} (one row per image, with "
        f"reasons and scores), {GALLERY_PNG} (the flagged images by reason) and {CLEAN_NPZ} (the "
        "dataset without them, loadable with bloodcell.datasets.load_npz).",
    )
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument(
        "--image-size", type=positive_int, default=None, metavar="PX", help="resize the images to PX×PX first"
    )
    parser.add_argument(
        "--per-reason",
        type=positive_int,
        default=8,
        metavar="N",
        help="images shown per reason in the gallery (8)",
    )
    parser.set_defaults(run=run)


def clean_dataset(
    data: BloodCellDataset, out: str | Path, *, per_reason: int = 8, verbose: bool = True
) -> tuple[Any, BloodCellDataset, dict[str, Path]]:
    """Find outliers in ``data``, write the CSV report and gallery into ``out``, return the cleaned data.

    Returns:
        ``(report, cleaned dataset, {"report": csv path, "gallery": png path})``.
    """
    from bloodcell.outliers import find_outliers

    out = Path(out)
    print(f"Looking for outliers in {len(data)} images...", flush=True)
    report = find_outliers(data, verbose=verbose)
    cleaned = report.clean(data)
    paths = {
        "report": Path(report.to_csv(out / REPORT_CSV)),
        "gallery": report.plot(out / GALLERY_PNG, per_reason=per_reason),
    }
    print(report.summary())
    print(f"Kept {len(cleaned)} of {len(data)} images ({len(data) - len(cleaned)} removed).")
    return report, cleaned, paths


def run(args: argparse.Namespace) -> int:
    require_source(args.data)  # a mistyped path fails before the output folder is made
    Path(args.out).mkdir(parents=True, exist_ok=True)  # fail before the work, not after
    data = load_dataset(args.data, image_size=args.image_size)
    _, cleaned, paths = clean_dataset(data, args.out, per_reason=args.per_reason)
    paths["clean"] = Path(cleaned.save_npz(Path(args.out) / CLEAN_NPZ))
    for what, path in (("outlier report", "report"), ("gallery", "gallery"), ("cleaned data", "clean")):
        print(f"{what + ':':<16}{paths[path]}")
    return 0
