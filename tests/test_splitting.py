import warnings
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from bloodcell.datasets import BloodCellDataset, concat, kfold, load_sample, split, split_indices
from bloodcell.errors import (
    BloodcellWarning,
    ConfigurationError,
    EmptyDatasetError,
    InvalidDataError,
)


def _with_planted_duplicates(sample: BloodCellDataset) -> BloodCellDataset:
    """The sample plus exact copies, like PBC's 17 identical pairs (one pair across two classes)."""
    copies = sample.subset(np.arange(0, 800, 40))  # 20 copies, same labels
    cross = sample.subset([100]).replace(labels=[6])  # an eosinophil file also filed as neutrophil
    return concat([sample, copies, cross])


def test_split_sizes_are_stratified(sample):
    train, val, test = split(sample, val=0.1, test=0.2, seed=0)
    assert (len(train), len(val), len(test)) == (560, 80, 160)
    assert set(val.class_counts().values()) == {10}
    assert set(test.class_counts().values()) == {20}
    ids = [set(p.ids) for p in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == 800


def test_split_is_deterministic_for_a_seed(sample):
    a = split(sample, seed=3)
    b = split(sample, seed=3)
    c = split(sample, seed=4)
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a, b))
    assert not np.array_equal(a[2].ids, c[2].ids)


def test_identical_images_never_straddle_parts(sample):
    data = _with_planted_duplicates(sample)
    for seed in range(5):
        parts = split(data, val=0.15, test=0.15, seed=seed)
        digests = [{img.tobytes() for img in p.images} for p in parts]
        assert not (digests[0] & digests[1] or digests[0] & digests[2] or digests[1] & digests[2])
        assert sum(len(p) for p in parts) == len(data)


def test_without_grouping_duplicates_can_leak(sample):
    data = _with_planted_duplicates(sample)
    leaks = 0
    for seed in range(5):
        train, _, test = split(data, val=0.15, test=0.3, seed=seed, group_duplicates=False)
        leaks += len({i.tobytes() for i in train.images} & {i.tobytes() for i in test.images})
    assert leaks > 0  # the grouping above is what prevents it


def test_zero_fractions_drop_parts_and_counts_work(sample):
    train, val = split(sample, val=0.25, test=0)
    assert (len(train), len(val)) == (600, 200)
    train, test = split(sample, val=0, test=80)
    assert len(test) == 80
    assert split(sample, val=0.1, test=0.1, stratify=False, seed=1)[1].class_counts() != {}


@pytest.mark.parametrize(("val", "test"), [(0.6, 0.5), (1.2, 0.0), (-0.1, 0.1), ("a", 0.1), (900, 0)])
def test_bad_fractions(sample, val, test):
    with pytest.raises(ConfigurationError):
        split(sample, val=val, test=test)


def test_split_empty_raises():
    empty = BloodCellDataset(np.zeros((0, 8, 8, 3), np.uint8), [])
    with pytest.raises(EmptyDatasetError):
        split(empty)


def test_kfold_covers_everything_once_and_groups_duplicates(sample):
    data = _with_planted_duplicates(sample)
    seen = []
    for train, val in kfold(data, k=4, seed=0):
        assert not ({i.tobytes() for i in train.images} & {i.tobytes() for i in val.images})
        assert min(val.class_counts().values()) >= 20  # stratified
        seen.extend(val.ids)
    assert sorted(seen) == sorted(data.ids)
    first = [v.ids.tolist() for _, v in kfold(data, k=4, seed=0)]
    again = [v.ids.tolist() for _, v in kfold(data, k=4, seed=0)]
    assert first == again


def test_kfold_bad_k(sample):
    with pytest.raises(ConfigurationError):
        next(kfold(sample, k=1))
    with pytest.raises(EmptyDatasetError):
        next(kfold(sample[:3], k=5))


# -- exact part sizes, apportioned over classes ----------------------------------------------------
def _per_class(sample: BloodCellDataset, counts: tuple[int, ...]) -> BloodCellDataset:
    """Real cells: the first ``counts[k]`` images of class k."""
    idx = np.concatenate([np.flatnonzero(sample.labels == k)[:c] for k, c in enumerate(counts)])
    return sample.subset(idx)


