"""Argument types of the commands: each parses a flag's text with the library's own check.

A bad value is answered by argparse as ``bloodcell CMD: argument --seed: must be a non-negative
integer, got '-1'`` before any work is done.

Lists come as comma-separated text (``--kinds jpeg,gamma``) and leave here as Python lists: the
library takes lists, only the command line spells them with commas.

Example:
    >>> positive_int("8"), seed("0"), names("jpeg, gamma"), integers("1,3,5")
    (8, 0, ['jpeg', 'gamma'], [1, 3, 5])
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a positive integer, got '0'
"""

from __future__ import annotations

import argparse

from bloodcell._validation import check_int, check_seed
from bloodcell.errors import ConfigurationError

__all__ = ["integers", "names", "non_negative_int", "positive_int", "seed"]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _rule(err: ConfigurationError) -> str:
    """``"must be a positive integer"`` from the library's ``"x must be a positive integer. Received: ..."``."""
    return "must" + str(err).split(" must", 1)[1].split(". Received:", 1)[0]


def positive_int(text: str) -> int:
    """A count of at least 1 (batch size, epochs, images per class, top-k...)."""
    try:
        return int(check_int(_integer(text), "value", minimum=1))  # type: ignore[arg-type]
    except ConfigurationError as err:
        raise argparse.ArgumentTypeError(f"{_rule(err)}, got {text!r}") from None


def non_negative_int(text: str) -> int:
    """A count that may be 0 (fine-tuning epochs, layers to freeze)."""
    try:
        return int(check_int(_integer(text), "value", minimum=0))  # type: ignore[arg-type]
    except ConfigurationError as err:
        raise argparse.ArgumentTypeError(f"{_rule(err)}, got {text!r}") from None


def seed(text: str) -> int:
    """A random seed: a non-negative integer."""
    try:
        return int(check_seed(_integer(text), "seed"))  # type: ignore[arg-type]
    except ConfigurationError as err:
        raise argparse.ArgumentTypeError(f"{_rule(err)}, got {text!r}") from None


def names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped: ``"jpeg, gamma"`` → ``['jpeg', 'gamma']``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def integers(text: str) -> list[int]:
    """Comma-separated integers: ``"1,3,5"`` → ``[1, 3, 5]`` (their range is the library's to check)."""
    return [_integer(part) for part in names(text)]
