"""Leak-free splits: stratified by class, deterministic for a seed, identical images kept together."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from bloodcell._validation import check_int, check_seed, received
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.datasets.hashing import identical_groups
from bloodcell.errors import BloodcellWarning, ConfigurationError, EmptyDatasetError, InvalidDataError

__all__ = ["split", "split_indices", "kfold", "kfold_indices", "duplicate_groups"]


def duplicate_groups(dataset: BloodCellDataset, group_duplicates: bool = True) -> np.ndarray:
    """Group id per image: byte-identical images share one (or every image its own id).

    Example:
        >>> from bloodcell.datasets import concat, load_sample
        >>> data = load_sample(per_class=1)
        >>> duplicate_groups(concat([data, data[:2]])).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    """
    if not group_duplicates:
        return np.arange(len(dataset))
    return identical_groups(dataset.images)


def _amount(value: float | int, n: int, name: str) -> float | int:
    """Check one requested part: a fraction in [0, 1) or a count of images in 1..n-1."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        if value >= n:
            raise ConfigurationError(
                f"{name} asks for {int(value)} images, but the dataset holds only {n}; ask for fewer "
                f"images or a fraction in [0, 1). {received(name, value)}"
            )
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ConfigurationError(
            f"{name} must be a fraction in [0, 1) or a whole count of images ≥ 1. {received(name, value)}"
        )
    return float(value)


def _decimal(value: float | int) -> Decimal:
    # A fraction is read as the decimal it prints as, so 0.7 + 0.3 is exactly 1 and 0.15 × 10 is
    # exactly 1.5, instead of their binary approximations landing either side of the boundary.
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _amounts(values: Sequence[float | int], names: Sequence[str], n: int) -> list[float | int]:
    amounts = [_amount(v, n, name) for v, name in zip(values, names)]
    asked = sum((_decimal(a) if isinstance(a, int) else _decimal(a) * n for a in amounts), Decimal(0))
    if asked >= n:
        got = ", ".join(f"{name}={v!r}" for name, v in zip(names, values))
        raise ConfigurationError(
            f"{' + '.join(names)} ask for {asked.normalize():f} of the {n} images, leaving none for "
            f"training; ask for smaller parts. Received: {got}."
        )
    return amounts


def _part_totals(amounts: Sequence[float | int], n: int) -> list[int]:
    """Images per part: counts as given, fractions rounded half up, and no asked-for part left empty."""
    totals = [
        a if isinstance(a, int) else int((_decimal(a) * n).to_integral_value(rounding=ROUND_HALF_UP))
        for a in amounts
    ]
    for k, a in enumerate(amounts):
        if a > 0 and totals[k] == 0 and sum(totals) < n - 1:
            totals[k] = 1
    # Rounding up can leave no training image (2 images, val=test=0.3): shrink the largest
    # fraction-sized parts, never a count the caller gave, until one image is left over.
    while sum(totals) > n - 1:
        k = max((k for k, a in enumerate(amounts) if not isinstance(a, int)), key=lambda k: (totals[k], k))
        totals[k] -= 1
    return totals


