"""Honest evaluation: one :class:`Report` per model and test set, and mean ± std tables over runs.

Every number comes from scikit-learn (``sklearn.metrics``) on the model's predicted probabilities,
so the figures match what a reviewer recomputes from the saved predictions.

Example:
    >>> import numpy as np
    >>> y_true = np.array([0, 1, 2, 2])
    >>> y_prob = np.eye(3)[[0, 1, 2, 1]] * 0.7 + 0.1
    >>> report = Report.from_predictions(y_true, y_prob, class_names=("a", "b", "c"))
    >>> round(report.accuracy, 2), round(report.recall_macro, 2)
    (0.75, 0.83)
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text, read_json_object, write_json
from bloodcell._validation import check_choice, check_int, received
from bloodcell.classes import CLASS_NAMES
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError, InvalidDtypeError

__all__ = ["Report", "Summary", "evaluate", "restrict_to_classes", "summarize", "SUMMARY_METRICS"]

# The columns of the seed report's Table 1 (macro averages: every class in the labels counts the same).
SUMMARY_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")

_METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "precision_macro": "Precision",
    "recall_macro": "Recall",
    "f1_macro": "F1",
    "precision_weighted": "Precision (weighted)",
    "recall_weighted": "Recall (weighted)",
    "f1_weighted": "F1 (weighted)",
    "roc_auc_ovr": "ROC-AUC (OvR)",
    "log_loss": "Log-loss",
    "ece": "ECE",
    "brier": "Brier score",
}
# Metrics added after reports were first saved: read as NaN from files without them.
_LATER_METRICS = ("ece", "brier")


def _is_fraction(metric: str) -> bool:
    """Metrics in 0..1 (shown as percentages in tables); log-loss and the Brier score are not."""
    return metric not in ("log_loss", "brier")


@dataclass(frozen=True, eq=False)  # holds arrays: compare reports with to_dict()
class Report:
    """Classification metrics of one model on one labelled set.

    Attributes:
        class_names: Class names, in label order.
        n: Number of images evaluated.
        accuracy: Fraction of correct top-1 predictions.
        balanced_accuracy: Mean recall over the classes present in the labels (insensitive to class
            imbalance).
        precision_macro, recall_macro, f1_macro: Unweighted means over the classes present in the labels.
        precision_weighted, recall_weighted, f1_weighted: Means weighted by class support.
        per_class: ``{class name: {"precision", "recall", "f1", "roc_auc", "support"}}`` for every class,
            absent ones included (support 0, precision, recall and F1 0, ROC-AUC NaN).
        confusion_matrix: Counts (C × C, every class), rows = true class, columns = predicted class.
        roc_auc_ovr: Macro mean of the one-vs-rest ROC-AUC of each class present in the labels.
        log_loss: Cross-entropy of the predicted probabilities (natural log).
        ece: Expected calibration error over 15 equal-width confidence bins
            (:func:`bloodcell.calibration.expected_calibration_error`); 0 when every confidence
            matches its accuracy.
        brier: Multi-class Brier score (:func:`bloodcell.calibration.brier_score`), 0..2.
        absent_classes: The classes of ``class_names`` that no true label holds, in class order.
        y_true, y_prob: The labels and predicted probabilities the report was computed from.
        coverage_accuracy: ``{"coverage", "accuracy", "threshold"}`` lists: the accuracy of the most
            confident share of the images, from 1 % to 100 % of them
            (:func:`bloodcell.rejection.coverage_accuracy_curve`); None in reports saved without it.

    Every average over classes (macro and weighted precision, recall and F1, balanced accuracy,
    ROC-AUC) runs over the classes present in the true labels, as scikit-learn does when given
    ``labels=`` those classes: a test set holding 2 of the 8 classes is scored on those 2, not
    diluted by 6 zeros. A prediction of an absent class still counts: it is an error for accuracy
    and a miss (lower recall) for its true class, but no class in the averages gets it as a false
    positive. ``per_class`` and the confusion matrix keep every class.

    Example:
        >>> y_true = [0, 0, 1]  # class "c" is absent; one "a" is predicted as "c"
        >>> report = Report.from_predictions(y_true, np.eye(3)[[0, 2, 1]], class_names=("a", "b", "c"))
        >>> report.absent_classes
        ('c',)
        >>> round(report.accuracy, 3), report.precision_macro, report.recall_macro, round(report.f1_macro, 3)
        (0.667, 1.0, 0.75, 0.833)
    """

    class_names: tuple[str, ...]
    n: int
    accuracy: float
    balanced_accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: np.ndarray
    roc_auc_ovr: float
    log_loss: float
    absent_classes: tuple[str, ...]
    ece: float = math.nan
    brier: float = math.nan
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    y_prob: np.ndarray | None = field(default=None, repr=False, compare=False)
    coverage_accuracy: dict[str, list[float]] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        y_prob: Any,
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> Report:
        """Compute every metric from true labels and predicted class probabilities.

        Args:
            y_true: Integer class indices (N,), or one-hot rows (N, C).
            y_prob: Predicted probabilities (N, C), rows summing to 1 (a softmax output).
            class_names: Names of the C classes, in label order.

        Raises:
            InvalidDataError: shapes disagree, labels out of range, or ``y_prob`` is not a probability
                table (e.g. logits from a model without a softmax).
        """
        from sklearn import metrics as skm

        from bloodcell.rejection import coverage_accuracy_curve

        names = tuple(str(c) for c in class_names)
        prob = np.asarray(y_prob, dtype=np.float64)
        if prob.ndim != 2 or prob.shape[1] != len(names):
            raise InvalidDataError(
                f"y_prob must have shape (N, {len(names)}) for {len(names)} classes, got {prob.shape}."
            )
        true = _as_indices(y_true, len(names))
        if len(true) != len(prob):
            raise InvalidDataError(f"{len(true)} labels but {len(prob)} rows of probabilities.")
        if len(true) == 0:
            raise EmptyDatasetError("Cannot evaluate on an empty set: there are no labels.")
        if not np.isfinite(prob).all():
            raise InvalidDataError("y_prob holds NaN or infinite values: the model diverged.")
        if prob.min() < -1e-6 or prob.max() > 1 + 1e-6 or not np.allclose(prob.sum(1), 1.0, atol=1e-3):
            raise InvalidDataError(
                "y_prob is not a table of probabilities (rows must lie in 0..1 and sum to 1; got values in "
                f"{prob.min():.3g}..{prob.max():.3g}). If the model returns logits, end it with a softmax "
                "or pass keras.ops.softmax(logits)."
            )
        prob = np.clip(prob, 0.0, 1.0)
        prob = prob / prob.sum(1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
        pred = prob.argmax(1)
        labels = np.arange(len(names))

        prec, rec, f1, support = skm.precision_recall_fscore_support(
            true, pred, labels=labels, zero_division=0.0
        )
        aucs = _one_vs_rest_auc(true, prob)
        per_class = {
            name: {
                "precision": float(prec[k]),
                "recall": float(rec[k]),
                "f1": float(f1[k]),
                "roc_auc": float(aucs[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(names)
        }

        # Averages over the classes in the labels only: an absent class has no recall to average, and
        # counting it as 0 would score a perfect model on 2 of 8 classes at 25 %.
        present = np.unique(true)

        def averaged(average: str) -> tuple[float, float, float]:
            p, r, f, _ = skm.precision_recall_fscore_support(
                true, pred, labels=present, average=average, zero_division=0.0
            )
            return float(p), float(r), float(f)

        import warnings

        with warnings.catch_warnings():  # predictions of a class absent from the labels are legitimate
            warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
            balanced = float(skm.balanced_accuracy_score(true, pred))
        from bloodcell.calibration.scores import brier_score, expected_calibration_error

        pm, rm, fm = averaged("macro")
        pw, rw, fw = averaged("weighted")
        defined = aucs[~np.isnan(aucs)]
        return cls(
            class_names=names,
            n=int(len(true)),
            accuracy=float(skm.accuracy_score(true, pred)),
            # sklearn's balanced accuracy averages recall over the classes present in y_true.
            balanced_accuracy=balanced,
            precision_macro=pm,
            recall_macro=rm,
            f1_macro=fm,
            precision_weighted=pw,
            recall_weighted=rw,
            f1_weighted=fw,
            per_class=per_class,
            confusion_matrix=skm.confusion_matrix(true, pred, labels=labels),
            roc_auc_ovr=float(defined.mean()) if defined.size else math.nan,
            log_loss=float(skm.log_loss(true, prob, labels=labels)),
            absent_classes=tuple(name for k, name in enumerate(names) if support[k] == 0),
            ece=expected_calibration_error(true, prob),
            brier=brier_score(true, prob),
            y_true=true,
            y_prob=prob,
            coverage_accuracy=coverage_accuracy_curve(true, prob),
        )

    # ------------------------------------------------------------------ views
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def confusion_matrix_normalized(self) -> np.ndarray:
        """The confusion matrix with each row divided by its class's count (rows sum to 1; empty rows 0)."""
        counts = self.confusion_matrix.astype(np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)

    @property
    def y_pred(self) -> np.ndarray | None:
        """Predicted class indices (argmax of ``y_prob``), when the predictions were kept."""
        return None if self.y_prob is None else self.y_prob.argmax(1)

    def metric(self, name: str) -> float:
        """A scalar metric by name (``"accuracy"``, ``"f1_macro"``...), or ``"f1:basophil"`` for one class."""
        if ":" in name:
            what, cls_name = name.split(":", 1)
            if cls_name not in self.per_class or what not in self.per_class[cls_name]:
                raise ConfigurationError(
                    "A per-class metric is '<precision|recall|f1|roc_auc>:<class name>'. "
                    f"{received('name', name)}"
                )
            return float(self.per_class[cls_name][what])
        if name not in _METRIC_LABELS:
            check_choice(name, "name", sorted(_METRIC_LABELS))
        return float(getattr(self, name))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self, include_predictions: bool = False) -> dict[str, Any]:
        """Plain JSON-ready types; the predictions are left out unless asked for."""
        out: dict[str, Any] = {
            "class_names": list(self.class_names),
            "n": self.n,
            **{name: _json_float(getattr(self, name)) for name in _METRIC_LABELS},
            "per_class": {k: {m: _json_float(v) for m, v in d.items()} for k, d in self.per_class.items()},
            "confusion_matrix": self.confusion_matrix.tolist(),
            "confusion_matrix_normalized": np.round(self.confusion_matrix_normalized, 6).tolist(),
            "absent_classes": list(self.absent_classes),
        }
        if self.coverage_accuracy is not None:
            out["coverage_accuracy"] = self.coverage_accuracy
        if include_predictions and self.y_true is not None and self.y_prob is not None:
            out["y_true"] = self.y_true.tolist()
            out["y_prob"] = np.round(self.y_prob, 7).tolist()
        return out

    def to_json(self, path: str | os.PathLike[str] | None = None, include_predictions: bool = False) -> str:
        """The report as JSON text; written atomically to ``path`` when given."""
        return write_json(self.to_dict(include_predictions), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report saved with :meth:`to_dict` (with or without predictions)."""
        try:
            y_true = np.asarray(data["y_true"], np.int64) if "y_true" in data else None
            y_prob = np.asarray(data["y_prob"], np.float64) if "y_prob" in data else None
            class_names = tuple(data["class_names"])
            per_class = {
                k: {m: (int(v) if m == "support" else _from_json_float(v)) for m, v in d.items()}
                for k, d in data["per_class"].items()
            }
            if "absent_classes" in data:
                absent = tuple(data["absent_classes"])
            else:  # saved before reports named them: the classes with no true label
                absent = tuple(k for k, d in per_class.items() if d["support"] == 0)
            report = cls(
                class_names=class_names,
                n=int(data["n"]),
                **{
                    name: _from_json_float(data.get(name) if name in _LATER_METRICS else data[name])
                    for name in _METRIC_LABELS
                },
                per_class=per_class,
                confusion_matrix=np.asarray(data["confusion_matrix"], np.int64),
                absent_classes=absent,
                y_true=y_true,
                y_prob=y_prob,
                coverage_accuracy=_coverage_accuracy(data.get("coverage_accuracy")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidDataError(
                f"Not a saved bloodcell Report ({err!r}); save one with Report.to_json()."
            ) from err
        unknown = [c for c in report.absent_classes if c not in class_names]
        if unknown:
            raise InvalidDataError(
                f"The saved report's absent_classes {unknown} are not among its class_names "
                f"{list(class_names)}; the file was edited or damaged: save the report again with "
                "Report.to_json()."
            )
        return report

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> Report:
        """Load a report from a JSON file (or JSON text)."""
        return cls.from_dict(read_json_object(path_or_text))

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        width = max(len(c) for c in self.class_names)
        lines = [
            f"Evaluation on {self.n} images, {self.num_classes} classes",
            f"  accuracy           {self.accuracy:7.2%}    balanced accuracy  {self.balanced_accuracy:7.2%}",
            f"  macro     precision {self.precision_macro:7.2%}  recall {self.recall_macro:7.2%}  "
            f"F1 {self.f1_macro:7.2%}",
            f"  weighted  precision {self.precision_weighted:7.2%}  recall {self.recall_weighted:7.2%}  "
            f"F1 {self.f1_weighted:7.2%}",
            f"  ROC-AUC (one-vs-rest, macro) {self.roc_auc_ovr:.4f}    log-loss {self.log_loss:.4f}",
            f"  calibration  ECE {self.ece:7.2%} (15 bins)    Brier score {self.brier:.4f}",
        ]
        if self.absent_classes:
            lines.append(
                "  absent from the labels (not in the macro averages): " + ", ".join(self.absent_classes)
            )
        lines += ["", f"  {'class':<{width}}  precision  recall      F1   ROC-AUC  support"]
        for name, m in self.per_class.items():
            lines.append(
                f"  {name:<{width}}  {m['precision']:9.2%}  {m['recall']:6.2%}  {m['f1']:6.2%}  "
                f"{m['roc_auc']:8.4f}  {m['support']:7d}"
            )
        lines += ["", "  confusion matrix (rows: true, columns: predicted)"]
        cell = max(4, len(str(int(self.confusion_matrix.max(initial=0)))) + 1)
        abbrev = [c[: cell - 1] for c in self.class_names]
        lines.append("  " + " " * width + "".join(f"{a:>{cell}}" for a in abbrev))
        for name, row in zip(self.class_names, self.confusion_matrix):
            lines.append(f"  {name:<{width}}" + "".join(f"{int(v):>{cell}}" for v in row))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Report(n={self.n}, accuracy={self.accuracy:.4f}, f1_macro={self.f1_macro:.4f}, "
            f"roc_auc_ovr={self.roc_auc_ovr:.4f}, log_loss={self.log_loss:.4f})"
        )


def _json_float(value: float) -> float | int | None:
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else value


def _from_json_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _coverage_accuracy(saved: Any) -> dict[str, list[float]] | None:
    if saved is None:
        return None
    return {key: [float(v) for v in saved[key]] for key in ("coverage", "accuracy", "threshold")}


def _as_indices(y: Any, num_classes: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == num_classes and num_classes > 1:
        arr = arr.argmax(1)  # one-hot (or soft) rows
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidDataError(
            f"Labels must be class indices (N,) or one-hot rows (N, C), got shape {arr.shape}."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise InvalidDtypeError(f"Labels must be integer class indices. Received: dtype={arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise InvalidDataError(f"Labels must lie in 0..{num_classes - 1}, got {arr.min()}..{arr.max()}.")
    return arr


def _one_vs_rest_auc(true: np.ndarray, prob: np.ndarray) -> np.ndarray:
    # Per class, so that a class absent from the labels gives NaN for that class instead of an
    # error for the whole report (sklearn's multi_class="ovr" refuses such label sets).
    from sklearn.metrics import roc_auc_score

    out = np.full(prob.shape[1], np.nan)
    for k in range(prob.shape[1]):
        positive = true == k
        if positive.any() and not positive.all():
            out[k] = roc_auc_score(positive, prob[:, k])
    return out


def evaluate(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 64,
    class_names: Sequence[str] | None = None,
    verbose: int = 0,
    tta: str | Sequence[Any] | None = None,
) -> Report:
    """Evaluate a classifier on a labelled set and return a :class:`Report`.

    Args:
        model: A ``keras.Model`` mapping 0–255 images to class probabilities (e.g. from
            :func:`bloodcell.build_classifier`), or any object with a Keras-like ``predict``.
        dataset: A :class:`~bloodcell.datasets.BloodCellDataset`, or a ``tf.data.Dataset`` of
            ``(images, labels)`` batches (labels as indices or one-hot rows).
        batch_size: Images per prediction batch (for a ``BloodCellDataset``).
        class_names: Class names; default: the dataset's, else the eight blood cell classes. When
            they are a subset of the model's classes (another lab's five white cells), the
            prediction is restricted to them (:func:`restrict_to_classes`).
        verbose: Keras progress output during prediction (0 = silent).
        tta: Test-time augmentation: average the probabilities over flipped/rotated copies
            (``"d4"``, ``"flips"``, ``"rot90"`` or a list of transforms, see :mod:`bloodcell.tta`);
            None: a plain prediction.

    Returns:
        The metrics, with the labels and predicted probabilities kept in ``y_true``/``y_prob``.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> report = bc.evaluate(model, data)
        >>> report.n, report.confusion_matrix.shape
        (16, (8, 8))
    """
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.pipeline import to_tf_dataset

    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if isinstance(dataset, BloodCellDataset):
        dataset.check_not_empty("evaluate()")
        names = tuple(class_names) if class_names is not None else dataset.class_names
        if tta is not None:
            from bloodcell import tta as tta_module

            prob = tta_module.predict(model, dataset, tta, batch_size=batch_size, verbose=verbose)
        else:
            prob = model.predict(
                to_tf_dataset(dataset, batch_size=batch_size, shuffle=False), verbose=verbose
            )
        return Report.from_predictions(dataset.labels, restrict_to_classes(prob, model, names), names)

    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise InvalidDtypeError(
            "evaluate() takes a BloodCellDataset or a tf.data.Dataset of (images, labels). "
            f"Received: dataset={type(dataset).__name__}."
        )
    labels, probs = [], []
    for batch in dataset:
        if not isinstance(batch, tuple) or len(batch) < 2:
            raise InvalidDataError("The tf.data.Dataset must yield (images, labels) batches.")
        images, y = batch[0], batch[1]
        if tta is not None:
            from bloodcell import tta as tta_module

            probs.append(tta_module.predict_on_batch(model, images, tta))
        else:
            probs.append(np.asarray(model.predict_on_batch(images)))
        labels.append(np.asarray(y))
    if not probs:
        raise EmptyDatasetError("evaluate(): the tf.data.Dataset yielded no batches.")
    prob = np.concatenate(probs)
    names = tuple(class_names) if class_names is not None else CLASS_NAMES[: prob.shape[1]]
    y_all = np.concatenate(labels)
    return Report.from_predictions(
        _as_indices(y_all, len(names)), restrict_to_classes(prob, model, names), names
    )


def restrict_to_classes(prob: Any, model: Any, class_names: Sequence[str]) -> np.ndarray:
    """The model's probabilities (N, C) for the data's classes only, renormalised: its prediction
    restricted to them.

    A dataset from another lab may hold only some of the model's classes (five white cells of the
    eight): its labels count in its own class order, and the model's other classes cannot be
    right, so they are left out of the argmax. Data with the model's classes is returned as it is.

    Raises:
        InvalidDataError: the data names classes the model does not predict.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8)])
        >>> restrict_to_classes(np.full((1, 8), 0.125), model, ("lymphocyte", "monocyte")).tolist()
        [[0.5, 0.5]]
    """
    from bloodcell.classes import model_class_names

    prob = np.asarray(prob, np.float64)
    names = tuple(str(c) for c in class_names)
    model_names = model_class_names(model) if hasattr(model, "outputs") else names
    if names == model_names or prob.ndim != 2 or prob.shape[1] != len(model_names):
        return prob
    unknown = [c for c in names if c not in model_names]
    if unknown:
        raise InvalidDataError(
            f"The data's classes {unknown} are not among the model's {list(model_names)}; give data whose "
            "class names are the model's, or a subset of them."
        )
    kept = prob[:, [model_names.index(c) for c in names]]
    return kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------- summaries over runs
@dataclass(frozen=True, eq=False)
class Summary:
    """Mean ± standard deviation of metrics over repeated runs, one row per method.

    Attributes:
        rows: One dict per method: ``{"name", "n", "<metric>": (mean, std), ...}``.
        metrics: The metric names, in column order.
        percent: Fractions shown as percentages in the text tables.
        decimals: Decimals shown in the text tables (CSV keeps full precision).
    """

    rows: tuple[dict[str, Any], ...]
    metrics: tuple[str, ...]
    percent: bool = True
    decimals: int = 2
    runs: Mapping[str, Sequence[Any]] | None = field(default=None, repr=False, compare=False)

    def _fmt(self, metric: str, value: float) -> str:
        if math.isnan(value):
            return "–"
        scale = 100.0 if self.percent and _is_fraction(metric) else 1.0
        return f"{value * scale:.{self.decimals}f}"

    def _label(self, metric: str) -> str:
        if ":" in metric:
            what, cls_name = metric.split(":", 1)
            label = f"{'F1' if what == 'f1' else what.capitalize()} ({cls_name})"
        else:
            label = _METRIC_LABELS[metric]
        if self.percent and _is_fraction(metric):
            label += " (%)"
        return label

    def to_markdown(self) -> str:
        """A GitHub-flavoured markdown table: ``| Method | n | Accuracy (%) | ... |`` with mean ± std."""
        header = ["Method", "n", *(self._label(m) for m in self.metrics)]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        for row in self.rows:
            cells = [str(row["name"]), str(row["n"])]
            for m in self.metrics:
                mean, std = row[m]
                cells.append(f"{self._fmt(m, mean)} ± {self._fmt(m, std)}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """CSV with ``name, n, <metric>_mean, <metric>_std, ...`` at full precision; written when ``path``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "n", *(f"{m}_{s}" for m in self.metrics for s in ("mean", "std"))])
        for row in self.rows:
            writer.writerow([row["name"], row["n"], *(repr(float(v)) for m in self.metrics for v in row[m])])
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "rows": [
                {
                    "name": r["name"],
                    "n": r["n"],
                    **{m: {"mean": _json_float(r[m][0]), "std": _json_float(r[m][1])} for m in self.metrics},
                }
                for r in self.rows
            ],
        }

    def __getitem__(self, name: str) -> dict[str, Any]:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(f"No row named {name!r}; rows: {[r['name'] for r in self.rows]}")

    def __str__(self) -> str:
        return self.to_markdown()


