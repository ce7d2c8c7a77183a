"""bloodcell.experiments: Config presets and serialisation, run() folders, compare() tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.errors import ConfigurationError, InvalidDtypeError, UnknownNameError
from bloodcell.experiments import Config


def test_seed_preset_is_the_report_recipe():
    cfg = Config.preset("seed")
    assert (cfg.backbone, cfg.weights, cfg.freeze, cfg.head, cfg.augment, cfg.optimizer) == (
        "efficientnetv2s",
        "imagenet",
        120,
        "seed",
        "augmix",
        "adam",
    )
    assert cfg.reduce_lr_patience is not None and cfg.early_stopping_patience is not None
    assert cfg.monitor == "val_accuracy"


def test_cpu_preset_trains_from_scratch():
    cfg = Config.preset("cpu")
    assert cfg.weights is None and cfg.freeze is None
    assert (cfg.backbone, cfg.batchnorm_momentum, cfg.optimizer, cfg.lr_schedule) == (
        "mobilenetv3small",
        0.9,
        "adamw",
        "cosine",
    )
    assert cfg.augment == "geometric" and cfg.ema
    # a schedule replaces ReduceLROnPlateau; the time budget, not patience, ends training
    assert cfg.reduce_lr_patience is None and cfg.early_stopping_patience is None


def test_presets_are_not_shared_mutable_state():
    a = Config.preset("seed", epochs=3)
    assert a.epochs == 3 and Config.preset("seed").epochs == 50
    with pytest.raises(UnknownNameError, match="presets"):
        Config.preset("gpu-fast")


def test_json_round_trip_and_fingerprint(tmp_path):
    cfg = Config.preset("cpu", augment_options={"rotation": 180})
    cfg.to_json(tmp_path / "c.json")
    again = Config.from_json(tmp_path / "c.json")
    assert again == cfg and again.input_shape == (96, 96, 3)
    assert again.fingerprint() == cfg.fingerprint()
    assert cfg.replace(learning_rate=1e-4).fingerprint() != cfg.fingerprint()
    assert json.loads(cfg.to_json())["backbone"] == "mobilenetv3small"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"augment": "cutout"}, ConfigurationError),
        ({"freeze": 120, "freeze_layers": 220}, ConfigurationError),
        ({"epochs": 0}, ConfigurationError),
        ({"batch_size": 2.5}, ConfigurationError),
        ({"fine_tune_epochs": -1}, ConfigurationError),
        ({"colour": "red"}, ConfigurationError),
        ({"batchnorm_recalibration": 0}, ConfigurationError),
        ({"batchnorm_recalibration": True}, ConfigurationError),
        ({"monitor": "val_acc"}, ConfigurationError),
        ({"cell_crop": "lab"}, ConfigurationError),
        ({"precise_batchnorm": 0}, ConfigurationError),
        ({"tta": "d8"}, ConfigurationError),
    ],
)
def test_bad_configs_raise(changes, error):
    with pytest.raises(error):
        Config.preset("seed").replace(**changes)


def test_batchnorm_recalibration_keeps_older_fingerprints_while_unset(tmp_path):
    cpu = Config.preset("cpu")
    assert "batchnorm_recalibration" not in cpu.to_dict()  # configs saved before the field: same JSON
    precise = cpu.replace(batchnorm_recalibration=50)
    assert precise.to_dict()["batchnorm_recalibration"] == 50
    assert precise.fingerprint() != cpu.fingerprint()
    precise.to_json(tmp_path / "c.json")
    assert Config.from_json(tmp_path / "c.json") == precise
    assert precise.trainer_kwargs()["batchnorm_recalibration"] == 50


def test_trainer_kwargs_are_accepted_by_the_trainer():
    import inspect

    params = inspect.signature(bc.Trainer).parameters
    for key in Config.preset("cpu").trainer_kwargs():
        assert key in params


def test_run_rejects_wrong_types(small_sample):
    with pytest.raises(InvalidDtypeError):
        bc.experiments.run({"backbone": "x"}, small_sample, small_sample)
    with pytest.raises(InvalidDtypeError):
        bc.experiments.compare({"a": "seed"}, small_sample)
    with pytest.raises(ConfigurationError):
        bc.experiments.compare({}, small_sample)


# ---------------------------------------------------------------------- runs with a real (tiny) backbone
TINY = "test-experiments-cnn"


@pytest.fixture(scope="module")
def tiny_backbone():
    """A small CNN added through the public registry: real build_classifier models, fast to trace."""
    import keras

    from bloodcell.backbones import register_backbone, unregister_backbone

    @register_backbone(TINY, family="test", preprocessing="none", overwrite=True)
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


@pytest.fixture(scope="module")
def splits():
    data = bc.datasets.load_sample(per_class=8)
    return bc.datasets.split(data, val=0.25, test=0.25, seed=0)


def _tiny_config(**changes):
    base = Config(
        backbone=TINY,
        weights=None,
        freeze=None,
        head="linear",
        augment=None,
        epochs=2,
        batch_size=16,
        early_stopping_patience=None,
        learning_rate=3e-3,
    )
    return base.replace(**changes)


def _weighted_layers(model):
    """The backbone's layers that hold weights (the input and activation layers have no flag that matters)."""
    return [layer for layer in bc.backbones.backbone_layers(model) if layer.weights]


