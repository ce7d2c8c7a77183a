"""Classification heads: what sits on the pooled backbone features and outputs class probabilities.

A head is a small frozen dataclass of hyper-parameters (printable, comparable, easy to save in an
experiment config); :func:`build_head` turns it into Keras layers for a number of classes. Heads take
pooled feature vectors (N, D): the classifier does the global pooling, so the pooled features stay
reachable for :func:`bloodcell.models.feature_extractor`.

Presets (:data:`HEAD_PRESETS`):

- ``"seed"``: the seed study's head, BatchNorm → Dropout → six blocks of (Dense ReLU, Dropout,
  BatchNorm) → Dense softmax. The study does not give its widths or rates; bloodcell uses halving
  widths 1024, 512, 256, 128, 64, 32 and dropout 0.3 everywhere.
- ``"linear"``: a single softmax layer (logistic regression on the features), the usual
  linear-probe and the fastest to train.

Importing this module does not import TensorFlow; :func:`build_head` does.

Example:
    >>> from bloodcell.heads import DenseStack, get_head
    >>> get_head("seed").units
    (1024, 512, 256, 128, 64, 32)
    >>> print(DenseStack(units=(64,), dropout=0.2).describe())
    BatchNorm -> Dropout(0.2) -> [Dense(64, relu) -> Dropout(0.2) -> BatchNorm]
      -> Dense(num_classes, softmax)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from bloodcell._validation import check_int, check_number, is_integer, received, suggest
from bloodcell.errors import ConfigurationError, InvalidDtypeError, UnknownNameError

__all__ = ["HEAD_PRESETS", "DenseStack", "HeadSpec", "Linear", "build_head", "get_head"]


def _check_rate(value: Any, what: str) -> float:
    return check_number(value, what, low=0, high=1, high_open=True)  # type: ignore[return-value]


def _check_momentum(value: Any) -> float:
    return check_number(  # type: ignore[return-value]
        value, "batchnorm_momentum", low=0, high=1, low_open=True, high_open=True
    )


@dataclass(frozen=True)
class Linear:
    """One softmax layer on the pooled features, after optional dropout.

    Args:
        dropout: Dropout rate before the output layer (0 for none).
        output_activation: Activation of the output layer; ``"softmax"`` gives probabilities
            (what bloodcell's training and evaluation expect), None gives logits.

    Example:
        >>> Linear(dropout=0.2).describe()
        'Dropout(0.2) -> Dense(num_classes, softmax)'
    """

    dropout: float = 0.0
    output_activation: str | None = "softmax"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropout", _check_rate(self.dropout, "dropout"))

    def describe(self) -> str:
        """The layer sequence in one line."""
        parts = [f"Dropout({self.dropout:g})"] if self.dropout else []
        return " -> ".join([*parts, f"Dense(num_classes, {self.output_activation or 'linear'})"])

    def layers(self, num_classes: int) -> list[Any]:
        """The Keras layers, in order (used by :func:`build_head`)."""
        import keras

        out: list[Any] = []
        if self.dropout:
            out.append(keras.layers.Dropout(self.dropout, name="dropout"))
        out.append(keras.layers.Dense(num_classes, activation=self.output_activation, name="predictions"))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters as a dictionary, with the head type under ``"type"``."""
        return {"type": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class DenseStack:
    """Fully connected blocks on the pooled features: (Dense, Dropout, BatchNorm) per width in ``units``.

    The layer order is the seed study's: optional input BatchNorm and Dropout, then for each width
    Dense(activation) → Dropout → BatchNorm, then the output layer.

    Args:
        units: Width of each hidden Dense layer, in order.
        dropout: Dropout rate after each hidden Dense layer.
        batchnorm: A BatchNormalization layer closing each block.
        activation: Activation of the hidden Dense layers.
        input_batchnorm: A BatchNormalization layer on the pooled features first.
        input_dropout: Dropout rate on the pooled features (after ``input_batchnorm``); None means
            the same as ``dropout``.
        batchnorm_momentum: Momentum of the head's BatchNorm layers. The head always starts from
            random weights, so it uses the from-scratch value 0.9 (Keras's default 0.99 lets the moving
            statistics trail the weights for hundreds of steps, which shows on small datasets).
        output_activation: Activation of the output layer (``"softmax"``: probabilities; None: logits).

    Example:
        >>> print(DenseStack(units=(128, 32), dropout=0.5, batchnorm=False, input_batchnorm=False).describe())
        Dropout(0.5) -> [Dense(128, relu) -> Dropout(0.5)] -> [Dense(32, relu) -> Dropout(0.5)]
          -> Dense(num_classes, softmax)
    """

    units: tuple[int, ...] = (256,)
    dropout: float = 0.3
    batchnorm: bool = True
    activation: str = "relu"
    input_batchnorm: bool = True
    input_dropout: float | None = None
    batchnorm_momentum: float = 0.9
    output_activation: str | None = "softmax"

    def __post_init__(self) -> None:
        units = (self.units,) if is_integer(self.units) else tuple(self.units)
        if not all(is_integer(u) and u >= 1 for u in units):
            raise ConfigurationError(f"units must be positive integers. {received('units', self.units)}")
        units = tuple(int(u) for u in units)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "dropout", _check_rate(self.dropout, "dropout"))
        if self.input_dropout is not None:
            object.__setattr__(self, "input_dropout", _check_rate(self.input_dropout, "input_dropout"))
        object.__setattr__(self, "batchnorm_momentum", _check_momentum(self.batchnorm_momentum))

    @property
    def _input_dropout(self) -> float:
        return self.dropout if self.input_dropout is None else self.input_dropout

    def describe(self) -> str:
        """The layer sequence in one line."""
        parts = []
        if self.input_batchnorm:
            parts.append("BatchNorm")
        if self._input_dropout:
            parts.append(f"Dropout({self._input_dropout:g})")
        for width in self.units:
            block = [f"Dense({width}, {self.activation})"]
            if self.dropout:
                block.append(f"Dropout({self.dropout:g})")
            if self.batchnorm:
                block.append("BatchNorm")
            parts.append("[" + " -> ".join(block) + "]")
        parts.append(f"Dense(num_classes, {self.output_activation or 'linear'})")
        return " -> ".join(parts)

    def layers(self, num_classes: int) -> list[Any]:
        """The Keras layers, in order (used by :func:`build_head`)."""
        import keras

        def bn(name: str) -> Any:
            return keras.layers.BatchNormalization(momentum=self.batchnorm_momentum, name=name)

        out: list[Any] = []
        if self.input_batchnorm:
            out.append(bn("input_bn"))
        if self._input_dropout:
            out.append(keras.layers.Dropout(self._input_dropout, name="input_dropout"))
        for i, width in enumerate(self.units, start=1):
            out.append(keras.layers.Dense(width, activation=self.activation, name=f"dense_{i}"))
            if self.dropout:
                out.append(keras.layers.Dropout(self.dropout, name=f"dropout_{i}"))
            if self.batchnorm:
                out.append(bn(f"bn_{i}"))
        out.append(keras.layers.Dense(num_classes, activation=self.output_activation, name="predictions"))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters as a dictionary, with the head type under ``"type"``."""
        return {"type": type(self).__name__, **asdict(self)}


HeadSpec = Linear | DenseStack

#: Named heads; :func:`build_head` and ``build_classifier(head=...)`` accept these names.
HEAD_PRESETS: Mapping[str, HeadSpec] = MappingProxyType(
    {
        "seed": DenseStack(
            units=(1024, 512, 256, 128, 64, 32),
            dropout=0.3,
            batchnorm=True,
            activation="relu",
            input_batchnorm=True,
            input_dropout=0.3,
        ),
        "linear": Linear(),
    }
)


def get_head(name_or_spec: str | HeadSpec) -> HeadSpec:
    """The head spec for a preset name (any case), or the spec itself.

    Raises:
        UnknownNameError: Not a preset name.
    """
    if isinstance(name_or_spec, (Linear, DenseStack)):
        return name_or_spec
    if isinstance(name_or_spec, str):
        key = name_or_spec.strip().lower()
        if key in HEAD_PRESETS:
            return HEAD_PRESETS[key]
        hint = suggest(key, list(HEAD_PRESETS), n=2, cutoff=0.5)
        raise UnknownNameError(
            f"Unknown head {name_or_spec!r}.{hint} Presets: {sorted(HEAD_PRESETS)}; or pass "
            "bloodcell.heads.DenseStack(...) / Linear(...)."
        )
    raise InvalidDtypeError(
        "A head is a preset name, Linear(...) or DenseStack(...). "
        f"Received: head={type(name_or_spec).__name__}."
    )


def _check_num_classes(num_classes: Any) -> int:
    return check_int(num_classes, "num_classes", minimum=2)  # type: ignore[return-value]


def build_head(name_or_spec: str | HeadSpec, num_classes: int, *, name: str = "head") -> Any:
    """Build a head as a ``keras.Sequential`` mapping pooled features (N, D) to (N, num_classes).

    Args:
        name_or_spec: A preset name (``"seed"``, ``"linear"``) or a :class:`Linear` / :class:`DenseStack`.
        num_classes: Output classes (at least 2).
        name: The Keras name of the head model.

    Example:
        >>> import numpy as np
        >>> head = build_head("seed", num_classes=8)
        >>> probs = np.asarray(head(np.ones((2, 1280), dtype="float32")))
        >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1.0, atol=1e-5))
        ((2, 8), True)
    """
    import keras

    spec = get_head(name_or_spec)
    num_classes = _check_num_classes(num_classes)
    return keras.Sequential(spec.layers(num_classes), name=name)