def summarize(
    reports: Mapping[str, Report | Sequence[Report]] | Sequence[Report],
    *,
    metrics: Sequence[str] = SUMMARY_METRICS,
    percent: bool = True,
    decimals: int = 2,
) -> Summary:
    """Mean ± std of metrics over runs (seeds), like the seed report's Table 1.

    The standard deviation is the sample standard deviation (``ddof=1``) over runs; with a single
    run it is 0.

    Args:
        reports: ``{method name: [reports of its runs]}`` (one row per method), or a list of reports
            (one row called ``"runs"``).
        metrics: Report attributes to show, e.g. ``"accuracy"``, ``"f1_macro"``, ``"balanced_accuracy"``,
            or ``"f1:basophil"`` for one class. Default: accuracy and macro precision, recall and F1.
        percent: Show fractions as percentages.
        decimals: Decimals in the markdown table.

    Example:
        >>> import numpy as np
        >>> good = Report.from_predictions([0, 1], np.eye(2), class_names=("a", "b"))
        >>> half = Report.from_predictions([0, 1], np.eye(2)[[0, 0]], class_names=("a", "b"))
        >>> print(summarize({"model": [good, half]}, metrics=["accuracy"]).to_markdown())
        | Method | n | Accuracy (%) |
        |---|---:|---:|
        | model | 2 | 75.00 ± 35.36 |
    """
    if isinstance(reports, Report):
        reports = [reports]
    groups: dict[str, Sequence[Report]]
    if isinstance(reports, Mapping):
        groups = {str(k): ([v] if isinstance(v, Report) else list(v)) for k, v in reports.items()}
    else:
        groups = {"runs": list(reports)}
    if not groups or any(len(v) == 0 for v in groups.values()):
        raise ConfigurationError("summarize() needs at least one report for every method.")
    for name, group in groups.items():
        for r in group:
            if not isinstance(r, Report):
                raise InvalidDtypeError(f"summarize(): {name!r} holds a {type(r).__name__}, not a Report.")
    metrics = tuple(metrics)
    rows = []
    for name, group in groups.items():
        row: dict[str, Any] = {"name": name, "n": len(group)}
        for m in metrics:
            values = np.array([r.metric(m) for r in group], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row[m] = (float(values.mean()), std)
        rows.append(row)
    return Summary(rows=tuple(rows), metrics=metrics, percent=percent, decimals=decimals)
