"""Argument checks shared by the whole library: one rule per kind of value, one message form.

Every check returns the value in its canonical type (a Python ``int`` for any integer kind) and
raises :class:`~bloodcell.errors.ConfigurationError` with a message of the form
``"<name> must be <rule>. Received: <name>=<value!r>."``.

Example:
    >>> check_seed(3)
    3
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: seed must be a non-negative integer. Received: seed=-1.
"""

from __future__ import annotations

import numbers
from typing import Any

from bloodcell.errors import ConfigurationError

__all__ = ["check_int", "check_positive", "check_seed", "received"]


def received(name: str, value: Any) -> str:
    """The tail of every message: ``"Received: name=value."``."""
    return f"Received: {name}={value!r}."


def _is_integer(value: Any) -> bool:
    # bool is an int subclass, but True is never meant as a count or a seed.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """An integer (Python or NumPy, not bool) of at least ``minimum``; None when ``allow_none``.

    >>> check_int(2, "batch_size", minimum=1)
    2
    >>> check_int(0, "batch_size", minimum=1)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: batch_size must be a positive integer. Received: batch_size=0.
    """
    if value is None and allow_none:
        return None
    if not _is_integer(value) or (minimum is not None and value < minimum):
        rule = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer ≥ {minimum}"
        )
        raise ConfigurationError(
            f"{name} must be {rule}{' or None' if allow_none else ''}. {received(name, value)}"
        )
    return int(value)


def check_seed(value: Any, name: str = "seed", *, allow_none: bool = False) -> int | None:
    """A random seed: a non-negative integer (NumPy's rule for seeds), or None where a fresh draw is allowed."""
    return check_int(value, name, minimum=0, allow_none=allow_none)


def check_positive(value: Any, name: str) -> float:
    """A real number above 0 (not bool): a learning rate, a scale.

    >>> check_positive(1e-3, "learning_rate")
    0.001
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number. {received(name, value)}")
    return float(value)
