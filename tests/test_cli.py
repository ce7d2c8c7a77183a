"""The ``bloodcell`` command line: every command on real cells, exit codes and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.cli import COMMANDS, main
from bloodcell.cli._inputs import load_dataset
from bloodcell.errors import UnreadableFileError

# A run small enough to train in seconds: a three-layer CNN at 32 px on 4 real cells per class.
TINY = "cli_tiny_cnn"
TINY_TRAIN = [
    "--data", "sample", "--recipe", "cpu", "--backbone", TINY, "--limit", "4", "--image-size", "32",
    "--epochs", "1", "--batch-size", "8", "--augment", "none", "--val", "0.25", "--test", "0.25",
    "--verbose", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_backbone():
    """A small real CNN in the backbone registry, so that a training run takes seconds, not minutes."""
    import keras

    from bloodcell.backbones import register_backbone, unregister_backbone

    @register_backbone(TINY, min_size=16, overwrite=True)
    def tiny_cnn(input_shape=(96, 96, 3), weights=None):
        inputs = keras.Input(input_shape)
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        for i, filters in enumerate((8, 16, 16)):
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
            x = keras.layers.ReLU(name=f"relu{i}")(x)
        return keras.Model(inputs, x, name="tiny_cnn")

    yield TINY
    unregister_backbone(TINY)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------- parser, info
def test_help_of_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text
        assert main([name, "--help"]) == 0
        assert f"usage: bloodcell {name}" in capsys.readouterr().out


def test_info_prints_versions_and_caches(capsys, monkeypatch, tmp_path):
    import keras
    import tensorflow as tf

    from bloodcell.backbones.factory import _keras_cache_dir

    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "medmnist"))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for expected in (
        bc.__version__,
        np.__version__,
        tf.__version__,
        keras.__version__,
        "backend: tensorflow",
    ):
        assert expected in out
    assert str(_keras_cache_dir()) in out and str(tmp_path / "medmnist") in out
    assert "CPU" in out


# ---------------------------------------------------------------------- clean
def test_clean_writes_report_gallery_and_cleaned_npz(tmp_path, capsys):
    data = bc.datasets.load_sample(per_class=10)
    with_copies = data.concat(data[[0, 11, 22]])  # three exact copies of real cells
    source = Path(with_copies.save_npz(tmp_path / "cells.npz"))

    assert main(["clean", str(source), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "duplicate" in out and "Kept 80 of 83 images" in out

    rows = list(csv.DictReader((tmp_path / "out" / "outliers.csv").open()))
    assert len(rows) == 83
    flagged = [int(r["index"]) for r in rows if r["flagged"] == "1"]
    assert flagged == [80, 81, 82] and all("duplicate" in rows[i]["reasons"] for i in flagged)
    cleaned = bc.datasets.load_npz(tmp_path / "out" / "clean.npz")
    assert len(cleaned) == 80 and np.array_equal(cleaned.images, data.images)
    assert list(cleaned.ids) == list(data.ids)
    assert (tmp_path / "out" / "outliers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- settings: TOML and flags
def _printed_config(capsys, argv) -> str:
    assert main(["train", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_toml_config_equals_flags_and_flags_win(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text(
        'data = "sample"\nrecipe = "cpu"\nlimit = 4\nimage-size = 32\nepochs = 2\nbatch_size = 8\n'
        'augment = "none"\nweights = "none"\nfreeze = 3\nlearning-rate = 0.01\nval = 0.25\nseed = 3\n'
    )
    flags = [
        "--data", "sample", "--recipe", "cpu", "--limit", "4", "--image-size", "32", "--epochs", "2",
        "--batch-size", "8", "--augment", "none", "--weights", "none", "--freeze", "3",
        "--learning-rate", "0.01", "--val", "0.25", "--seed", "3",
    ]  # fmt: skip
    from_file = _printed_config(capsys, ["--config", str(toml)])
    assert from_file == _printed_config(capsys, flags)
    assert (
        "epochs = 2" in from_file
        and "input_shape = [32, 32, 3]" in from_file
        and 'augment = "none"' in from_file
    )

    # flags override the file; the printed settings read back as the same settings
    overridden = _printed_config(capsys, ["--config", str(toml), "--epochs", "5", "--freeze", "none"])
    assert "epochs = 5" in overridden and 'freeze = "none"' in overridden
    again = tmp_path / "again.toml"
    again.write_text(overridden)
    assert _printed_config(capsys, ["--config", str(again)]) == overridden


def test_toml_sets_config_fields_without_flags_and_rejects_unknown_keys(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('recipe = "cpu"\nweight_decay = 0.05\n[augment_options]\nrotation = 90\n')
    text = _printed_config(capsys, ["--config", str(toml)])
    assert "weight_decay = 0.05" in text and "augment_options = {rotation = 90}" in text

    toml.write_text("epoch = 3\n")  # a typo
    assert main(["train", "--config", str(toml), "--print-config"]) == 2
    assert "unknown key(s) ['epoch']" in _one_line_error(capsys)
    toml.write_text("epochs = [3\n")
    assert main(["train", "--config", str(toml)]) == 2
    assert "not valid TOML" in _one_line_error(capsys)


def test_weights_auto_trains_from_scratch_and_unfreezes_when_none_can_be_had(tiny_backbone):
    from bloodcell.cli.settings import resolve_weights
    from bloodcell.experiments import Config

    # the tiny entry has no ImageNet weights: "auto" must fall back, say so, and drop the freezing
    stream = io.StringIO()
    config = Config.preset("seed", backbone=tiny_backbone, input_shape=(32, 32, 3))
    assert config.freeze == 120
    resolved = resolve_weights(config, "auto", stream=stream)
    assert resolved.weights is None and resolved.freeze is None and resolved.freeze_layers is None
    said = stream.getvalue()
    assert "FROM SCRATCH" in said and "freezing (freeze=120)" in said
    # other values pass through untouched, and nothing is said
    quiet = io.StringIO()
    assert resolve_weights(config, None, stream=quiet).freeze == 120 and quiet.getvalue() == ""


def test_separate_validation_data_replaces_the_validation_share(tmp_path):
    from bloodcell.cli.train import make_splits

    full = bc.datasets.load_sample()
    data = bc.datasets.load_sample(per_class=10)
    others = np.concatenate([np.flatnonzero(full.labels == k)[10:12] for k in range(8)])
    val_file = full.subset(others).save_npz(tmp_path / "val.npz")  # 16 cells not in data
    train, val, test = make_splits(data, val=0.3, test=0.2, val_data=val_file)
    assert len(val) == 16 and (len(train), len(test)) == (64, 16)
    train, val, test = make_splits(data, val=0.25, test=0)
    assert test is None and len(train) + len(val) == 80


# ---------------------------------------------------------------------- train, evaluate, predict
@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    """One tiny real training run through the command line."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY_TRAIN, "--weights", "none", "--out", str(out), "--name", "tiny"]) == 0
    return out / "tiny" / "seed0"


