"""bloodcell.experiments: Config presets and serialisation, run() folders, compare() tables."""

from __future__ import annotations

import json

import pytest

import bloodcell as bc
from bloodcell.errors import ConfigurationError, InvalidDtypeError, UnknownNameError
from bloodcell.experiments import Config


def test_seed_preset_is_the_report_recipe():
    cfg = Config.preset("seed")
    assert (cfg.backbone, cfg.weights, cfg.freeze, cfg.head, cfg.augment, cfg.optimizer) == (
        "efficientnetv2s", "imagenet", 120, "seed", "augmix", "adam")
    assert cfg.reduce_lr_patience is not None and cfg.early_stopping_patience is not None
    assert cfg.monitor == "val_accuracy"


def test_cpu_preset_trains_from_scratch():
    cfg = Config.preset("cpu")
    assert cfg.weights is None and cfg.freeze is None
    assert (cfg.backbone, cfg.batchnorm_momentum, cfg.optimizer, cfg.lr_schedule) == (
        "mobilenetv3small", 0.9, "adamw", "cosine")
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
    ],
)
def test_bad_configs_raise(changes, error):
    with pytest.raises(error):
        Config.preset("seed").replace(**changes)


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
