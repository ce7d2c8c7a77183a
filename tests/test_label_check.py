"""Label checks in one call: out-of-fold probabilities from fold models, resumable, ranked suspects."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import run_python
from bloodcell.errors import ConfigurationError, InvalidDataError


@pytest.fixture(scope="module")
def small() -> bc.datasets.BloodCellDataset:
    data = bc.datasets.load_sample(per_class=5)
    return data.replace(images=bc.datasets.resize_images(data.images, 32))


@pytest.fixture(scope="module")
def quick(small) -> bc.experiments.Config:
    """The config ``bloodcell check-labels --epochs 1`` trains each fold with."""
    return bc.experiments.Config.preset("cpu", input_shape=small.image_shape, epochs=1)


@pytest.fixture(scope="module")
def checked(small, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``bloodcell check-labels`` in a new process, as a user runs it; its files are read here."""
    root = tmp_path_factory.mktemp("labels")
    data_file = Path(small.save_npz(root / "cells.npz"))
    out = root / "check"
    done = run_python(
        "from bloodcell.cli import main; raise SystemExit(main())",
        "check-labels", str(data_file), "--out", str(out), "--folds", "2", "--epochs", "1",
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "labels are suspect" in done.stdout
    with np.load(out / "out_of_fold.npz", allow_pickle=False) as saved:
        return out / "folds", saved["probabilities"]


def test_every_image_is_predicted_once_by_a_model_that_did_not_train_on_it(small, checked):
    directory, probs = checked
    assert probs.shape == (len(small), 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    seen = []
    for k in range(2):
        with np.load(directory / f"fold-{k}" / "held_out_probabilities.npz", allow_pickle=False) as fold:
            seen.append(fold["positions"])
            np.testing.assert_allclose(probs[fold["positions"]], fold["probabilities"])
        assert list((directory / f"fold-{k}").glob("seed*/model.keras"))  # an ordinary run folder
    positions = np.concatenate(seen)
    assert sorted(positions.tolist()) == list(range(len(small)))  # every image held out exactly once


def test_a_second_call_reads_the_finished_folds_back_instead_of_training(small, quick, checked):
    directory, probs = checked
    for model in directory.glob("fold-*/seed*/model.keras"):
        model.unlink()  # training again, or even loading a fold's model, would now fail
    again = bc.label_check.out_of_fold_probabilities(
        small, config=quick, folds=2, directory=directory, verbose=0
    )
    np.testing.assert_array_equal(again, probs)


def test_fold_probabilities_of_other_data_are_refused(small, quick, checked):
    directory, _ = checked
    with pytest.raises(InvalidDataError, match="another fold"):
        bc.label_check.out_of_fold_probabilities(small, config=quick, folds=2, seed=1, directory=directory)


def test_suspects_are_the_flagged_images_ranked_by_how_much_another_class_wins(small):
    rng = np.random.default_rng(0)
    probs = np.full((len(small), 8), 0.02)
    probs[np.arange(len(small)), small.labels] = 0.86
    flipped = rng.choice(len(small), 4, replace=False)
    strength = np.array([0.88, 0.97, 0.93, 0.9])  # above the class thresholds (0.86)
    for i, s in zip(flipped, strength):
        other = (small.labels[i] + 3) % 8
        probs[i] = (1 - s) / 7
        probs[i, other] = s
    check = bc.check_labels(small, pred_probs=probs)
    assert set(check.ranked.tolist()) == set(flipped.tolist())
    assert check.ranked.tolist() == flipped[np.argsort(-strength)].tolist()
    assert [check.suggested[i] for i in flipped] == [(small.labels[i] + 3) % 8 for i in flipped]


def test_suspects_csv_and_gallery_are_written_and_read_back(small, tmp_path):
    probs = np.full((len(small), 8), 0.1 / 7)
    probs[np.arange(len(small)), small.labels] = 0.9
    probs[3] = np.roll(probs[3], 2)
    check = bc.check_labels(small, pred_probs=probs)
    rows = list(csv.DictReader(check.to_csv(small, tmp_path / "s.csv").open()))
    assert [int(r["position"]) for r in rows] == [3]
    assert rows[0]["given"] == small.class_names[small.labels[3]]
    from PIL import Image

    with Image.open(check.gallery(small, tmp_path / "s.png")) as image:
        assert image.size[0] > 50


def test_bad_arguments_are_refused_before_any_training(small):
    with pytest.raises(ConfigurationError, match="folds"):
        bc.label_check.out_of_fold_probabilities(small, folds=1)
    with pytest.raises(ConfigurationError, match="config"):
        bc.label_check.out_of_fold_probabilities(small, config=3)
    with pytest.raises(InvalidDataError, match="BloodCellDataset"):
        bc.label_check.out_of_fold_probabilities(small.images)


def test_the_cli_writes_the_ranked_suspects_and_their_gallery(small, checked):
    directory, probs = checked
    out = directory.parent
    rows = list(csv.DictReader((out / "suspect_labels.csv").open()))
    expected = bc.check_labels(small, pred_probs=probs)
    assert [int(row["position"]) for row in rows] == expected.ranked.tolist()
    from PIL import Image

    with Image.open(out / "suspect_labels.png") as image:
        assert image.size[0] > 50