def _quiet_split(data: BloodCellDataset, **kwargs) -> tuple[BloodCellDataset, ...]:
    """split() without its warning about classes missing from small parts (tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BloodcellWarning)
        return split(data, **kwargs)


def _expected_size(amount: float | int, n: int) -> int:
    """A count as given; a fraction of n rounded half up, and at least one image when above 0."""
    if isinstance(amount, int):
        return amount
    size = int((Decimal(repr(amount)) * n).to_integral_value(rounding=ROUND_HALF_UP))
    return max(size, 1) if amount > 0 else 0


def test_small_sets_get_every_part_they_ask_for():
    data = load_sample(per_class=2)
    train, val, test = _quiet_split(data, val=0.1, test=0.1, seed=0)
    assert (len(train), len(val), len(test)) == (12, 2, 2)
    for seed in range(5):
        train, val, test = _quiet_split(data, val=0.25, test=0.25, seed=seed)
        assert (len(train), len(val), len(test)) == (8, 4, 4)
        assert set(train.class_counts().values()) == {1}  # every class keeps a training image


def test_counts_are_numbers_of_images():
    data = load_sample(per_class=10)
    for count in (1, 3, 9):
        train, val = _quiet_split(data, val=count, test=0, seed=0)
        assert (len(train), len(val)) == (80 - count, count)
    _, val, test = _quiet_split(data, val=3, test=5, seed=1)
    assert (len(val), len(test)) == (3, 5)


@pytest.mark.parametrize(
    "counts",
    [
        (1,) * 8,
        (2,) * 8,
        (3,) * 8,
        (5,) * 8,
        (12,) * 8,
        (10, 10, 10, 10, 10, 0, 0, 0),
        (2, 8, 0, 2, 2, 0, 8, 1),
        (3, 7, 12, 1, 4, 9, 2, 5),
    ],
)
def test_part_sizes_are_exact_and_classes_within_one_image_of_their_share(sample, counts):
    data = _per_class(sample, counts)
    n, per_class = len(data), np.bincount(data.labels, minlength=8)
    requests = [(0.05, 0.05), (0.1, 0.1), (0.1, 0.2), (0.15, 0.15), (0.25, 0.25), (0.3, 0.1)]
    requests += [(1, 0), (2, 0.1), (0.2, 3), (0, 0.12)]
    checked = 0
    for val, test in requests:
        sizes = [s for s in (_expected_size(val, n), _expected_size(test, n)) if s]
        if sum(sizes) > n - 1:  # no training image would be left; refused or trimmed
            continue
        for seed in range(3):
            train, *parts = _quiet_split(data, val=val, test=test, seed=seed)
            assert [len(p) for p in parts] == sizes, (counts, val, test, seed)
            for part, size in zip(parts, sizes):
                ideal = size * per_class / n
                assert np.abs(np.bincount(part.labels, minlength=8) - ideal).max() < 1, (counts, val, test)
            if len(set(counts)) == 1 and sum(sizes) <= n - 8:
                assert min(train.class_counts().values()) >= 1, (counts, val, test, seed)
            checked += 1
    assert checked >= 30


def test_stratify_false_gives_exact_sizes_too(sample):
    data = _per_class(sample, (3, 3, 3, 3, 3, 3, 0, 0))  # 18 images: 0.25 × 18 = 4.5 rounds up
    for seed in range(4):
        train, val, test = _quiet_split(data, val=0.25, test=0.01, seed=seed, stratify=False)
        assert (len(train), len(val), len(test)) == (12, 5, 1)


def test_small_split_is_reproducible_and_another_seed_picks_other_images():
    data = load_sample(per_class=3)
    first = _quiet_split(data, val=0.1, test=0.1, seed=5)
    again = _quiet_split(data, val=0.1, test=0.1, seed=5)
    assert [len(p) for p in first] == [20, 2, 2]
    assert all(np.array_equal(a.ids, b.ids) for a, b in zip(first, again))
    others = {tuple(_quiet_split(data, val=0.1, test=0.1, seed=s)[1].ids) for s in range(6)}
    assert len(others) > 1


def test_duplicate_groups_stay_whole_and_sizes_miss_by_at_most_a_group(sample):
    base = _per_class(sample, (5,) * 8)
    # a triple, two pairs and a pair filed under two classes, all real images
    data = concat([base, base[[0, 7, 12]], base[[12]], base[[20]].replace(labels=[1])])
    twice = concat([base, base])  # every image in a pair
    for dataset, largest in ((data, 3), (twice, 2)):
        n = len(dataset)
        for val, test in [(0.1, 0.1), (0.2, 0.2), (5, 0.1), (0.15, 3)]:
            for seed in range(4):
                parts = _quiet_split(dataset, val=val, test=test, seed=seed)
                digests = [{img.tobytes() for img in p.images} for p in parts]
                assert not (digests[0] & digests[1] or digests[0] & digests[2] or digests[1] & digests[2])
                assert sum(len(p) for p in parts) == n
                for part, amount in zip(parts[1:], (val, test)):
                    assert abs(len(part) - _expected_size(amount, n)) <= largest, (n, val, test, seed)


def test_rounding_up_still_leaves_a_training_image(sample):
    two = _per_class(sample, (1, 1, 0, 0, 0, 0, 0, 0))
    with pytest.warns(BloodcellWarning) as got:
        parts = split(two, val=0.3, test=0.3, seed=0)
    assert [len(p) for p in parts] == [1, 1, 0]
    assert any("the test part is empty" in str(w.message) for w in got)


def test_split_warns_when_a_part_lacks_classes_the_dataset_has(sample):
    data = load_sample(per_class=10)
    with pytest.warns(BloodcellWarning, match=r"split\(\): the val part holds no images of 7 classes") as got:
        _, val = split(data, val=1, test=0, seed=0)
    message = str(got[0].message)
    missing = [c for c, k in val.class_counts().items() if k == 0]
    assert all(name in message for name in missing) and "ask for a larger val" in message
    # A class the dataset itself lacks is no reason to warn.
    five = _per_class(sample, (10, 10, 10, 10, 10, 0, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BloodcellWarning)
        _, val, test = split(five, val=5, test=5, seed=0)
        split(sample, val=0.1, test=0.2, seed=0)
    assert list(val.class_counts().values()) == [1, 1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0", np.float64(2.0)])
def test_seeds_must_be_non_negative_integers(small_sample, seed):
    match = r"seed must be a non-negative integer or None\. Received: seed="
    with pytest.raises(ConfigurationError, match=match):
        split(small_sample, val=0.25, test=0.25, seed=seed)
    with pytest.raises(ConfigurationError, match=match):
        split_indices(small_sample.labels, np.arange(16), (0.25,), seed=seed)
    with pytest.raises(ConfigurationError, match=match):
        next(kfold(small_sample, k=2, seed=seed))


def test_numpy_and_none_seeds_are_accepted(small_sample):
    a = _quiet_split(small_sample, val=0.25, test=0.25, seed=np.int64(3))
    b = _quiet_split(small_sample, val=0.25, test=0.25, seed=3)
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a, b))
    assert [len(p) for p in _quiet_split(small_sample, val=0.25, test=0.25, seed=None)] == [8, 4, 4]


@pytest.mark.parametrize("k", [1, 2.0, True, "3"])
def test_kfold_k_message(small_sample, k):
    with pytest.raises(ConfigurationError, match=r"k must be an integer ≥ 2\. Received: k="):
        next(kfold(small_sample, k=k))


def test_bad_parts_say_what_was_received(sample):
    with pytest.raises(ConfigurationError, match=r"only 800.*Received: val=900\."):
        split(sample, val=900, test=0)
    with pytest.raises(
        ConfigurationError, match=r"leaving none for training.*Received: val=0\.6, test=0\.5\."
    ):
        split(sample, val=0.6, test=0.5)
    with pytest.raises(ConfigurationError, match=r"leaving none.*Received: val=0\.7, test=0\.3\."):
        split(sample, val=0.7, test=0.3)  # exactly 1 in decimal, though not in binary
    with pytest.raises(ConfigurationError, match=r"fraction in \[0, 1\).*Received: test='a'\."):
        split(sample, val=0.1, test="a")


def test_split_indices_takes_counts_and_checks_its_input(small_sample):
    labels = small_sample.labels
    rest, val, test = split_indices(labels, np.arange(16), (3, 0.25), seed=0)
    assert (len(rest), len(val), len(test)) == (9, 3, 4)
    assert not (set(rest) & set(val) or set(val) & set(test) or set(rest) & set(test))
    with pytest.raises(InvalidDataError, match=r"Received: len\(labels\)=16, len\(groups\)=15\."):
        split_indices(labels, np.arange(15), (0.25,))
    with pytest.raises(EmptyDatasetError, match="no labels"):
        split_indices(np.zeros(0, np.int64), np.zeros(0, np.int64), (0.25,))
