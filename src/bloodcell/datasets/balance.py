"""Class balancing: random over- and undersampling, SMOTE, and class weights.

PBC's classes range from 855 lymphocytes to 2,319 neutrophils. The seed study compared three
answers: oversampling the small classes, SMOTE, and AugMix on an unbalanced set (AugMix won by
3.7 and 4 points). All three are here, plus ``class_weights`` for Keras's ``fit(class_weight=...)``.

Over- and undersampling are index operations: :func:`oversample_indices` returns row indices for
``to_tf_dataset(indices=...)``, which repeats rows without copying a single image. The dataset
versions (:func:`oversample`, :func:`undersample`) build a new dataset from those indices.

``strategy`` follows imbalanced-learn's ``sampling_strategy``: ``"auto"`` (oversampling: every
class up to the largest; undersampling: every class down to the smallest), or a dict
{class: target count} whose keys are class indices or names. Classes missing from the dict keep
their count.

Example:
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 1])
    >>> idx = oversample_indices(labels, seed=0)
    >>> np.bincount(labels[idx]).tolist()
    [3, 3]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from bloodcell._validation import check_choice, check_int, check_seed, is_integer, received
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError

__all__ = [
    "class_weights",
    "oversample",
    "oversample_indices",
    "smote",
    "undersample",
    "undersample_indices",
]

Strategy = Union[str, Mapping[Any, int]]  # noqa: UP007 - a runtime alias, Python 3.10


def _labels_of(data: Any) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if isinstance(data, BloodCellDataset):
        return np.asarray(data.labels), data.class_names
    labels = np.asarray(data)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool):
        raise InvalidDataError(
            f"labels must be a 1-D array of integer class indices (or a BloodCellDataset), got "
            f"dtype {labels.dtype} and shape {labels.shape}."
        )
    if labels.size and labels.min() < 0:
        raise InvalidDataError(f"labels must be non-negative class indices, got minimum {labels.min()}.")
    return labels.astype(np.int64), None


def _rng(seed: Any) -> np.random.Generator:
    return np.random.default_rng(check_seed(seed, allow_none=True))


def _targets(
    labels: np.ndarray, strategy: Strategy, class_names: tuple[str, ...] | None, kind: str
) -> dict[int, int]:
    """Target count per present class for ``kind`` in {"over", "under"}."""
    counts = np.bincount(labels) if labels.size else np.zeros(0, np.int64)
    present = [int(k) for k in np.flatnonzero(counts)]
    if not present:
        raise InvalidDataError(f"cannot {kind}sample an empty set of labels.")
    if isinstance(strategy, str):
        if strategy != "auto":
            raise ConfigurationError(
                f"strategy must be 'auto' or a dict {{class: count}}. {received('strategy', strategy)}"
            )
        goal = int(counts[present].max() if kind == "over" else counts[present].min())
        return {k: goal for k in present}
    if not isinstance(strategy, Mapping):
        raise ConfigurationError(
            f"strategy must be 'auto' or a dict {{class: count}}, got {type(strategy).__name__}."
        )
    targets = {k: int(counts[k]) for k in present}
    for key, value in strategy.items():
        if isinstance(key, str):
            if class_names is None or key not in class_names:
                known = list(class_names) if class_names else "integer indices (plain labels have no names)"
                raise ConfigurationError(f"strategy names unknown class {key!r}; use one of {known}.")
            k = class_names.index(key)
        elif is_integer(key):
            k = int(key)
        else:
            raise ConfigurationError(f"strategy keys must be class indices or names, got {key!r}.")
        if k not in targets:
            raise ConfigurationError(f"strategy asks for class {key!r}, which has no images to resample.")
        if not is_integer(value) or value < 0:
            raise ConfigurationError(
                f"strategy counts must be non-negative integers, got {key!r}: {value!r}."
            )
        if kind == "over" and value < counts[k]:
            raise ConfigurationError(
                f"oversampling cannot shrink class {key!r} from {counts[k]} to {value} images; "
                "use undersample()."
            )
        if kind == "under" and value > counts[k]:
            raise ConfigurationError(
                f"undersampling cannot grow class {key!r} from {counts[k]} to {value} images; "
                "use oversample()."
            )
        targets[k] = int(value)
    return targets


def oversample_indices(labels: Any, strategy: Strategy = "auto", seed: int | None = 0) -> np.ndarray:
    """Row indices that repeat the rows of small classes up to the targets (random oversampling).

    Every original row appears once; each class then gets extra rows drawn at random, with
    replacement, from its own rows, as imbalanced-learn's ``RandomOverSampler`` does. The
    result is shuffled.

    Args:
        labels: Integer labels (N,), or a :class:`~bloodcell.datasets.BloodCellDataset`.
        strategy: ``"auto"`` (every class up to the largest) or {class: target count}.
        seed: Seed of the random draws (None: fresh randomness).

    Returns:
        int64 indices into ``labels``, for ``to_tf_dataset(dataset, indices=...)`` or ``dataset[indices]``.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=2).drop([0])
        >>> idx = oversample_indices(data, seed=0)
        >>> ds = bc.pipeline.to_tf_dataset(data, batch_size=16, indices=idx)
        >>> len(idx)
        16
    """
    labels, names = _labels_of(labels)
    rng = _rng(seed)
    targets = _targets(labels, strategy, names, "over")
    parts = [np.arange(len(labels), dtype=np.int64)]
    for k, goal in targets.items():
        rows = np.flatnonzero(labels == k)
        if goal > len(rows):
            parts.append(rng.choice(rows, size=goal - len(rows), replace=True).astype(np.int64))
    return rng.permutation(np.concatenate(parts))


def undersample_indices(labels: Any, strategy: Strategy = "auto", seed: int | None = 0) -> np.ndarray:
    """Row indices keeping a random subset of each large class, without repeats (random undersampling).

    Args:
        labels: Integer labels (N,), or a :class:`~bloodcell.datasets.BloodCellDataset`.
        strategy: ``"auto"`` (every class down to the smallest) or {class: target count}.
        seed: Seed of the random draws.

    Returns:
        Sorted int64 indices into ``labels``.

    Example:
        >>> import numpy as np
        >>> np.bincount(np.array([0, 0, 0, 1])[undersample_indices([0, 0, 0, 1], seed=0)]).tolist()
        [1, 1]
    """
    labels, names = _labels_of(labels)
    rng = _rng(seed)
    targets = _targets(labels, strategy, names, "under")
    keep = [rng.choice(np.flatnonzero(labels == k), size=goal, replace=False) for k, goal in targets.items()]
    return np.sort(np.concatenate(keep).astype(np.int64))


def _check_dataset(dataset: Any, what: str) -> BloodCellDataset:
    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(
            f"{what} takes a BloodCellDataset, got {type(dataset).__name__}; for plain label arrays use "
            f"{what.replace('()', '_indices()')}."
        )
    dataset.check_not_empty(what)
    return dataset


def oversample(
    dataset: BloodCellDataset, strategy: Strategy = "auto", seed: int | None = 0
) -> BloodCellDataset:
    """A dataset with the small classes' images repeated up to the targets (see :func:`oversample_indices`).

    This copies the repeated images; for training, ``to_tf_dataset(dataset,
    indices=oversample_indices(dataset))`` gives the same batches without any copy.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=3).drop([0, 1])
        >>> oversample(data).class_counts()["basophil"]
        3
    """
    dataset = _check_dataset(dataset, "oversample()")
    return dataset.subset(oversample_indices(dataset, strategy, seed))


def undersample(
    dataset: BloodCellDataset, strategy: Strategy = "auto", seed: int | None = 0
) -> BloodCellDataset:
    """A dataset with a random subset of each large class (see :func:`undersample_indices`).

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=3).drop([0, 1])
        >>> set(undersample(data).class_counts().values())
        {1}
    """
    dataset = _check_dataset(dataset, "undersample()")
    return dataset.subset(undersample_indices(dataset, strategy, seed))


def class_weights(dataset: Any) -> dict[int, float]:
    """Per-class weights for Keras's ``fit(class_weight=...)``: ``N / (classes present · count)``.

    The "balanced" rule of scikit-learn: every class contributes the same total weight. Classes
    without images get weight 1.0 (they never occur in the labels, so it has no effect).

    Args:
        dataset: A :class:`~bloodcell.datasets.BloodCellDataset` or integer labels (N,).

    Returns:
        {class index: weight} for every class of the dataset (or 0..max label).

    Example:
        >>> class_weights([0, 0, 0, 1])
        {0: 0.6666666666666666, 1: 2.0}
    """
    labels, _ = _labels_of(dataset)
    if labels.size == 0:
        raise InvalidDataError("class_weights() needs at least one label.")
    num_classes = dataset.num_classes if isinstance(dataset, BloodCellDataset) else int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes)
    present = int(np.count_nonzero(counts))
    return {k: (float(len(labels) / (present * counts[k])) if counts[k] else 1.0) for k in range(num_classes)}


# ----------------------------------------------------------------------------------------------
# SMOTE
# ----------------------------------------------------------------------------------------------
def _import_imblearn() -> Any:
    try:
        import imblearn.over_sampling
        import imblearn.utils
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "imblearn":
            raise ImportError(
                "smote() uses imbalanced-learn, which is not installed; install it with "
                "`pip install bloodcell[balance]` (or `pip install imbalanced-learn`)."
            ) from None
        raise
    return imblearn


def _features(images: np.ndarray, features: Any, batch_size: int) -> np.ndarray:
    """Feature vectors (N, D) from a Keras model (predicted in batches on float 0–255) or a callable."""
    keras = sys.modules.get("keras")  # a Keras model exists only if Keras is loaded: don't load it here
    if keras is not None and isinstance(features, keras.Model):
        chunks = [
            np.asarray(features.predict_on_batch(images[i : i + batch_size].astype(np.float32)))
            for i in range(0, len(images), batch_size)
        ]
        out = np.concatenate(chunks)
    elif callable(features):
        out = np.asarray(features(images))
    else:
        raise ConfigurationError(
            "space='features' needs features=: a Keras model (e.g. bc.models.feature_extractor(...)) or a "
            f"callable mapping uint8 images (N, H, W, 3) to vectors (N, D); got {features!r}."
        )
    if out.ndim != 2 or out.shape[0] != len(images):
        raise InvalidDataError(
            f"features must map {len(images)} images to a (N, D) array, got shape {out.shape}."
        )
    if not np.isfinite(out).all():
        raise InvalidDataError("features returned NaN or infinite values.")
    return out.astype(np.float64)


def _smote_pairs(
    points: np.ndarray, labels: np.ndarray, needed: dict[int, int], k_neighbors: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SMOTE's draws: per synthetic sample a base row, one of its k nearest same-class rows, a step in [0, 1).

    The same rule as imbalanced-learn's ``SMOTE`` (base rows uniform within the class, the
    neighbour uniform among the k nearest, step uniform), with the neighbours searched in ``points``.
    """
    from sklearn.neighbors import NearestNeighbors

    bases, partners, steps, classes = [], [], [], []
    for k, n_new in needed.items():
        if n_new <= 0:
            continue
        rows = np.flatnonzero(labels == k)
        if len(rows) < 2:
            raise InvalidDataError(
                f"SMOTE needs at least 2 images of class {k} to interpolate, got {len(rows)}."
            )
        n_neighbors = min(k_neighbors, len(rows) - 1)
        nn = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(points[rows])
        neighbours = nn.kneighbors(points[rows], return_distance=False)[:, 1:]  # drop the row itself
        base = rng.integers(0, len(rows), size=n_new)
        pick = rng.integers(0, n_neighbors, size=n_new)
        bases.append(rows[base])
        partners.append(rows[neighbours[base, pick]])
        steps.append(rng.uniform(0.0, 1.0, size=n_new))
        classes.append(np.full(n_new, k, np.int64))
    if not bases:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), empty
    return np.concatenate(bases), np.concatenate(partners), np.concatenate(steps), np.concatenate(classes)


