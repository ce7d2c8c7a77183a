"""The backbone registry: one :class:`BackboneSpec` per name, looked up case- and separator-insensitively.

This module imports neither TensorFlow nor Keras, so listing and inspecting backbones is instant;
the Keras entries name their constructor by a dotted path that is resolved only when a model is built.

Example:
    >>> from bloodcell.backbones import get_spec, list_backbones
    >>> list_backbones("mobilenetv3*")
    ['mobilenetv3large', 'mobilenetv3small']
    >>> get_spec("EfficientNet_V2_S").name
    'efficientnetv2s'
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from bloodcell._validation import check_choice, check_int, received, suggest
from bloodcell.errors import ConfigurationError, UnknownNameError

__all__ = [
    "PREPROCESSING_MODES",
    "BackboneSpec",
    "get_spec",
    "list_backbones",
    "normalize_name",
    "register_backbone",
    "unregister_backbone",
]

#: What :class:`~bloodcell.backbones.PixelPreprocessing` can do to pixels in 0–255 before the
#: constructor's model sees them, and the value range each mode produces.
PREPROCESSING_MODES: Mapping[str, str] = MappingProxyType(
    {
        "none": "0..255 (the Keras model preprocesses itself)",
        "unit": "0..1 (x / 255)",
        "tf": "-1..1 (x / 127.5 - 1)",
        "torch": "ImageNet mean/std standardised (x / 255 - mean) / std",
        "caffe": "BGR order, ImageNet mean subtracted",
    }
)

_SEPARATORS = re.compile(r"[\s_\-.]+")

F = TypeVar("F", bound=Callable[..., Any])


def normalize_name(name: str) -> str:
    """The registry key for a name: lower case, without spaces, underscores, hyphens or dots.

    Example:
        >>> normalize_name("EfficientNet-V2_S")
        'efficientnetv2s'
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"A backbone name must be a string. {received('name', name)}")
    return _SEPARATORS.sub("", name.strip().lower())


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the library needs to know to build one backbone and feed it pixels.

    Attributes:
        name: Canonical registry name (normalised: ``"efficientnetv2s"``).
        constructor: Builds the headless Keras model. Called as
            ``constructor(input_shape=..., weights="imagenet" | None, **constructor_kwargs, **kwargs)``
            and must return a model mapping images in ``input_range`` to feature maps (N, h, w, D)
            or feature vectors (N, D). Either a callable or the dotted path of one
            (``"keras.applications.EfficientNetV2S"``), imported only when a model is built.
        family: Architecture family (``"efficientnetv2"``, ``"mobilenetv3"``...), for grouping.
        preprocessing: How pixels in 0–255 become ``input_range``: one of :data:`PREPROCESSING_MODES`.
        input_range: The value range the constructor's model expects.
        min_size: Smallest input height/width the model accepts.
        params: Parameter count of the headless model (independent of the input size), if known.
        pretrained: Pretrained weight sets the constructor can load by name (``("imagenet",)``).
        constructor_kwargs: Fixed keyword arguments for the constructor (``include_top=False``...).
        aliases: Other accepted names (normalised like ``name``).
        display_name: The name people write (``"EfficientNetV2S"``).
        source: Where the architecture and its weights come from (for the docs and the user).
    """

    name: str
    constructor: Callable[..., Any] | str
    family: str = "custom"
    preprocessing: str = "none"
    input_range: tuple[float, float] = (0.0, 255.0)
    min_size: int = 32
    params: int | None = None
    pretrained: tuple[str, ...] = ()
    constructor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    display_name: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise once, here
        set_(self, "name", normalize_name(self.name))
        set_(self, "family", str(self.family).lower())
        set_(
            self,
            "aliases",
            tuple(dict.fromkeys(normalize_name(a) for a in self.aliases if normalize_name(a))),
        )
        set_(self, "constructor_kwargs", MappingProxyType(dict(self.constructor_kwargs)))
        set_(self, "pretrained", tuple(self.pretrained))
        set_(self, "input_range", tuple(float(v) for v in self.input_range))
        if not self.display_name:
            set_(self, "display_name", self.name)
        if not self.name:
            raise ConfigurationError("A backbone needs a non-empty name.")
        check_choice(self.preprocessing, "preprocessing", sorted(PREPROCESSING_MODES))
        set_(self, "min_size", check_int(self.min_size, "min_size", minimum=1))
        if not (callable(self.constructor) or isinstance(self.constructor, str)):
            raise ConfigurationError(
                "constructor must be a callable or a dotted path. "
                f"Received: constructor={type(self.constructor).__name__}."
            )

    def get_constructor(self) -> Callable[..., Any]:
        """The constructor as a callable (importing it if it was given as a dotted path)."""
        if callable(self.constructor):
            return self.constructor
        module_name, _, attr = self.constructor.rpartition(".")
        return getattr(importlib.import_module(module_name), attr)

    @property
    def constructor_name(self) -> str:
        """The constructor's dotted path (for display)."""
        if isinstance(self.constructor, str):
            return self.constructor
        return f"{self.constructor.__module__}.{getattr(self.constructor, '__qualname__', self.constructor)}"


