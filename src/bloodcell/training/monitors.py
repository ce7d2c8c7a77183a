"""The metrics that choose a training run's best epoch, and whether higher or lower is better.

Example:
    >>> check_monitor("val_acc")
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: monitor must be one of 'val_accuracy', 'val_loss', 'accuracy', 'loss'. Did you mean 'val_accuracy'? Received: monitor='val_acc'.
"""

from __future__ import annotations

from typing import Any

from bloodcell._validation import received, suggest
from bloodcell.errors import ConfigurationError

__all__ = ["MONITORS", "check_monitor", "monitor_mode"]

#: What the Trainer logs each epoch, and so what it can monitor: the validation metrics, or the
#: training ones when no validation set is given.
MONITORS = ("val_accuracy", "val_loss", "accuracy", "loss")

_MAX_KEYS = ("acc", "auc", "f1", "precision", "recall")


def check_monitor(monitor: Any) -> str:
    """``monitor`` if the Trainer logs it; one clear error otherwise (Keras would silently never improve)."""
    if monitor not in MONITORS:
        raise ConfigurationError(
            f"monitor must be one of {', '.join(map(repr, MONITORS))}.{suggest(monitor, MONITORS, n=1)} "
            f"{received('monitor', monitor)}"
        )
    return str(monitor)


def monitor_mode(monitor: str) -> str:
    """``"max"`` for accuracy-like metrics, ``"min"`` for losses (Keras's ``mode="auto"`` rule)."""
    return "max" if any(key in monitor for key in _MAX_KEYS) else "min"