def test_train_writes_the_run(trained):
    for name in ("model.keras", "history.csv", "history.json", "training_curves.png", "report.json",
                 "confusion_matrix.png", "config.json"):  # fmt: skip
        assert (trained / name).exists(), name
    header = (trained / "history.csv").read_text().splitlines()[0].split(",")
    assert header.count("epoch") == 1 and header[0] == "epoch"
    rows = list(csv.DictReader((trained / "history.csv").open()))
    assert len(rows) == 1 and {"epoch", "loss", "val_accuracy"} <= set(rows[0]) and rows[0]["epoch"] == "1"
    report = bc.metrics.Report.from_json(trained / "report.json")
    assert report.n == 8  # the test quarter of 4 cells × 8 classes
    config = bc.experiments.Config.from_json(trained / "config.json")
    assert (config.backbone, config.input_shape, config.epochs, config.augment) == (
        TINY,
        (32, 32, 3),
        1,
        None,
    )


def test_train_again_loads_the_finished_run(trained, capsys):
    stamp = (trained / "model.keras").stat().st_mtime_ns
    out = str(trained.parent.parent)
    assert main(["train", *TINY_TRAIN, "--weights", "none", "--out", out, "--name", "tiny"]) == 0
    assert "loaded, not trained again" in capsys.readouterr().out
    assert (trained / "model.keras").stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def cell_folder(tmp_path_factory):
    """16 real JPEG files, two per class, as the PBC dataset ships them."""
    return bc.datasets.write_sample_folder(tmp_path_factory.mktemp("cells"), per_class=2)


