"""The eight peripheral blood cell classes and normalisation of the names people use for them.

The order is BloodMNIST's (and the PBC dataset's alphabetical folder order), so integer labels mean
the same thing across PBC folders, BloodMNIST npz files and AN2DL npz files.

Example:
    >>> from bloodcell.classes import CLASS_NAMES, normalize_class_name
    >>> CLASS_NAMES[3]
    'ig'
    >>> normalize_class_name("Immature granulocytes")
    'ig'
    >>> normalize_class_name("PLT")
    'platelet'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from bloodcell._validation import suggest
from bloodcell.errors import UnknownClassError

__all__ = [
    "CLASS_NAMES",
    "DISPLAY_NAMES",
    "NUM_CLASSES",
    "class_index",
    "model_class_names",
    "normalize_class_name",
    "normalize_class_names",
]

#: Canonical class names, index = integer label (BloodMNIST order).
CLASS_NAMES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

NUM_CLASSES: int = len(CLASS_NAMES)

#: Names for figures and reports.
DISPLAY_NAMES: dict[str, str] = {
    "basophil": "Basophil",
    "eosinophil": "Eosinophil",
    "erythroblast": "Erythroblast",
    "ig": "Immature granulocyte",
    "lymphocyte": "Lymphocyte",
    "monocyte": "Monocyte",
    "neutrophil": "Neutrophil",
    "platelet": "Platelet",
}

# Names seen in the PBC folders, BloodMNIST's INFO, AN2DL notebooks, CellaVision exports and
# haematology abbreviations. Keys are already in the normalised form produced by ``_key``.
_ALIASES: dict[str, str] = {
    "ba": "basophil",
    "baso": "basophil",
    "eo": "eosinophil",
    "eos": "eosinophil",
    "eosino": "eosinophil",
    "erb": "erythroblast",
    "ery": "erythroblast",
    "nrbc": "erythroblast",
    "nucleated red blood cell": "erythroblast",
    "normoblast": "erythroblast",
    "immature granulocyte": "ig",
    "immature granulocytes": "ig",
    "immature granulocytes myelocytes metamyelocytes and promyelocytes": "ig",
    "immature granulocyte myelocyte metamyelocyte and promyelocyte": "ig",
    "immature_granulocyte": "ig",
    "myelocyte": "ig",
    "metamyelocyte": "ig",
    "promyelocyte": "ig",
    "mmy": "ig",
    "my": "ig",
    "pmy": "ig",
    "ly": "lymphocyte",
    "lym": "lymphocyte",
    "lympho": "lymphocyte",
    "mo": "monocyte",
    "mono": "monocyte",
    "ne": "neutrophil",
    "neu": "neutrophil",
    "neut": "neutrophil",
    "seg": "neutrophil",
    "sng": "neutrophil",
    "bne": "neutrophil",
    "segmented neutrophil": "neutrophil",
    "band neutrophil": "neutrophil",
    "plt": "platelet",
    "thrombocyte": "platelet",
    "thrombocytes": "platelet",
}


def _key(name: str) -> str:
    """Lower-case, collapse separators and punctuation, drop a plural 's'."""
    text = re.sub(r"[^a-z0-9]+", " ", str(name).lower()).strip()
    return text


def _singular(text: str) -> str:
    return text[:-1] if text.endswith("s") and not text.endswith("ss") else text


def normalize_class_name(name: str, class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Map a class name as people write it to its canonical form.

    Matching ignores case, spaces, punctuation and plurals, and knows the usual abbreviations
    ("IG", "PLT", "NRBC", "Neutrophils", "immature granulocytes", PBC file prefixes like "BNE").

    Args:
        name: The name to normalise.
        class_names: The canonical names to map onto (default: the eight PBC classes).

    Returns:
        The canonical name, one of ``class_names``.

    Raises:
        UnknownClassError: If ``name`` matches no class; the message lists the closest ones.

    Example:
        >>> normalize_class_name("Neutrophils")
        'neutrophil'
    """
    if not isinstance(name, str):
        raise UnknownClassError(f"class names must be strings, got {type(name).__name__} {name!r}")
    canonical = {_key(c): c for c in class_names}
    key = _key(name)
    for candidate in (key, _singular(key), key.replace(" ", "_")):
        if candidate in canonical:
            return canonical[candidate]
        alias = _ALIASES.get(candidate)
        if alias is not None and alias in class_names:
            return alias
    spellings = {k: v for k, v in _ALIASES.items() if v in class_names} | canonical
    hint = suggest(key, spellings)
    raise UnknownClassError(
        f"unknown class name {name!r}.{hint} Known classes: {', '.join(class_names)}. "
        "Pass class_map={'your name': 'canonical name'} to map other names."
    )


def normalize_class_names(
    names: Iterable[str],
    class_names: Sequence[str] = CLASS_NAMES,
    class_map: Mapping[str, str] | None = None,
) -> list[str]:
    """Normalise several names at once; ``class_map`` entries take precedence.

    Example:
        >>> normalize_class_names(["BA", "my_cells"], class_map={"my_cells": "lymphocyte"})
        ['basophil', 'lymphocyte']
    """
    class_map = dict(class_map or {})
    out = []
    for name in names:
        target = class_map.get(name, name)
        out.append(normalize_class_name(target, class_names))
    return out


def class_index(name: str, class_names: Sequence[str] = CLASS_NAMES) -> int:
    """Integer label of a class name (normalised first).

    Example:
        >>> class_index("Platelets")
        7
    """
    return list(class_names).index(normalize_class_name(name, class_names))


def model_class_names(model: object) -> tuple[str, ...]:
    """The class of each output of a classifier: its own ``class_names`` if it has them, else the
    eight blood cell classes for an 8-way model, else ``class_0``, ``class_1``...

    Example:
        >>> import keras
        >>> model_class_names(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)]))[:2]
        ('basophil', 'eosinophil')
    """
    own = getattr(model, "class_names", None)
    if own:
        return tuple(str(c) for c in own)
    outputs = int(model.outputs[0].shape[-1])  # type: ignore[attr-defined]
    if outputs == len(CLASS_NAMES):
        return CLASS_NAMES
    return tuple(f"class_{i}" for i in range(outputs))
