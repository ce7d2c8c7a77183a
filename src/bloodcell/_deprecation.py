"""Old import paths kept for one release: each use warns and names the new path.

A module that moved leaves behind a shim whose only content is ``__getattr__, __dir__ =
moved_module(__name__, "new.module")``; a package whose public name moved adds it to
``moved_names``. Both forward to the object itself (the same object, not a copy) and raise a
:class:`DeprecationWarning` on every use, so the warning points at the caller's line.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from bloodcell.augment.balance import oversample_indices
    >>> str(caught[0].message).split(";")[0]
    'bloodcell.augment.balance.oversample_indices moved to bloodcell.datasets.balance.oversample_indices'
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_module", "moved_names", "warn_moved"]


def warn_moved(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is now ``new`` (a :class:`DeprecationWarning` at the caller's caller)."""
    warnings.warn(
        f"{old} moved to {new}; import it from there. The old path will be removed in the next release.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_module(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a shim module ``old`` whose contents now live in ``new``."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # dunder look-ups (``__path__``, ``__wrapped__``) are not uses
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), name)
        warn_moved(f"{old}.{name}", f"{new}.{name}")
        return value

    def __dir__() -> list[str]:
        # the shim's own names only: listing the moved ones would make every tool that walks
        # ``dir()`` (doctest collectors, IDEs) trigger the warning
        return sorted(sys.modules[old].__dict__)

    return __getattr__, __dir__


def moved_names(
    package: str, names: Mapping[str, str], fallback: Callable[[str], Any] | None = None
) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that serves each of ``names`` (name → its new module) with a
    warning, and hands every other name to ``fallback`` (e.g. the package's lazy loader)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            warn_moved(f"{package}.{name}", f"{names[name]}.{name}")
            return value
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
