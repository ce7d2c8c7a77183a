"""The detector interface every outlier detector follows, in the scikit-learn manner.

A detector is configured by keyword arguments (its hyper-parameters, each with a documented
default), learns what it needs from a dataset in :meth:`~OutlierDetector.fit`, and then, for any
dataset, gives one anomaly score per image (:meth:`~OutlierDetector.score`, higher = more
anomalous), a boolean mask of the images it flags (:meth:`~OutlierDetector.predict`) and the
reason for each flag (:meth:`~OutlierDetector.explain`). :meth:`~OutlierDetector.detect` returns
all three at once, which is what :func:`~bloodcell.outliers.find_outliers` uses.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bloodcell.datasets.core import BloodCellDataset, as_images
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError, NotFittedError

__all__ = ["OutlierDetector", "Detection", "DuplicateGroup", "ImageData"]


class ImageData(NamedTuple):
    """What a detector reads: the images and, when known, their labels and class names."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None


def as_image_data(data: Any) -> ImageData:
    """Accept a :class:`BloodCellDataset` or a uint8 image array (N, H, W, 3) (no labels then)."""
    if isinstance(data, BloodCellDataset):
        return ImageData(data.images, data.labels, data.class_names)
    if isinstance(data, ImageData):
        return data
    if isinstance(data, (list, tuple)) or not hasattr(data, "shape"):
        raise InvalidDtypeError(
            "outlier detectors take a BloodCellDataset or a uint8 image array (N, H, W, 3). "
            f"Received: data={type(data).__name__}. Wrap arrays with bloodcell.datasets.BloodCellDataset(images, labels)."
        )
    return ImageData(as_images(data), None, None)


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of one another.

    Attributes:
        indices: Positions of the images in the dataset, ascending; ``indices[0]`` is the one
            :meth:`OutlierReport.clean` keeps when the labels agree.
        labels: Their labels (empty when the images came without labels).
        kind: ``"exact"`` (identical pixels) or ``"near"`` (perceptual hashes within the threshold).
    """

    indices: np.ndarray
    labels: np.ndarray
    kind: str

    @property
    def label_conflict(self) -> bool:
        """True when the copies carry more than one label."""
        return len(np.unique(self.labels)) > 1

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Detection:
    """One detector's verdict on one dataset.

    Attributes:
        scores: float64 (N,), higher = more anomalous.
        flags: bool (N,), the images the detector would remove.
        reasons: One tuple of reason names per image (empty when not flagged).
        groups: Duplicate groups of two or more images (duplicate detectors only, else empty).
    """

    scores: np.ndarray
    flags: np.ndarray
    reasons: list[tuple[str, ...]]
    groups: list[DuplicateGroup] = field(default_factory=list)


class OutlierDetector:
    """Base class of the detectors: scikit-learn style parameters, ``fit`` / ``score`` / ``predict``.

    Subclasses define ``name`` (used as the column name in reports), ``reasons`` (the reason
    names they can give), and implement ``_fit(data, verbose)`` and ``_detect(data, verbose)``.
    Hyper-parameters are the ``__init__`` keyword arguments, stored unchanged under the same name
    (so :meth:`get_params` and :meth:`set_params` work as in scikit-learn); what ``fit`` learns is
    stored in attributes ending in ``_``.
    """

    name: str = "detector"
    reasons: tuple[str, ...] = ()

    # -- scikit-learn conventions ----------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters, as keyword arguments that rebuild this detector."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> OutlierDetector:
        """Change hyper-parameters (unfits nothing; call :meth:`fit` again)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise TypeError(f"{type(self).__name__} has no parameter {key!r}; it has {sorted(valid)}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not _same(value, sig.parameters[name].default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- the interface ----------------------------------------------------------------------------
    def fit(self, dataset: Any, *, verbose: bool = False) -> OutlierDetector:
        """Learn what is typical from ``dataset`` (a BloodCellDataset or uint8 images); returns self."""
        data = as_image_data(dataset)
        self._fit(data, verbose)
        self.n_images_fit_ = len(data.images)
        return self

    def detect(self, dataset: Any, *, verbose: bool = False) -> Detection:
        """Scores, flags and reasons for every image of ``dataset`` at once."""
        self._check_fitted()
        return self._detect(as_image_data(dataset), verbose)

    def score(self, dataset: Any) -> np.ndarray:
        """One anomaly score per image, float64 (N,): higher = more anomalous."""
        return self.detect(dataset).scores

    def predict(self, dataset: Any) -> np.ndarray:
        """Boolean mask (N,): True for the images this detector flags (see the class's threshold)."""
        return self.detect(dataset).flags

    def explain(self, dataset: Any) -> list[tuple[str, ...]]:
        """Why each image was flagged: a tuple of reason names per image (empty when not flagged)."""
        return self.detect(dataset).reasons

    def fit_predict(self, dataset: Any) -> np.ndarray:
        """``fit(dataset).predict(dataset)``."""
        return self.fit(dataset).predict(dataset)

    # -- saving (no pickle) -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The hyper-parameters and what :meth:`fit` learned, as JSON-ready types.

        Supported by the detectors whose fitted state is plain numbers (:class:`ImageQuality`,
        :class:`StainProfile`); :meth:`from_dict` rebuilds the fitted detector.
        """
        self._check_fitted()
        return {
            "detector": type(self).__name__,
            "params": self.get_params(),
            "n_images_fit": int(self.n_images_fit_),
            "state": self._get_state(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """The fitted detector saved by :meth:`to_dict`."""
        try:
            if data["detector"] != cls.__name__:
                raise ValueError(f"it holds a {data['detector']!r}")
            detector = cls(**data["params"])
            detector._set_state(data["state"])
            detector.n_images_fit_ = int(data["n_images_fit"])
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidDataError(
                f"Not a saved {cls.__name__} ({err!r}); save one with {cls.__name__}.to_dict()."
            ) from err
        return detector

    # -- for subclasses ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        raise ConfigurationError(f"{type(self).__name__} cannot be saved as JSON (to_dict).")

    def _set_state(self, state: dict[str, Any]) -> None:
        raise ConfigurationError(f"{type(self).__name__} cannot be loaded from JSON (from_dict).")

    def _fit(self, data: ImageData, verbose: bool) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _detect(self, data: ImageData, verbose: bool) -> Detection:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_images_fit_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call .fit(dataset) first "
                "(or use bloodcell.outliers.find_outliers, which fits and scores in one call)."
            )


class FeatureCache:
    """Remembers the features of the last image array seen (by identity, through a weak reference),
    so ``fit(data)`` followed by ``detect(data)`` computes them once without keeping ``data`` alive."""

    def __init__(self) -> None:
        self._ref: Any = None
        self._value: np.ndarray | None = None

    def get(self, images: np.ndarray) -> np.ndarray | None:
        if self._ref is not None and self._ref() is images:
            return self._value
        return None

    def put(self, images: np.ndarray, value: np.ndarray) -> np.ndarray:
        import weakref

        try:
            self._ref, self._value = weakref.ref(images), value
        except TypeError:  # not weak-referenceable: do not cache
            self._ref, self._value = None, None
        return value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays, models: compare by identity
        return a is b


def flags_to_reasons(masks: dict[str, np.ndarray], n: int) -> list[tuple[str, ...]]:
    """Per image, the names of the masks that are True for it (in the dict's order)."""
    out: list[tuple[str, ...]] = [()] * n
    hit = np.zeros(n, bool)
    for mask in masks.values():
        hit |= mask
    for i in np.flatnonzero(hit):
        out[i] = tuple(name for name, mask in masks.items() if mask[i])
    return out
