"""`create`: build a registered backbone for an input shape, with ImageNet, random or file weights.

Weights:

- ``"imagenet"``: Keras downloads the file on first use and caches it in ``~/.keras/models``.
  Offline, the download fails and :class:`~bloodcell.errors.WeightsUnavailableError` says what to
  do instead (``weights=None``, or a local file).
- ``None``: random initialisation. Keras applications carry BatchNorm momenta tuned for fine-tuning
  pretrained weights (MobileNetV3: 0.999, EfficientNet: 0.99); from scratch, moving statistics that
  slow lag far behind the weights and validation accuracy sits at chance for epochs. So with
  ``batchnorm_momentum="auto"`` every BatchNorm layer gets momentum 0.9 when there are no
  pretrained weights.
- a path: ``.weights.h5`` (saved by ``save_weights`` from a bloodcell backbone or from the bare
  Keras application), ``.h5`` (Keras's own downloaded ImageNet files, e.g.
  ``efficientnetv2-s_notop.h5``, or legacy full-model files) or ``.keras`` (a saved backbone,
  classifier or Keras application whose backbone has the same architecture).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bloodcell._validation import is_number, received
from bloodcell.backbones.registry import BackboneSpec, get_spec
from bloodcell.errors import (
    ConfigurationError,
    DataFileNotFoundError,
    IncompatibleWeightsError,
    WeightsUnavailableError,
)

__all__ = ["FROM_SCRATCH_BATCHNORM_MOMENTUM", "WEIGHT_FILE_SUFFIXES", "create", "load_backbone_weights"]

#: BatchNorm momentum of backbones trained from scratch (``weights=None`` with ``batchnorm_momentum="auto"``).
FROM_SCRATCH_BATCHNORM_MOMENTUM = 0.9

#: The weight file types ``create(weights=path)`` reads.
WEIGHT_FILE_SUFFIXES = (".weights.h5", ".h5", ".keras")


def _check_input_shape(spec: BackboneSpec, input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"input_shape must be (height, width, channels) integers. {received('input_shape', input_shape)}"
        ) from None
    if len(shape) != 3:
        raise ConfigurationError(
            f"input_shape must be (height, width, channels), 3 values. {received('input_shape', input_shape)}"
        )
    height, width, channels = shape
    if channels != 3:
        raise ConfigurationError(
            f"Backbone {spec.name!r} takes RGB images (3 channels): convert grayscale images with "
            "np.repeat(images, 3, axis=-1), drop an alpha channel with images[..., :3]. "
            f"{received('input_shape', shape)}"
        )
    if min(height, width) < spec.min_size:
        raise ConfigurationError(
            f"Backbone {spec.name!r} needs images of at least {spec.min_size}x{spec.min_size} pixels: "
            "upscale the images (bloodcell.datasets.resize_images) or pick another backbone. "
            f"{received('input_shape', shape)}"
        )
    return shape


def _weights_kind(weights: Any) -> str:
    if weights is None:
        return "none"
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return "imagenet"
    if isinstance(weights, (str, os.PathLike)):
        return "path"
    raise ConfigurationError(
        f"weights must be 'imagenet', None or the path of a weights file. {received('weights', weights)}"
    )


def _download_failed(err: BaseException) -> bool:
    import urllib.error

    text = str(err)
    return (
        isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError))
        or "URL fetch failure" in text  # keras.utils.get_file wraps URLError/HTTPError in a bare Exception
        or "file hash does not match" in text
    )


def _keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights (``$KERAS_HOME/models``, by default ``~/.keras/models``)."""
    try:  # Keras's own answer (private API: fall back to its documented default)
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:  # pragma: no cover - depends on the Keras version
        home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return Path(os.path.expanduser(home)) / "models"


