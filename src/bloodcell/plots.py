"""Figures as PNG files: confusion matrices, training curves, augmentation grids, outlier galleries.

Every function writes a PNG (atomically) and returns its path; matplotlib runs on the non-interactive
Agg backend, so plots work on servers without a display.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_path
from bloodcell._validation import check_choice, check_int, check_seed
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, InvalidDataError, InvalidDtypeError

__all__: list[str] = ["augmentation_grid", "label_gallery", "outlier_gallery"]

# ---------------------------------------------------------------------------------------------
# Evaluation and training figures
# ---------------------------------------------------------------------------------------------
__all__ += ["confusion_matrix", "training_curves", "per_class_f1"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; keep a backend the user chose
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str], dpi: int, *, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically, close it, and return the path."""
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def confusion_matrix(
    report: Any,
    path: str | os.PathLike[str],
    *,
    normalize: bool = True,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "Blues",
    dpi: int = 150,
) -> Path:
    """Confusion-matrix heatmap: rows are true classes, columns predicted classes.

    Each cell shows the row-normalised share (the per-class recall on the diagonal) and, below it,
    the count; colours follow the shares so that small classes are as visible as large ones.

    Args:
        report: A :class:`bloodcell.metrics.Report`, or a square array of counts.
        path: The PNG file to write.
        normalize: Colour and label by row share (True) or by count (False).
        class_names: Axis labels; default: the report's class names (or 0..C-1 for an array).
        title: Figure title; default: accuracy and macro F1 when a report is given.
        cmap: A matplotlib colour map name.
        dpi: Resolution of the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import numpy as np, tempfile, os
        >>> out = confusion_matrix(np.array([[5, 1], [0, 6]]), os.path.join(tempfile.mkdtemp(), "cm.png"))
        >>> out.suffix
        '.png'
    """
    import numpy as np

    if hasattr(report, "confusion_matrix") and hasattr(report, "class_names"):
        counts = np.asarray(report.confusion_matrix)
        names = list(class_names or report.class_names)
        if title is None:
            title = f"accuracy {report.accuracy:.2%} · macro F1 {report.f1_macro:.2%} · n = {report.n}"
    else:
        counts = np.asarray(report)
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise InvalidDataError(
            f"confusion_matrix() needs a square C×C matrix with C class names; got shape {counts.shape} "
            f"and {len(names)} names."
        )
    totals = counts.sum(axis=1, keepdims=True).astype(float)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    values = shares if normalize else counts.astype(float)

    plt = _pyplot()
    size = 1.0 + 0.75 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    fig.colorbar(
        image, ax=ax, fraction=0.046, pad=0.04, label="share of true class" if normalize else "count"
    )
    threshold = (1.0 if normalize else max(values.max(), 1.0)) * 0.55
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j] == 0 and i != j:
                continue  # empty off-diagonal cells stay blank: errors stand out
            colour = "white" if values[i, j] > threshold else "black"
            text = f"{shares[i, j]:.0%}\n{int(counts[i, j])}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi)


__all__ += ["reliability_diagram"]


