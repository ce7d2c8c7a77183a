"""Figures as PNG files: confusion matrices, training curves, augmentation grids, outlier galleries.

Every function writes a PNG (atomically) and returns its path; matplotlib runs on the non-interactive
Agg backend, so plots work on servers without a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from bloodcell._io import atomic_path

__all__: list[str] = ["outlier_gallery"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def outlier_gallery(
    dataset: Any,
    by_reason: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    per_reason: int = 8,
    seed: int | None = 0,
    dpi: int = 100,
) -> str:
    """A PNG gallery of flagged images: one row per reason, up to ``per_reason`` images each.

    Each row is titled with the reason and how many images carry it; each image with its index
    in the dataset and its label. When a reason holds more images than fit, a random sample
    (``seed``) is shown, in index order.

    Args:
        dataset: A :class:`~bloodcell.datasets.BloodCellDataset`.
        by_reason: ``{reason: indices}``, e.g. :meth:`OutlierReport.by_reason`.
        path: Where to write the PNG.
        per_reason: Images shown per row.
        seed: Seed of the sample when a reason holds more than ``per_reason`` images.
        dpi: Resolution.

    Returns:
        The path written.

    Example:
        >>> import tempfile, bloodcell as bc
        >>> data = bc.datasets.load_sample()
        >>> out = outlier_gallery(data, {"example": [0, 1, 2]}, tempfile.mkdtemp() + "/g.png")
        >>> out.endswith("g.png")
        True
    """
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    rows = [(r, np.asarray(idx, np.int64)) for r, idx in by_reason.items() if len(idx)]
    n_rows, n_cols = max(len(rows), 1), max(int(per_reason), 1)
    fig = plt.figure(figsize=(1.45 * n_cols, 1.95 * n_rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(n_rows, 1))
    if not rows:
        subfigs[0].suptitle("no image flagged", fontsize=11)
    for sub, (reason, idx) in zip(subfigs, rows, strict=False):
        sub.suptitle(f"{reason} ({len(idx)} images)", fontsize=10, fontweight="bold", x=0.01, ha="left")
        axes = np.atleast_1d(sub.subplots(1, n_cols))
        for ax in axes:
            ax.axis("off")
        shown = np.sort(rng.choice(idx, n_cols, replace=False)) if len(idx) > n_cols else idx
        for ax, i in zip(axes, shown, strict=False):
            ax.imshow(dataset.images[i], interpolation="nearest")
            label = dataset.class_names[int(dataset.labels[i])]
            ax.set_title(f"#{i} {label}", fontsize=7)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return os.fspath(path)
