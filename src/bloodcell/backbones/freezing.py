"""Freezing: which backbone layers train, counted the way the seed study counted them.

The seed froze "the first 120 Conv2D/DepthwiseConv2D layers" of EfficientNetV2S, i.e. every layer up
to and including the 120th convolution (``block6f_expand_conv``, layer 360 of 513 at 96 px), and
also tried the first 220, 420 and 513 layers of any kind. :func:`freeze` does both:
``freeze(model, first=120)`` and ``freeze(model, layers=220)``.

Layers are counted over the backbone network only (the Keras application, nested models expanded;
bloodcell's input and preprocessing layers and the head are not counted), so indices are Keras's own
``application.layers`` indices. Given a classifier, the functions act on the backbone inside it.

A frozen BatchNormalization layer runs in inference mode in Keras 3 (it uses its moving statistics
and stops updating them), which is what fine-tuning wants; ``train_batchnorm=True`` leaves the
BatchNorm layers of the frozen part training instead (batch statistics, learnt scale and offset).

Input layers (no weights; Keras does not save their flag) are left alone and counted as frozen
when the layer after them is.

Freezing takes effect at the next ``compile()``: freeze first, then compile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import keras

from bloodcell._validation import check_int, is_integer, received
from bloodcell.backbones.imagemodel import find_backbone, flat_layers
from bloodcell.errors import ConfigurationError, InvalidDtypeError

__all__ = [
    "CONV_KINDS",
    "TrainableSummary",
    "backbone_layers",
    "freeze",
    "freeze_arguments",
    "parse_freeze",
    "trainable_summary",
    "unfreeze",
]

#: The layer kinds the seed counted when freezing "the first N layers".
CONV_KINDS = ("Conv2D", "DepthwiseConv2D")

Kinds = Sequence["str | type"]


def backbone_layers(model: Any) -> list[Any]:
    """The layers :func:`freeze` counts: the backbone network's, in order, nested models expanded.

    ``model`` may be a backbone, a classifier holding one, or any Keras model (then its own layers).

    Example:
        >>> import bloodcell as bc
        >>> layers = backbone_layers(bc.backbones.create("mobilenetv3small", (32, 32, 3), weights=None))
        >>> len(layers), type(layers[1]).__name__
        (157, 'Rescaling')
    """
    if not isinstance(model, keras.Model):
        raise InvalidDtypeError(f"Expected a keras.Model. Received: model={type(model).__name__}.")
    backbone = find_backbone(model)
    return flat_layers(backbone.network if backbone is not None else model)


def _kind_names(kinds: Kinds) -> tuple[str, ...]:
    if isinstance(kinds, (str, type)):
        kinds = (kinds,)
    names = tuple(k if isinstance(k, str) else k.__name__ for k in kinds)
    if not names:
        raise ConfigurationError(
            "kinds must name at least one layer class, e.g. ('Conv2D', 'DepthwiseConv2D')."
        )
    return names


def _is_kind(layer: Any, names: tuple[str, ...]) -> bool:
    # By class name along the MRO, so subclasses of Conv2D count as Conv2D.
    return any(cls.__name__ in names for cls in type(layer).__mro__)


def _kind_positions(layers: list[Any], kinds: Kinds) -> list[int]:
    names = _kind_names(kinds)
    return [i for i, layer in enumerate(layers) if _is_kind(layer, names)]


def _count(value: Any, what: str, maximum: int, of: str) -> int:
    value = check_int(value, what, minimum=0)
    if value > maximum:
        raise ConfigurationError(
            f"{what}={value} but the backbone has only {maximum} {of}: give a number up to {maximum}, or "
            f"'all' to freeze the whole backbone (a freeze depth counted for one backbone does not carry "
            f"over to another). {received(what, value)}"
        )
    return value


def _check_one_of(a: Any, a_name: str, b: Any, b_name: str) -> None:
    if a is not None and b is not None:
        raise ConfigurationError(
            f"Pass {a_name}= or {b_name}=, not both. Received: {a_name}={a!r}, {b_name}={b!r}."
        )


def parse_freeze(value: Any) -> int | str | dict[str, Any] | None:
    """A freeze setting in its canonical form: None, ``"all"``, a count N ≥ 0, or a dict of arguments.

    The one reader of the ``freeze`` setting, whether it comes from
    :func:`bloodcell.build_classifier`, an experiment config, a TOML file or the command line:
    None, False or ``"none"`` (any case) mean no freezing; True or ``"all"`` the whole backbone;
    an integer (or its decimal text, ``"120"``) the seed's rule, up to the N-th
    Conv2D/DepthwiseConv2D layer; a mapping holds :func:`freeze` arguments such as
    ``{"layers": 220}``.

    Raises:
        ConfigurationError: anything else (a fraction, a negative count, another word).

    Example:
        >>> parse_freeze("120"), parse_freeze("All"), parse_freeze("none"), parse_freeze({"layers": 220})
        (120, 'all', None, {'layers': 220})
        >>> parse_freeze(2.5)
        Traceback (most recent call last):
        ...
        bloodcell.errors.ConfigurationError: freeze must be None, 'none', 'all', a non-negative integer (freeze up to the N-th Conv2D/DepthwiseConv2D layer) or a dict of bloodcell.backbones.freeze() arguments such as {'layers': 220}. Received: freeze=2.5.
    """
    if value is None or value is False:
        return None
    if value is True:
        return "all"
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("none", "all"):
            return None if word == "none" else "all"
        if word.isdigit():
            return int(word)
    elif is_integer(value) and value >= 0:
        return int(value)
    raise ConfigurationError(
        "freeze must be None, 'none', 'all', a non-negative integer (freeze up to the N-th "
        "Conv2D/DepthwiseConv2D layer) or a dict of bloodcell.backbones.freeze() arguments such as "
        f"{{'layers': 220}}. {received('freeze', value)}"
    )


def freeze_arguments(value: Any) -> dict[str, Any] | None:
    """The :func:`freeze` keyword arguments a freeze setting stands for (None: leave the model as it is).

    Example:
        >>> freeze_arguments(120), freeze_arguments("all"), freeze_arguments(None)
        ({'first': 120}, {}, None)
    """
    spec = parse_freeze(value)
    if spec is None or isinstance(spec, dict):
        return spec
    return {} if spec == "all" else {"first": spec}


def freeze(
    model: Any,
    first: int | None = None,
    *,
    layers: int | None = None,
    kinds: Kinds = CONV_KINDS,
    train_batchnorm: bool = False,
) -> Any:
    """Freeze the start of a backbone, in place: through its ``first``-th conv layer, or ``layers`` layers.

    Layers are counted as :func:`backbone_layers` lists them. With neither ``first`` nor ``layers``
    the whole backbone is frozen. Layers after the frozen part are left as they are (use
    :func:`unfreeze` to make them trainable again).

    Args:
        model: A backbone, a classifier holding one, or any Keras model.
        first: Freeze every layer up to and including the ``first``-th layer whose class is one of
            ``kinds`` (the seed's rule: ``first=120`` on EfficientNetV2S freezes layers 0–360).
        layers: Freeze the first ``layers`` layers of any kind (the seed's 220, 420, 513).
        kinds: Layer class names (or classes) that ``first`` counts.
        train_batchnorm: Leave the BatchNormalization layers of the frozen part training (batch
            statistics, learnt scale/offset) instead of frozen in inference mode.

    Returns:
        ``model``, for chaining.

    Example:
        >>> import bloodcell as bc
        >>> backbone = bc.backbones.create("mobilenetv3small", (32, 32, 3), weights=None)
        >>> summary = bc.backbones.trainable_summary(bc.backbones.freeze(backbone, first=10))
        >>> summary.frozen_conv_layers, summary.last_frozen
        (10, 'expanded_conv_2_depthwise')
    """
    _check_one_of(first, "first", layers, "layers")
    target = backbone_layers(model)
    if layers is not None:
        stop = _count(layers, "layers", len(target), "layers")
    elif first is not None:
        positions = _kind_positions(target, kinds)
        n = _count(first, "first", len(positions), f"{'/'.join(_kind_names(kinds))} layers")
        stop = positions[n - 1] + 1 if n else 0
    else:
        stop = len(target)
    for layer in target[:stop]:
        if not isinstance(layer, keras.layers.InputLayer):  # no weights; Keras does not save its flag
            layer.trainable = bool(train_batchnorm and isinstance(layer, keras.layers.BatchNormalization))
    return model


def _containers_trainable(model: Any) -> None:
    # A container with trainable=False hides all its layers' variables from training. Setting it
    # back to True would also set every layer inside to True, so keep and restore their flags.
    backbone = find_backbone(model)
    chain = [model] + ([backbone, backbone.network] if backbone is not None else [])
    for container in chain:
        if not container.trainable:
            flags = [(layer, layer.trainable) for layer in flat_layers(container)]
            container.trainable = True
            for layer, flag in flags:
                layer.trainable = flag


def unfreeze(
    model: Any,
    last: int | None = None,
    *,
    layers: int | None = None,
    kinds: Kinds = CONV_KINDS,
    train_batchnorm: bool = True,
) -> Any:
    """Make the end of a backbone trainable (in place): from the ``last``-th-from-last layer of ``kinds`` on.

    With neither ``last`` nor ``layers`` the whole backbone becomes trainable.

    Args:
        model: A backbone, a classifier holding one, or any Keras model.
        last: Unfreeze the last ``last`` layers of ``kinds`` and every layer after the first of them.
        layers: Unfreeze the last ``layers`` layers of any kind.
        kinds: Layer class names (or classes) that ``last`` counts.
        train_batchnorm: Let the unfrozen BatchNormalization layers train. Keras's fine-tuning advice
            for small datasets is to keep them frozen (``train_batchnorm=False``) so their statistics
            are not disturbed.

    Returns:
        ``model``, for chaining.

    Example:
        >>> import bloodcell as bc
        >>> backbone = bc.backbones.freeze(bc.backbones.create("mobilenetv3small", (32, 32, 3), weights=None))
        >>> bc.backbones.trainable_summary(bc.backbones.unfreeze(backbone, last=2)).frozen_conv_layers
        50
    """
    _check_one_of(last, "last", layers, "layers")
    target = backbone_layers(model)
    if layers is not None:
        start = len(target) - _count(layers, "layers", len(target), "layers")
    elif last is not None:
        positions = _kind_positions(target, kinds)
        n = _count(last, "last", len(positions), f"{'/'.join(_kind_names(kinds))} layers")
        start = positions[-n] if n else len(target)
    else:
        start = 0
    _containers_trainable(model)
    for layer in target[start:]:
        if not isinstance(layer, keras.layers.InputLayer):
            layer.trainable = train_batchnorm or not isinstance(layer, keras.layers.BatchNormalization)
    return model


@dataclass(frozen=True)
class TrainableSummary:
    """Which backbone layers train, and how many parameters the whole model trains.

    Attributes:
        name: The backbone's name.
        layers: Backbone layers (as :func:`backbone_layers` counts them).
        frozen_layers: Of those, the frozen ones.
        kinds: The layer kinds counted in ``conv_layers``.
        conv_layers: Backbone layers of ``kinds``.
        frozen_conv_layers: Of those, the frozen ones.
        batchnorm_layers: Backbone BatchNormalization layers.
        frozen_batchnorm_layers: Of those, the frozen ones (they run in inference mode).
        last_frozen: Name of the last frozen backbone layer (None if none is frozen).
        last_frozen_index: Its index in :func:`backbone_layers`.
        trainable_params: Trainable parameters of the whole model (head included).
        non_trainable_params: Other parameters (frozen weights and BatchNorm statistics).
    """

    name: str
    layers: int
    frozen_layers: int
    kinds: tuple[str, ...]
    conv_layers: int
    frozen_conv_layers: int
    batchnorm_layers: int
    frozen_batchnorm_layers: int
    last_frozen: str | None
    last_frozen_index: int | None
    trainable_params: int
    non_trainable_params: int

    def to_dict(self) -> dict[str, Any]:
        """The summary as a plain dictionary (for logs and JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        kinds = "/".join(self.kinds)
        lines = [
            f"{self.name}: {self.frozen_layers} of {self.layers} backbone layers frozen",
            f"  {kinds}: {self.frozen_conv_layers} of {self.conv_layers} frozen",
            f"  BatchNormalization: {self.frozen_batchnorm_layers} of {self.batchnorm_layers} frozen"
            " (inference mode)",
        ]
        if self.last_frozen is not None:
            lines.append(f"  last frozen layer: {self.last_frozen} (index {self.last_frozen_index})")
        lines.append(
            f"  parameters: {self.trainable_params:,} trainable, {self.non_trainable_params:,} non-trainable"
        )
        return "\n".join(lines)


def trainable_summary(model: Any, kinds: Kinds = CONV_KINDS) -> TrainableSummary:
    """Count the frozen and trainable backbone layers and the model's trainable parameters.

    Example:
        >>> import bloodcell as bc
        >>> backbone = bc.backbones.create("mobilenetv3small", (32, 32, 3), weights=None)
        >>> print(bc.backbones.trainable_summary(bc.backbones.freeze(backbone, layers=157)))
        MobileNetV3Small: 157 of 157 backbone layers frozen
          Conv2D/DepthwiseConv2D: 52 of 52 frozen
          BatchNormalization: 34 of 34 frozen (inference mode)
          last frozen layer: ... (index 156)
          parameters: 0 trainable, 939,120 non-trainable
    """
    target = backbone_layers(model)
    names = _kind_names(kinds)
    backbone = find_backbone(model)
    chain = [model] + ([backbone, backbone.network] if backbone is not None else [])
    container_frozen = any(not container.trainable for container in chain)
    frozen = [container_frozen or not layer.trainable for layer in target]
    for i, layer in enumerate(target):  # an input layer has no weights: it counts with the layer after it
        if isinstance(layer, keras.layers.InputLayer) and i + 1 < len(target):
            frozen[i] = frozen[i + 1]
    convs = [i for i, layer in enumerate(target) if _is_kind(layer, names)]
    bns = [i for i, layer in enumerate(target) if isinstance(layer, keras.layers.BatchNormalization)]
    frozen_idx = [i for i, f in enumerate(frozen) if f]
    last = frozen_idx[-1] if frozen_idx else None
    return TrainableSummary(
        name=(backbone.network.name if backbone is not None else model.name),
        layers=len(target),
        frozen_layers=len(frozen_idx),
        kinds=names,
        conv_layers=len(convs),
        frozen_conv_layers=sum(frozen[i] for i in convs),
        batchnorm_layers=len(bns),
        frozen_batchnorm_layers=sum(frozen[i] for i in bns),
        last_frozen=target[last].name if last is not None else None,
        last_frozen_index=last,
        trainable_params=_param_count(model.trainable_weights),
        non_trainable_params=_param_count(model.non_trainable_weights),
    )


def _param_count(weights: list[Any]) -> int:
    return int(sum(int(keras.ops.size(w)) for w in weights))
