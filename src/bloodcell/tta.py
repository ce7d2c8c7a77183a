"""Test-time augmentation: average a model's class probabilities over flipped and rotated copies.

A blood cell on a smear has no up, down, left or right, so flips and right-angle rotations keep
its class. Averaging the softmax outputs over such copies smooths out a model's orientation
quirks at the cost of one prediction pass per copy. Right-angle rotations and flips move pixels
exactly (no interpolation), so nothing is blurred or cropped.

``tta`` names a group of transforms: ``"d4"`` (the 8 symmetries of the square: 4 rotations, each
with and without a flip), ``"flips"`` (identity, left-right, up-down, both = rotate180),
``"rot90"`` (identity, rotate90, rotate180, rotate270), None (no augmentation), or a list of
transform names from :data:`TRANSFORMS` and/or callables mapping a float image batch (N, H, W, 3)
to a batch of the same shape.

Example:
    >>> import bloodcell as bc, keras
    >>> data = bc.datasets.load_sample(per_class=1)
    >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(8, activation="softmax")])
    >>> predict(model, data, tta="d4").shape
    (8, 8)
    >>> [name for name, _ in resolve("flips")]
    ['identity', 'flip_left_right', 'flip_up_down', 'rotate180']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bloodcell._validation import check_choice, check_int, received
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError, InvalidDtypeError

__all__ = ["TRANSFORMS", "GROUPS", "resolve", "predict", "predict_on_batch"]

Transform = Callable[[Any], Any]


def _identity(x: Any) -> Any:
    return x


def _flip_left_right(x: Any) -> Any:
    import tensorflow as tf

    return tf.reverse(x, axis=[2])


def _flip_up_down(x: Any) -> Any:
    import tensorflow as tf

    return tf.reverse(x, axis=[1])


def _rotate(k: int) -> Transform:
    def rotate(x: Any) -> Any:
        import tensorflow as tf

        return tf.image.rot90(x, k=k)  # counter-clockwise, like np.rot90 on axes (1, 2)

    rotate.__name__ = f"rotate{90 * k}"
    return rotate


def _transpose(x: Any) -> Any:
    import tensorflow as tf

    return tf.transpose(x, [0, 2, 1, 3])  # mirror about the main diagonal


def _transverse(x: Any) -> Any:
    import tensorflow as tf

    return tf.reverse(tf.transpose(x, [0, 2, 1, 3]), axis=[1, 2])  # mirror about the anti-diagonal


# Every transform maps a batch (N, H, W, C) to a batch; each keeps a blood cell's class.
TRANSFORMS: dict[str, Transform] = {
    "identity": _identity,
    "flip_left_right": _flip_left_right,
    "flip_up_down": _flip_up_down,
    "rotate90": _rotate(1),
    "rotate180": _rotate(2),
    "rotate270": _rotate(3),
    "transpose": _transpose,
    "transverse": _transverse,
}
# Names of transform groups accepted as ``tta=``.
GROUPS: dict[str, tuple[str, ...]] = {
    "d4": tuple(TRANSFORMS),
    "flips": ("identity", "flip_left_right", "flip_up_down", "rotate180"),
    "rot90": ("identity", "rotate90", "rotate180", "rotate270"),
}
# Transforms that swap height and width (they need square images).
_SWAPS_AXES = {"rotate90", "rotate270", "transpose", "transverse"}


def resolve(tta: str | Sequence[str | Transform] | None) -> list[tuple[str, Transform]]:
    """The ``(name, transform)`` pairs a ``tta`` argument stands for.

    Args:
        tta: A group name (``"d4"``, ``"flips"``, ``"rot90"``), None (the identity alone), or a
            list of names from :data:`TRANSFORMS` and/or callables on image batches.

    Raises:
        ConfigurationError: an unknown name, an empty list, or an entry of another type.

    Example:
        >>> len(resolve("d4")), resolve(None)[0][0]
        (8, 'identity')
    """
    if tta is None:
        return [("identity", _identity)]
    if isinstance(tta, str):
        key = tta.lower()
        if key not in GROUPS:
            raise ConfigurationError(
                f"tta must be one of {sorted(GROUPS)}, None, or a list of transforms from "
                f"{list(TRANSFORMS)} (or callables on image batches). {received('tta', tta)}"
            )
        return [(name, TRANSFORMS[name]) for name in GROUPS[key]]
    if not isinstance(tta, Sequence) or len(tta) == 0:
        raise ConfigurationError(
            f"tta must be a group name {sorted(GROUPS)}, None, or a non-empty list of transforms. "
            f"{received('tta', tta)}"
        )
    pairs = []
    for i, item in enumerate(tta):
        if isinstance(item, str):
            check_choice(item, f"tta[{i}]", tuple(TRANSFORMS))
            pairs.append((item, TRANSFORMS[item]))
        elif callable(item):
            pairs.append((getattr(item, "__name__", type(item).__name__), item))
        else:
            raise ConfigurationError(
                f"tta[{i}] must be a transform name from {list(TRANSFORMS)} or a callable. "
                f"Received: tta[{i}]={type(item).__name__}."
            )
    return pairs


def _check_square(pairs: list[tuple[str, Transform]], height: Any, width: Any) -> None:
    swapping = [name for name, _ in pairs if name in _SWAPS_AXES]
    if swapping and height is not None and width is not None and int(height) != int(width):
        raise ConfigurationError(
            f"TTA transforms {swapping} swap height and width, but the images are {height}x{width}; use "
            'tta="flips" for non-square images.'
        )


def _image_pipeline(data: Any, batch_size: int) -> tuple[Any, Any]:
    """A ``tf.data.Dataset`` of float image batches, and the image (height, width)."""
    import tensorflow as tf

    from bloodcell.datasets import BloodCellDataset, as_images
    from bloodcell.pipeline import to_tf_dataset

    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if not hasattr(first, "shape") or len(first.shape) != 4:
            raise InvalidDataError(
                "A tf.data.Dataset for TTA must yield image batches (N, H, W, 3) or (images, labels) batches; "
                f"got element spec {spec}."
            )
        images = data.map(lambda *element: tf.cast(element[0], tf.float32))
        return images, (first.shape[1], first.shape[2])
    if isinstance(data, BloodCellDataset):
        data.check_not_empty("tta.predict()")
        dataset = data
    else:
        arr = np.asarray(data)
        arr = as_images(arr[None] if arr.ndim == 3 else arr)
        if len(arr) == 0:
            raise EmptyDatasetError("tta.predict() got no images.")
        dataset = BloodCellDataset(arr, np.zeros(len(arr), np.int64))
    pipeline = to_tf_dataset(dataset, batch_size=batch_size, shuffle=False).map(lambda x, y: x)
    return pipeline, dataset.image_shape[:2]


def predict(
    model: Any,
    data: Any,
    tta: str | Sequence[str | Transform] | None = "d4",
    *,
    batch_size: int = 64,
    verbose: int = 0,
) -> np.ndarray:
    """Class probabilities averaged over transformed copies of every image.

    One batched prediction pass over the data per transform (each a ``tf.data`` map of the
    transform), so the cost is ``len(transforms)`` plain predictions.

    Args:
        model: A Keras model mapping 0–255 images to class probabilities.
        data: A :class:`~bloodcell.datasets.BloodCellDataset`, uint8 images (N, H, W, 3) or one image
            (H, W, 3), or a ``tf.data.Dataset`` of image batches or ``(images, labels)`` batches.
        tta: The transforms (see the module docstring); None: a plain prediction.
        batch_size: Images per prediction batch (not used for a ``tf.data.Dataset``, already batched).
        verbose: Keras progress output.

    Returns:
        float32 probabilities (N, num_classes): the mean of the model's outputs over the transforms.

    Raises:
        ConfigurationError: an unknown ``tta``, or rotations of non-square images.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    pairs = resolve(tta)
    pipeline, (height, width) = _image_pipeline(data, batch_size)
    _check_square(pairs, height, width)
    total: np.ndarray | None = None
    for _, transform in pairs:
        prob = np.asarray(model.predict(pipeline.map(transform), verbose=verbose), dtype=np.float64)
        total = prob if total is None else total + prob
    if total is None or len(total) == 0:
        raise EmptyDatasetError("tta.predict(): the data yielded no images.")
    return (total / len(pairs)).astype(np.float32)


def predict_on_batch(
    model: Any, images: Any, tta: str | Sequence[str | Transform] | None = "d4"
) -> np.ndarray:
    """:func:`predict` for one batch already in memory (array or tensor, values in 0–255).

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(2, activation="softmax")])
        >>> predict_on_batch(model, np.zeros((3, 8, 8, 3), "float32"), tta="rot90").shape
        (3, 2)
    """
    import tensorflow as tf

    pairs = resolve(tta)
    if not hasattr(images, "shape") or len(images.shape) != 4:
        raise InvalidDtypeError(
            f"predict_on_batch() takes an image batch (N, H, W, 3), got {type(images).__name__} "
            f"of shape {getattr(images, 'shape', None)}."
        )
    _check_square(pairs, images.shape[1], images.shape[2])
    x = tf.cast(images, tf.float32)
    probs = [np.asarray(model.predict_on_batch(transform(x)), dtype=np.float64) for _, transform in pairs]
    return (sum(probs) / len(probs)).astype(np.float32)
