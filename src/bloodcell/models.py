"""Classifiers: a backbone, global pooling and a head in one Keras model, plus feature extractors.

:func:`build_classifier` is the one-line way; :class:`Classifier` assembles the parts by hand;
:func:`feature_extractor` maps images to pooled feature vectors (for outlier detection, embeddings
or a scikit-learn model on top); :func:`load_model` reads a saved model back in Keras's safe mode.

Every model here takes images with pixel values in 0–255, as uint8 or float32 (the backbone does its
own preprocessing), and is a functional ``keras.Model``: ``summary()``, ``fit()``, ``save()`` work as
usual. Its layers are ``pixels`` (input) → the backbone → ``pooled`` (global pooling) → ``head``.

Saved ``.keras`` files hold bloodcell's own Keras classes (layers, models, learning-rate schedules),
registered under the package name ``"bloodcell"``. Importing this module registers all of them, so
:func:`load_model` (or plain ``keras.saving.load_model`` after ``import bloodcell.models``) reads any
model the library wrote, in a fresh process and in Keras's safe mode. :func:`save_model` writes
the inference model only, without the optimizer's state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from bloodcell._keras_objects import register_keras_objects
from bloodcell._validation import check_choice, received
from bloodcell.backbones.factory import create
from bloodcell.backbones.freezing import freeze as freeze_layers
from bloodcell.backbones.freezing import freeze_arguments
from bloodcell.backbones.imagemodel import ImageModel, find_backbone
from bloodcell.errors import ConfigurationError, InvalidDtypeError
from bloodcell.heads import DenseStack, HeadSpec, Linear, build_head
from bloodcell.modelcard import model_card, set_model_card, training_card

__all__ = [
    "Classifier",
    "as_model",
    "build_classifier",
    "copy_model",
    "feature_extractor",
    "load_model",
    "model_card",
    "save_model",
    "set_model_card",
    "training_card",
]

_POOLING = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def _pool(features: Any, pooling: str) -> Any:
    """Global pooling of feature maps (N, h, w, D) into vectors (N, D); vectors pass through."""
    if len(features.shape) == 2:
        return features
    if len(features.shape) != 4:
        raise ConfigurationError(
            f"The backbone returns tensors of shape {tuple(features.shape)}; expected feature maps "
            "(N, h, w, D) or feature vectors (N, D)."
        )
    check_choice(pooling, "pooling", sorted(_POOLING))
    return _POOLING[pooling](name="pooled")(features)


@keras.saving.register_keras_serializable(package="bloodcell")
class Classifier(ImageModel):
    """A backbone, global pooling and a head: pixels in 0–255 in, class probabilities (N, num_classes) out.

    Args:
        backbone: A backbone from :func:`bloodcell.backbones.create` (or a registered name, built
            with ImageNet weights), or any Keras model mapping images to feature maps or vectors.
        head: A head preset name (``"seed"``, ``"linear"``), a :class:`~bloodcell.heads.DenseStack` /
            :class:`~bloodcell.heads.Linear`, or a Keras layer mapping pooled features to outputs.
        num_classes: Number of classes (the head's output width).
        *args: Keras's own functional-model arguments; used when Keras loads a saved classifier.
        pooling: Global pooling of the feature maps, ``"avg"`` or ``"max"``.
        stain_normalization: A fitted :class:`~bloodcell.stain.MacenkoNormalizer` /
            :class:`~bloodcell.stain.ReinhardNormalizer` (or its
            :class:`~bloodcell.stain.StainNormalization` layer), applied to the pixels before the
            backbone and saved with the model; None: no stain normalisation.
        cell_crop: A :class:`~bloodcell.cells.CellCrop` (or its ``scale``: ``"image"``, ``"dataset"``,
            ``"none"``): each image is centred on its white cell and brought to PBC's scale first,
            and the crop is saved with the model; None: the images as they are.
        card: Stored fields of its model card (class names, recipe, data, metrics...; see
            :func:`bloodcell.models.model_card`), saved with the model.
        name: The model's name.
        **kwargs: Other ``keras.Model`` arguments.

    Example:
        >>> import bloodcell as bc
        >>> backbone = bc.backbones.create("mobilenetv3small", input_shape=(32, 32, 3), weights=None)
        >>> head = bc.heads.DenseStack(units=(64,), dropout=0.3)
        >>> model = bc.models.Classifier(backbone, head, num_classes=8)
        >>> [layer.name for layer in model.layers]
        ['pixels', 'mobilenetv3small', 'pooled', 'head']
        >>> model.output_shape
        (None, 8)
    """

    def __init__(
        self,
        backbone: Any = None,
        head: str | HeadSpec | Any = "seed",
        num_classes: int = 8,
        *args: Any,
        pooling: str = "avg",
        stain_normalization: Any = None,
        cell_crop: Any = None,
        card: Mapping[str, Any] | None = None,
        name: str = "classifier",
        **kwargs: Any,
    ) -> None:
        if args or "inputs" in kwargs:  # Keras rebuilding a saved functional graph
            super().__init__(*args, name=name, **kwargs)
            self._card_json = json.dumps(dict(card or {}))
            return
        if backbone is None:
            raise ConfigurationError(
                "Classifier needs a backbone: bloodcell.backbones.create(name, ...) or a registered name."
            )
        if isinstance(backbone, str):
            backbone = create(backbone)
        if not isinstance(backbone, keras.Model):
            raise InvalidDtypeError(
                f"backbone must be a keras.Model or a registered name. Received: backbone={type(backbone).__name__}."
            )
        if isinstance(head, (str, Linear, DenseStack)):
            head_layer = build_head(head, num_classes)
        elif isinstance(head, keras.layers.Layer):
            head_layer = head
        else:
            raise InvalidDtypeError(
                f"head must be a preset name, Linear/DenseStack or a Keras layer. Received: head={type(head).__name__}."
            )
        inputs = keras.Input(shape=tuple(backbone.inputs[0].shape[1:]), dtype="float32", name="pixels")
        pixels = inputs if cell_crop is None else _cell_crop_layer(cell_crop)(inputs)
        if stain_normalization is not None:
            pixels = _stain_layer(stain_normalization)(pixels)
        outputs = head_layer(_pool(backbone(pixels), pooling))
        if outputs.shape[-1] != num_classes:
            raise ConfigurationError(
                f"The head returns {outputs.shape[-1]} outputs per image; it must return num_classes. "
                f"{received('num_classes', num_classes)}"
            )
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # Kept as JSON text: plain values, copied on every read, and not tracked by Keras.
        self._card_json = json.dumps(dict(card or {}))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.card:
            config["card"] = self.card
        return config

    @property
    def card(self) -> dict[str, Any]:
        """The stored fields of its model card (a copy; set them with :func:`set_model_card`)."""
        return json.loads(self._card_json)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class of each output, when its card names them (None otherwise)."""
        names = self.card.get("class_names")
        return tuple(names) if names else None

    @property
    def backbone(self) -> Any:
        """The backbone model inside."""
        found = find_backbone(self)
        if found is not None:
            return found
        return next(layer for layer in self.layers if isinstance(layer, keras.Model))

    @property
    def head(self) -> Any:
        """The head (a ``keras.Sequential`` for the bloodcell heads)."""
        names = [layer.name for layer in self.layers]
        return self.get_layer("head") if "head" in names else self.layers[-1]

    @property
    def num_classes(self) -> int:
        """Number of classes the model predicts."""
        return int(self.outputs[0].shape[-1])


def _stain_layer(stain_normalization: Any) -> Any:
    from bloodcell.stain import StainNormalization

    if isinstance(stain_normalization, StainNormalization):
        return stain_normalization
    if hasattr(stain_normalization, "to_layer"):
        return stain_normalization.to_layer()
    raise InvalidDtypeError(
        "stain_normalization must be a fitted bloodcell.stain.MacenkoNormalizer/ReinhardNormalizer, its "
        f"StainNormalization layer, or None. Received: stain_normalization={type(stain_normalization).__name__}."
    )


def _cell_crop_layer(cell_crop: Any) -> Any:
    from bloodcell.cells import SCALES, CellCrop

    if isinstance(cell_crop, CellCrop):
        return cell_crop
    if isinstance(cell_crop, str) and cell_crop in SCALES:
        return CellCrop(scale=cell_crop, name="cell_crop")
    raise InvalidDtypeError(
        f"cell_crop must be a bloodcell.cells.CellCrop, one of {list(SCALES)} or None. "
        f"Received: cell_crop={cell_crop!r}."
    )


def build_classifier(
    backbone: str | Any = "efficientnetv2s",
    head: str | HeadSpec | Any = "seed",
    num_classes: int = 8,
    input_shape: tuple[int, int, int] = (96, 96, 3),
    weights: str | os.PathLike[str] | None = "imagenet",
    freeze: int | str | Mapping[str, Any] | None = None,
    *,
    pooling: str = "avg",
    stain_normalization: Any = None,
    cell_crop: Any = None,
    train_batchnorm: bool = False,
    batchnorm_momentum: float | str | None = "auto",
    name: str | None = None,
    **backbone_kwargs: Any,
) -> Classifier:
    """Build a classifier: a registered backbone, global pooling and a head, optionally part-frozen.

    The model takes images in 0–255 (uint8 or float32), shape ``(N, *input_shape)``, and returns class
    probabilities (N, num_classes). It is not compiled.

    Args:
        backbone: A registered backbone name (see :func:`bloodcell.backbones.list_backbones`), or a
            backbone model already built (then ``input_shape``, ``weights``, ``batchnorm_momentum``
            and ``backbone_kwargs`` are not used).
        head: A head preset (``"seed"``, ``"linear"``), a :class:`~bloodcell.heads.DenseStack` or
            :class:`~bloodcell.heads.Linear`, or a Keras layer.
        num_classes: Number of classes.
        input_shape: (height, width, 3) of the images.
        weights: ``"imagenet"`` (downloaded by Keras), None (random initialisation, from scratch) or
            the path of a ``.weights.h5``/``.h5``/``.keras`` file for the backbone.
        freeze: None (all layers train); an integer N, the seed's rule: freeze the backbone up to its
            N-th Conv2D/DepthwiseConv2D layer (the seed used 120); ``"all"``: the whole backbone; or a
            dict of :func:`bloodcell.backbones.freeze` arguments, e.g. ``{"layers": 220}``.
        pooling: Global pooling of the feature maps, ``"avg"`` or ``"max"``.
        stain_normalization: A fitted :class:`~bloodcell.stain.MacenkoNormalizer` /
            :class:`~bloodcell.stain.ReinhardNormalizer` (``.fit(train)`` first): the model then
            normalises every image's staining right after the input, before the backbone's own
            preprocessing, and the fitted target is saved in the ``.keras`` file. None: none.
        cell_crop: A :class:`~bloodcell.cells.CellCrop` or its ``scale`` (``"image"``, ``"dataset"``,
            ``"none"``): the model centres each image on its white cell and brings it to PBC's
            scale before anything else, in training and prediction alike, and the crop is saved
            in the ``.keras`` file. None (default): no crop.
        train_batchnorm: Keep the BatchNorm layers of the frozen part training (default: frozen, in
            inference mode).
        batchnorm_momentum: Backbone BatchNorm momentum: ``"auto"`` (0.9 when training from scratch,
            Keras's own with pretrained weights), a float, or None (Keras's own).
        name: The model's name (default: ``"<backbone>_classifier"``).
        **backbone_kwargs: Passed to the backbone's Keras constructor.

    Returns:
        A :class:`Classifier` (a functional ``keras.Model``).

    Example:
        >>> import bloodcell as bc
        >>> model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3),
        ...                             weights=None, freeze=10)
        >>> model.output_shape, bc.backbones.trainable_summary(model).frozen_conv_layers
        ((None, 8), 10)
    """
    freeze_args = freeze_arguments(freeze)
    if isinstance(backbone, str):
        backbone_model = create(
            backbone,
            input_shape=input_shape,
            weights=weights,
            batchnorm_momentum=batchnorm_momentum,
            **backbone_kwargs,
        )
    elif isinstance(backbone, keras.Model):
        backbone_model = backbone
    else:
        raise InvalidDtypeError(
            f"backbone must be a name or a keras.Model. Received: backbone={type(backbone).__name__}."
        )
    if freeze_args is not None:
        freeze_args.setdefault("train_batchnorm", train_batchnorm)
        freeze_layers(backbone_model, **freeze_args)
    return Classifier(
        backbone_model,
        head,
        num_classes,
        pooling=pooling,
        stain_normalization=stain_normalization,
        cell_crop=cell_crop,
        name=name or f"{backbone_model.name}_classifier",
    )


def feature_extractor(
    model_or_backbone_name: str | Any,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | os.PathLike[str] | None = "imagenet",
    *,
    pooling: str = "avg",
    layer: str = "pooled",
) -> ImageModel:
    """A model mapping images in 0–255 (uint8 or float) to feature vectors (N, D).

    Args:
        model_or_backbone_name: A registered backbone name (built with ``input_shape`` and
            ``weights``), a backbone model (its feature maps are pooled), or a trained classifier
            (its pooled backbone features, or another layer's output, see ``layer``).
        input_shape: (height, width, 3) for a backbone name (default (96, 96, 3)); for a model it
            must match the model's input or be None.
        weights: Backbone weights for a backbone name (``"imagenet"``, None or a file path); unused
            for a model.
        pooling: Global pooling of feature maps, ``"avg"`` or ``"max"`` (for names and backbones).
        layer: For a classifier: ``"pooled"`` (the pooled backbone features, default),
            ``"penultimate"`` (the input of the head's output layer), or the name of any layer of
            the classifier or its head.

    Returns:
        An :class:`~bloodcell.backbones.ImageModel`; its weights are shared with ``model``.

    Example:
        >>> import numpy as np
        >>> extractor = feature_extractor("mobilenetv3small", input_shape=(32, 32, 3), weights=None)
        >>> extractor.predict(np.zeros((4, 32, 32, 3), dtype="uint8"), verbose=0).shape
        (4, 576)
    """
    if isinstance(model_or_backbone_name, str):
        backbone = create(model_or_backbone_name, input_shape=input_shape or (96, 96, 3), weights=weights)
        return ImageModel(
            inputs=_model_input(backbone),
            outputs=_pool(backbone.outputs[0], pooling),
            name=f"{backbone.name}_features",
        )
    model = model_or_backbone_name
    if not isinstance(model, keras.Model):
        raise InvalidDtypeError(
            "feature_extractor() takes a backbone name or a keras.Model. "
            f"Received: model_or_backbone_name={type(model).__name__}."
        )
    if input_shape is not None and tuple(model.inputs[0].shape[1:]) != tuple(input_shape):
        raise ConfigurationError(
            f"input_shape must be None or the model's own {tuple(model.inputs[0].shape[1:])}. "
            f"{received('input_shape', tuple(input_shape))}"
        )
    names = {sub.name for sub in model.layers}
    if "pooled" not in names and "head" not in names:  # a backbone (or any feature-map model)
        return ImageModel(
            inputs=_model_input(model),
            outputs=_pool(model.outputs[0], pooling),
            name=f"{model.name}_features",
        )
    outputs = _classifier_features(model, layer)
    return ImageModel(inputs=_model_input(model), outputs=outputs, name=f"{model.name}_{layer}_features")


def _model_input(model: Any) -> Any:
    # One input tensor rather than a one-element list, so the new model is called like the old one.
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _classifier_features(model: Any, layer: str) -> Any:
    names = [sub.name for sub in model.layers]
    pooled = model.get_layer("pooled").output if "pooled" in names else model.layers[-1].input
    head = model.get_layer("head") if "head" in names else None
    if layer == "pooled":
        return pooled
    head_layers = list(getattr(head, "layers", []))
    if layer == "penultimate":
        if len(head_layers) < 1:
            raise ConfigurationError(
                f"Model {model.name!r} has no head of layers to take the penultimate output of."
            )
        stop = len(head_layers) - 1
    elif layer in names:
        return model.get_layer(layer).output
    elif layer in [sub.name for sub in head_layers]:
        stop = [sub.name for sub in head_layers].index(layer) + 1
    else:
        raise ConfigurationError(
            f"layer={layer!r} is not 'pooled', 'penultimate' or a layer of {model.name!r}: "
            f"{names + [sub.name for sub in head_layers]}."
        )
    x = pooled
    for sub in head_layers[:stop]:  # reuse the head's layers (shared weights) on the pooled features
        x = sub(x)
    return x


def save_model(model: Any, path: str | os.PathLike[str], *, include_optimizer: bool = False) -> Path:
    """Save a model to a ``.keras`` file atomically: an existing file is replaced only on success.

    By default the file holds what inference needs (architecture, weights, preprocessing) and not
    the training state: no optimizer, its moments or its learning-rate schedule, which would make
    the file several times larger and tie it to the training code (a :class:`~bloodcell.Trainer`
    keeps its resume state separately). Loaded back, such a model is not compiled; compile it
    again to train it further.

    Args:
        model: The Keras model.
        path: The file to write; its name must end in ``.keras``.
        include_optimizer: Also save the optimizer and the compile settings (``model.save``'s
            behaviour).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> model = build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3), weights=None)
        >>> model.compile(optimizer="adam", loss="categorical_crossentropy")
        >>> path = save_model(model, pathlib.Path(tempfile.mkdtemp()) / "model.keras")
        >>> load_model(path).compiled
        False
    """
    from bloodcell._io import atomic_path

    if not isinstance(model, keras.Model):
        raise InvalidDtypeError(f"save_model() takes a keras.Model. Received: model={type(model).__name__}.")
    path = Path(path).expanduser()
    if path.suffix != ".keras":
        raise ConfigurationError(
            f"A Keras model file must end in '.keras'; use e.g. {str(path.with_suffix('.keras'))!r}. "
            f"Received: path={str(path)!r}."
        )
    if not include_optimizer and getattr(model, "compiled", False):
        model = copy_model(model)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def copy_model(model: Any) -> Any:
    """A new model with the same architecture and weights, not compiled; the original is untouched.

    Built from the model's config, as Keras does when it loads a file, so every bloodcell layer
    (stain normalisation, cell crops) comes along with its settings.

    Example:
        >>> import numpy as np
        >>> model = build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3), weights=None)
        >>> twin = copy_model(model)
        >>> twin is not model and bool(np.array_equal(twin(np.zeros((1, 32, 32, 3))), model(np.zeros((1, 32, 32, 3)))))
        True
    """
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    # The user's own in-memory model: its Lambda layers, if any, are their code, so no safe mode here.
    copy = keras.saving.deserialize_keras_object(config, safe_mode=False)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str | os.PathLike[str], *, compile: bool = True) -> Any:
    """Load a ``.keras`` model in Keras's safe mode: the one loader of the library.

    Everything bloodcell writes loads here in a fresh process (importing this module registers
    every Keras object of the library, so plain ``keras.saving.load_model`` works after
    ``import bloodcell.models`` too). Files that cannot be loaded get one clear error saying what
    the file is and what to do, never the advice to leave safe mode.

    Args:
        path: A ``.keras`` file (or a legacy Keras ``.h5`` model file).
        compile: Restore the optimizer, loss and metrics it was saved with, if any.

    Returns:
        The Keras model.

    Raises:
        DataFileNotFoundError: no such file.
        UnreadableFileError: a folder, a TFLite or weights-only file, a truncated or damaged file,
            a file that is not a Keras model, or one that holds Python code (a ``Lambda`` layer)
            or custom Keras classes not registered in this process.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> model = build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3), weights=None)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.keras"
        >>> model.save(path)
        >>> images = np.zeros((2, 32, 32, 3), dtype="uint8")
        >>> bool(np.array_equal(load_model(path)(images), model(images)))
        True
    """
    from bloodcell._model_files import check_model_file, loading_error

    path = check_model_file(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError) as err:
        raise loading_error(path, err) from err


def as_model(model: Any) -> Any:
    """A Keras model as it is, or the model a ``.keras`` path names (loaded with :func:`load_model`).

    Example:
        >>> as_model(3)
        Traceback (most recent call last):
        ...
        bloodcell.errors.InvalidDtypeError: Expected a keras.Model or the path of a .keras file. Received: model=int.
    """
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if not isinstance(model, keras.Model):
        raise InvalidDtypeError(
            f"Expected a keras.Model or the path of a .keras file. Received: model={type(model).__name__}."
        )
    return model


register_keras_objects()
