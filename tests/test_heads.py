"""Classification heads: presets, layer order, validation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bloodcell.errors import ConfigurationError, InvalidDtypeError, UnknownNameError
from bloodcell.heads import HEAD_PRESETS, DenseStack, Linear, build_head, get_head


def kinds(head) -> list[str]:
    return [type(layer).__name__ for layer in head.layers]


def test_seed_head_matches_the_seed_study() -> None:
    head = build_head("seed", num_classes=8)
    block = ["Dense", "Dropout", "BatchNormalization"]
    assert kinds(head) == ["BatchNormalization", "Dropout", *block * 6, "Dense"]
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [1024, 512, 256, 128, 64, 32, 8]
    assert {layer.activation.__name__ for layer in dense[:-1]} == {"relu"}
    assert dense[-1].activation.__name__ == "softmax"
    assert {layer.rate for layer in head.layers if isinstance(layer, keras.layers.Dropout)} == {0.3}
    assert {
        layer.momentum for layer in head.layers if isinstance(layer, keras.layers.BatchNormalization)
    } == {0.9}
    probs = np.asarray(head(np.random.default_rng(0).normal(size=(4, 1280)).astype("float32")))
    assert probs.shape == (4, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert head.name == "head"


def test_linear_head() -> None:
    assert kinds(build_head("linear", 3)) == ["Dense"]
    head = build_head(Linear(dropout=0.5, output_activation=None), 5)
    assert kinds(head) == ["Dropout", "Dense"]
    logits = np.asarray(head(np.ones((2, 7), "float32")))
    assert logits.shape == (2, 5) and not np.allclose(logits.sum(axis=1), 1.0)  # logits, not probabilities


def test_dense_stack_options_change_the_layers() -> None:
    plain = DenseStack(units=(16, 8), dropout=0.0, batchnorm=False, input_batchnorm=False, activation="gelu")
    assert kinds(build_head(plain, 4)) == ["Dense", "Dense", "Dense"]
    assert build_head(plain, 4).layers[0].activation.__name__ == "gelu"
    custom = DenseStack(units=32, dropout=0.1, input_dropout=0.5, batchnorm_momentum=0.99)
    head = build_head(custom, 2)
    assert kinds(head) == ["BatchNormalization", "Dropout", "Dense", "Dropout", "BatchNormalization", "Dense"]
    assert [layer.rate for layer in head.layers if isinstance(layer, keras.layers.Dropout)] == [0.5, 0.1]
    assert head.layers[0].momentum == 0.99
    assert custom.units == (32,)


def test_heads_are_plain_comparable_configs() -> None:
    assert get_head("SEED") == DenseStack(units=(1024, 512, 256, 128, 64, 32), dropout=0.3, input_dropout=0.3)
    assert DenseStack() == DenseStack()
    assert DenseStack().to_dict()["type"] == "DenseStack"
    assert Linear().to_dict() == {"type": "Linear", "dropout": 0.0, "output_activation": "softmax"}
    assert set(HEAD_PRESETS) == {"seed", "linear"}
    assert get_head("seed").describe().startswith("BatchNorm -> Dropout(0.3) -> [Dense(1024, relu)")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: DenseStack(dropout=1.0), ConfigurationError, "dropout"),
        (lambda: DenseStack(units=(64, 0)), ConfigurationError, "units"),
        (lambda: DenseStack(input_dropout=-0.1), ConfigurationError, "input_dropout"),
        (lambda: DenseStack(batchnorm_momentum=1.0), ConfigurationError, "batchnorm_momentum"),
        (lambda: Linear(dropout="0.2"), ConfigurationError, "dropout"),
        (lambda: build_head("sead", 8), UnknownNameError, "Did you mean 'seed'"),
        (lambda: build_head("seed", 1), ConfigurationError, "num_classes"),
        (lambda: build_head(42, 8), InvalidDtypeError, "preset name"),
    ],
)
def test_bad_head_arguments(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()