def test_evaluate_prints_and_writes_the_report(trained, cell_folder, tmp_path, capsys):
    model = str(trained / "model.keras")
    assert main(["evaluate", model, str(cell_folder), "--json", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "cm.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    report = bc.metrics.Report.from_json(tmp_path / "r.json")
    assert report.n == 16 and f"{report.accuracy:7.2%}" in out and "confusion matrix" in out
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_predict_csv_and_json_agree_with_evaluate(trained, cell_folder, tmp_path, capsys):
    model = str(trained / "model.keras")
    assert main(["predict", model, str(cell_folder), "--top-k", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 16
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2", "class_3",
                             "probability_3"]  # fmt: skip
    for row in rows:
        probs = [float(row[f"probability_{k}"]) for k in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert {row[f"class_{k}"] for k in (1, 2, 3)} <= set(bc.classes.CLASS_NAMES)

    # the same files, decoded like load_folder does, give the same probabilities as evaluate
    assert main(["evaluate", model, str(cell_folder), "--json", str(tmp_path / "r.json")]) == 0
    capsys.readouterr()
    y_prob = np.asarray(bc.metrics.Report.from_json(tmp_path / "r.json").y_prob)
    np.testing.assert_allclose([float(r["probability_1"]) for r in rows], y_prob.max(axis=1), atol=1e-5)

    one_file = sorted(cell_folder.rglob("*.jpg"))[0]
    out_file = tmp_path / "pred.json"
    assert main(["predict", model, str(one_file), str(cell_folder / "platelet"), "--format", "json",
                 "--top-k", "8", "--output", str(out_file)]) == 0  # fmt: skip
    result = json.loads(out_file.read_text())
    assert [r["path"] for r in result][0] == str(one_file) and len(result) == 3
    for r in result:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 8 and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)


def test_bad_model_file_and_top_k(trained, cell_folder, tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    assert main(["evaluate", str(fake), "sample"]) == 2
    assert "is not a Keras model file" in _one_line_error(capsys)
    assert main(["predict", str(trained / "model.keras"), str(cell_folder), "--top-k", "9"]) == 2
    assert "--top-k must be an integer in [1, 8]. Received: --top-k=9." in _one_line_error(capsys)
    with pytest.raises(UnreadableFileError):  # --debug shows the real exception
        main(["evaluate", str(fake), "sample", "--debug"])
    assert main(["evaluate", str(fake), "sample", "--gallery-size", "4"]) == 2  # refused before loading
    assert "--gallery-size applies with --gallery DIR only" in _one_line_error(capsys)


# ---------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clean", "no/such/cells.npz", "--out", "x"], "no such file or folder: 'no/such/cells.npz'"),
        (["train", "--recipe", "gpu-fast"], "invalid choice: 'gpu-fast'"),
        (["train", "--data", "sample", "--weights", "no/such.weights.h5"], "no such weights file"),
        (["train", "--data", "no/such/cells", "--out", "x"], "no such file or folder: 'no/such/cells'"),
        (["train", "--data", "sample", "--test-data", "no/such.npz", "--out", "x"], "'no/such.npz'"),
        (["evaluate", "no/such/model.keras", "sample"], "no such model file: 'no/such/model.keras'"),
        (["predict", "m.keras", "img.jpg", "--format", "xml"], "invalid choice: 'xml'"),
        (["export", "m.keras", "--format", "onnx", "--out", "x"], "invalid choice: 'onnx'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # no output folder left behind


def test_system_failure_exits_1_with_one_line_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # the output folder cannot be made inside a plain file: an OSError, found before any work
    for argv in (["clean", "sample"], ["demo"], ["train", "--data", "sample", "--weights", "none"]):
        assert main([*argv, "--out", str(blocker / "out")]) == 1
        assert "Not a directory" in _one_line_error(capsys)
    with pytest.raises(NotADirectoryError):
        main(["clean", "sample", "--out", str(blocker / "out"), "--debug"])


def test_console_script_exit_codes():
    script = shutil.which("bloodcell", path=os.path.dirname(sys.executable))
    command = [script] if script else [sys.executable, "-m", "bloodcell"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"bloodcell {bc.__version__}"
    done = subprocess.run(
        [*command, "train", "--recipe", "nope"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'nope'" in done.stderr


# ---------------------------------------------------------------------- demo
def test_demo_reduced_writes_every_artifact(tiny_backbone, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--limit", "10", "--epochs", "1", "--image-size", "32",
            "--backbone", tiny_backbone, "--weights", "auto", "--verbose", "0"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "train 64, validation 8, test 8 images" in text and "chance: 12.5%" in text
    assert "FROM SCRATCH" in captured.err  # "auto" found no ImageNet weights for this backbone
    (run_dir,) = out.glob(f"{tiny_backbone}-*/seed0")
    for path in (out / "outliers.csv", out / "outliers.png", *(run_dir / n for n in
                 ("model.keras", "history.csv", "training_curves.png", "report.json", "confusion_matrix.png"))):  # fmt: skip
        assert path.exists() and str(path) in text, path
    assert bc.metrics.Report.from_json(run_dir / "report.json").n == 8


@pytest.mark.slow
def test_full_demo_learns_real_cells(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--verbose", "2"]) == 0
    (run_dir,) = (tmp_path / "demo").glob("mobilenetv3small-*/seed0")
    report = bc.metrics.Report.from_json(run_dir / "report.json")
    assert report.n == 80 and report.accuracy > 0.5  # chance is 0.125


def test_export_keras_file_predicts_like_the_model(trained, tmp_path, capsys):
    target = tmp_path / "exported.keras"
    assert main(["export", str(trained / "model.keras"), "--format", "keras", "--out", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    images = bc.datasets.resize_images(bc.datasets.load_sample(per_class=1).images, 32)
    original = bc.models.load_model(trained / "model.keras")
    np.testing.assert_allclose(
        bc.models.load_model(target).predict(images, verbose=0),
        original.predict(images, verbose=0),
        atol=1e-6,
    )
    tflite = tmp_path / "model.tflite"
    assert main(["export", str(trained / "model.keras"), "--format", "tflite", "--out", str(tflite)]) == 0
    lite = bc.export.TFLiteModel(tflite)
    np.testing.assert_array_equal(
        lite.predict(images).argmax(axis=1), original.predict(images, verbose=0).argmax(axis=1)
    )
    assert main(["export", str(tmp_path / "missing.keras"), "--format", "tflite", "--out", "m.tflite"]) == 2
    assert "no such model file" in _one_line_error(capsys)


def test_robustness_reports_clean_and_corrupted_accuracy(trained, capsys, tmp_path):
    out = tmp_path / "robustness"
    argv = ["robustness", str(trained / "model.keras"), "sample", "--limit", "2",
            "--kinds", "jpeg,stain_deposits", "--severities", "1,5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "jpeg" in printed and "stain_deposits" in printed
    report = bc.robustness.RobustnessReport.from_json(out / "robustness.json")
    assert report.accuracy.shape == (2, 2)
    model = bc.models.load_model(trained / "model.keras")
    data = load_dataset("sample", image_size=32, limit=2, verbose=False)
    assert report.n == len(data)
    assert report.clean_accuracy == pytest.approx(bc.evaluate(model, data).accuracy)
    assert (out / "robustness.png").stat().st_size > 0
    assert main(["robustness", str(trained / "model.keras"), "sample", "--kinds", "no_such_kind"]) == 2
    assert "no_such_kind" in _one_line_error(capsys)


def test_recipe_freezing_does_not_carry_over_to_another_backbone_or_random_weights(capsys):
    def settings(*flags):
        assert main(["train", *flags, "--print-config"]) == 0
        captured = capsys.readouterr()
        return dict(line.split(" = ", 1) for line in captured.out.splitlines()), captured.err

    values, err = settings("--backbone", "mobilenetv3small")
    assert values["freeze"] == '"none"' and "not applying the recipe's freezing (freeze=120)" in err
    assert "efficientnetv2s's layers" in err and "--freeze N" in err
    values, err = settings("--weights", "none")
    assert values["freeze"] == '"none"' and "random initial weights" in err
    values, err = settings("--backbone", "mobilenetv3small", "--freeze", "20")  # the user's own: kept
    assert values["freeze"] == "20" and err == ""
    values, err = settings()  # the recipe as it is
    assert values["freeze"] == "120" and err == ""


def test_warnings_are_one_line_each(tiny_backbone, tmp_path, capsys):
    argv = ["train", *TINY_TRAIN, "--limit", "2", "--out", str(tmp_path)]  # 4 validation images for 8 classes
    assert main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert err and all(line.startswith("bloodcell train: warning: ") for line in err), err
    assert any("the val part holds no images of" in line for line in err)


def test_every_setting_is_a_flag_or_listed_without_one(capsys):
    from bloodcell.cli.settings import FLAGS, WITHOUT_FLAGS
    from bloodcell.experiments import Config
    from bloodcell.training.options import TrainerOptions

    settings = {f.name for f in dataclasses.fields(TrainerOptions)} | {
        f.name for f in dataclasses.fields(Config)
    }
    flagged = [flag.field for flag in FLAGS]
    assert len(flagged) == len(set(flagged)) and not set(flagged) & set(WITHOUT_FLAGS)
    assert set(flagged) | set(WITHOUT_FLAGS) == settings  # one place lists those without a flag
    # Each flag reaches its Config field, checked by the setting's own check.
    toml = _printed_config(
        capsys,
        ["--recipe", "cpu", "--weight-decay", "0.05", "--lr-schedule", "none", "--no-ema", "--loss",
         "categorical_focal_crossentropy", "--consistency-views", "3", "--early-stopping-patience", "none",
         "--no-restore-best", "--tta", "flips", "--fine-tune-unfreeze", "20"],
    )  # fmt: skip
    for line in ("weight_decay = 0.05", 'lr_schedule = "none"', "ema = false", "consistency_views = 3",
                 'loss = "categorical_focal_crossentropy"', 'early_stopping_patience = "none"',
                 "restore_best = false", 'tta = "flips"', "fine_tune_unfreeze = 20"):  # fmt: skip
        assert line in toml.splitlines(), line
    assert main(["train", "--label-smoothing", "1.5", "--print-config"]) == 2
    assert "label_smoothing must be a number in [0, 1). Received: label_smoothing=1.5." in _one_line_error(
        capsys
    )
