"""Mean ± std over runs: :class:`Summary` and :func:`summarize`."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell.errors import ConfigurationError, InvalidDtypeError
from bloodcell.metrics.report import _METRIC_LABELS, SUMMARY_METRICS, Report, _is_fraction, _json_float

__all__ = ["Summary", "summarize"]


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
