"""Figures of trust: reliability diagram, coverage against accuracy, top losses, Grad-CAM overlays."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._validation import check_int
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError
from bloodcell.plots._figure import _pyplot, _save

__all__ = ["reliability_diagram", "coverage_accuracy", "top_losses_gallery", "grad_cam_overlays"]


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
