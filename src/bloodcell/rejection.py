"""Prediction with rejection: which cells the haematologist should look at themselves.

A :class:`Rejector` sorts every prediction into one of three statuses:

- ``"not a cell"``: the image fails a check made before the model is trusted at all. The checks
  are the library's outlier detectors, fitted on real cells and applied image by image:
  :class:`~bloodcell.outliers.ImageQuality` (reasons ``"low_information"`` for a blank or uniform
  frame, ``"dark"``, ``"overexposed"``, ``"blurry"``, ``"grayscale"``),
  :class:`~bloodcell.outliers.StainProfile` (``"not_blood_smear"``: colours unlike a stained smear,
  e.g. a photograph), and exact copies within the batch (``"duplicate"``: every copy after the
  first, so a cell imaged twice is not counted twice).
- ``"uncertain"``: the image looks like a cell but the model's confidence (its top class
  probability) is below the rejector's threshold (reason ``"low_confidence"``).
- ``"accepted"``: everything else.

:func:`fit_rejector` chooses the threshold on labelled validation cells for a target
*coverage*, the share of those cells accepted; :func:`coverage_accuracy_curve` shows what each
coverage buys (the accuracy of the accepted cells). A rejector is saved as JSON, never pickled.

Example:
    >>> import numpy as np
    >>> rejector = Rejector(threshold=0.6)
    >>> rejector.decide(np.array([[0.9, 0.1], [0.55, 0.45]]), [None, None])
    (['accepted', 'uncertain'], [None, 'low_confidence'])
    >>> confidence_threshold(np.array([0.9, 0.8, 0.7, 0.6]), coverage=0.75)
    0.7
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text, read_json_object
from bloodcell._validation import check_number
from bloodcell.errors import ConfigurationError, InvalidDataError

__all__ = [
    "ACCEPTED",
    "UNCERTAIN",
    "NOT_A_CELL",
    "STATUSES",
    "Rejector",
    "fit_rejector",
    "confidence_threshold",
    "coverage_accuracy_curve",
    "as_rejector",
]

ACCEPTED, UNCERTAIN, NOT_A_CELL = "accepted", "uncertain", "not a cell"
#: Every status a prediction can get, best first.
STATUSES = (ACCEPTED, UNCERTAIN, NOT_A_CELL)
LOW_CONFIDENCE = "low_confidence"
DUPLICATE = "duplicate"
#: The coverages at which :func:`coverage_accuracy_curve` measures, 1 % to 100 %.
COVERAGES = tuple(round(0.01 * k, 2) for k in range(1, 101))
_FORMAT = "bloodcell-rejector"
_VERSION = 1


def confidence_threshold(confidence: Any, coverage: float) -> float:
    """The highest threshold that accepts at least ``coverage`` of the images (``confidence >= t``).

    Ties at the threshold are all accepted, so the accepted share may exceed ``coverage``.
    """
    conf = np.sort(np.asarray(confidence, np.float64).ravel())[::-1]
    if len(conf) == 0:
        raise InvalidDataError("confidence_threshold() needs at least one confidence value.")
    coverage = float(check_number(coverage, "coverage", low=0.0, high=1.0, low_open=True))  # type: ignore[arg-type]
    k = min(len(conf), max(1, math.ceil(coverage * len(conf) - 1e-9)))
    return float(conf[k - 1])


def coverage_accuracy_curve(
    y_true: Any, y_prob: Any, coverages: Sequence[float] = COVERAGES
) -> dict[str, list[float]]:
    """Accuracy of the accepted images when the most confident ``coverage`` share is accepted.

    For each target coverage the confidence threshold is :func:`confidence_threshold`; the
    result gives, per target, the share actually accepted (ties may add a few), the accuracy of
    the accepted images and the threshold.

    Returns:
        ``{"coverage": [...], "accuracy": [...], "threshold": [...]}``, one entry per target.

    Example:
        >>> prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
        >>> curve = coverage_accuracy_curve([0, 1, 1, 0], prob, coverages=(0.5, 1.0))
        >>> curve["coverage"], curve["accuracy"]
        ([0.5, 1.0], [1.0, 0.5])
    """
    prob = np.asarray(y_prob, np.float64)
    true = np.asarray(y_true).ravel()
    if prob.ndim != 2 or len(prob) != len(true) or len(true) == 0:
        raise InvalidDataError(
            f"coverage_accuracy_curve() needs N labels and (N, C) probabilities, got {true.shape} and {prob.shape}."
        )
    conf = prob.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    correct = np.cumsum(prob.argmax(axis=1)[order] == true[order])
    descending = conf[order]
    out: dict[str, list[float]] = {"coverage": [], "accuracy": [], "threshold": []}
    for target in coverages:
        t = confidence_threshold(descending, target)
        m = int(np.searchsorted(-descending, -t, side="right"))  # images with confidence >= t
        out["coverage"].append(round(m / len(true), 6))
        out["accuracy"].append(round(float(correct[m - 1]) / m, 6))
        out["threshold"].append(t)
    return out


class Rejector:
    """Decides, per image, whether a prediction is accepted, uncertain, or not of a cell at all.

    Args:
        threshold: Confidences (top class probabilities) below it are ``"uncertain"``; 0 accepts all.
        quality: A fitted :class:`~bloodcell.outliers.ImageQuality`, or None for no quality checks.
        stain: A fitted :class:`~bloodcell.outliers.StainProfile`, or None for no colour check.
        duplicates: Reject every exact copy after the first within a batch.
        tta: The test-time augmentation the threshold was fitted with (a group name, a list of
            transform names, or None); :func:`bloodcell.predict` warns when used with another.
        coverage: The coverage the threshold was chosen for (None when set by hand).
        class_names: The classes of the model it was fitted for (checked at prediction).

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=10)
        >>> rejector = Rejector(0.5, quality=bc.outliers.ImageQuality().fit(data))
        >>> blank = np.full((1, 96, 96, 3), 230, np.uint8)
        >>> rejector.check_images(np.concatenate([data.images[:2], blank, data.images[:1]]))
        [None, None, 'low_information', 'duplicate']
    """

    def __init__(
        self,
        threshold: float,
        *,
        quality: Any = None,
        stain: Any = None,
        duplicates: bool = True,
        tta: str | Sequence[str] | None = None,
        coverage: float | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.threshold = float(check_number(threshold, "threshold", low=0.0, high=1.0))  # type: ignore[arg-type]
        self.quality = quality
        self.stain = stain
        self.duplicates = bool(duplicates)
        self.tta = tta if tta is None or isinstance(tta, str) else list(tta)
        self.coverage = coverage
        self.class_names = None if class_names is None else tuple(str(c) for c in class_names)

    def __repr__(self) -> str:
        checks = [n for n, on in (("quality", self.quality), ("stain", self.stain)) if on is not None]
        if self.duplicates:
            checks.append("duplicates")
        return f"Rejector(threshold={self.threshold:.4g}, coverage={self.coverage}, checks={checks})"

    # ------------------------------------------------------------------ decisions
    def check_images(self, images: Any, *, seen: set[bytes] | None = None) -> list[str | None]:
        """The reason each image is not a cell, or None when it passes every image check.

        Args:
            images: uint8 images (N, H, W, 3).
            seen: Digests of images checked in earlier batches (updated in place), so that copies
                are found across batches of one run; None: within this batch only.
        """
        from bloodcell.datasets.core import as_images
        from bloodcell.datasets.hashing import image_digests

        images = as_images(images)
        reasons: list[str | None] = [None] * len(images)
        if len(images) == 0:
            return reasons
        if self.quality is not None:
            for i, found in enumerate(self.quality.explain(images)):
                reasons[i] = found[0] if found else None
        if self.stain is not None:
            for i in np.flatnonzero(self.stain.predict(images)):
                reasons[i] = reasons[i] or "not_blood_smear"
        if self.duplicates:
            known = set() if seen is None else seen
            for i, digest in enumerate(image_digests(images).tolist()):
                if digest in known:
                    reasons[i] = reasons[i] or DUPLICATE
                known.add(digest)
        return reasons

    def decide(
        self, probabilities: Any, image_reasons: Sequence[str | None]
    ) -> tuple[list[str], list[str | None]]:
        """Status and reason per image from the model's probabilities and :meth:`check_images`."""
        prob = np.asarray(probabilities, np.float64)
        if self.class_names is not None and prob.shape[1] != len(self.class_names):
            raise ConfigurationError(
                f"This rejector was fitted for a model with {len(self.class_names)} classes "
                f"{list(self.class_names)}, but the model gives {prob.shape[1]}; fit one for this model."
            )
        status: list[str] = []
        reason: list[str | None] = []
        for conf, why in zip(prob.max(axis=1), image_reasons):
            if why is not None:
                status.append(NOT_A_CELL)
                reason.append(why)
            elif conf < self.threshold:
                status.append(UNCERTAIN)
                reason.append(LOW_CONFIDENCE)
            else:
                status.append(ACCEPTED)
                reason.append(None)
        return status, reason

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready types: the threshold, the settings and the fitted image checks."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "threshold": self.threshold,
            "coverage": self.coverage,
            "tta": self.tta,
            "duplicates": self.duplicates,
            "class_names": None if self.class_names is None else list(self.class_names),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "stain": None if self.stain is None else self.stain.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Rejector:
        """The rejector saved by :meth:`to_dict`."""
        from bloodcell.outliers import ImageQuality, StainProfile

        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise InvalidDataError(
                "Not a saved bloodcell rejector (no 'format': 'bloodcell-rejector'); fit one with "
                "bloodcell.rejection.fit_rejector() or 'bloodcell reject'."
            )
        if data.get("version") != _VERSION:
            raise InvalidDataError(
                f"Rejector file version {data.get('version')!r} is not supported (this bloodcell reads "
                f"version {_VERSION}); fit the rejector again."
            )
        try:
            return cls(
                data["threshold"],
                quality=None if data["quality"] is None else ImageQuality.from_dict(data["quality"]),
                stain=None if data["stain"] is None else StainProfile.from_dict(data["stain"]),
                duplicates=data["duplicates"],
                tta=data["tta"],
                coverage=data["coverage"],
                class_names=data["class_names"],
            )
        except KeyError as err:
            raise InvalidDataError(f"The saved rejector lacks {err}; fit the rejector again.") from err

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The rejector as JSON text; written atomically to ``path`` when given."""
        import json

        text = json.dumps(self.to_dict())
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> Rejector:
        """Load a rejector from a JSON file (or JSON text)."""
        import json

        try:
            data = read_json_object(path_or_text)
        except json.JSONDecodeError as err:
            raise InvalidDataError(f"{os.fspath(path_or_text)!r} is not JSON ({err}).") from err
        return cls.from_dict(data)


def as_rejector(reject: Any) -> Rejector | None:
    """A :class:`Rejector` from what ``reject=`` accepts: a Rejector, a confidence threshold in
    [0, 1] (no image checks), the path of a saved rejector (or its JSON text), or None.

    Example:
        >>> as_rejector(0.8).threshold, as_rejector(None)
        (0.8, None)
    """
    from bloodcell._validation import is_number
    from bloodcell.errors import DataFileNotFoundError

    if reject is None or isinstance(reject, Rejector):
        return reject
    if is_number(reject):
        return Rejector(reject, duplicates=False)
    if isinstance(reject, (str, os.PathLike)):
        text = os.fspath(reject)
        if not text.lstrip().startswith("{") and not Path(text).is_file():
            raise DataFileNotFoundError(
                f"reject={text!r} is neither a threshold nor a rejector file; fit one with "
                "bloodcell.rejection.fit_rejector(...).to_json(path) or 'bloodcell reject'."
            )
        return Rejector.from_json(text)
    raise ConfigurationError(
        "reject must be a Rejector, a confidence threshold in [0, 1], a rejector JSON file or None. "
        f"Received: reject={reject!r}."
    )


def fit_rejector(
    model: Any,
    data: Any,
    *,
    coverage: float = 0.95,
    tta: str | Sequence[str] | None = None,
    reference: Any = None,
    image_checks: bool = True,
    duplicates: bool = True,
    batch_size: int = 64,
) -> Rejector:
    """A rejector whose threshold accepts ``coverage`` of the cells of ``data``.

    Args:
        model: A Keras classifier mapping 0–255 images to class probabilities.
        data: Real cells the model was not trained on (a validation set): a
            :class:`~bloodcell.datasets.BloodCellDataset` or uint8 images (N, H, W, 3). Labels are
            not needed for the threshold.
        coverage: The share of ``data`` to accept, in (0, 1].
        tta: Test-time augmentation for the confidences (see :mod:`bloodcell.tta`); predict with
            the same.
        reference: Real cells to fit the image checks on (default: ``data``), e.g. the training set.
        image_checks: Fit the quality and colour checks (False: confidence threshold alone).
        duplicates: Reject exact copies within a batch at prediction.
        batch_size: Images per prediction batch.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=5)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> rejector = fit_rejector(model, data, coverage=0.9)
        >>> confidence = bc.tta.predict(model, data, tta=None).max(axis=1)
        >>> bool((confidence >= rejector.threshold).mean() >= 0.9)
        True
    """
    from bloodcell import tta as tta_module
    from bloodcell.classes import model_class_names
    from bloodcell.outliers import ImageQuality, StainProfile

    coverage = float(check_number(coverage, "coverage", low=0.0, high=1.0, low_open=True))  # type: ignore[arg-type]
    if tta is not None and not isinstance(tta, str):
        if not all(isinstance(t, str) for t in tta):
            raise ConfigurationError(
                "fit_rejector() saves its tta with the rejector, so it must be a group name or a list of "
                f"transform names, not callables. Received: tta={tta!r}."
            )
    tta_module.resolve(tta)
    prob = tta_module.predict(model, data, tta, batch_size=batch_size)
    threshold = confidence_threshold(prob.max(axis=1), coverage)
    quality = stain = None
    if image_checks:
        cells = data if reference is None else reference
        quality = ImageQuality().fit(cells)
        stain = StainProfile().fit(cells)
    return Rejector(
        threshold,
        quality=quality,
        stain=stain,
        duplicates=duplicates,
        tta=tta,
        coverage=coverage,
        class_names=model_class_names(model),
    )
