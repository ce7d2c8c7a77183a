"""The ``PIL.ImageEnhance`` blends: brightness, contrast, color (saturation) and sharpness.

On uint8 images they truncate to uint8 as Pillow does; on float inputs they blend in float.

Example:
    >>> import numpy as np
    >>> int(brightness(np.full((1, 2, 2, 3), 100, np.uint8), 1.5)[0, 0, 0, 0])
    150
"""

from __future__ import annotations

from typing import Any

from bloodcell.augment.ops._input import _check_images, _per_image, _tf, _to_dtype
from bloodcell.errors import InvalidDataError

__all__ = ["brightness", "color", "contrast", "sharpness"]

# Pillow's integer grey level: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (ITU-R 601-2 luma).
_LUMA = (19595, 38470, 7471)


def _grey(x: Any, integer: bool) -> Any:
    """Pillow's "L" conversion of RGB (N, H, W, 3) → (N, H, W, 1); rounded as Pillow when asked."""
    tf = _tf()
    r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    if integer:
        xi = tf.cast(x, tf.int32)
        luma = xi[..., 0:1] * _LUMA[0] + xi[..., 1:2] * _LUMA[1] + xi[..., 2:3] * _LUMA[2]
        return tf.cast(tf.bitwise.right_shift(luma + 0x8000, 16), tf.float32)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]) / 65536.0


def _blend(images: Any, degenerate: Any, factor: Any) -> Any:
    """``Image.blend(degenerate, images, factor)`` per image, back in the input dtype."""
    tf = _tf()
    x = tf.cast(images, tf.float32)
    f = factor[:, None, None, None]
    return _to_dtype(degenerate + f * (x - degenerate), images.dtype, truncate=True)


def brightness(images: Any, factor: Any) -> Any:
    """Scale brightness: 0 gives black, 1 the original (``ImageEnhance.Brightness``)."""
    x = _check_images(images)
    return _blend(x, 0.0, _per_image(factor, x, "factor"))


def contrast(images: Any, factor: Any) -> Any:
    """Blend with the mean grey level: 0 gives flat grey, 1 the original (``ImageEnhance.Contrast``)."""
    tf = _tf()
    x = _check_images(images, channels=3)
    integer = x.dtype.is_integer
    mean = tf.reduce_mean(_grey(tf.cast(x, tf.float32), integer), axis=[1, 2, 3], keepdims=True)
    if integer:
        mean = tf.floor(mean + 0.5)  # Pillow: int(mean + 0.5)
    return _blend(x, mean, _per_image(factor, x, "factor"))


def color(images: Any, factor: Any) -> Any:
    """Blend with the grey version: 0 gives black and white, 1 the original (``ImageEnhance.Color``)."""
    tf = _tf()
    x = _check_images(images, channels=3)
    grey = _grey(tf.cast(x, tf.float32), x.dtype.is_integer)
    return _blend(x, grey, _per_image(factor, x, "factor"))


def _smooth_plane(plane: Any, channels: int) -> Any:
    """Pillow's ``ImageFilter.SMOOTH`` (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1, ÷13) on (N, H, W·C) float
    planes: the (N, H−2, (W−2)·C) interior. Nine shifted slices, which XLA and TensorFlow run far
    faster than a depthwise convolution with a 3-channel kernel.
    """
    h, wc = plane.shape[1], plane.shape[2]
    c = channels
    total = 0.0
    for dy in range(3):
        for dx in range(3):
            weight = 5.0 if (dy, dx) == (1, 1) else 1.0
            total += weight * plane[:, dy : dy + h - 2, c * dx : c * dx + wc - 2 * c]
    return total / 13.0


def _smooth(x: Any) -> Any:
    """``ImageFilter.SMOOTH`` on float32 (N, H, W, C), the one-pixel border kept as Pillow does."""
    tf = _tf()
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None:
        raise InvalidDataError(f"sharpness needs a known image size, got shape {tuple(x.shape)}.")
    plane = tf.reshape(x, tf.stack([-1, h, w * c]))
    inner = tf.pad(_smooth_plane(plane, c), [[0, 0], [1, 1], [c, c]])
    border = tf.pad(tf.zeros([h - 2, (w - 2) * c]), [[1, 1], [c, c]], constant_values=1.0)
    return tf.reshape(border * plane + (1.0 - border) * inner, tf.shape(x))


def sharpness(images: Any, factor: Any) -> Any:
    """Blend with a smoothed copy: 0 blurs, 1 is the original, 2 sharpens (``ImageEnhance.Sharpness``)."""
    tf = _tf()
    x = _check_images(images)
    xf = tf.cast(x, tf.float32)
    smooth = _smooth(xf)
    if x.dtype.is_integer:
        smooth = tf.round(smooth)  # Pillow's filter writes uint8
    return _blend(x, smooth, _per_image(factor, x, "factor"))