def reliability_diagram(
    report_or_probs: Any,
    path: str | os.PathLike[str],
    *,
    y_true: Any = None,
    bins: int = 15,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Reliability diagram: accuracy against confidence in equal-width bins, above a histogram of confidences.

    A calibrated model's bars reach the diagonal: of the cells it labels with confidence 0.9, nine
    in ten are right. Bars below the diagonal mean over-confidence (the usual case for a network
    before :func:`bloodcell.calibrate`); the red part of each bar is the gap. The lower panel shows
    how many predictions fall in each bin, so a wide gap in an almost empty bin is read as such.

    Args:
        report_or_probs: A :class:`bloodcell.metrics.Report` holding its predictions (from
            :func:`bloodcell.evaluate`), or predicted probabilities (N, C) with ``y_true``.
        path: The PNG file to write.
        y_true: Integer class indices (N,), for probabilities.
        bins: Number of equal-width confidence bins (15, as the ECE of the report).
        title: Figure title; default: the ECE and the number of images.
        dpi: Resolution of the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import numpy as np, tempfile, os
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> reliability_diagram(probs, os.path.join(tempfile.mkdtemp(), "rel.png"), y_true=[0, 1, 1]).suffix
        '.png'
    """
    from bloodcell.calibration.scores import expected_calibration_error, reliability_bins

    if hasattr(report_or_probs, "y_prob") and hasattr(report_or_probs, "y_true"):
        if report_or_probs.y_prob is None or report_or_probs.y_true is None:
            raise InvalidDataError(
                "reliability_diagram() needs the report's predictions; this report was loaded without "
                "them: save reports with to_json(include_predictions=True)."
            )
        if y_true is not None:
            raise ConfigurationError("Give y_true only with probabilities; a report holds its own labels.")
        labels, probs = report_or_probs.y_true, report_or_probs.y_prob
    else:
        if y_true is None:
            raise ConfigurationError(
                "reliability_diagram() takes a Report, or probabilities (N, C) with y_true=(N,) labels."
            )
        labels, probs = np.asarray(y_true), np.asarray(report_or_probs, dtype=np.float64)
    table = reliability_bins(labels, probs, bins)
    ece = expected_calibration_error(labels, probs, bins)
    centres = (table.edges[:-1] + table.edges[1:]) / 2
    width = table.edges[1] - table.edges[0]
    filled = table.count > 0

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.0, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
    top.bar(
        centres[filled],
        table.accuracy[filled],
        width=width,
        color="#4c72b0",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    gap_low = np.minimum(table.accuracy[filled], table.confidence[filled])
    gap = np.abs(table.accuracy[filled] - table.confidence[filled])
    top.bar(
        centres[filled],
        gap,
        bottom=gap_low,
        width=width,
        color="#dd8452",
        alpha=0.6,
        edgecolor="#c44e52",
        linewidth=0.5,
        label="gap to mean confidence",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, table.count, width=width, color="grey", edgecolor="black", linewidth=0.5)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    top.set_title(
        title if title is not None else f"ECE {ece:.2%} ({bins} bins) · n = {len(labels)}", fontsize=10
    )
    return _save(fig, path, dpi)


def _history_dict(history: Any) -> dict[str, list[float]]:
    """Accept a Keras History, a dict of lists, or a CSV log / JSON history file."""
    import csv

    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        if not path.exists():
            raise DataFileNotFoundError(f"No training log at {path}.")
        if path.suffix == ".json":
            history = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            history = {
                k: [float(r[k]) for r in rows if r.get(k) not in (None, "")]
                for k in (rows[0] if rows else {})
            }
    if not isinstance(history, Mapping) or not history:
        raise InvalidDataError(
            "training_curves() needs a Keras History, a dict of per-epoch lists, or a CSV/JSON log; got "
            f"{type(history).__name__}."
        )
    return {str(k): [float(v) for v in vals] for k, vals in history.items() if isinstance(vals, Sequence)}


def training_curves(
    history: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Loss, accuracy and learning rate per epoch, training and validation side by side.

    Args:
        history: A Keras ``History`` (from ``fit``/``Trainer.fit``), a dict of per-epoch lists, or
            the path of a CSV log (``log.csv`` written by the Trainer) or a JSON history.
        path: The PNG file to write.
        title: Figure title.
        dpi: Resolution of the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. The best validation accuracy is marked.

    Example:
        >>> import tempfile, os
        >>> h = {"loss": [1.2, 0.8], "val_loss": [1.3, 1.0], "accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}
        >>> training_curves(h, os.path.join(tempfile.mkdtemp(), "curves.png")).name
        'curves.png'
    """
    hist = _history_dict(history)
    epochs_key = "epoch" if "epoch" in hist else None
    n = max(len(v) for k, v in hist.items() if k != epochs_key)
    epochs = [int(e) + 1 for e in hist["epoch"]] if epochs_key else list(range(1, n + 1))
    lr_key = next((k for k in ("learning_rate", "lr") if k in hist), None)
    panels = [("loss", "loss"), ("accuracy", "accuracy")] + ([(lr_key, "learning rate")] if lr_key else [])

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        if key == lr_key:
            ax.plot(epochs[: len(hist[key])], hist[key], color="tab:green", marker=".")
            if min(hist[key]) > 0:
                ax.set_yscale("log")
        else:
            for prefix, style in (("", "-"), ("val_", "--")):
                if prefix + key in hist:
                    series = hist[prefix + key]
                    ax.plot(
                        epochs[: len(series)],
                        series,
                        style,
                        marker=".",
                        label="validation" if prefix else "training",
                    )
            if key == "accuracy" and "val_accuracy" in hist and hist["val_accuracy"]:
                val = hist["val_accuracy"]
                best = max(range(len(val)), key=val.__getitem__)
                ax.scatter(
                    [epochs[best]],
                    [val[best]],
                    s=80,
                    facecolors="none",
                    edgecolors="red",
                    zorder=3,
                    label=f"best val {val[best]:.2%} (epoch {epochs[best]})",
                )
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi)


