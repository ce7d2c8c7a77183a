"""Leak-free splits: stratified by class, deterministic for a seed, identical images kept together."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bloodcell.datasets.core import BloodCellDataset
from bloodcell.datasets.hashing import identical_groups
from bloodcell.errors import ConfigurationError, EmptyDatasetError

__all__ = ["split", "split_indices", "kfold", "duplicate_groups"]


def duplicate_groups(dataset: BloodCellDataset, group_duplicates: bool = True) -> np.ndarray:
    """Group id per image: byte-identical images share one (or every image its own id)."""
    if not group_duplicates:
        return np.arange(len(dataset))
    return identical_groups(dataset.images)


def _fraction(value: float | int, n: int, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name} must be a fraction in [0, 1) or a count of images, got {value!r}.")
    if isinstance(value, (int, np.integer)) and value >= 1:
        if value >= n:
            raise ConfigurationError(f"{name}={value} images, but the dataset holds only {n}.")
        return value / n
    if not 0 <= value < 1:
        raise ConfigurationError(f"{name} must be a fraction in [0, 1) or a count of images, got {value!r}.")
    return float(value)


def _group_strata(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The class each group is stratified by: its most frequent label (lowest on ties)."""
    n_groups = int(groups.max()) + 1
    counts = np.zeros((n_groups, int(labels.max()) + 1), np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(axis=1)


def split_indices(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float, ...],
    *,
    seed: int | None = 0,
    stratify: bool = True,
) -> list[np.ndarray]:
    """Index arrays for each requested part plus the remainder, first: ``[rest, part1, part2, ...]``.

    Works on whole groups: all images of a group land in the same part. Within each class
    (stratum), groups are shuffled with ``seed`` and handed out until each part reaches its share.

    Example:
        >>> labels = np.array([0] * 10 + [1] * 10)
        >>> rest, val = split_indices(labels, np.arange(20), (0.2,), seed=0)
        >>> len(rest), len(val), np.bincount(labels[val]).tolist()
        (16, 4, [2, 2])
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    strata = _group_strata(labels, groups) if stratify else np.zeros(int(groups.max()) + 1, np.int64)
    sizes = np.bincount(groups)
    assignment = np.zeros(len(sizes), np.int64)  # 0 = remainder, k = part k
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        members = members[rng.permutation(len(members))]
        total = int(sizes[members].sum())
        starts = np.concatenate([[0], np.cumsum(sizes[members])[:-1]])  # images before each group
        bound = 0.0
        for part, frac in enumerate(fractions, start=1):
            lo, bound = bound, bound + frac * total
            # A group joins a part when it starts inside the part's share (rounded).
            take = (starts >= round(lo)) & (starts < round(bound))
            assignment[members[take]] = part
    image_part = assignment[groups]
    return [np.flatnonzero(image_part == k) for k in range(len(fractions) + 1)]


def split(
    dataset: BloodCellDataset,
    val: float | int = 0.1,
    test: float | int = 0.1,
    *,
    seed: int | None = 0,
    stratify: bool = True,
    group_duplicates: bool = True,
) -> tuple[BloodCellDataset, ...]:
    """Split a dataset into train, validation and test parts.

    Stratified by class, deterministic for a seed, and byte-identical images (same pixels) always
    land in the same part, so a duplicate cannot leak from train into test. A group whose copies
    carry different labels is stratified by its most frequent label.

    Args:
        dataset: The data to split.
        val: Share of images for validation (fraction in [0, 1), or a count ≥ 1).
        test: Share for test, likewise. 0 leaves the part out.
        seed: Seed for the shuffle; None draws a fresh one.
        stratify: Keep class proportions equal across parts.
        group_duplicates: Keep identical images together.

    Returns:
        ``(train, val, test)``; parts asked with 0 are left out, so ``split(d, val=0.2, test=0)``
        returns ``(train, val)``.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> train, val, test = split(load_sample(per_class=20), val=0.1, test=0.2, seed=0)
        >>> len(train), len(val), len(test)
        (112, 16, 32)
    """
    dataset.check_not_empty("split()")
    n = len(dataset)
    fv, ft = _fraction(val, n, "val"), _fraction(test, n, "test")
    if fv + ft >= 1:
        raise ConfigurationError(
            f"val + test must leave images for training, got val={val!r}, test={test!r}."
        )
    wanted = [(name, f) for name, f in (("val", fv), ("test", ft)) if f > 0]
    parts = split_indices(
        dataset.labels,
        duplicate_groups(dataset, group_duplicates),
        tuple(f for _, f in wanted),
        seed=seed,
        stratify=stratify,
    )
    return tuple(dataset.subset(idx) for idx in parts)


def kfold(
    dataset: BloodCellDataset,
    k: int = 5,
    *,
    seed: int | None = 0,
    stratify: bool = True,
    group_duplicates: bool = True,
) -> Iterator[tuple[BloodCellDataset, BloodCellDataset]]:
    """Yield ``(train, val)`` for each of ``k`` folds: stratified, seeded, duplicates kept together.

    Uses scikit-learn's ``StratifiedGroupKFold`` with identical images as groups.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> folds = list(kfold(load_sample(per_class=10), k=5))
        >>> [len(v) for _, v in folds]
        [16, 16, 16, 16, 16]
    """
    from sklearn.model_selection import StratifiedGroupKFold

    dataset.check_not_empty("kfold()")
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigurationError(f"k must be an integer ≥ 2, got {k!r}.")
    groups = duplicate_groups(dataset, group_duplicates)
    if len(np.unique(groups)) < k:
        raise EmptyDatasetError(f"cannot make {k} folds from {len(np.unique(groups))} distinct images.")
    y = dataset.labels if stratify else np.zeros(len(dataset), np.int64)
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    for train_idx, val_idx in splitter.split(np.zeros(len(dataset)), y, groups):
        yield dataset.subset(np.sort(train_idx)), dataset.subset(np.sort(val_idx))
