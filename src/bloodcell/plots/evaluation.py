"""Evaluation and training figures: confusion matrix, training curves, per-class F1."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._validation import check_choice
from bloodcell.errors import DataFileNotFoundError, InvalidDataError, InvalidDtypeError
from bloodcell.plots._figure import _pyplot, _save

__all__ = ["confusion_matrix", "training_curves", "per_class_f1"]


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