def _offline_message(spec: BackboneSpec, err: BaseException) -> str:
    match = re.search(r"(https?://\S+?)(?::\s|\s|$)", str(err))
    url = match.group(1) if match else None
    fname = url.rsplit("/", 1)[-1] if url else None
    cache = _keras_cache_dir()
    where = f" (Keras fetches {url})" if url else ""
    file_hint = fname or "the weights file"
    return (
        f"Could not download the ImageNet weights for backbone {spec.name!r}{where}: {err}\n"
        "Without internet, either train from scratch with weights=None, or get the file on a machine "
        f"with internet and pass its path: weights='/path/to/{file_hint}' (any .weights.h5, .h5 or .keras "
        f"file saved from a {spec.display_name} backbone also works). Copying {file_hint} into {cache} "
        "makes weights='imagenet' work offline too."
    )


def _set_batchnorm_momentum(network: Any, momentum: float) -> int:
    import keras

    from bloodcell.backbones.imagemodel import flat_layers

    count = 0
    for layer in flat_layers(network):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            count += 1
    return count


def _resolve_momentum(batchnorm_momentum: Any, weights_kind: str) -> float | None:
    if batchnorm_momentum == "auto":
        return FROM_SCRATCH_BATCHNORM_MOMENTUM if weights_kind == "none" else None
    if batchnorm_momentum is None:
        return None
    if not is_number(batchnorm_momentum) or not 0 < batchnorm_momentum < 1:
        raise ConfigurationError(
            "batchnorm_momentum must be 'auto', None or a number in (0, 1). "
            f"{received('batchnorm_momentum', batchnorm_momentum)}"
        )
    return float(batchnorm_momentum)


def create(
    name: str,
    input_shape: tuple[int, int, int] = (96, 96, 3),
    weights: str | os.PathLike[str] | None = "imagenet",
    *,
    batchnorm_momentum: float | str | None = "auto",
    check_range: bool = True,
    **kwargs: Any,
) -> Any:
    """Build a registered backbone that takes pixels in 0–255 (uint8 or float) and returns feature maps.

    Args:
        name: A registered name or alias, any case (``"efficientnetv2s"``, ``"EfficientNetV2S"``,
            ``"efficientnet_v2_s"``); see :func:`list_backbones`.
        input_shape: (height, width, 3); at least the entry's ``min_size`` on each side.
        weights: ``"imagenet"`` (downloaded by Keras on first use), None (random initialisation) or
            the path of a ``.weights.h5``, ``.h5`` or ``.keras`` file.
        batchnorm_momentum: ``"auto"``: 0.9 for every BatchNorm layer when ``weights`` is None (from
            scratch), Keras's own otherwise; a float: that momentum everywhere; None: Keras's own.
        check_range: Warn on eager calls with float images that look scaled to 0–1.
        **kwargs: Passed to the constructor (e.g. ``alpha=0.75`` for MobileNetV3).

    Returns:
        A :class:`~bloodcell.backbones.Backbone` (a functional ``keras.Model``) named after the entry.

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigurationError: ``input_shape`` is not (H, W, 3) or is below the minimum size.
        WeightsUnavailableError: ImageNet weights could not be downloaded, or the entry has none.
        DataFileNotFoundError, IncompatibleWeightsError: a weights file is missing or does not fit.

    Example:
        >>> import numpy as np
        >>> backbone = create("mobilenetv3small", input_shape=(64, 64, 3), weights=None)
        >>> backbone(np.zeros((2, 64, 64, 3), dtype="uint8")).shape
        TensorShape([2, 2, 2, 576])
    """
    import keras

    from bloodcell.backbones.imagemodel import Backbone
    from bloodcell.backbones.preprocessing import PixelPreprocessing

    spec = get_spec(name)
    shape = _check_input_shape(spec, input_shape)
    kind = _weights_kind(weights)
    momentum = _resolve_momentum(batchnorm_momentum, kind)
    path = _check_weights_path(weights) if kind == "path" else None
    if kind == "imagenet" and "imagenet" not in spec.pretrained:
        raise WeightsUnavailableError(
            f"Backbone {spec.name!r} has no ImageNet weights registered; use weights=None to train from "
            "scratch, or weights='/path/to/file.weights.h5' for weights you have."
        )

    constructor = spec.get_constructor()
    call_kwargs = {**spec.constructor_kwargs, **kwargs}
    try:
        network = constructor(
            input_shape=shape, weights="imagenet" if kind == "imagenet" else None, **call_kwargs
        )
    except Exception as err:
        if kind == "imagenet" and _download_failed(err):
            raise WeightsUnavailableError(_offline_message(spec, err)) from err
        raise
    if not isinstance(network, keras.Model):
        raise ConfigurationError(
            f"The constructor of backbone {spec.name!r} returned {type(network).__name__}, not a keras.Model."
        )
    if momentum is not None:
        _set_batchnorm_momentum(network, momentum)

    inputs = keras.Input(shape=shape, dtype="float32", name="pixels")
    x = PixelPreprocessing(spec.preprocessing, check_range=check_range, name="preprocessing")(inputs)
    backbone = Backbone(inputs=inputs, outputs=network(x), name=spec.name, backbone_name=spec.name)
    if path is not None:
        load_backbone_weights(backbone, path)
    return backbone


