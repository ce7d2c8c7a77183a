"""Lazy package attributes (PEP 562): names load from their module on first use.

Each package that keeps its import light (``bloodcell`` itself, ``adapt``, ``augment``,
``backbones``, ``cells``, ``training``) declares which module defines each public name and gets its ``__getattr__`` and
``__dir__`` from :func:`lazy_exports`.

Example:
    >>> import bloodcell.training
    >>> bloodcell.training.MONITORS[0]
    'val_accuracy'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, attributes: Mapping[str, str], submodules: Sequence[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``attributes`` is imported from its
    module, each of ``submodules`` as ``package.<name>``, on first use, then kept in the package."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name in attributes:
            value = getattr(importlib.import_module(attributes[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
