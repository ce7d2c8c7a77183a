"""Argument checks shared by the whole library: one rule per kind of value, one message form.

Every check returns the value in its canonical type (a Python ``int`` for any integer kind, a
Python ``float`` for any real number) and raises :class:`~bloodcell.errors.ConfigurationError` (a
``ValueError``) with a message of the form ``"<name> must be <rule>. Received: <name>=<value!r>."``.
NumPy scalars count as numbers everywhere; ``bool`` never does, since ``True`` is never meant as a
count, a rate or a seed.

Example:
    >>> check_seed(3)
    3
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: seed must be a non-negative integer. Received: seed=-1.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from bloodcell.errors import ConfigurationError

__all__ = [
    "check_choice",
    "check_int",
    "check_number",
    "check_positive",
    "check_seed",
    "is_integer",
    "is_number",
    "received",
    "suggest",
]


def received(name: str, value: Any) -> str:
    """The tail of every message: ``"Received: name=value."``."""
    return f"Received: {name}={value!r}."


def is_integer(value: Any) -> bool:
    """True for Python and NumPy integers, False for ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for finite Python and NumPy real numbers, False for ``bool``, NaN and infinities."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _span(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '≥'} {low}"
    if high is not None:
        return f" {'<' if high_open else '≤'} {high}"
    return ""


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """An integer (Python or NumPy, not bool) in ``[minimum, maximum]``; None when ``allow_none``.

    >>> check_int(2, "batch_size", minimum=1)
    2
    >>> check_int(0, "batch_size", minimum=1)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: batch_size must be a positive integer. Received: batch_size=0.
    >>> check_int(6, "severity", minimum=1, maximum=5)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: severity must be an integer in [1, 5]. Received: severity=6.
    """
    if value is None and allow_none:
        return None
    too_low = minimum is not None and is_integer(value) and value < minimum
    too_high = maximum is not None and is_integer(value) and value > maximum
    if not is_integer(value) or too_low or too_high:
        if maximum is None and minimum in (None, 0, 1):
            rule = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}[minimum]
        else:
            rule = "an integer" + _span(minimum, maximum, False, False)
        raise ConfigurationError(
            f"{name} must be {rule}{' or None' if allow_none else ''}. {received(name, value)}"
        )
    return int(value)


def check_seed(value: Any, name: str = "seed", *, allow_none: bool = False) -> int | None:
    """A random seed: a non-negative integer (NumPy's rule for seeds), or None where a fresh draw is allowed."""
    return check_int(value, name, minimum=0, allow_none=allow_none)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number (Python or NumPy, not bool) between ``low`` and ``high``.

    The bounds are inclusive unless ``low_open`` / ``high_open``.

    >>> check_number(0.3, "dropout", low=0, high=1, high_open=True)
    0.3
    >>> check_number(1.0, "dropout", low=0, high=1, high_open=True)
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: dropout must be a number in [0, 1). Received: dropout=1.0.
    """
    if value is None and allow_none:
        return None
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        rule = "a number" + _span(low, high, low_open, high_open)
        raise ConfigurationError(
            f"{name} must be {rule}{' or None' if allow_none else ''}. {received(name, value)}"
        )
    return float(value)


def check_positive(value: Any, name: str) -> float:
    """A real number above 0 (not bool): a learning rate, a scale.

    >>> check_positive(1e-3, "learning_rate")
    0.001
    >>> check_positive(0, "learning_rate")
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: learning_rate must be a positive number. Received: learning_rate=0.
    """
    if not is_number(value) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number. {received(name, value)}")
    return float(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices`` (compared with ``==``; ``True`` never matches ``1``).

    >>> check_choice("max", "pooling", ("avg", "max"))
    'max'
    >>> check_choice("min", "pooling", ("avg", "max"))
    Traceback (most recent call last):
    ...
    bloodcell.errors.ConfigurationError: pooling must be one of 'avg', 'max'. Received: pooling='min'.
    """
    options = tuple(choices)
    if not any(value == option and isinstance(value, bool) == isinstance(option, bool) for option in options):
        shown = ", ".join(repr(option) for option in options)
        raise ConfigurationError(f"{name} must be one of {shown}. {received(name, value)}")
    return value


def suggest(value: Any, known: Iterable[str] | Mapping[str, str], *, n: int = 3, cutoff: float = 0.6) -> str:
    """The "did you mean" hint for an unknown name: ``" Did you mean 'a', 'b'?"``, or ``""``.

    ``known`` may map spellings (aliases) to the names they stand for: ``value`` is matched
    against the spellings and the hint shows the names, each once.

    >>> suggest("efficientnetv2", ["efficientnetv2s", "efficientnetv2m", "mobilenetv3small"])
    " Did you mean 'efficientnetv2s', 'efficientnetv2m'?"
    >>> suggest("neutrophils", {"neutrophil": "neutrophil", "neutrophile": "neutrophil"})
    " Did you mean 'neutrophil'?"
    >>> suggest("resnet", ["efficientnetv2s"])
    ''
    """
    names = dict(known) if isinstance(known, Mapping) else {str(k): str(k) for k in known}
    spellings = difflib.get_close_matches(str(value), [str(k) for k in names], n=len(names), cutoff=cutoff)
    close = list(dict.fromkeys(names[s] for s in spellings))[:n]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