def _check_weights_path(weights: Any) -> Path:
    path = Path(weights).expanduser()
    if not str(path).lower().endswith(WEIGHT_FILE_SUFFIXES):
        raise ConfigurationError(
            f"weights={str(weights)!r} is neither 'imagenet', None, nor a {'/'.join(WEIGHT_FILE_SUFFIXES)} "
            "file path."
        )
    if not path.is_file():
        raise DataFileNotFoundError(
            f"Weights file {str(path)!r} does not exist. Pass weights='imagenet' (download), weights=None "
            "(random initialisation) or the path of an existing .weights.h5/.h5/.keras file."
        )
    return path


def _copy_weights(source: Any, target: Any, path: Path) -> None:
    src, dst = source.get_weights(), target.get_weights()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst, strict=True)):
        raise IncompatibleWeightsError(
            f"The model in {str(path)!r} ({source.name!r}, {len(src)} weight arrays) does not match backbone "
            f"{target.name!r} ({len(dst)} weight arrays); it was saved from another architecture."
        )
    target.set_weights(src)


def load_backbone_weights(backbone: Any, path: str | os.PathLike[str]) -> Any:
    """Load a weights file into a backbone made by :func:`create` (in place) and return it.

    Accepts ``.weights.h5`` files saved from a bloodcell backbone or from the bare Keras
    application, Keras's own ``.h5`` ImageNet files, and ``.keras`` models (a backbone, a classifier
    holding one, or the bare application). The architecture must match exactly.

    Raises:
        DataFileNotFoundError: No such file.
        IncompatibleWeightsError: The file holds weights of another architecture or size.
    """

    from bloodcell.backbones.imagemodel import find_backbone

    path = _check_weights_path(path)
    network = backbone.network
    if str(path).lower().endswith(".keras"):
        from bloodcell.models import load_model

        saved = load_model(path, compile=False)
        saved_backbone = find_backbone(saved)
        _copy_weights(saved_backbone.network if saved_backbone is not None else saved, network, path)
        return backbone
    # A .weights.h5 saved from a Backbone is laid out by the wrapper's structure; one saved from the
    # bare application (and Keras's .h5 ImageNet files) by the application's: try the likely first.
    # Keras raises on any mismatch but may have loaded part of the file by then, hence the snapshot.
    targets = [backbone, network] if str(path).lower().endswith(".weights.h5") else [network, backbone]
    snapshot = backbone.get_weights()
    errors = []
    for target in targets:
        try:
            _load_strict(target, path)
            return backbone
        except Exception as err:  # ValueError/KeyError from Keras on structure mismatches
            errors.append(f"as {target.name!r}: {_first_line(err)}")
    backbone.set_weights(snapshot)
    raise IncompatibleWeightsError(
        f"The weights in {str(path)!r} do not fit backbone {backbone.name!r} with input "
        f"{tuple(backbone.inputs[0].shape[1:])} (saved from another architecture?). Tried loading "
        + "; ".join(errors)
    )


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _load_strict(model: Any, path: Path) -> None:
    """``model.load_weights`` that also fails when Keras only warns that it skipped part of the file."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    skipped = [str(w.message) for w in caught if "skipping" in str(w.message).lower()]
    if skipped:
        raise IncompatibleWeightsError(skipped[0])
    for w in caught:  # pass the others on
        warnings.warn(w.message, w.category, stacklevel=3)
