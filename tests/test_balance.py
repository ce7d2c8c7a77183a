"""Class balancing on real cells: over/undersampling indices, SMOTE (pixels and features), class weights."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.datasets import balance
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError


@pytest.fixture(scope="module")
def unbalanced(sample):
    """Real cells, 3 to 10 per class."""
    keep = np.concatenate([np.flatnonzero(sample.labels == k)[: 3 + k] for k in range(8)])
    return sample.subset(keep)


def test_oversample_indices_keep_every_row_and_fill_each_class(unbalanced):
    idx = balance.oversample_indices(unbalanced, seed=0)
    labels = unbalanced.labels[idx]
    assert np.bincount(labels).tolist() == [10] * 8
    assert set(range(len(unbalanced))) <= set(idx.tolist())  # originals all kept
    for k in range(8):  # extras come from the class itself
        assert set(idx[labels == k]) <= set(np.flatnonzero(unbalanced.labels == k))
    np.testing.assert_array_equal(idx, balance.oversample_indices(unbalanced, seed=0))
    assert not np.array_equal(idx, balance.oversample_indices(unbalanced, seed=1))


def test_oversample_indices_feed_to_tf_dataset_without_copies(unbalanced):
    idx = balance.oversample_indices(unbalanced.labels, seed=0)
    ds = bc.pipeline.to_tf_dataset(unbalanced, batch_size=16, indices=idx)
    seen = np.concatenate([y.numpy() for _, y in ds])
    assert np.bincount(seen).tolist() == [10] * 8


def test_strategy_dict_by_name_or_index(unbalanced):
    idx = balance.oversample_indices(unbalanced, {"basophil": 6, 1: 9}, seed=0)
    counts = np.bincount(unbalanced.labels[idx]).tolist()
    assert counts == [6, 9, 5, 6, 7, 8, 9, 10]
    kept = balance.undersample_indices(unbalanced, {"platelet": 4}, seed=0)
    assert np.bincount(unbalanced.labels[kept]).tolist() == [3, 4, 5, 6, 7, 8, 9, 4]
    assert len(set(kept.tolist())) == len(kept)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda d: balance.oversample_indices(d, {"basophil": 1}), "cannot shrink"),
        (lambda d: balance.undersample_indices(d, {"platelet": 99}), "cannot grow"),
        (lambda d: balance.oversample_indices(d, {"macrophage": 5}), "unknown class"),
        (lambda d: balance.oversample_indices(d, "minority"), "strategy"),
        (lambda d: balance.oversample_indices(d, seed="x"), "seed"),
        (lambda d: balance.oversample(d.labels), "BloodCellDataset"),
    ],
)
def test_bad_strategies_raise_clear_errors(unbalanced, call, match):
    with pytest.raises((ConfigurationError, InvalidDtypeError), match=match):
        call(unbalanced)


def test_oversample_and_undersample_datasets(unbalanced):
    over = balance.oversample(unbalanced, seed=0)
    under = balance.undersample(unbalanced, seed=0)
    assert set(over.class_counts().values()) == {10}
    assert set(under.class_counts().values()) == {3}
    assert over.images.dtype == np.uint8


def test_class_weights_balance_every_class(unbalanced):
    weights = balance.class_weights(unbalanced)
    counts = np.bincount(unbalanced.labels)
    assert sorted(weights) == list(range(8))
    totals = np.array([weights[k] * counts[k] for k in range(8)])
    np.testing.assert_allclose(totals, len(unbalanced) / 8)  # each class weighs the same in total
    assert balance.class_weights([0, 0, 2]) == {0: 0.75, 1: 1.0, 2: 1.5}
    with pytest.raises(InvalidDataError):
        balance.class_weights(np.array([0.5, 1.0]))


def on_a_segment(synthetic, images):
    """For each synthetic image: the best fit x_i + t·(x_j − x_i) over pairs of the given images."""
    a = images.reshape(len(images), -1).astype(np.float64)
    errors = []
    for s in synthetic.reshape(len(synthetic), -1).astype(np.float64):
        best = np.inf
        for i in range(len(a)):
            d = a - a[i]
            t = np.clip((d @ (s - a[i])) / np.maximum((d * d).sum(1), 1e-9), 0, 1)
            resid = np.abs(a[i] + t[:, None] * d - s).max(1)
            resid[i] = np.inf
            best = min(best, resid.min())
        errors.append(best)
    return np.array(errors)


def test_smote_in_pixel_space_interpolates_real_cells(unbalanced):
    out = balance.smote(unbalanced, k_neighbors=2, seed=0)
    assert set(out.class_counts().values()) == {10}
    assert out.images.dtype == np.uint8
    new = out.sources == "smote"
    assert new.sum() == 80 - len(unbalanced) and str(out.ids[-1]).startswith("smote:")
    k = 0  # basophils: 7 synthetic ones between the 3 real ones
    synthetic = out.images[new & (out.labels == k)]
    real = unbalanced.images[unbalanced.labels == k]
    assert (
        on_a_segment(synthetic, real) <= 0.6
    ).all()  # on a segment, up to uint8 rounding (t fitted by least squares)


def test_smote_in_feature_space_uses_the_features_for_neighbours(unbalanced):
    calls = []

    def mean_colour(images):
        calls.append(images.shape)
        return images.reshape(len(images), -1, 3).mean(1)

    out = balance.smote(unbalanced, k_neighbors=1, space="features", features=mean_colour, seed=0)
    assert calls == [unbalanced.images.shape]
    assert set(out.class_counts().values()) == {10}
    real = unbalanced.images[unbalanced.labels == 0]
    synthetic = out.images[(out.sources == "smote") & (out.labels == 0)]
    assert (on_a_segment(synthetic, real) <= 0.6).all()
    # with k=1 each synthetic lies between a cell and its nearest neighbour in colour
    feats = mean_colour(real)
    nearest = {(i, int(np.argsort(np.abs(feats - feats[i]).sum(1))[1])) for i in range(3)}
    assert len(nearest) >= 2


def test_smote_features_from_bloodcells_feature_extractor(unbalanced):
    # The library's own extractor (random weights here: no download in tests).
    extractor = bc.models.feature_extractor("mobilenetv3small", weights=None)
    out = balance.smote(unbalanced, space="features", features=extractor, batch_size=32, seed=0)
    assert set(out.class_counts().values()) == {10}
    real = unbalanced.images[unbalanced.labels == 1]
    synthetic = out.images[(out.sources == "smote") & (out.labels == 1)]
    assert (on_a_segment(synthetic, real) <= 0.6).all()


def test_smote_errors(unbalanced, monkeypatch):
    with pytest.raises(ConfigurationError, match="space"):
        balance.smote(unbalanced, space="latent")
    with pytest.raises(ConfigurationError, match="features="):
        balance.smote(unbalanced, space="features")
    with pytest.raises(InvalidDataError, match="at least 2"):
        balance.smote(unbalanced.drop(np.flatnonzero(unbalanced.labels == 0)[1:]))
    monkeypatch.setitem(sys.modules, "imblearn", None)
    monkeypatch.setitem(sys.modules, "imblearn.over_sampling", None)
    with pytest.raises(ImportError, match=r"bloodcell\[balance\]"):
        balance.smote(unbalanced)


def test_balancing_does_not_load_tensorflow():
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from bloodcell.datasets import oversample_indices, class_weights\n"
        "oversample_indices(np.array([0, 0, 1])); class_weights([0, 1])\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