def _apportion(totals: Sequence[int], sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-stratum quotas (parts × strata) by the largest-remainder method.

    Each part's total is split in proportion to the strata's sizes: floors first, then one extra
    image each to the strata with the largest remainders. A stratum whose last image would leave
    training yields its extra to the next stratum in line where one can take it; equal remainders
    go first to strata that got fewer extras in earlier parts (so training stays balanced), then
    in an order drawn from ``rng``.
    """
    n = int(sizes.sum())
    quotas = np.zeros((len(totals), len(sizes)), np.int64)
    extras = np.zeros(len(sizes), np.int64)
    for k, total in enumerate(totals):
        share = int(total) * sizes
        remainders = share % n
        left = sizes - quotas[:k].sum(axis=0)
        quota = np.minimum(share // n, left)
        rank = np.empty(len(sizes), np.int64)
        rank[rng.permutation(len(sizes))] = np.arange(len(sizes))
        given = np.zeros(len(sizes), bool)
        for _ in range(int(total - quota.sum())):
            free = left - quota
            best = min(
                np.flatnonzero(free > 0),
                key=lambda s: (given[s], free[s] <= 1, -remainders[s], extras[s], rank[s]),
            )
            quota[best] += 1
            given[best] = True
            extras[best] += 1
        quotas[k] = quota
    return quotas


def _group_strata(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The class each group is stratified by: its most frequent label (lowest on ties)."""
    n_groups = int(groups.max()) + 1
    counts = np.zeros((n_groups, int(labels.max()) + 1), np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(axis=1)


def _split_indices(
    labels: np.ndarray,
    groups: np.ndarray,
    amounts: Sequence[float | int],
    seed: int | None,
    stratify: bool,
) -> list[np.ndarray]:
    n = len(labels)
    _, groups = np.unique(groups, return_inverse=True)
    groups = groups.reshape(-1)
    rng = np.random.default_rng(seed)
    strata = _group_strata(labels, groups) if stratify else np.zeros(int(groups.max()) + 1, np.int64)
    sizes = np.bincount(groups)
    stratum_ids = np.unique(strata)
    # The shuffles are drawn first, so a seed orders each class the same whatever sizes are asked.
    members = []
    for stratum in stratum_ids:
        m = np.flatnonzero(strata == stratum)
        members.append(m[rng.permutation(len(m))])
    stratum_sizes = np.array([sizes[m].sum() for m in members], np.int64)
    quotas = _apportion(_part_totals(amounts, n), stratum_sizes, rng)
    assignment = np.zeros(len(sizes), np.int64)  # 0 = remainder, k = part k
    # A class whose groups cannot meet its quota exactly passes the difference on to the next class.
    surplus = np.zeros(len(amounts), np.int64)
    for s, group_ids in enumerate(members):
        need = np.maximum(quotas[:, s] - surplus, 0)
        taken = np.zeros(len(amounts), np.int64)
        for g in group_ids:
            for k in range(len(amounts)):
                if sizes[g] < 2 * need[k]:  # joining brings the part closer to its quota
                    assignment[g] = k + 1
                    need[k] -= sizes[g]
                    taken[k] += sizes[g]
                    break
        surplus += taken - quotas[:, s]
    image_part = assignment[groups]
    return [np.flatnonzero(image_part == k) for k in range(len(amounts) + 1)]


def split_indices(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float | int, ...],
    *,
    seed: int | None = 0,
    stratify: bool = True,
) -> list[np.ndarray]:
    """Index arrays for each requested part plus the remainder, first: ``[rest, part1, part2, ...]``.

    Each entry of ``fractions`` is a fraction in [0, 1) of the images, rounded half up (and at
    least one image when above 0 and images allow it), or a count of images ≥ 1. Each part's
    total is shared out over the classes (strata) by the largest-remainder method, so every
    class is within one image of its proportional share and, where possible, keeps one image
    in the remainder. Within each class, groups are shuffled with ``seed`` and fill the quotas.

    All images of a group land in the same part. With groups of one image the part sizes are
    exact; a group that does not fit is left for the next, so with larger groups a part may
    miss its size by up to the size of the largest group.

    Example:
        >>> labels = np.array([0] * 10 + [1] * 10)
        >>> rest, val = split_indices(labels, np.arange(20), (0.2,), seed=0)
        >>> len(rest), len(val), np.bincount(labels[val]).tolist()
        (16, 4, [2, 2])
        >>> [len(p) for p in split_indices(labels, np.arange(20), (3, 0.01), seed=0)]
        [16, 3, 1]
    """
    labels = np.asarray(labels).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    if len(labels) != len(groups):
        raise InvalidDataError(
            f"labels and groups must have one entry per image; pass arrays of equal length. "
            f"Received: len(labels)={len(labels)}, len(groups)={len(groups)}."
        )
    if len(labels) == 0:
        raise EmptyDatasetError(
            "split_indices() got no labels; there is nothing to split. Received: labels=[]."
        )
    seed = check_seed(seed, allow_none=True)
    amounts = _amounts(fractions, [f"fractions[{k}]" for k in range(len(fractions))], len(labels))
    return _split_indices(labels, groups, amounts, seed, stratify)


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

    Part sizes are exact: a count gives that many images, a fraction ``f`` gives ``f × n``
    rounded half up, and never zero images when ``f > 0`` and the dataset has images to spare.
    Each part's images are shared out over the classes by the largest-remainder method (every
    class within one image of its proportional share), keeping at least one training image per
    class where the sizes allow it. Duplicate groups cannot be divided, so when a dataset has
    them a part may miss its size by up to the size of the largest group.

    Args:
        dataset: The data to split.
        val: Share of images for validation (fraction in [0, 1), or a count ≥ 1).
        test: Share for test, likewise. 0 leaves the part out.
        seed: Seed for the shuffle (a non-negative integer); None draws a fresh one.
        stratify: Keep class proportions equal across parts.
        group_duplicates: Keep identical images together.

    Returns:
        ``(train, val, test)``; parts asked with 0 are left out, so ``split(d, val=0.2, test=0)``
        returns ``(train, val)``.

    Warns:
        BloodcellWarning: a returned part holds no images of a class the dataset has (or no
        images at all), as happens when the parts are small next to the number of classes.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> train, val, test = split(load_sample(per_class=20), val=0.1, test=0.2, seed=0)
        >>> len(train), len(val), len(test)
        (112, 16, 32)
    """
    dataset.check_not_empty("split()")
    seed = check_seed(seed, allow_none=True)
    n = len(dataset)
    amounts = _amounts((val, test), ("val", "test"), n)
    wanted = [(name, a) for name, a in zip(("val", "test"), amounts) if a > 0]
    parts = _split_indices(
        dataset.labels,
        duplicate_groups(dataset, group_duplicates),
        [a for _, a in wanted],
        seed,
        stratify,
    )
    result = tuple(dataset.subset(idx) for idx in parts)
    _warn_missing_classes(dataset, result, ["train", *(name for name, _ in wanted)])
    return result


def _warn_missing_classes(
    dataset: BloodCellDataset, parts: Sequence[BloodCellDataset], names: Sequence[str]
) -> None:
    present = set(np.unique(dataset.labels).tolist())
    for name, part in zip(names, parts):
        if len(part) == 0:
            warnings.warn(
                f"split(): the {name} part is empty: the dataset's {len(dataset)} images (or its "
                f"groups of identical images) cannot fill every part and keep one for training; add "
                f"images, or leave the part out with {name}=0.",
                BloodcellWarning,
                stacklevel=3,
            )
            continue
        missing = sorted(present - set(np.unique(part.labels).tolist()))
        if missing:
            classes = ", ".join(dataset.class_names[c] for c in missing)
            count = f"{len(missing)} class{'es' if len(missing) > 1 else ''}"
            advice = (
                "ask for smaller val and test parts"
                if name == "train"
                else f"ask for a larger {name} (at least one image per class)"
            )
            warnings.warn(
                f"split(): the {name} part holds no images of {count} the dataset has ({classes}); "
                f"{advice}, or use kfold() to evaluate on every image in turn.",
                BloodcellWarning,
                stacklevel=3,
            )


def kfold_indices(
    dataset: BloodCellDataset,
    k: int = 5,
    *,
    seed: int | None = 0,
    stratify: bool = True,
    group_duplicates: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The sorted ``(train, val)`` positions of each of :func:`kfold`'s folds.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> folds = list(kfold_indices(load_sample(per_class=10), k=5))
        >>> sorted(int(i) for _, val in folds for i in val) == list(range(80))  # each image held out once
        True
    """
    from sklearn.model_selection import StratifiedGroupKFold

    k = check_int(k, "k", minimum=2)
    seed = check_seed(seed, allow_none=True)
    dataset.check_not_empty("kfold()")
    groups = duplicate_groups(dataset, group_duplicates)
    if len(np.unique(groups)) < k:
        raise EmptyDatasetError(
            f"cannot make {k} folds from {len(np.unique(groups))} distinct images; ask for fewer "
            f"folds or add images. {received('k', k)}"
        )
    y = dataset.labels if stratify else np.zeros(len(dataset), np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_idx, val_idx in splitter.split(np.zeros(len(dataset)), y, groups):
        yield np.sort(train_idx), np.sort(val_idx)


def kfold(
    dataset: BloodCellDataset,
    k: int = 5,
    *,
    seed: int | None = 0,
    stratify: bool = True,
    group_duplicates: bool = True,
) -> Iterator[tuple[BloodCellDataset, BloodCellDataset]]:
    """Yield ``(train, val)`` for each of ``k`` folds: stratified, seeded, duplicates kept together.

    Uses scikit-learn's ``StratifiedGroupKFold`` with identical images as groups. ``seed`` is a
    non-negative integer; None draws a fresh one. :func:`kfold_indices` gives the positions.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> folds = list(kfold(load_sample(per_class=10), k=5))
        >>> [len(v) for _, v in folds]
        [16, 16, 16, 16, 16]
    """
    for train_idx, val_idx in kfold_indices(
        dataset, k, seed=seed, stratify=stratify, group_duplicates=group_duplicates
    ):
        yield dataset.subset(train_idx), dataset.subset(val_idx)
