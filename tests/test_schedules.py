"""The branch-free warm-up + cosine schedule: same values as Keras's, serialisable, checked input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bloodcell.training.schedules import WarmupCosine


@pytest.mark.parametrize(
    ("total", "warmup", "alpha"), [(100, 10, 0.0), (57, 0, 0.05), (30, 30, 0.1), (9, 1, 1.0)]
)
def test_matches_keras_cosine_decay(total, warmup, alpha):
    ours = WarmupCosine(2e-3, total_steps=total, warmup_steps=warmup, alpha=alpha)
    if warmup:
        theirs = keras.optimizers.schedules.CosineDecay(
            0.0, max(1, total - warmup), alpha=alpha, warmup_target=2e-3, warmup_steps=warmup
        )
    else:
        theirs = keras.optimizers.schedules.CosineDecay(2e-3, total, alpha=alpha)
    steps = list(range(0, total + 5))  # past the end too: both stay at the floor
    got = np.array([float(ours(s)) for s in steps])
    want = np.array([float(theirs(s)) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_round_trips_through_an_optimizer_config():
    opt = keras.optimizers.AdamW(WarmupCosine(1e-3, total_steps=50, warmup_steps=5, alpha=0.1))
    back = keras.optimizers.AdamW.from_config(opt.get_config())
    restored = back._learning_rate  # the schedule object (learning_rate is its current value)
    assert isinstance(restored, WarmupCosine)
    assert restored.get_config() == {"peak": 1e-3, "total_steps": 50, "warmup_steps": 5, "alpha": 0.1}
    assert float(restored(30)) == pytest.approx(float(opt._learning_rate(30)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"peak": 0.0, "total_steps": 10}, "peak must be > 0"),
        ({"peak": 1e-3, "total_steps": 0}, "total_steps >= 1"),
        ({"peak": 1e-3, "total_steps": 10, "warmup_steps": 11}, "warmup_steps <= total_steps"),
        ({"peak": 1e-3, "total_steps": 10, "alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupCosine(**kwargs)
