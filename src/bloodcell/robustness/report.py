"""Accuracy under corruption: :func:`evaluate_robustness` and its :class:`RobustnessReport`.

The report holds the clean accuracy and the accuracy (and macro F1) at every corruption kind ×
severity. Its headline is the *ratio*: mean corrupted accuracy divided by clean accuracy, per kind
and overall — 1.0 means the corruption costs nothing, 0.5 that half the accuracy is lost.

Example:
    >>> import numpy as np
    >>> report = RobustnessReport(
    ...     kinds=("jpeg", "gamma"), severities=(1, 2), n=100, clean_accuracy=0.9, clean_f1_macro=0.9,
    ...     accuracy=np.array([[0.9, 0.8], [0.6, 0.3]]), f1_macro=np.array([[0.9, 0.8], [0.6, 0.3]]))
    >>> round(report.mean_corrupted_accuracy, 3), round(report.ratio, 3)
    (0.65, 0.722)
    >>> {k: round(v, 2) for k, v in report.kind_ratio.items()}
    {'jpeg': 0.94, 'gamma': 0.5}
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text, read_json_object, write_json
from bloodcell._validation import check_int, check_seed, is_integer, received
from bloodcell.errors import ConfigurationError, InvalidDataError
from bloodcell.robustness.corruptions import CORRUPTIONS, SEVERITIES, _check_severity, corrupt, get_corruption

__all__ = ["RobustnessReport", "evaluate_robustness"]


@dataclass(frozen=True, eq=False)  # holds arrays: compare reports with to_dict()
class RobustnessReport:
    """Accuracy of one model on one labelled set, clean and under each corruption kind × severity.

    Attributes:
        kinds: Corruption kinds, one row each.
        severities: Severities, one column each.
        n: Number of images.
        clean_accuracy, clean_f1_macro: On the uncorrupted images.
        accuracy: (kinds, severities) accuracy under each corruption.
        f1_macro: (kinds, severities) macro F1 under each corruption.
        seed: The corruption seed.
        tta: The test-time augmentation used, if any.
        model: A name for the model (its file or Keras name).
        seconds: Time the evaluation took.
    """

    kinds: tuple[str, ...]
    severities: tuple[int, ...]
    n: int
    clean_accuracy: float
    clean_f1_macro: float
    accuracy: np.ndarray
    f1_macro: np.ndarray
    seed: int = 0
    tta: str | None = None
    model: str = ""
    seconds: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        shape = (len(self.kinds), len(self.severities))
        for name in ("accuracy", "f1_macro"):
            arr = np.asarray(getattr(self, name), np.float64)
            if arr.shape != shape:
                raise InvalidDataError(
                    f"RobustnessReport.{name} must have shape {shape} (kinds, severities), got {arr.shape}."
                )
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "kinds", tuple(str(k) for k in self.kinds))
        object.__setattr__(self, "severities", tuple(int(s) for s in self.severities))

    # ------------------------------------------------------------------ summaries
    @property
    def mean_corrupted_accuracy(self) -> float:
        """Mean accuracy over every kind and severity."""
        return float(self.accuracy.mean())

    @property
    def mean_corrupted_f1_macro(self) -> float:
        """Mean macro F1 over every kind and severity."""
        return float(self.f1_macro.mean())

    @property
    def ratio(self) -> float:
        """Mean corrupted accuracy / clean accuracy (1.0: no loss)."""
        return _ratio(self.mean_corrupted_accuracy, self.clean_accuracy)

    @property
    def kind_accuracy(self) -> dict[str, float]:
        """Per kind, the accuracy averaged over severities."""
        return {k: float(v) for k, v in zip(self.kinds, self.accuracy.mean(axis=1))}

    @property
    def kind_ratio(self) -> dict[str, float]:
        """Per kind, mean accuracy over severities / clean accuracy."""
        return {k: _ratio(v, self.clean_accuracy) for k, v in self.kind_accuracy.items()}

    @property
    def severity_accuracy(self) -> dict[int, float]:
        """Per severity, the accuracy averaged over kinds."""
        return {s: float(v) for s, v in zip(self.severities, self.accuracy.mean(axis=0))}

    def worst(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` kinds with the lowest ratio, worst first."""
        return sorted(self.kind_ratio.items(), key=lambda kv: kv[1])[:k]

    # ------------------------------------------------------------------ text
    def to_markdown(self, decimals: int = 1) -> str:
        """A markdown table: accuracy (%) per kind and severity, the kind's mean and its ratio."""
        pct = lambda v: f"{100 * v:.{decimals}f}"  # noqa: E731
        header = ["Corruption", *(f"s{s}" for s in self.severities), "Mean", "Ratio"]
        lines = [
            f"Clean accuracy {pct(self.clean_accuracy)} % on {self.n} images; mean corrupted accuracy "
            f"{pct(self.mean_corrupted_accuracy)} %; ratio {self.ratio:.3f}"
            + (f" (TTA: {self.tta})" if self.tta else ""),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        for k, row in zip(self.kinds, self.accuracy):
            cells = [
                k,
                *(pct(v) for v in row),
                pct(row.mean()),
                f"{_ratio(row.mean(), self.clean_accuracy):.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        means = self.accuracy.mean(axis=0)
        cells = ["**all**", *(pct(v) for v in means), pct(self.mean_corrupted_accuracy), f"{self.ratio:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max([len(k) for k in self.kinds] + [10])
        lines = [
            f"Robustness on {self.n} images (corruption seed {self.seed}"
            + (f", TTA {self.tta}" if self.tta else "")
            + ")",
            f"  clean accuracy {self.clean_accuracy:7.2%}   macro F1 {self.clean_f1_macro:7.2%}",
            f"  mean corrupted {self.mean_corrupted_accuracy:7.2%}   macro F1 {self.mean_corrupted_f1_macro:7.2%}"
            f"   ratio {self.ratio:.3f}",
            "",
            f"  {'corruption':<{width}}"
            + "".join(f"{'s' + str(s):>7}" for s in self.severities)
            + "   ratio",
        ]
        for k, row in zip(self.kinds, self.accuracy):
            lines.append(
                f"  {k:<{width}}"
                + "".join(f"{100 * v:7.1f}" for v in row)
                + f"   {_ratio(row.mean(), self.clean_accuracy):.3f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"RobustnessReport(n={self.n}, kinds={len(self.kinds)}, severities={self.severities}, "
            f"clean_accuracy={self.clean_accuracy:.4f}, ratio={self.ratio:.4f})"
        )

    # ------------------------------------------------------------------ files
    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """Long-format CSV (``kind, group, severity, accuracy, f1_macro``), the clean row first as
        ``clean, , 0``; written atomically when ``path`` is given."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["kind", "group", "severity", "accuracy", "f1_macro"])
        writer.writerow(["clean", "", 0, repr(self.clean_accuracy), repr(self.clean_f1_macro)])
        for i, k in enumerate(self.kinds):
            group = CORRUPTIONS[k].group if k in CORRUPTIONS else ""
            for j, s in enumerate(self.severities):
                writer.writerow(
                    [k, group, s, repr(float(self.accuracy[i, j])), repr(float(self.f1_macro[i, j]))]
                )
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready types (summaries included, for readers of the file)."""
        return {
            "kinds": list(self.kinds),
            "severities": list(self.severities),
            "n": self.n,
            "seed": self.seed,
            "tta": self.tta,
            "model": self.model,
            "seconds": round(float(self.seconds), 3),
            "clean_accuracy": self.clean_accuracy,
            "clean_f1_macro": self.clean_f1_macro,
            "accuracy": self.accuracy.tolist(),
            "f1_macro": self.f1_macro.tolist(),
            "mean_corrupted_accuracy": self.mean_corrupted_accuracy,
            "ratio": self.ratio,
            "kind_ratio": self.kind_ratio,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The report as JSON text; written atomically to ``path`` when given."""
        return write_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        """Rebuild a report saved with :meth:`to_dict`."""
        try:
            return cls(
                kinds=tuple(data["kinds"]),
                severities=tuple(data["severities"]),
                n=int(data["n"]),
                clean_accuracy=float(data["clean_accuracy"]),
                clean_f1_macro=float(data["clean_f1_macro"]),
                accuracy=np.asarray(data["accuracy"], np.float64),
                f1_macro=np.asarray(data["f1_macro"], np.float64),
                seed=int(data.get("seed", 0)),
                tta=data.get("tta"),
                model=str(data.get("model", "")),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidDataError(
                f"Not a saved bloodcell RobustnessReport ({err!r}); save one with RobustnessReport.to_json()."
            ) from err

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> RobustnessReport:
        """Load a report from a JSON file (or JSON text)."""
        return cls.from_dict(read_json_object(path_or_text))

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None, dpi: int = 150) -> Path:
        """Heat map of accuracy (kinds × severities), each cell annotated, with the ratio per kind.

        Returns:
            ``path`` as a :class:`~pathlib.Path` (a PNG written atomically).
        """
        from bloodcell.plots._figure import _pyplot, _save

        plt = _pyplot()
        rows, cols = self.accuracy.shape
        fig, ax = plt.subplots(figsize=(1.6 + 0.75 * cols + 1.6, 1.0 + 0.32 * rows))
        image = ax.imshow(self.accuracy, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.18, label="accuracy")
        for i in range(rows):
            for j in range(cols):
                v = self.accuracy[i, j]
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if v < 0.25 or v > 0.85 else "black")  # fmt: skip
        ax.set_xticks(range(cols), [f"s{s}" for s in self.severities])
        ax.set_yticks(range(rows), self.kinds, fontsize=8)
        ax.set_xlabel("severity")
        right = ax.secondary_yaxis("right")
        right.set_yticks(range(rows), [f"{r:.2f}" for r in self.kind_ratio.values()], fontsize=8)
        right.set_ylabel("ratio to clean")
        ax.set_title(
            title
            or f"clean {self.clean_accuracy:.1%} · mean corrupted {self.mean_corrupted_accuracy:.1%} · "
            f"ratio {self.ratio:.2f} · n = {self.n}",
            fontsize=9,
        )
        return _save(fig, path, dpi)


def _ratio(value: float, clean: float) -> float:
    return float(value / clean) if clean > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def _comma_string(value: str, name: str) -> list[str]:
    """The parts of a comma-separated string passed where a list is meant (deprecated)."""
    warnings.warn(
        f"evaluate_robustness(): {name} as one comma-separated string is deprecated and will be "
        f"removed; pass a list, e.g. {name}={[p.strip() for p in value.split(',') if p.strip()]!r}.",
        DeprecationWarning,
        stacklevel=4,
    )
    return [part.strip() for part in value.split(",") if part.strip()]


def _as_kinds(kinds: str | Sequence[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return tuple(CORRUPTIONS)
    if isinstance(kinds, str):
        kinds = _comma_string(kinds, "kinds") if "," in kinds else [kinds]
    kinds = tuple(kinds)
    if not kinds:
        raise ConfigurationError(
            "kinds must name at least one corruption (names from list_corruptions()), or be None for "
            f"the whole suite. {received('kinds', kinds)}"
        )
    for k in kinds:
        get_corruption(k)
    if len(set(kinds)) != len(kinds):
        raise ConfigurationError(f"kinds holds repeated names. {received('kinds', list(kinds))}")
    return kinds


def _as_severities(severities: int | str | Sequence[int]) -> tuple[int, ...]:
    if isinstance(severities, str):
        parts = _comma_string(severities, "severities")
        if not all(part.lstrip("-").isdigit() for part in parts):
            raise ConfigurationError(
                f"severities must be integers from 1 to 5. {received('severities', severities)}"
            )
        severities = [int(part) for part in parts]
    if is_integer(severities):
        severities = [severities]
    out = tuple(_check_severity(s) for s in severities)
    if not out or len(set(out)) != len(out):
        raise ConfigurationError(
            f"severities must be distinct integers from 1 to 5. {received('severities', list(out))}"
        )
    return out


def _model_and_name(model: Any) -> tuple[Any, str]:
    """The model (:func:`bloodcell.models.as_model`) and the name the report gives it: its file's or its own."""
    from bloodcell.models import as_model

    if isinstance(model, (str, os.PathLike)):
        return as_model(model), Path(model).name
    model = as_model(model)
    return model, str(model.name)


def _predictor(model: Any, batch_size: int, tta: str | Sequence[str] | None) -> Any:
    """A function from a labelled dataset to a metrics Report, with or without TTA."""
    from bloodcell import tta as tta_module
    from bloodcell.metrics import evaluate

    if tta is not None:
        tta_module.resolve(tta)  # an unknown name fails here, before any work
    return lambda data: evaluate(model, data, batch_size=batch_size, tta=tta)


def evaluate_robustness(
    model: Any,
    dataset: Any,
    kinds: str | Sequence[str] | None = None,
    severities: int | str | Sequence[int] = SEVERITIES,
    *,
    batch_size: int = 64,
    seed: int = 0,
    tta: str | Sequence[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> RobustnessReport:
    """Accuracy of ``model`` on ``dataset``, clean and under each corruption kind × severity.

    Args:
        model: A Keras classifier taking 0–255 images (or the path of a ``.keras`` file, loaded in
            safe mode).
        dataset: The labelled images: a :class:`~bloodcell.datasets.BloodCellDataset`, a
            class-folder root, an ``.npz`` file, or ``"sample"``.
        kinds: Corruption kind names (a list, or one name); None: the whole suite
            (:func:`~bloodcell.robustness.list_corruptions`). One comma-separated string
            (``"jpeg,gamma"``) still works but is deprecated.
        severities: Severities to test, integers 1..5 (a list, or one). A comma-separated string
            (``"1,3,5"``) still works but is deprecated.
        batch_size: Images per prediction batch.
        seed: Seed of the corruptions (each image's random draws; the same for every model).
        tta: Test-time augmentation passed to :func:`bloodcell.tta.predict`: ``"d4"``, ``"flips"``,
            ``"rot90"`` or a list of transform names (None: plain prediction). It applies to the
            clean and the corrupted images alike.
        output_dir: When given, write ``robustness.json``, ``robustness.csv``, ``robustness.md`` and
            ``robustness.png`` there (atomically).
        verbose: Print one progress line per kind.

    Returns:
        The :class:`RobustnessReport`.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=1)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> report = evaluate_robustness(model, data, kinds=["jpeg", "zoom_in"], severities=(1, 5), verbose=False)
        >>> report.accuracy.shape
        (2, 2)
    """
    kinds = _as_kinds(kinds)
    severities = _as_severities(severities)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_seed(seed)
    model, model_name = _model_and_name(model)
    from bloodcell import datasets

    data = datasets.load(dataset)
    data.check_not_empty("evaluate_robustness()")
    predict = _predictor(model, batch_size, tta)

    start = time.perf_counter()
    clean = predict(data)
    if verbose:
        print(f"clean: accuracy {clean.accuracy:.2%} on {len(data)} images", file=sys.stderr, flush=True)
    acc = np.zeros((len(kinds), len(severities)))
    f1 = np.zeros_like(acc)
    for i, kind in enumerate(kinds):
        t0 = time.perf_counter()
        for j, severity in enumerate(severities):
            report = predict(data.replace(images=corrupt(data.images, kind, severity, seed)))
            acc[i, j], f1[i, j] = report.accuracy, report.f1_macro
        if verbose:
            cells = " ".join(f"{100 * v:5.1f}" for v in acc[i])
            print(
                f"[{i + 1:>{len(str(len(kinds)))}}/{len(kinds)}] {kind:<20} accuracy % by severity: {cells}  "
                f"({time.perf_counter() - t0:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    result = RobustnessReport(
        kinds=kinds,
        severities=severities,
        n=len(data),
        clean_accuracy=clean.accuracy,
        clean_f1_macro=clean.f1_macro,
        accuracy=acc,
        f1_macro=f1,
        seed=int(seed),
        tta=tta if tta is None or isinstance(tta, str) else ",".join(map(str, tta)),
        model=model_name,
        seconds=time.perf_counter() - start,
    )
    if output_dir is not None:
        out = Path(output_dir)
        result.to_json(out / "robustness.json")
        result.to_csv(out / "robustness.csv")
        atomic_write_text(out / "robustness.md", result.to_markdown() + "\n")
        result.plot(out / "robustness.png")
    return result