_REGISTRY: dict[str, BackboneSpec] = {}
_ALIASES: dict[str, str] = {}  # every accepted key (names and aliases) -> canonical name


def _add(spec: BackboneSpec, overwrite: bool) -> BackboneSpec:
    keys = (spec.name, *spec.aliases)
    if not overwrite:
        taken = [k for k in keys if k in _ALIASES]
        if taken:
            raise ConfigurationError(
                f"Backbone name(s) {taken} already registered (for {_ALIASES[taken[0]]!r}); pick another "
                "name or pass overwrite=True to replace the entry."
            )
    else:
        for key in keys:
            if key in _ALIASES:
                unregister_backbone(_ALIASES[key])
    _REGISTRY[spec.name] = spec
    for key in keys:
        _ALIASES[key] = spec.name
    return spec


def register_backbone(
    name: str | BackboneSpec | None = None,
    *,
    family: str = "custom",
    preprocessing: str = "none",
    input_range: tuple[float, float] | None = None,
    min_size: int = 32,
    params: int | None = None,
    pretrained: tuple[str, ...] = (),
    constructor_kwargs: Mapping[str, Any] | None = None,
    aliases: tuple[str, ...] = (),
    display_name: str = "",
    source: str = "",
    overwrite: bool = False,
) -> Any:
    """Register a backbone constructor (used as a decorator), or a ready :class:`BackboneSpec`.

    The decorated function is called as ``fn(input_shape=..., weights=...)`` (``weights`` is
    ``"imagenet"`` only if listed in ``pretrained``, else None) and returns a Keras model mapping
    images in ``input_range`` to feature maps. The function itself is returned unchanged.

    Args:
        name: Registry name (default: the function's name), or a :class:`BackboneSpec` to register as is.
        family: Architecture family, for grouping.
        preprocessing: How bloodcell turns pixels in 0–255 into what the model expects; one of
            :data:`PREPROCESSING_MODES` (``"none"``: the model takes 0–255 itself).
        input_range: The value range the model expects (default: the one ``preprocessing`` produces).
        min_size: Smallest input height/width.
        params: Parameter count of the headless model, if known.
        pretrained: Weight names the function can load itself (e.g. ``("imagenet",)``).
        constructor_kwargs: Fixed keyword arguments passed to the function.
        aliases: Other accepted names.
        display_name: The name people write.
        source: Where the architecture and weights come from.
        overwrite: Replace an entry of the same name instead of raising.

    Returns:
        A decorator, or the registered spec when ``name`` is a :class:`BackboneSpec`.

    Example:
        >>> import keras
        >>> @register_backbone("tinycnn", min_size=8)
        ... def tinycnn(input_shape, weights=None):
        ...     inputs = keras.Input(input_shape)
        ...     return keras.Model(inputs, keras.layers.Conv2D(4, 3, strides=2)(inputs))
        >>> get_spec("TinyCNN").family
        'custom'
        >>> unregister_backbone("tinycnn")
    """
    if isinstance(name, BackboneSpec):
        return _add(name, overwrite)
    if input_range is None:
        input_range = _DEFAULT_RANGES[preprocessing] if preprocessing in _DEFAULT_RANGES else (0.0, 255.0)

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise ConfigurationError(
                f"register_backbone decorates a function. Received: fn={type(fn).__name__}."
            )
        _add(
            BackboneSpec(
                name=name or fn.__name__,
                constructor=fn,
                family=family,
                preprocessing=preprocessing,
                input_range=input_range,
                min_size=min_size,
                params=params,
                pretrained=tuple(pretrained),
                constructor_kwargs=dict(constructor_kwargs or {}),
                aliases=tuple(aliases),
                display_name=display_name or name or fn.__name__,
                source=source,
            ),
            overwrite,
        )
        return fn

    return decorator


_DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "none": (0.0, 255.0),
    "unit": (0.0, 1.0),
    "tf": (-1.0, 1.0),
    "torch": (-2.12, 2.64),  # (0 - 0.485) / 0.229 .. (1 - 0.406) / 0.225
    "caffe": (-123.68, 151.06),  # 0 - 123.68 .. 255 - 103.939
}


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone and its aliases (mostly for tests and notebooks)."""
    spec = get_spec(name)
    del _REGISTRY[spec.name]
    for key in [k for k, v in _ALIASES.items() if v == spec.name]:
        del _ALIASES[key]


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered under ``name`` or one of its aliases (any case or separators).

    Raises:
        UnknownNameError: No such backbone; the message lists the closest registered names.

    Example:
        >>> get_spec("MobileNetV3Small").min_size
        32
    """
    key = normalize_name(name)
    if key in _ALIASES:
        return _REGISTRY[_ALIASES[key]]
    hint = suggest(key, _ALIASES)
    raise UnknownNameError(
        f"Unknown backbone {name!r}.{hint} bloodcell.backbones.list_backbones() lists the "
        f"{len(_REGISTRY)} registered names; register your own with @bloodcell.backbones.register_backbone."
    )


def _natural_key(name: str) -> list[Any]:
    # "efficientnetb2" before "efficientnetb10"
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_backbones(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """Registered backbone names matching a shell-style wildcard pattern, in natural order.

    The pattern is matched case- and separator-insensitively against names and aliases, and
    canonical names are returned.

    Args:
        pattern: Wildcard pattern (``*``, ``?``, ``[seq]``), e.g. ``"efficientnet_v2*"``.
        family: Only this family (``"efficientnet"``, ``"efficientnetv2"``, ``"mobilenetv3"``...).

    Example:
        >>> list_backbones("efficientnetv2*")  # doctest: +NORMALIZE_WHITESPACE
        ['efficientnetv2b0', 'efficientnetv2b1', 'efficientnetv2b2', 'efficientnetv2b3',
         'efficientnetv2l', 'efficientnetv2m', 'efficientnetv2s']
        >>> list_backbones(family="mobilenetv3")
        ['mobilenetv3large', 'mobilenetv3small']
    """
    if not isinstance(pattern, str):
        raise ConfigurationError(f"pattern must be a string. {received('pattern', pattern)}")
    key_pattern = _SEPARATORS.sub("", pattern.strip().lower()) or "*"
    names = {canonical for key, canonical in _ALIASES.items() if fnmatch.fnmatchcase(key, key_pattern)}
    if family is not None:
        names = {n for n in names if _REGISTRY[n].family == family.lower()}
    return sorted(names, key=_natural_key)
