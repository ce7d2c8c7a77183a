"""
Outliers: find duplicates, dark and blank images, and clean the set
====================================================================

Real training sets hold images that should not be there: copies of the same file (which leak
between train and test), copies under two different labels, images that are too dark to read, and
empty fields without a cell. :func:`bloodcell.outliers.find_outliers` finds them with four fast
detectors that need no network: exact duplicates, near duplicates (perceptual hash), image quality
and stain profile.

This example plants a few such images among the 800 real cells bundled with bloodcell, each made
from a real cell, and lets the detectors find them: an exact copy, a copy under another label, a
re-encoded near copy, darkened cells and blank fields (a cell's own background colour).

Usage::

    python examples/outliers.py               # the full sample, figures in runs/outliers
    python examples/outliers.py --smoke       # the same (it takes seconds either way)
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import bloodcell as bc

parser = argparse.ArgumentParser(description="Plant a few bad images among real cells and find them.")
parser.add_argument("--out", type=Path, default=None, help="folder for the outputs (default runs/outliers)")
parser.add_argument("--smoke", action="store_true", help="write the outputs to a temporary folder")
args, _ = parser.parse_known_args()
out = args.out or (
    Path(tempfile.mkdtemp(prefix="bloodcell-outliers-")) if args.smoke else Path("runs/outliers")
)
out.mkdir(parents=True, exist_ok=True)


def show(path: Path) -> None:
    """Open a PNG written by :mod:`bloodcell.plots` as a figure (the docs gallery picks it up)."""
    image = plt.imread(path)
    fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    ax.imshow(image)
    ax.axis("off")


# %%
# The real cells, and what the detectors say about them
# -----------------------------------------------------
# The bundled sample is 800 real PBC cells. On clean data the detectors should flag (almost)
# nothing: every flag costs a good training image.

data = bc.datasets.load_sample()
report = bc.outliers.find_outliers(data)
print(report.summary())

# %%
# Plant some bad images, made from real cells
# -------------------------------------------
# Each planted image is derived from a real cell of the sample, so the test is honest: the
# detectors must tell a darkened or blank version of a blood smear from the real thing, not a
# cartoon from a photograph.

rng = np.random.default_rng(0)
picks = rng.choice(len(data), size=8, replace=False)
cells, labels = data.images[picks], data.labels[picks]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG: the same cell, slightly different pixels (a near copy)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def blank_field(image: np.ndarray) -> np.ndarray:
    """An empty slide field: the cell's own background colour (its brightest pixels), no cell."""
    flat = image.reshape(-1, 3)
    background = np.median(flat[flat.sum(axis=1) >= np.quantile(flat.sum(axis=1), 0.8)], axis=0)
    noise = rng.normal(0, 1.5, image.shape)
    return np.clip(background + noise, 0, 255).astype(np.uint8)


planted = {
    "exact copy": (cells[0], labels[0]),
    "copy, other label": (cells[1], (labels[1] + 1) % data.num_classes),
    "near copy (JPEG q=70)": (jpeg(cells[2], 70), labels[2]),
    "dark (x0.25)": ((cells[3] * 0.25).astype(np.uint8), labels[3]),
    "dark (x0.35)": ((cells[4] * 0.35).astype(np.uint8), labels[4]),
    "blank field": (blank_field(cells[5]), labels[5]),
    "blank field 2": (blank_field(cells[6]), labels[6]),
}
extra = bc.datasets.BloodCellDataset(
    np.stack([image for image, _ in planted.values()]),
    np.array([label for _, label in planted.values()]),
    ids=[f"planted/{name}" for name in planted],
)
dirty = data.concat(extra)
planted_rows = np.arange(len(data), len(dirty))

fig, axes = plt.subplots(1, len(planted), figsize=(1.6 * len(planted), 2.0))
for ax, (name, (image, label)) in zip(axes, planted.items()):
    ax.imshow(image)
    ax.set_title(f"{name}\n{data.class_names[label]}", fontsize=7)
    ax.axis("off")
fig.suptitle("planted images (made from real cells)", fontsize=9)

# %%
# Find them
# ---------
# The report says, per image, every reason it was flagged for. Duplicate groups name all their
# members: for a copy under another label both images are flagged (``label_conflict``), since
# neither label can be trusted, so the real original of that copy is flagged too. A darkened cell
# keeps the shapes of its original, so the perceptual hash also calls it a near copy.

report = bc.outliers.find_outliers(dirty)
print(report.summary())
print()
for row, name in zip(planted_rows, planted):
    reasons = ", ".join(report.reasons[row]) or "NOT FLAGGED"
    print(f"{name:<24} -> {reasons}")
real_flagged = np.setdiff1d(report.indices, planted_rows)
print(f"\nreal cells flagged: {len(real_flagged)} of {len(data)}")
for row in real_flagged:
    print(f"  #{row} {dirty.ids[row]}: {', '.join(report.reasons[row])}")

# %%
# Look before you delete
# ----------------------
# :meth:`~bloodcell.outliers.OutlierReport.plot` draws a gallery, one row per reason;
# :meth:`~bloodcell.outliers.OutlierReport.to_csv` writes one row per image with the reasons, the
# scores of every detector and the duplicate groups, for a spreadsheet.

show(report.plot(out / "outliers.png", per_reason=6))
report.to_csv(out / "outliers.csv")

# %%
# Clean
# -----
# :meth:`~bloodcell.outliers.OutlierReport.clean` keeps the first image of each duplicate group
# whose labels agree, drops whole groups whose labels disagree, and drops every image flagged for
# any other reason. Then split: :func:`~bloodcell.datasets.split` would in any case keep identical
# images in the same part.

clean = report.clean(dirty)
print(f"{len(dirty)} images -> {len(clean)} after cleaning")
train, val, test = bc.datasets.split(clean, val=0.1, test=0.1, seed=0)
print(f"train {len(train)}, val {len(val)}, test {len(test)}")
print(f"gallery and CSV in {out}")
