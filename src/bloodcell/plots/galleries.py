"""Galleries of images: flagged outliers, augmentations, suspect labels."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._validation import check_int, check_seed
from bloodcell.errors import InvalidDataError, InvalidDtypeError
from bloodcell.plots._figure import _pyplot, _save

__all__ = ["augmentation_grid", "label_gallery", "outlier_gallery"]


def outlier_gallery(
    dataset: Any,
    by_reason: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    per_reason: int = 8,
    seed: int | None = 0,
    dpi: int = 100,
) -> Path:
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
        >>> out.name
        'g.png'
    """
    plt = _pyplot()
    rng = np.random.default_rng(check_seed(seed, allow_none=True))
    rows = [(r, np.asarray(idx, np.int64)) for r, idx in by_reason.items() if len(idx)]
    n_rows, n_cols = max(len(rows), 1), check_int(per_reason, "per_reason", minimum=1)
    fig = plt.figure(figsize=(1.45 * n_cols, 1.95 * n_rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(n_rows, 1))
    if not rows:
        subfigs[0].suptitle("no image flagged", fontsize=11)
    for sub, (reason, idx) in zip(subfigs, rows):
        sub.suptitle(f"{reason} ({len(idx)} images)", fontsize=10, fontweight="bold", x=0.01, ha="left")
        axes = np.atleast_1d(sub.subplots(1, n_cols))
        for ax in axes:
            ax.axis("off")
        shown = np.sort(rng.choice(idx, n_cols, replace=False)) if len(idx) > n_cols else idx
        for ax, i in zip(axes, shown):
            ax.imshow(dataset.images[i], interpolation="nearest")
            label = dataset.class_names[int(dataset.labels[i])]
            ax.set_title(f"#{i} {label}", fontsize=7)
    return _save(fig, path, dpi, tight=False)


def _pick_rows(labels: np.ndarray, n_images: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One image per class in class order (as many classes as fit), then random others."""
    picks: list[int] = []
    for k in range(num_classes):
        rows = np.flatnonzero(labels == k)
        if len(rows) and len(picks) < n_images:
            picks.append(int(rng.choice(rows)))
    rest = np.setdiff1d(np.arange(len(labels)), picks)
    if len(picks) < n_images and len(rest):
        picks.extend(rng.choice(rest, size=min(n_images - len(picks), len(rest)), replace=False).tolist())
    return np.asarray(picks, np.int64)


def augmentation_grid(
    dataset: Any,
    augmenter: Any,
    path: str | os.PathLike[str] = "augmentation_grid.png",
    *,
    n_images: int = 8,
    n_augmentations: int = 5,
    seed: int = 0,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write a grid of real images (first column) beside ``n_augmentations`` augmented versions of each.

    One image per class is shown (as many as ``n_images`` allows), labelled with its class, so
    you can check that the augmented cells stay recognisable.

    Args:
        dataset: A :class:`~bloodcell.datasets.BloodCellDataset`.
        augmenter: A bloodcell augmenter, a Keras image layer or a callable on image batches.
        path: Where to write the PNG.
        n_images: Rows (images).
        n_augmentations: Augmented columns beside each original.
        seed: Picks the images and seeds the augmentations.
        title: Figure title (default: the augmenter's repr).
        dpi: Resolution.

    Returns:
        The path of the PNG.

    Example:
        >>> import tempfile, pathlib
        >>> import bloodcell as bc
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "grid.png"
        >>> data = bc.datasets.load_sample(per_class=1)
        >>> out = augmentation_grid(data, bc.augment.RandomGeometric(), target, n_images=2, n_augmentations=2)
        >>> out.suffix
        '.png'
    """
    import tensorflow as tf

    from bloodcell.augment.base import apply_augmenter
    from bloodcell.datasets import BloodCellDataset

    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(
            f"augmentation_grid() takes a BloodCellDataset. Received: dataset={type(dataset).__name__}."
        )
    dataset.check_not_empty("augmentation_grid()")
    n_images = check_int(n_images, "n_images", minimum=1)
    n_augmentations = check_int(n_augmentations, "n_augmentations", minimum=1)
    dpi = check_int(dpi, "dpi", minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    rows = _pick_rows(np.asarray(dataset.labels), n_images, dataset.num_classes, rng)
    originals = dataset.images[rows]
    images = tf.constant(originals, tf.float32)
    labels = tf.one_hot(dataset.labels[rows], dataset.num_classes)
    columns = [originals]
    for j in range(n_augmentations):
        out, _ = apply_augmenter(augmenter, images, labels, tf.constant([seed, j], tf.int64))
        out = np.asarray(out)
        if out.shape != originals.shape:
            raise InvalidDataError(
                f"the augmenter returned shape {out.shape} for images of shape {originals.shape}; "
                "augmentation_grid() shows augmenters that map an image batch to a batch of the same shape."
            )
        columns.append(np.clip(np.rint(out), 0, 255).astype(np.uint8))

    plt = _pyplot()
    n_rows, n_cols = len(rows), n_augmentations + 1
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.25 * n_cols + 0.9, 1.25 * n_rows + 0.5), squeeze=False
    )
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.imshow(columns[j][i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(dataset.class_names[int(dataset.labels[rows[i]])], fontsize=8)
            if i == 0:
                ax.set_title("original" if j == 0 else f"augmented {j}", fontsize=8)
    for i in range(n_rows):  # a gap between originals and augmentations
        axes[i, 0].spines[:].set_linewidth(2.0)
    text = title if title is not None else repr(augmenter)
    fig.suptitle(textwrap.fill(text, width=int(18 * n_cols)), fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi, tight=False)


def label_gallery(
    dataset: Any,
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    columns: int = 8,
    dpi: int = 100,
) -> Path:
    """A PNG of suspect labels: each image titled with its position, given label and suggested class.

    Args:
        dataset: The :class:`~bloodcell.datasets.BloodCellDataset` the rows point into.
        rows: Dicts with ``position``, ``given`` and ``suggested`` (e.g. :meth:`bloodcell.label_check.LabelCheck.rows`).
        path: Where to write the PNG.
        columns: Images per row.
        dpi: Resolution.

    Example:
        >>> import tempfile, bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> rows = [{"position": 0, "given": "basophil", "suggested": "neutrophil"}]
        >>> label_gallery(data, rows, tempfile.mkdtemp() + "/labels.png").name
        'labels.png'
    """
    plt = _pyplot()
    n_cols = max(1, min(check_int(columns, "columns", minimum=1), len(rows) or 1))
    n_rows = max(1, -(-len(rows) // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.9 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not rows:
        axes[0, 0].set_title("no suspect label", fontsize=9)
    for ax, row in zip(axes.ravel(), rows):
        ax.imshow(dataset.images[int(row["position"])], interpolation="nearest")
        ax.set_title(f"#{row['position']} {row['given']}\n→ {row['suggested']}?", fontsize=7)
    return _save(fig, path, dpi)
