"""`find_outliers`: run detectors over a dataset and gather their verdicts in an `OutlierReport`."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError
from bloodcell.outliers.base import Detection, DuplicateGroup, OutlierDetector
from bloodcell.outliers.duplicates import ExactDuplicates, NearDuplicates
from bloodcell.outliers.quality import ImageQuality
from bloodcell.outliers.stain import StainProfile

__all__ = ["find_outliers", "OutlierReport", "default_detectors"]


def default_detectors() -> list[OutlierDetector]:
    """The detectors :func:`find_outliers` runs by default: fast, and needing no network or model.

    ``[ExactDuplicates(), NearDuplicates(), ImageQuality(), StainProfile()]``.
    :class:`~bloodcell.outliers.EmbeddingOutliers` is left out because it needs a feature
    extractor (and minutes on a CPU); add it yourself.
    """
    return [ExactDuplicates(), NearDuplicates(), ImageQuality(), StainProfile()]


def _fingerprint(dataset: BloodCellDataset) -> str:
    """A cheap identity check: shape, labels and a sparse sample of the pixels."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(dataset.images.shape).encode())
    h.update(np.ascontiguousarray(dataset.labels).tobytes())
    step = max(1, len(dataset) // 64)
    h.update(np.ascontiguousarray(dataset.images[::step]).tobytes())
    return h.hexdigest()


class OutlierReport:
    """What :func:`find_outliers` found: per-image scores and reasons, duplicate groups, counts.

    Attributes:
        dataset: The dataset that was scanned (kept by reference, not copied).
        detections: ``{detector name: Detection}`` in the order the detectors ran.
        timings: ``{detector name: seconds}`` (fit and detect together).

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample()
        >>> data = data.concat(data[:3])                       # three exact copies
        >>> report = bc.outliers.find_outliers(data)
        >>> report.counts()["duplicate"], len(report.clean(data))
        (3, 800)
    """

    def __init__(
        self,
        dataset: BloodCellDataset,
        detections: Mapping[str, Detection],
        timings: Mapping[str, float] | None = None,
    ) -> None:
        self.dataset = dataset
        self.detections = dict(detections)
        self.timings = dict(timings or {})
        self._fingerprint = _fingerprint(dataset)

    # -- per image ----------------------------------------------------------------------------------
    @property
    def scores(self) -> dict[str, np.ndarray]:
        """``{detector name: float64 (N,)}``, higher = more anomalous (scales differ per detector)."""
        return {name: d.scores for name, d in self.detections.items()}

    @property
    def flags(self) -> np.ndarray:
        """bool (N,): True for the images some detector flags (what :meth:`clean` removes)."""
        out = np.zeros(len(self.dataset), bool)
        for d in self.detections.values():
            out |= d.flags
        return out

    @property
    def reasons(self) -> list[tuple[str, ...]]:
        """Per image, every reason it was flagged for (in detector order, without repeats)."""
        out: list[tuple[str, ...]] = [()] * len(self.dataset)
        for i in np.flatnonzero(self.flags):
            seen: dict[str, None] = {}
            for d in self.detections.values():
                for r in d.reasons[i]:
                    seen[r] = None
            out[i] = tuple(seen)
        return out

    @property
    def indices(self) -> np.ndarray:
        """Positions of the flagged images, ascending.

        ``dataset.drop(report.indices)`` is ``report.clean(dataset)``.
        """
        return np.flatnonzero(self.flags)

    @property
    def duplicate_groups(self) -> list[DuplicateGroup]:
        """Every group of two or more copies, exact groups first, then near ones."""
        groups: list[DuplicateGroup] = []
        for d in self.detections.values():
            groups.extend(d.groups)
        return groups

    def counts(self) -> dict[str, int]:
        """Number of images flagged for each reason (an image can count under several reasons)."""
        counts: dict[str, int] = {}
        for reasons in self.reasons:
            for r in reasons:
                counts[r] = counts.get(r, 0) + 1
        return counts

    def by_reason(self) -> dict[str, np.ndarray]:
        """``{reason: indices of the images flagged for it}``."""
        out: dict[str, list[int]] = {}
        for i, reasons in enumerate(self.reasons):
            for r in reasons:
                out.setdefault(r, []).append(i)
        return {r: np.asarray(v, np.int64) for r, v in out.items()}

    # -- actions ----------------------------------------------------------------------------------
    def clean(self, dataset: BloodCellDataset | None = None) -> BloodCellDataset:
        """The dataset without the flagged images.

        One image of each duplicate group is kept (the first) unless the group's labels disagree,
        in which case the whole group goes; every image flagged for any other reason goes.

        Raises:
            InvalidDataError: ``dataset`` is not the dataset this report was made from.
        """
        dataset = self.dataset if dataset is None else dataset
        if not isinstance(dataset, BloodCellDataset):
            raise InvalidDtypeError(
                f"clean() takes a BloodCellDataset. Received: dataset={type(dataset).__name__}."
            )
        if len(dataset) != len(self.dataset) or _fingerprint(dataset) != self._fingerprint:
            raise InvalidDataError(
                f"this report was made for a dataset of {len(self.dataset)} images, and the one given "
                f"({len(dataset)} images) is not it. Run find_outliers() on the dataset you want to clean."
            )
        return dataset.drop(self.indices)

    def summary(self) -> str:
        """A short text summary: images flagged, counts by reason, duplicate groups, time."""
        n = len(self.dataset)
        flagged = int(self.flags.sum())
        lines = [f"{flagged} of {n} images flagged ({flagged / max(n, 1):.1%})"]
        for reason, count in sorted(self.counts().items(), key=lambda kv: -kv[1]):
            lines.append(f"  {reason:<18}{count:>7}")
        groups = self.duplicate_groups
        if groups:
            conflicts = sum(g.label_conflict for g in groups)
            kinds = ", ".join(
                f"{sum(g.kind == k for g in groups)} {k}"
                for k in ("exact", "near")
                if any(g.kind == k for g in groups)
            )
            lines.append(f"duplicate groups: {kinds} ({conflicts} with conflicting labels)")
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"OutlierReport(n={len(self.dataset)}, flagged={int(self.flags.sum())}, counts={self.counts()})"
        )

    def to_csv(self, path: str | os.PathLike[str]) -> str:
        """Write one row per image (written atomically): index, id, label, flagged, reasons, scores, groups.

        Columns: ``index``, ``id`` (the dataset's ids, if any), ``label``, ``class``, ``flagged``,
        ``reasons`` (``;``-separated), one ``score_<detector>`` column per detector, and
        ``exact_group`` / ``near_group`` (the group's first index, empty when not duplicated).
        """
        data = self.dataset
        group_cols: dict[str, np.ndarray] = {}
        for g in self.duplicate_groups:
            col = group_cols.setdefault(f"{g.kind}_group", np.full(len(data), -1, np.int64))
            col[g.indices] = g.indices[0]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        names = list(self.detections)
        writer.writerow(
            [
                "index",
                "id",
                "label",
                "class",
                "flagged",
                "reasons",
                *[f"score_{n}" for n in names],
                *group_cols,
            ]
        )
        flags, reasons, scores = self.flags, self.reasons, self.scores
        for i in range(len(data)):
            label = int(data.labels[i])
            writer.writerow(
                [
                    i,
                    "" if data.ids is None else data.ids[i],
                    label,
                    data.class_names[label],
                    int(flags[i]),
                    ";".join(reasons[i]),
                    *[f"{scores[n][i]:.6g}" for n in names],
                    *["" if col[i] < 0 else int(col[i]) for col in group_cols.values()],
                ]
            )
        atomic_write_text(path, buf.getvalue())
        return os.fspath(path)

    def plot(self, path: str | os.PathLike[str], *, per_reason: int = 8, seed: int | None = 0) -> Path:
        """Write a PNG gallery of flagged images, one row per reason.

        See :func:`bloodcell.plots.outlier_gallery`; returns the path written.
        """
        from bloodcell.plots import outlier_gallery

        return outlier_gallery(self.dataset, self.by_reason(), path, per_reason=per_reason, seed=seed)


