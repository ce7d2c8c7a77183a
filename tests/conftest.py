"""Shared fixtures: the real bundled sample, loaded once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from bloodcell.datasets import BloodCellDataset, load_sample


@pytest.fixture(scope="session")
def sample() -> BloodCellDataset:
    """The 800 real PBC cells bundled with the package."""
    return load_sample()


@pytest.fixture(scope="session")
def small_sample(sample: BloodCellDataset) -> BloodCellDataset:
    """16 real cells, 2 per class, for the tests that run a model."""
    import numpy as np

    idx = np.concatenate([np.flatnonzero(sample.labels == k)[:2] for k in range(sample.num_classes)])
    return sample.subset(idx)


@pytest.fixture(scope="session")
def planted(sample: BloodCellDataset):
    """The 800 real cells, then planted contaminants (copies, non-blood, blank, dark, blurred...); kind → indices.

    Shared by the outlier tests of the report and of the embedding detector.
    """
    from _outliers_utils import planted_dataset

    return planted_dataset(sample)
