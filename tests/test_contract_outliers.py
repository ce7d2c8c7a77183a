"""The contract every outlier detector of ``bloodcell.outliers`` keeps, checked on each one.

In the spirit of scikit-learn's ``check_estimator``: the detectors are found by introspection of
the package's public names (every :class:`~bloodcell.outliers.OutlierDetector` subclass), so a new
detector is checked without being listed here. What :mod:`bloodcell.outliers.base` promises, and
what is checked, on real cells of the bundled sample:

* ``__init__`` stores its keyword arguments and nothing else; ``get_params`` returns them,
  ``set_params`` changes them and refuses unknown names, ``repr`` shows the ones changed, and a
  detector rebuilt from ``get_params`` scores the same;
* ``score``, ``predict``, ``explain`` and ``detect`` refuse to run before ``fit`` with
  :class:`~bloodcell.errors.NotFittedError`; ``fit`` returns the detector;
* ``score`` is float64 (N,), ``predict`` bool (N,), ``explain`` N tuples of the detector's own
  reason names, non-empty exactly where an image is flagged, all agreeing with ``detect``;
* fitting twice on the same data gives the same scores; a detector fitted once scores new images;
* bare uint8 arrays work (unless the detector needs labels); anything else gets one clear error;
* no images: a fitted detector scores them (empty results), and a detector that learns what is
  typical of the images refuses to fit on none (:class:`~bloodcell.errors.EmptyDatasetError`).

What each detector finds is tested in ``test_outliers_<module>.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import (
    ConfigurationError,
    EmptyDatasetError,
    InvalidDataError,
    InvalidDtypeError,
    NotFittedError,
)
from bloodcell.outliers import OutlierDetector


def colour_statistics(batch: np.ndarray) -> np.ndarray:
    """A feature extractor that needs no network: each channel's mean and spread."""
    return np.concatenate([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)


def out_of_fold_probabilities(data: BloodCellDataset) -> np.ndarray:
    """Plausible class probabilities for ``data``: the given label most probable for most cells."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(data.num_classes), len(data)) * 0.5
    probs[np.arange(len(data)), data.labels] += 0.5
    return probs


# Detectors whose typical use needs arguments: how to build one for a dataset. EmbeddingOutliers's
# default backbone downloads ImageNet weights, which a test cannot; LabelIssues reads a model's
# probabilities for the very images it scores.
NEEDS_ARGUMENTS: dict[str, Callable[[BloodCellDataset], Any]] = {
    "EmbeddingOutliers": lambda data: bc.outliers.EmbeddingOutliers(
        extractor=colour_statistics, n_components=None, n_estimators=20
    ),
    "LabelIssues": lambda data: bc.outliers.LabelIssues(pred_probs=out_of_fold_probabilities(data)),
}
# Detectors that judge images against their labels: they need a BloodCellDataset, not a bare array.
NEEDS_LABELS = {"LabelIssues"}
# Detectors whose parameters describe the images fitted (one row per image): they score only those.
SCORES_FITTED_IMAGES_ONLY = {"LabelIssues"}
# Detectors that learn nothing from the images in fit (duplicates are looked for within the data
# scored; LabelIssues reads the model's probabilities): fitting them on no images is harmless.
LEARN_NOTHING_FROM_IMAGES = {"ExactDuplicates", "NearDuplicates", "LabelIssues"}

# Contract cases a detector fails today: bugs, reported, to be fixed in src/.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def detectors_for(test: str) -> list[Any]:
    """The detector names to parametrize ``test`` with, its known bugs marked xfail (strict)."""
    return [
        pytest.param(
            name,
            marks=[
                pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(test, name)]),
                pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # NumPy's, on the empty arrays
            ],
        )
        if (test, name) in KNOWN_BUGS
        else name
        for name in DETECTORS
    ]


def _public_detectors() -> list[str]:
    return [
        name
        for name in sorted(bc.outliers.__all__)
        if inspect.isclass(obj := getattr(bc.outliers, name))
        and issubclass(obj, OutlierDetector)
        and obj is not OutlierDetector  # the abstract base class
    ]


DETECTORS = _public_detectors()


def build(name: str, data: BloodCellDataset) -> Any:
    if name in NEEDS_ARGUMENTS:
        return NEEDS_ARGUMENTS[name](data)
    return getattr(bc.outliers, name)()


@pytest.fixture(scope="module")
def cells(sample) -> BloodCellDataset:
    """48 real cells, 6 per class."""
    idx = np.concatenate([np.flatnonzero(sample.labels == k)[:6] for k in range(sample.num_classes)])
    return sample.subset(idx)


@pytest.fixture(scope="module")
def other_cells(sample) -> BloodCellDataset:
    """16 other real cells, 2 per class: images the detectors were not fitted on."""
    idx = np.concatenate([np.flatnonzero(sample.labels == k)[6:8] for k in range(sample.num_classes)])
    return sample.subset(idx)


def test_introspection_finds_the_detectors():
    assert {"ExactDuplicates", "NearDuplicates", "ImageQuality", "StainProfile", "EmbeddingOutliers"} <= set(
        DETECTORS
    )


def test_not_fitted_error_is_a_value_error_like_scikit_learns():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_can_be_built_for_the_contract(cells, name):
    cls = getattr(bc.outliers, name)
    params = inspect.signature(cls).parameters.values()
    assert all(p.kind == p.KEYWORD_ONLY for p in params), f"{name}: hyper-parameters are keyword-only"
    assert isinstance(build(name, cells), cls)
    if name not in NEEDS_ARGUMENTS:
        assert repr(cls()) == f"{name}()"


@pytest.mark.parametrize("name", DETECTORS)
def test_init_stores_its_parameters_and_get_set_params_round_trip(cells, name):
    det = build(name, cells)
    params = det.get_params()
    assert list(params) == list(inspect.signature(type(det)).parameters)
    # __init__ only stores its arguments, unchanged: nothing learnt, nothing derived.
    assert set(vars(det)) == set(params)
    assert all(getattr(det, key) is value for key, value in params.items())
    defaults = {k: p.default for k, p in inspect.signature(type(det)).parameters.items()}
    for key, value in params.items():
        if value is not defaults[key]:
            assert f"{key}=" in repr(det)
    assert det.set_params(**params) is det and det.get_params() == params
    with pytest.raises(TypeError, match="no parameter"):
        det.set_params(no_such_parameter=1)


@pytest.mark.parametrize("name", DETECTORS)
def test_refuses_to_score_before_fit(cells, name):
    det = build(name, cells)
    for method in (det.score, det.predict, det.explain, det.detect):
        with pytest.raises(NotFittedError, match="fit"):
            method(cells)


@pytest.mark.parametrize("name", DETECTORS)
def test_fit_score_predict_explain_agree_on_real_cells(cells, name):
    det = build(name, cells)
    assert det.fit(cells) is det
    assert det.n_images_fit_ == len(cells)
    n = len(cells)
    scores, flags, reasons = det.score(cells), det.predict(cells), det.explain(cells)
    assert scores.dtype == np.float64 and scores.shape == (n,) and np.isfinite(scores).all()
    assert flags.dtype == bool and flags.shape == (n,)
    assert isinstance(reasons, list) and len(reasons) == n
    assert all(isinstance(r, tuple) and set(r) <= set(det.reasons) for r in reasons)
    assert [bool(r) for r in reasons] == flags.tolist()  # a reason exactly where flagged
    detection = det.detect(cells)
    np.testing.assert_array_equal(detection.scores, scores)
    np.testing.assert_array_equal(detection.flags, flags)
    assert detection.reasons == reasons
    assert det.fit_predict(cells).tolist() == flags.tolist()
    assert isinstance(det.name, str) and det.name and det.reasons


@pytest.mark.parametrize("name", DETECTORS)
def test_fitting_is_deterministic_and_a_clone_scores_the_same(cells, name):
    det = build(name, cells)
    first = det.fit(cells).score(cells)
    np.testing.assert_array_equal(det.fit(cells).score(cells), first)
    clone = type(det)(**det.get_params())
    np.testing.assert_array_equal(clone.fit(cells).score(cells), first)


@pytest.mark.parametrize("name", DETECTORS)
def test_a_fitted_detector_scores_other_images(cells, other_cells, name):
    det = build(name, cells).fit(cells)
    if name in SCORES_FITTED_IMAGES_ONLY:
        with pytest.raises(InvalidDataError):
            det.score(other_cells)
        return
    scores = det.score(other_cells)
    assert scores.shape == (len(other_cells),) and np.isfinite(scores).all()
    assert det.predict(other_cells[:1]).shape == (1,)  # one image


@pytest.mark.parametrize("name", DETECTORS)
def test_bare_arrays_work_and_other_input_gets_one_clear_error(cells, name):
    det = build(name, cells)
    if name in NEEDS_LABELS:
        with pytest.raises(ConfigurationError, match="labels"):
            det.fit(cells.images)
    else:
        scores = det.fit(cells.images).score(cells.images)
        assert scores.shape == (len(cells),)
    with pytest.raises(InvalidDtypeError, match="uint8"):
        det.fit(cells.images.astype(np.float32))
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        det.fit(list(cells.images))


@pytest.mark.parametrize("name", detectors_for("test_scores_no_images"))
def test_scores_no_images(cells, name):
    det = build(name, cells).fit(cells)
    if name in SCORES_FITTED_IMAGES_ONLY:
        with pytest.raises(InvalidDataError):
            det.score(cells[:0])
        return
    none = cells[:0]
    assert det.score(none).shape == (0,) and det.score(none).dtype == np.float64
    assert det.predict(none).shape == (0,) and det.explain(none) == []


@pytest.mark.parametrize("name", detectors_for("test_refuses_to_fit_on_no_images"))
def test_refuses_to_fit_on_no_images(cells, name):
    none = cells[:0]
    det = build(name, none)
    if name in LEARN_NOTHING_FROM_IMAGES:
        assert det.fit(none).score(none).shape == (0,)
    else:
        with pytest.raises(EmptyDatasetError):
            det.fit(none)