def test_build_model_applies_freezing(tiny_backbone):
    model = _tiny_config(freeze=2).build_model()
    conv = {
        layer.name: layer.trainable
        for layer in bc.backbones.backbone_layers(model)
        if layer.name.startswith("conv")
    }
    assert conv == {"conv0": False, "conv1": False, "conv2": True}
    model = _tiny_config(freeze=None, freeze_layers=3).build_model()
    flags = {layer.name: layer.trainable for layer in _weighted_layers(model)}
    assert flags == {"conv0": False, "bn0": True, "conv1": True, "bn1": True, "conv2": True, "bn2": True}


def test_run_with_a_setting_the_trainer_rejects_leaves_no_run_folder(tiny_backbone, splits, tmp_path):
    train, val, test = splits
    with pytest.raises(ConfigurationError, match="balance"):
        bc.experiments.run(_tiny_config(balance="bogus"), train, val, test, output_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("config.json"))


def test_run_writes_its_folder_and_is_not_redone(tiny_backbone, splits, tmp_path):
    import keras

    train, val, test = splits
    cfg = _tiny_config()
    result = bc.experiments.run(
        cfg, train, val, test, seed=0, name="tiny run", output_dir=tmp_path, verbose=0
    )
    folder = tmp_path / "tiny-run" / "seed0"
    assert result.directory == folder
    for name in (
        "config.json",
        "history.json",
        "report.json",
        "model.keras",
        "result.json",
        "confusion_matrix.png",
        "training_curves.png",
        "reliability.png",
        "train/fit/log.csv",
    ):
        assert (folder / name).exists(), name
    assert Config.from_json(folder / "config.json") == cfg
    card = bc.models.model_card(folder / "model.keras")  # the saved model says how it was made
    assert card["recipe"]["name"] == "tiny run" and card["recipe"]["config"] == cfg.to_dict()
    assert card["data"]["train"]["n"] == len(train) and card["metrics"]["test"]["n"] == len(test)
    assert result.report.n == len(test) and len(result.history["loss"]) == 2
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    np.testing.assert_allclose(
        model.predict(test.images.astype("float32"), verbose=0), result.report.y_prob, atol=1e-5
    )

    stamp = (folder / "model.keras").stat().st_mtime_ns
    again = bc.experiments.run(cfg, train, val, test, seed=0, name="tiny run", output_dir=tmp_path, verbose=0)
    assert (folder / "model.keras").stat().st_mtime_ns == stamp  # loaded, not trained again
    assert again.report.to_dict() == result.report.to_dict() and again.history == result.history
    with pytest.raises(ConfigurationError, match="different config"):
        bc.experiments.run(
            cfg.replace(learning_rate=1e-2),
            train,
            val,
            test,
            seed=0,
            name="tiny run",
            output_dir=tmp_path,
            verbose=0,
        )


def test_run_with_batchnorm_recalibration_saves_recalibrated_statistics(tiny_backbone, splits, tmp_path):
    import keras

    from bloodcell.training.batchnorm import trainable_batchnorm_layers

    train, val, test = splits
    # EMA weights with the tiny CNN's slow BatchNorm (momentum 0.99): without the recalibration the
    # saved statistics are those gathered for the raw weights over the first steps.
    cfg = _tiny_config(epochs=1, ema=True, ema_momentum=0.9, batchnorm_recalibration=2)
    result = bc.experiments.run(cfg, train, val, test, seed=0, output_dir=tmp_path, verbose=0)
    model = keras.saving.load_model(result.directory / "model.keras", safe_mode=True)
    bn = trainable_batchnorm_layers(model)[-1]
    saved = [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]
    bc.training.recalibrate_batchnorm(model, train, batches=2, batch_size=cfg.batch_size, seed=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), saved[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), saved[1], rtol=1e-5, atol=1e-6)