def per_class_f1(
    reports: Any,
    path: str | os.PathLike[str],
    *,
    metric: str = "f1",
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Per-class F1 (or precision/recall/ROC-AUC) as grouped horizontal bars, one colour per model.

    Args:
        reports: A :class:`bloodcell.metrics.Report`, or ``{name: Report}`` to compare models.
        path: The PNG file to write.
        metric: ``"f1"``, ``"precision"``, ``"recall"`` or ``"roc_auc"``.
        title: Figure title.
        dpi: Resolution of the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import numpy as np

    check_choice(metric, "metric", ("f1", "precision", "recall", "roc_auc"))
    group = dict(reports) if isinstance(reports, Mapping) else {"": reports}
    for name, r in group.items():
        if not hasattr(r, "per_class"):
            raise InvalidDtypeError(
                f"per_class_f1() takes Reports; {name or 'the argument'} is a {type(r).__name__}."
            )
    names = list(next(iter(group.values())).class_names)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(names) * max(1, len(group) ** 0.5) + 1.2))
    height = 0.8 / len(group)
    ys = np.arange(len(names))
    for i, (label, r) in enumerate(group.items()):
        values = [r.per_class[c][metric] for c in names]
        bars = ax.barh(ys + (i - (len(group) - 1) / 2) * height, values, height=height, label=label or None)
        for bar, v in zip(bars, values):
            ax.text(
                min(v, 1.0) + 0.005, bar.get_y() + bar.get_height() / 2, f"{v:.1%}", va="center", fontsize=7
            )
    ax.set_yticks(ys, names)
    ax.invert_yaxis()  # first class at the top, as in the confusion matrix
    ax.set_xlim(0, 1.09)
    ax.set_xlabel({"f1": "F1", "roc_auc": "ROC-AUC"}.get(metric, metric))
    ax.grid(axis="x", alpha=0.3)
    if len(group) > 1:
        ax.legend(
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08 - 0.6 / len(names)),
            ncol=min(len(group), 4),
            frameon=False,
        )
    ax.set_title(title or f"per-class {ax.get_xlabel()}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


__all__ += ["coverage_accuracy"]


def coverage_accuracy(
    reports: Any,
    path: str | os.PathLike[str],
    *,
    mark: float | None = 0.95,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Accuracy of the accepted cells against coverage (the share accepted), one line per model.

    Reading right to left: how much accuracy is gained by leaving the least confident cells to
    the haematologist (see :mod:`bloodcell.rejection`).

    Args:
        reports: A :class:`bloodcell.metrics.Report`, or ``{name: Report}`` to compare models.
        path: The PNG file to write.
        mark: A coverage to mark with a vertical line and the accuracy there (None: no mark).
        title: Figure title.
        dpi: Resolution of the PNG.

    Example:
        >>> import tempfile, numpy as np, bloodcell as bc
        >>> report = bc.metrics.Report.from_predictions([0, 1, 1], np.eye(2)[[0, 1, 0]] * 0.8 + 0.1,
        ...                                             class_names=("a", "b"))
        >>> coverage_accuracy(report, tempfile.mkdtemp() + "/c.png").name
        'c.png'
    """
    group = dict(reports) if isinstance(reports, Mapping) else {"": reports}
    for name, r in group.items():
        if getattr(r, "coverage_accuracy", None) is None:
            raise InvalidDtypeError(
                f"coverage_accuracy() takes Reports with a coverage-accuracy curve; {name or 'the argument'} "
                f"is a {type(r).__name__} without one (reports saved by older versions lack it: evaluate again)."
            )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, r in group.items():
        curve = r.coverage_accuracy
        line = ax.plot(curve["coverage"], curve["accuracy"], label=label or None)[0]
        if mark is not None:
            k = int(np.argmin(np.abs(np.asarray(curve["coverage"]) - mark)))
            ax.annotate(
                f"{curve['accuracy'][k]:.1%}",
                (curve["coverage"][k], curve["accuracy"][k]),
                textcoords="offset points",
                xytext=(-4, 6),
                ha="right",
                fontsize=8,
                color=line.get_color(),
            )
    if mark is not None:
        ax.axvline(mark, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1.01)
    ax.set_xlabel("coverage (share of cells accepted)")
    ax.set_ylabel("accuracy of accepted cells")
    ax.grid(alpha=0.3)
    if len(group) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title or "coverage vs accuracy", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


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


# ---------------------------------------------------------------------------------------------
# Error analysis: top losses and Grad-CAM (computed by bloodcell.analysis)
# ---------------------------------------------------------------------------------------------
__all__ += ["grad_cam_overlays", "top_losses_gallery"]


def top_losses_gallery(
    top: Any,
    path: str | os.PathLike[str],
    *,
    columns: int = 4,
    dpi: int = 120,
) -> Path:
    """A PNG grid of a model's worst images, highest loss first.

    Each image is titled with its true class, the predicted class with its probability, the
    probability of the true class, the loss and the image's row in the dataset.

    Args:
        top: A :class:`bloodcell.analysis.TopLosses` (from :func:`bloodcell.analysis.top_losses`).
        path: The PNG file to write.
        columns: Images per row.
        dpi: Resolution.

    Returns:
        The path written.

    Example:
        >>> import tempfile, bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=1)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> top_losses_gallery(bc.analysis.top_losses(model, data, k=4), tempfile.mkdtemp() + "/t.png").name
        't.png'
    """
    from bloodcell._validation import check_int

    if not hasattr(top, "losses") or not hasattr(top, "images"):
        raise InvalidDtypeError(
            f"top_losses_gallery() takes a bloodcell.analysis.TopLosses. Received: top={type(top).__name__}."
        )
    columns = check_int(columns, "columns", minimum=1)
    plt = _pyplot()
    n = len(top.losses)
    n_cols = max(1, min(columns, n))
    n_rows = max(1, -(-n // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.3 * n_cols, 2.75 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    names = top.class_names
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(top.images[i], interpolation="nearest")
        ax.set_title(
            f"true: {names[int(top.y_true[i])]}\n"
            f"pred: {names[int(top.y_pred[i])]} ({top.prob_pred[i]:.0%})\n"
            f"p(true) {top.prob_true[i]:.1%} · loss {top.losses[i]:.2f} · #{int(top.indices[i])}",
            fontsize=7,
            color="black" if top.y_true[i] == top.y_pred[i] else "firebrick",
        )
    if n == 0:
        axes.flat[0].set_title("no image", fontsize=9)
    fig.suptitle("highest-loss images (loss = −log p(true class))", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / (2.75 * n_rows)))
    return _save(fig, path, dpi)


def grad_cam_overlays(
    model: Any,
    images: Any,
    path: str | os.PathLike[str],
    *,
    labels: Any = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    batch_size: int = 32,
    dpi: int = 120,
) -> Path:
    """A PNG of Grad-CAM heatmaps over images: one row per image.

    Columns: the image as the backbone sees it (after the model's cell crop / stain normalisation,
    see :func:`bloodcell.analysis.backbone_view`), the heatmap of the predicted class over it, and,
    when ``labels`` are given and differ from the prediction, the heatmap of the true class.

    Args:
        model: A classifier taking 0–255 images (or a ``.keras`` path).
        images: Images (N, H, W, 3) in 0–255.
        path: The PNG file to write.
        labels: True class indices (N,), or None.
        class_names: Class names for the titles; default: the model's classes.
        alpha: Opacity of the heatmap.
        cmap: A matplotlib colour map for the heatmap.
        batch_size: Images per gradient computation.
        dpi: Resolution.

    Returns:
        The path written.

    Example:
        >>> import tempfile, bloodcell as bc
        >>> model = bc.build_classifier("mobilenetv3small", head="linear", weights=None)
        >>> data = bc.datasets.load_sample(per_class=1)
        >>> grad_cam_overlays(model, data.images[:2], tempfile.mkdtemp() + "/cam.png", labels=data.labels[:2]).name
        'cam.png'
    """
    from bloodcell._validation import check_number
    from bloodcell.analysis import backbone_view, check_images, grad_cam
    from bloodcell.classes import model_class_names
    from bloodcell.models import as_model

    model = as_model(model)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
    images = check_images(model, images)
    view = backbone_view(model, images, batch_size=batch_size)
    prob = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    pred = prob.argmax(axis=1)
    names = tuple(class_names) if class_names is not None else model_class_names(model)
    heat_pred = grad_cam(model, images, pred, batch_size=batch_size)
    true = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
    if true is not None and len(true) != len(view):
        raise InvalidDataError(f"{len(view)} images but {len(true)} labels.")
    show_true = true is not None and bool((true != pred).any())
    heat_true = grad_cam(model, images, true, batch_size=batch_size) if show_true else None

    plt = _pyplot()
    n_cols = 3 if show_true else 2
    n_rows = max(1, len(view))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(len(view)):
        title = f"#{i}" if true is None else f"#{i} true: {names[int(true[i])]}"
        axes[i, 0].imshow(view[i], interpolation="nearest")
        axes[i, 0].set_title(title, fontsize=7)
        axes[i, 1].imshow(view[i], interpolation="nearest")
        axes[i, 1].imshow(heat_pred[i], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
        axes[i, 1].set_title(f"pred: {names[int(pred[i])]} ({prob[i, pred[i]]:.0%})", fontsize=7)
        if heat_true is not None and true[i] != pred[i]:
            axes[i, 2].imshow(view[i], interpolation="nearest")
            axes[i, 2].imshow(heat_true[i], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            axes[i, 2].set_title(f"for true: {names[int(true[i])]} ({prob[i, true[i]]:.0%})", fontsize=7)
    fig.suptitle("Grad-CAM on the backbone's last feature map", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / (2.3 * n_rows)))  # room for the title
    return _save(fig, path, dpi)
