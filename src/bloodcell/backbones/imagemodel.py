"""`ImageModel` and `Backbone`: functional Keras models over pixels in 0–255 that check their inputs.

Both are ordinary functional ``keras.Model`` objects (they save to ``.keras`` and load in safe mode,
registered under the package name ``"bloodcell"``). ``ImageModel`` adds one thing: before ``fit``,
``evaluate`` and ``predict`` (and the ``*_on_batch`` variants) hand the data to Keras, it checks on the
Python side that the images have the shape the model was built for (one clear
:class:`~bloodcell.errors.InvalidDataError` instead of a traceback from deep inside graph tracing) and
warns when float images look scaled to 0–1 (see :mod:`bloodcell.backbones.preprocessing` for why the
check lives here and not in the compiled graph).
"""

from __future__ import annotations

import weakref
from typing import Any

import keras

from bloodcell.backbones.preprocessing import PixelPreprocessing, warn_if_unit_range
from bloodcell.backbones.registry import BackboneSpec, get_spec
from bloodcell.errors import InvalidDataError, UnknownNameError

__all__ = ["Backbone", "ImageModel", "check_image_shape", "find_backbone", "flat_layers"]

# tf.data datasets already peeked at (fit() may be called once per epoch by a training loop).
_CHECKED_DATASETS: weakref.WeakSet[Any] = weakref.WeakSet()


def check_image_shape(shape: tuple[int | None, ...], expected: tuple[int | None, ...], where: str) -> None:
    """Raise :class:`~bloodcell.errors.InvalidDataError` unless a batch shape fits ``expected``.

    ``expected`` is the model's input shape ``(None, H, W, C)``; None entries match anything.

    Example:
        >>> check_image_shape((8, 96, 96, 1), (None, 96, 96, 3), "predict()")
        Traceback (most recent call last):
        ...
        bloodcell.errors.InvalidDataError: predict() got images of shape (8, 96, 96, 1) but ...
    """
    shape = tuple(None if d is None else int(d) for d in shape)
    want = "(N, " + ", ".join("?" if d is None else str(d) for d in expected[1:]) + ")"
    got = f"{where} got images of shape {shape} but the model takes {want}"
    if len(shape) != len(expected):
        if len(shape) == len(expected) - 1 and _compatible(shape, expected[1:]):
            raise InvalidDataError(
                f"{got}: that is one image; add a batch axis (images[None], or .batch() a tf.data.Dataset)."
            )
        raise InvalidDataError(f"{got}: pass a batch of images, an array (N, height, width, channels).")
    channels, want_channels = shape[-1], expected[-1]
    if channels is not None and want_channels is not None and channels != want_channels:
        fix = {
            1: "grayscale images need 3 channels: np.repeat(images, 3, axis=-1)",
            4: "RGBA images: drop the alpha channel with images[..., :3]",
        }.get(channels, "convert the images to RGB")
        raise InvalidDataError(f"{got}: {fix}.")
    if not _compatible(shape[1:-1], expected[1:-1]):
        raise InvalidDataError(
            f"{got}: resize them with bloodcell.datasets.resize_images(images, size), or build the "
            "model for this size (input_shape=...)."
        )


def _compatible(shape: tuple[int | None, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(shape, expected, strict=True)
    )


def _first_images(x: Any) -> Any:
    """The image array of what Keras accepts as ``x`` (array, tensor, tuple), or None if not obvious."""
    if isinstance(x, (tuple, list)) and x and hasattr(x[0], "shape"):
        return x[0]
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, dict):
        return x
    return None


def _dataset_images(dataset: Any) -> tuple[Any, Any]:
    """(image TensorSpec, peek function) of a ``tf.data.Dataset`` yielding images or (images, ...) tuples."""
    spec = dataset.element_spec
    index: int | None = None
    if isinstance(spec, tuple) and spec:
        spec, index = spec[0], 0
    if not hasattr(spec, "shape") or not hasattr(spec, "dtype"):
        return None, None

    def peek() -> Any:
        for element in dataset.take(1):
            return element if index is None else element[index]
        return None

    return spec, peek


