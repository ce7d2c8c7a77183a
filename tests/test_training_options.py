"""The Trainer's settings declared once: TrainerOptions, get_params / set_params / clone, Config's share."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import tiny_classifier
from bloodcell.errors import ConfigurationError
from bloodcell.experiments import Config
from bloodcell.training.options import RecipeOptions, TrainerOptions


def test_trainer_keywords_are_the_options_with_the_same_defaults():
    params = dict(inspect.signature(bc.Trainer).parameters)
    assert list(params)[0] == "model"
    keywords = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    fields = {f.name: f.default for f in dataclasses.fields(TrainerOptions)}
    assert keywords == fields
    # and each setting is documented once, in the options, with its default, in help() and autodoc
    for name, default in fields.items():
        assert f"    {name}: " in bc.Trainer.__doc__ and f"Default: {default!r}." in bc.Trainer.__doc__


def test_get_params_rebuilds_an_equivalent_trainer():
    augmenter = bc.augment.AugMix()
    trainer = bc.Trainer(
        tiny_classifier(), optimizer="adamw", learning_rate=2e-3, augment=augmenter, consistency=12,
        balance="oversample", output_dir="runs/x", seed=3, verbose=0,
    )  # fmt: skip
    params = trainer.get_params()
    assert set(params) == {f.name for f in dataclasses.fields(TrainerOptions)}
    assert params["augment"] is augmenter and params["consistency"] == 12.0 and params["seed"] == 3
    assert str(params["output_dir"]) == "runs/x" and params["strategy"] is trainer.strategy
    again = bc.Trainer(tiny_classifier(), **params)
    assert again.get_params() == params
    assert again.options == trainer.options == TrainerOptions(**params)


def test_set_params_checks_and_leaves_the_trainer_unchanged_on_error():
    trainer = bc.Trainer(tiny_classifier(), verbose=0)
    assert trainer.set_params(batch_size=8, lr_schedule="cosine") is trainer
    assert trainer.batch_size == 8 and trainer.lr_schedule == "cosine"
    before = trainer.get_params()
    with pytest.raises(
        ConfigurationError, match=r"batch_size must be a positive integer\. Received: batch_size=0\."
    ):
        trainer.set_params(batch_size=0)
    with pytest.raises(ConfigurationError, match=r"no setting 'learnin_rate'\. Did you mean 'learning_rate'"):
        trainer.set_params(learnin_rate=0.1)
    assert trainer.get_params() == before


def test_clone_has_the_settings_and_no_state(sample8):
    trainer = bc.Trainer(tiny_classifier(), batch_size=16, seed=2, verbose=0, early_stopping_patience=None)
    trainer.fit(sample8, sample8, epochs=1)
    copy = trainer.clone()
    assert copy is not trainer and copy.get_params() == trainer.get_params()
    assert copy.history == {} and copy.epochs_done == 0 and copy.model is not trainer.model
    for a, b in zip(copy.model.get_weights(), trainer.model.get_weights()):
        np.testing.assert_array_equal(a, b)  # a copy of the model as it is
    assert bc.Trainer(tiny_classifier, seed=1).clone(seed=4).seed == 4  # a model function is called again
    sklearn_base = pytest.importorskip("sklearn.base")
    assert sklearn_base.clone(trainer).get_params() == trainer.get_params()


@pytest.fixture(scope="module")
def sample8():
    return bc.datasets.load_sample(per_class=2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be a positive number. Received: learning_rate=0."),
        ({"ema_momentum": 1.0}, "ema_momentum must be a number in (0, 1). Received: ema_momentum=1.0."),
        ({"verbose": 3}, "Received: verbose=3."),
        ({"ema": "yes"}, "ema must be True or False. Received: ema='yes'."),
        ({"optimizer": "adm"}, "Did you mean 'adam', 'adamw'? Received: optimizer='adm'."),
        ({"consistency": 12.0}, "give augment= too"),
    ],
)
def test_options_reject_bad_values_saying_what_was_received(settings, message):
    with pytest.raises(ConfigurationError) as err:
        TrainerOptions(**settings)
    assert message in str(err.value)
    with pytest.raises(ConfigurationError) as again:
        bc.Trainer(tiny_classifier(), **settings)
    assert str(again.value) == str(err.value)


def test_options_import_no_tensorflow():
    from _training_utils import run_python

    out = run_python(
        "import sys, bloodcell.training.options as o, bloodcell.experiments as e\n"
        "o.TrainerOptions(learning_rate=0.1); e.Config(epochs=3)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_config_takes_the_same_flat_keywords_and_composes_the_recipe_options(tmp_path):
    config = Config(backbone="mobilenetv3small", epochs=3, learning_rate=2e-3, balance="smote", ema=True)
    assert isinstance(config, RecipeOptions)
    assert (config.backbone, config.epochs, config.learning_rate, config.balance, config.ema) == (
        "mobilenetv3small", 3, 2e-3, "smote", True,
    )  # fmt: skip
    assert config.trainer_kwargs() == {
        f.name: getattr(config, f.name) for f in dataclasses.fields(RecipeOptions)
    }
    bc.Trainer(tiny_classifier(), **config.trainer_kwargs())  # the Trainer takes them all
    with pytest.raises(ConfigurationError, match="Received: label_smoothing=1.5"):
        Config(label_smoothing=1.5)
    with pytest.raises(ConfigurationError, match="Did you mean 'learning_rate'"):
        config.replace(learnig_rate=0.1)
    # Settings added to Config with this change keep older config.json files and fingerprints.
    data = config.to_dict()
    assert not {"loss", "consistency_views", "restore_best"} & set(data)
    changed = config.replace(consistency_views=3, restore_best=False)
    assert changed.to_dict()["consistency_views"] == 3 and changed.fingerprint() != config.fingerprint()
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert Config.from_json(tmp_path / "old.json") == config


def test_presets_keep_their_settings_and_fingerprints():
    # The fingerprints name finished runs (bloodcell train's default folder names): they must not move.
    assert {k: c.fingerprint() for k, c in bc.experiments.PRESETS.items()} == {
        "seed": "f2fb995652",
        "cpu": "65bff9ed55",
        "robust": "ac88298eb3",
    }
