"""The learning-rate range test: Trainer.find_lr looks, suggests, draws, and leaves everything as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import bloodcell as bc
from _training_utils import tiny_classifier
from bloodcell.errors import ConfigurationError


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


def _same(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return len(before) == len(after) and all(
        a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in zip(before, after, strict=True)
    )


def test_find_lr_leaves_model_and_trainer_exactly_as_before(small_sample, tmp_path) -> None:
    model = tiny_classifier(dropout=0.3)  # weights, BatchNorm statistics and a dropout seed to restore
    trainer = bc.Trainer(model, batch_size=8, balance="class_weight", verbose=0)
    trainer.fit(small_sample, epochs=1)  # the model is compiled, with an optimizer that has state
    weights, optimizer_state = _values(model.variables), _values(model.optimizer.variables)
    history, probs = dict(trainer.history), model.predict(small_sample.images, verbose=0)

    result = trainer.find_lr(small_sample, num_steps=12, start_lr=1e-5, end_lr=1.0)

    assert _same(weights, _values(model.variables))
    assert _same(optimizer_state, _values(model.optimizer.variables))
    assert trainer.history == history and trainer.epochs_done == 1
    np.testing.assert_array_equal(model.predict(small_sample.images, verbose=0), probs)
    assert 1 <= len(result.lrs) <= 12 and np.all(np.diff(result.lrs) > 0)
    assert result.lrs[0] == pytest.approx(1e-5)
    assert np.isfinite(result.raw_losses).all() or result.diverged
    assert math.isfinite(result.suggestion) and 1e-6 <= result.suggestion <= 1.0
    assert result.suggestion == result.minimum  # the default rule: minimum / 10
    assert result.minimum == pytest.approx(result.lrs[int(np.nanargmin(result.losses))] / 10)
    # training goes on from where it was
    trainer.fit(small_sample, epochs=2)


def test_find_lr_stops_when_the_loss_diverges_and_plots(small_sample, tmp_path) -> None:
    model = tiny_classifier(seed=2)
    trainer = bc.Trainer(model, batch_size=8, optimizer="sgd", verbose=0)
    result = trainer.find_lr(small_sample, start_lr=1e-3, end_lr=1e6, num_steps=40, method="steepest")
    assert result.diverged and len(result.lrs) < 40
    assert result.suggestion == result.steepest and result.lrs[0] <= result.steepest <= result.lrs[-1]
    path = result.plot(tmp_path / "lr.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    assert "diverged=True" in repr(result)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "end_lr must be larger"),
        ({"num_steps": 1}, "num_steps"),
        ({"method": "valley"}, "method"),
        ({"smoothing": 1.0}, "smoothing"),
    ],
)
def test_find_lr_refuses_bad_settings(small_sample, kwargs, match) -> None:
    trainer = bc.Trainer(tiny_classifier(), batch_size=8, verbose=0)
    with pytest.raises(ConfigurationError, match=match):
        trainer.find_lr(small_sample, **kwargs)
