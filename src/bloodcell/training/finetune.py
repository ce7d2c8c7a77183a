"""Unfreezing for the second phase of transfer learning (fine-tuning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from bloodcell.errors import ConfigurationError

__all__ = ["unfreeze_layers", "leaf_layers"]


def leaf_layers(model: keras.Layer) -> list[keras.Layer]:
    """Every layer that is not itself a container of layers, in order (nested models flattened)."""
    out: list[keras.Layer] = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model) or getattr(layer, "layers", None):
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out


def unfreeze_layers(
    model: keras.Model,
    unfreeze: str | int | Callable[[keras.Model], Any] = "all",
    *,
    train_batchnorm: bool = False,
) -> int:
    """Make layers trainable for fine-tuning; returns the number of trainable leaf layers.

    Args:
        model: The classifier.
        unfreeze: ``"all"``; an int N: the last N leaf layers (nested models flattened, so the head's
            layers count too); or a callable ``f(model)`` that sets ``trainable`` itself.
        train_batchnorm: Also let the BatchNormalization layers that were frozen update their
            statistics. By default they stay frozen, i.e. in inference mode (Keras's advice for
            fine-tuning: unfrozen statistics on small batches wreck the pretrained features).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
        ...                       keras.layers.Dense(2)])
        >>> m.trainable = False
        >>> unfreeze_layers(m, "all")
        2
    """
    leaves = leaf_layers(model)
    was_frozen_bn = {
        id(layer)
        for layer in leaves
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.trainable
    }
    if callable(unfreeze) and not isinstance(unfreeze, (str, int)):
        unfreeze(model)
    else:
        if unfreeze == "all":
            chosen = {id(layer) for layer in leaves}
        elif isinstance(unfreeze, int) and not isinstance(unfreeze, bool) and unfreeze >= 0:
            chosen = {id(layer) for layer in leaves[len(leaves) - unfreeze :]} if unfreeze else set()
        else:
            raise ConfigurationError(
                f"unfreeze must be 'all', a number of layers (counted from the end), or a function of the model; "
                f"got {unfreeze!r}."
            )
        previously = {id(layer) for layer in leaves if layer.trainable}
        model.trainable = True  # a frozen container hides its layers' flags: open it, then set each leaf
        for layer in leaves:
            layer.trainable = id(layer) in chosen or id(layer) in previously
    if not train_batchnorm:
        for layer in leaves:
            if id(layer) in was_frozen_bn:
                layer.trainable = False
    return sum(1 for layer in leaf_layers(model) if layer.trainable and layer.weights)