def smote(
    dataset: BloodCellDataset,
    k_neighbors: int = 5,
    space: str = "pixels",
    *,
    strategy: Strategy = "auto",
    features: Any = None,
    batch_size: int = 64,
    seed: int | None = 0,
) -> BloodCellDataset:
    """The dataset plus SMOTE's synthetic images for the small classes.

    SMOTE (Chawla et al. 2002) makes a new sample of a class by picking one of its samples, one
    of that sample's ``k_neighbors`` nearest neighbours in the same class, and a point at random on
    the segment between them.

    * ``space="pixels"``: neighbours and segments in pixel space; this is imbalanced-learn's
      ``SMOTE`` run on the flattened images, the synthetic rows rounded to uint8. Needs memory
      for a float copy of the data (about 220 kB per 96×96 image).
    * ``space="features"``: neighbours are found in a feature space (``features``: e.g.
      ``bc.models.feature_extractor("efficientnetv2s")`` or any callable), where "nearest"
      means "most alike" far better than in raw pixels. A synthetic *image* is then the same
      interpolation applied to the two neighbours' pixels: ``x_i + step·(x_j − x_i)``, rounded to
      uint8 (a cross-fade of two similar cells; interpolated feature vectors have no image).
      imbalanced-learn's ``SMOTE`` cannot report which pairs it interpolated, so this path draws
      them itself with scikit-learn's ``NearestNeighbors``, by the same rule, and needs no extra.

    Args:
        dataset: The images to balance.
        k_neighbors: Neighbours per sample (imbalanced-learn's default 5).
        space: ``"pixels"`` or ``"features"``.
        strategy: ``"auto"`` (every class up to the largest) or {class: target count}.
        features: For ``space="features"``: a Keras model or callable mapping uint8 images
            (N, H, W, 3) to (N, D) vectors.
        batch_size: Images per batch when ``features`` is a Keras model.
        seed: Seed of the random draws.

    Returns:
        The original images followed by the synthetic ones (``sources`` "smote", ``ids`` "smote:<i>").

    Raises:
        ImportError: ``space="pixels"`` without imbalanced-learn (``pip install bloodcell[balance]``).

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=6).drop([0, 1, 2])
        >>> balanced = smote(data, k_neighbors=2, seed=0)
        >>> balanced.class_counts()["basophil"], str(balanced.sources[-1])
        (6, 'smote')
    """
    dataset = _check_dataset(dataset, "smote()")
    k_neighbors = check_int(k_neighbors, "k_neighbors", minimum=1)
    check_choice(space, "space", ("pixels", "features"))
    labels = np.asarray(dataset.labels)
    targets = _targets(labels, strategy, dataset.class_names, "over")
    counts = np.bincount(labels, minlength=dataset.num_classes)
    needed = {k: goal - int(counts[k]) for k, goal in targets.items() if goal > counts[k]}
    if not needed:
        return dataset
    for k in needed:
        if counts[k] < 2:
            raise InvalidDataError(
                f"SMOTE needs at least 2 images of class {dataset.class_names[k]!r} to interpolate, "
                f"got {counts[k]}."
            )
    images = dataset.images
    if space == "pixels":
        imblearn = _import_imblearn()
        k_eff = int(min(k_neighbors, min(counts[k] for k in needed) - 1))
        sampler = imblearn.over_sampling.SMOTE(
            sampling_strategy={k: targets[k] for k in needed}, k_neighbors=k_eff, random_state=seed
        )
        flat = images.reshape(len(images), -1).astype(np.float32)
        x_res, y_res = sampler.fit_resample(flat, labels)
        new_images = (
            np.clip(np.rint(x_res[len(images) :]), 0, 255).astype(np.uint8).reshape((-1, *images.shape[1:]))
        )
        new_labels = np.asarray(y_res[len(images) :], np.int64)
    else:
        points = _features(np.asarray(images), features, batch_size)
        base, partner, step, new_labels = _smote_pairs(points, labels, needed, int(k_neighbors), _rng(seed))
        new_images = np.empty((len(base), *images.shape[1:]), np.uint8)
        for start in range(0, len(base), 256):  # in chunks: no full-size float copy
            sl = slice(start, start + 256)
            a = images[base[sl]].astype(np.float32)
            b = images[partner[sl]].astype(np.float32)
            new_images[sl] = np.clip(
                np.rint(a + step[sl, None, None, None].astype(np.float32) * (b - a)), 0, 255
            )
    synthetic = BloodCellDataset(
        new_images,
        new_labels,
        dataset.class_names,
        ids=[f"smote:{i}" for i in range(len(new_labels))],
        sources=np.full(len(new_labels), "smote"),
    )
    if dataset.ids is None or dataset.sources is None:
        dataset = dataset.replace(
            ids=dataset.ids if dataset.ids is not None else np.arange(len(dataset)).astype(str),
            sources=dataset.sources if dataset.sources is not None else np.full(len(dataset), "original"),
        )
    return dataset.concat(synthetic)