def test_compare_tabulates_mean_and_std_over_seeds(tiny_backbone, splits, tmp_path):
    train, val, test = splits
    configs = {
        "adam": _tiny_config(epochs=1),
        "sgd": _tiny_config(epochs=1, optimizer="sgd", learning_rate=1e-2),
    }
    table = bc.experiments.compare(configs, (train, val, test), seeds=(0, 1), output_dir=tmp_path, verbose=0)
    assert [row["name"] for row in table.rows] == ["adam", "sgd"] and all(row["n"] == 2 for row in table.rows)
    runs = table.runs["adam"]
    accs = [r.report.accuracy for r in runs]
    assert table["adam"]["accuracy"][0] == pytest.approx(np.mean(accs))
    assert runs[0].history["loss"] != runs[1].history["loss"]  # the seeds change the training
    assert (tmp_path / "results.md").read_text().startswith("| Method | n | Accuracy (%)")
    assert (tmp_path / "results.csv").read_text().splitlines()[1].startswith("adam,2,")


def test_two_phase_run_fine_tunes_the_end_of_the_backbone(tiny_backbone, splits, tmp_path):
    train, val, test = splits
    cfg = _tiny_config(
        freeze="all", epochs=1, fine_tune_epochs=1, fine_tune_unfreeze=1, fine_tune_learning_rate=1e-3
    )
    keras_model = cfg.build_model()
    assert not any(layer.trainable for layer in _weighted_layers(keras_model))
    result = bc.experiments.run(
        cfg, train, val, test, seed=0, name="two-phase", output_dir=tmp_path, verbose=0
    )
    assert result.history["epoch"] == [0, 1]
    assert result.history["learning_rate"][1] == pytest.approx(1e-3)
    # Each phase's log stays; its resume state and checkpoint go once model.keras holds the weights.
    for phase in ("fit", "fine_tune"):
        kept = sorted(p.name for p in (result.directory / "train" / phase).iterdir())
        assert kept == ["history.json", "log.csv"], kept
    model = result.load_model()
    flags = {layer.name: layer.trainable for layer in _weighted_layers(model)}
    assert flags["conv2"] and not flags["conv1"] and not flags["conv0"]
    assert not flags["bn2"]  # BatchNorm stays in inference mode when fine-tuning


def test_recipes_carry_precise_batchnorm_and_test_time_augmentation():
    for name in ("cpu", "robust"):
        cfg = Config.preset(name)
        assert (cfg.precise_batchnorm, cfg.tta) == (100, "d4")
    assert Config.preset("robust").cell_crop == "dataset"
    seed = Config.preset("seed").to_dict()
    assert not {"cell_crop", "precise_batchnorm", "tta"} & set(seed)  # unset: older JSON and fingerprints


def test_run_applies_precise_batchnorm_the_cell_crop_and_tta(tiny_backbone, splits, tmp_path):
    train, val, test = splits
    cfg = _tiny_config(epochs=1, cell_crop="dataset", precise_batchnorm=3, tta="flips")
    result = bc.experiments.run(cfg, train, val, test, seed=0, name="extras", output_dir=tmp_path, verbose=0)
    model = result.load_model()
    assert model.get_layer("cell_crop").scale == "dataset"
    statistics = [layer.moving_mean.numpy().copy() for layer in _batchnorm(model)]
    bc.training.recalibrate_batchnorm(model, train, batches=3, batch_size=cfg.batch_size, seed=0)
    for before, layer in zip(statistics, _batchnorm(model)):  # the run ended with these statistics
        np.testing.assert_allclose(layer.moving_mean.numpy(), before, rtol=1e-5, atol=1e-6)
    report = bc.evaluate(model, test, tta="flips")
    np.testing.assert_allclose(result.report.y_prob, report.y_prob, atol=1e-6)
    assert not np.allclose(bc.evaluate(model, test).y_prob, report.y_prob, atol=1e-6)


def _batchnorm(model):
    import keras

    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
