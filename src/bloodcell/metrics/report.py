"""The :class:`Report` of one model on one test set: metrics, confusion matrix, predictions, JSON and CSV."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bloodcell._io import read_json_object, write_json
from bloodcell._validation import check_choice, received
from bloodcell.classes import CLASS_NAMES
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError, InvalidDtypeError

__all__ = ["Report", "SUMMARY_METRICS"]

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
