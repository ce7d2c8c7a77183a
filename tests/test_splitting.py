import numpy as np
import pytest

from bloodcell.datasets import BloodCellDataset, concat, kfold, split
from bloodcell.errors import ConfigurationError, EmptyDatasetError


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