def _named(detectors: Any) -> dict[str, OutlierDetector]:
    if detectors is None:
        detectors = default_detectors()
    if isinstance(detectors, OutlierDetector):
        detectors = [detectors]
    items = list(detectors.items()) if isinstance(detectors, Mapping) else [(None, d) for d in detectors]
    out: dict[str, OutlierDetector] = {}
    for key, det in items:
        if not isinstance(det, OutlierDetector):
            raise ConfigurationError(
                "detectors must be OutlierDetector instances (e.g. bc.outliers.ImageQuality()). "
                f"Received: detector={type(det).__name__}."
            )
        name = key or det.name
        base, k = name, 2
        while name in out:  # two detectors of one kind: image_quality, image_quality_2
            name, k = f"{base}_{k}", k + 1
        out[name] = det
    if not out:
        raise ConfigurationError("detectors is empty; pass at least one detector, or None for the defaults.")
    return out


def find_outliers(
    dataset: BloodCellDataset,
    detectors: Sequence[OutlierDetector] | Mapping[str, OutlierDetector] | OutlierDetector | None = None,
    *,
    verbose: bool = False,
) -> OutlierReport:
    """Fit each detector on ``dataset``, score ``dataset`` with it, and gather the results.

    Args:
        dataset: The images to check.
        detectors: Detector instances (a list, or a ``{name: detector}`` dict); ``None`` runs
            :func:`default_detectors` (exact and near duplicates, image quality, stain profile).
        verbose: Print each detector's progress and time.

    Returns:
        An :class:`OutlierReport`.

    Example:
        >>> import bloodcell as bc
        >>> report = bc.outliers.find_outliers(bc.datasets.load_sample())
        >>> len(report.indices) < 8
        True
    """
    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(
            f"find_outliers() takes a BloodCellDataset. Received: dataset={type(dataset).__name__}. "
            "Wrap arrays with bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    dataset.check_not_empty("find_outliers()")
    named = _named(detectors)
    detections: dict[str, Detection] = {}
    timings: dict[str, float] = {}
    for name, det in named.items():
        start = time.perf_counter()
        det.fit(dataset, verbose=verbose)
        detections[name] = det.detect(dataset, verbose=verbose)
        timings[name] = time.perf_counter() - start
        if verbose:
            print(f"{name}: {int(detections[name].flags.sum())} flagged, {timings[name]:.1f} s", flush=True)
    return OutlierReport(dataset, detections, timings)
