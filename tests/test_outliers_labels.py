"""LabelIssues: flipped labels found from out-of-fold probabilities (confident learning)."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.errors import InvalidDataError
from bloodcell.outliers import LabelIssues


def test_label_issues_from_out_of_fold_probabilities(sample):
    """Flipped labels are found when the (out-of-fold) model agrees with the true class."""
    rng = np.random.default_rng(0)
    true = sample.labels
    # A plausible model: right class most probable for 90 % of cells, confused for the rest.
    probs = rng.dirichlet(np.ones(8), len(true)) * 0.4
    correct = rng.random(len(true)) < 0.9
    probs[np.arange(len(true)), np.where(correct, true, (true + 3) % 8)] += 0.6
    flipped = rng.choice(len(true), 20, replace=False)
    noisy = true.copy()
    noisy[flipped] = (noisy[flipped] + 1 + rng.integers(0, 7, 20)) % 8
    noisy_data = sample.replace(labels=noisy)
    det = LabelIssues(pred_probs=probs).fit(noisy_data)
    flags = det.predict(noisy_data)
    assert flags[flipped].mean() >= 0.85
    assert flags[~np.isin(np.arange(len(true)), flipped)].mean() < 0.15
    assert (det.score(noisy_data)[flags] > 0).all()
    with pytest.raises(InvalidDataError, match="shape"):
        LabelIssues(pred_probs=probs[:10]).fit(noisy_data)
