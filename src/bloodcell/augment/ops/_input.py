"""Input handling shared by every op: the batch check, per-image magnitudes, 8-bit levels, dtypes."""

from __future__ import annotations

from typing import Any

from bloodcell.errors import InvalidDataError


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _check_images(images: Any, name: str = "images", channels: int | None = None) -> Any:
    """Return ``images`` as a tensor after checking its rank (and channel count when given)."""
    tf = _tf()
    x = images if isinstance(images, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(images)
    if x.shape.rank is not None and x.shape.rank != 4:
        raise InvalidDataError(
            f"{name} must be a batch of shape (N, H, W, C), got shape {tuple(x.shape)}; "
            "add a batch axis with images[None] for a single image."
        )
    if channels is not None and x.shape.rank == 4 and x.shape[-1] is not None and x.shape[-1] != channels:
        raise InvalidDataError(
            f"{name} must have {channels} colour channels (RGB), got shape {tuple(x.shape)}."
        )
    if not (x.dtype.is_floating or x.dtype.is_integer):
        raise InvalidDataError(f"{name} must hold numbers (uint8 or float, 0–255), got dtype {x.dtype.name}.")
    return x


def _per_image(value: Any, images: Any, name: str, dtype: Any = None) -> Any:
    """A magnitude as a tensor of shape (N,): a number is repeated, a vector must have N entries."""
    tf = _tf()
    dtype = dtype or tf.float32
    v = tf.cast(tf.convert_to_tensor(value), dtype)
    if v.shape.rank not in (0, 1):
        raise InvalidDataError(
            f"{name} must be a number or a vector with one value per image, got shape {v.shape}."
        )
    n = tf.shape(images)[0]
    if v.shape.rank == 0:
        return tf.fill([n], v)
    if v.shape[0] is not None and images.shape[0] is not None and v.shape[0] != images.shape[0]:
        raise InvalidDataError(f"{name} has {v.shape[0]} values for a batch of {images.shape[0]} images.")
    return v


def _levels(images: Any) -> Any:
    """The 8-bit levels of a batch as int32: uint8 as is, floats rounded and clipped to 0..255."""
    tf = _tf()
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.int32)
    x = tf.cast(images, tf.float32)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.int32)


def _to_dtype(x: Any, dtype: Any, *, truncate: bool = False) -> Any:
    """Float32 values back to ``dtype``: uint8 is clipped and rounded (or truncated, as Pillow blends)."""
    tf = _tf()
    if dtype == tf.uint8:
        x = tf.clip_by_value(x, 0.0, 255.0)
        return tf.cast(tf.floor(x) if truncate else tf.round(x), tf.uint8)
    if dtype.is_integer:
        return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), dtype)
    return tf.cast(x, dtype)