@keras.saving.register_keras_serializable(package="bloodcell")
class ImageModel(keras.Model):
    """A functional Keras model over images in 0–255 that checks its data on the Python side.

    Build it like ``keras.Model(inputs, outputs)``. ``fit``, ``evaluate``, ``predict`` and the
    ``*_on_batch`` methods first check the images: wrong shapes raise
    :class:`~bloodcell.errors.InvalidDataError`; float images that look scaled to 0–1 raise a
    :class:`~bloodcell.errors.PixelRangeWarning`. NumPy arrays and tensors are checked on their
    first 64 images; a ``tf.data.Dataset`` by its element spec and, if it yields floats, one peeked
    batch (once per dataset object). Generators and ``PyDataset`` objects are passed through unchecked.

    Args:
        *args: ``inputs`` and ``outputs``, as for ``keras.Model``.
        **kwargs: Other ``keras.Model`` arguments (``name``...).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    # -- input checks ------------------------------------------------------------------------------
    def _expected_image_shape(self) -> tuple[int | None, ...] | None:
        inputs = self.inputs
        if not inputs or len(inputs) != 1:
            return None
        return tuple(inputs[0].shape)

    def check_inputs(self, x: Any, where: str = "the model") -> None:
        """Check images (array, tensor, ``(images, labels)`` tuple or ``tf.data.Dataset``) for this model."""
        expected = self._expected_image_shape()
        if expected is None or x is None:
            return
        images = _first_images(x)
        if images is not None:
            check_image_shape(tuple(images.shape), expected, where)
            warn_if_unit_range(images, stacklevel=4)
            return
        try:
            import tensorflow as tf
        except ImportError:  # pragma: no cover - the TensorFlow backend is required anyway
            return
        if isinstance(x, tf.data.Dataset):
            spec, peek = _dataset_images(x)
            if spec is None or spec.shape.rank is None:
                return
            check_image_shape(tuple(spec.shape), expected, where)
            if spec.dtype.is_floating and x not in _CHECKED_DATASETS:
                _CHECKED_DATASETS.add(x)
                batch = peek()
                if batch is not None:
                    warn_if_unit_range(batch, stacklevel=4)

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - keras.Model.fit
        self.check_inputs(x, "fit()")
        validation = kwargs.get("validation_data")
        if validation is not None:
            self.check_inputs(validation, "fit(validation_data=...)")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self.check_inputs(x, "evaluate()")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self.check_inputs(x, "predict()")
        return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self.check_inputs(x, "train_on_batch()")
        return super().train_on_batch(x, *args, **kwargs)

    def test_on_batch(self, x: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self.check_inputs(x, "test_on_batch()")
        return super().test_on_batch(x, *args, **kwargs)

    def predict_on_batch(self, x: Any) -> Any:  # noqa: D102
        self.check_inputs(x, "predict_on_batch()")
        return super().predict_on_batch(x)


@keras.saving.register_keras_serializable(package="bloodcell")
class Backbone(ImageModel):
    """A headless network that takes pixels in 0–255 (uint8 or float) and returns feature maps.

    Made by :func:`bloodcell.backbones.create`: an input, the entry's
    :class:`~bloodcell.backbones.PixelPreprocessing`, then the network (a Keras application, kept
    intact as a nested model so its layer list and indices are Keras's own).

    Args:
        *args: ``inputs`` and ``outputs``, as for ``keras.Model``.
        backbone_name: The registry name it was built from (saved with the model).
        **kwargs: Other ``keras.Model`` arguments.
    """

    def __init__(self, *args: Any, backbone_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backbone_name = backbone_name

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["backbone_name"] = self.backbone_name
        return config

    @property
    def spec(self) -> BackboneSpec | None:
        """The registry entry it was built from (None if that name is not registered in this process)."""
        if self.backbone_name is None:
            return None
        try:
            return get_spec(self.backbone_name)
        except UnknownNameError:
            return None

    @property
    def network(self) -> keras.Model:
        """The wrapped network (for the registered entries, the Keras application itself)."""
        for layer in self.layers:
            if isinstance(layer, keras.Model):
                return layer
        raise InvalidDataError(f"Backbone {self.name!r} holds no nested network.")  # pragma: no cover

    @property
    def preprocessing(self) -> PixelPreprocessing | None:
        """The pixel preprocessing layer in front of the network."""
        for layer in self.layers:
            if isinstance(layer, PixelPreprocessing):
                return layer
        return None

    @property
    def output_features(self) -> int:
        """Channels of the feature maps (the pooled feature size)."""
        return int(self.outputs[0].shape[-1])


def find_backbone(model: Any) -> Backbone | None:
    """The :class:`Backbone` that is ``model`` or nested in it (depth first), or None.

    Example:
        >>> find_backbone(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])) is None
        True
    """
    if isinstance(model, Backbone):
        return model
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            found = find_backbone(layer)
            if found is not None:
                return found
    return None


def flat_layers(model: Any) -> list[Any]:
    """A model's layers in order with nested models expanded (the models themselves left out)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out
