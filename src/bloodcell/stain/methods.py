"""Stain normalisers by name, and rebuilding a fitted one from its config.

Example:
    >>> sorted(METHODS)
    ['macenko', 'reinhard']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bloodcell.errors import ConfigurationError
from bloodcell.stain.base import Normalizer
from bloodcell.stain.macenko import MacenkoNormalizer
from bloodcell.stain.reinhard import ReinhardNormalizer

__all__ = ["METHODS", "from_config", "make_normalizer"]

METHODS: dict[str, type[Normalizer]] = {"macenko": MacenkoNormalizer, "reinhard": ReinhardNormalizer}


def make_normalizer(method: str, **params: Any) -> MacenkoNormalizer | ReinhardNormalizer:
    """An unfitted normaliser by name (``"macenko"`` or ``"reinhard"``) with its keyword arguments.

    Example:
        >>> make_normalizer("reinhard", mask_background=True)
        ReinhardNormalizer(mask_background=True, ...) (not fitted)
    """
    key = str(method).lower()
    if key not in METHODS:
        raise ConfigurationError(f"Unknown stain normalisation {method!r}; choose from {sorted(METHODS)}.")
    return METHODS[key](**params)  # type: ignore[return-value]


def from_config(config: Mapping[str, Any]) -> MacenkoNormalizer | ReinhardNormalizer:
    """Rebuild a (fitted) normaliser from its ``get_config()`` dictionary.

    Example:
        >>> import bloodcell as bc
        >>> fitted = MacenkoNormalizer().fit(bc.datasets.load_sample(per_class=1))
        >>> copy = from_config(fitted.get_config())
        >>> bool((copy.stain_matrix_ == fitted.stain_matrix_).all())
        True
    """
    if not isinstance(config, Mapping) or "method" not in config:
        raise ConfigurationError(
            "A stain normaliser config is the dict from MacenkoNormalizer/ReinhardNormalizer.get_config() "
            f"(with a 'method' key); got {config!r}."
        )
    key = str(config["method"]).lower()
    if key not in METHODS:
        raise ConfigurationError(
            f"Unknown stain normalisation {config['method']!r}; choose from {sorted(METHODS)}."
        )
    return METHODS[key].from_config(config)  # type: ignore[return-value]
