"""Batched image operations with a magnitude per image: the primitives of AugMix and RandomGeometric.

Every function takes a batch ``images`` of shape (N, H, W, C) with values in 0–255, as uint8 or
float, and returns a batch of the same shape and dtype. Magnitudes (``degrees``, ``bits``,
``factor``...) are a number for the whole batch or a tensor of shape (N,) with one value per image.
Everything is TensorFlow graph code: the functions run eagerly, inside ``tf.data`` maps, inside
Keras models and on a GPU.

The colour operations follow Pillow exactly on uint8 images (tested against ``PIL.ImageOps`` and
``PIL.ImageEnhance``): :func:`autocontrast`, :func:`equalize`, :func:`posterize` and
:func:`solarize` are lookup tables on the 8-bit levels (float inputs are rounded to the nearest
level first), and the ``ImageEnhance`` blends (:func:`brightness`, :func:`contrast`, :func:`color`,
:func:`sharpness`) truncate to uint8 as Pillow does; on float inputs they blend in float.

The geometric operations share one resampler, :func:`affine_transform`: the transform maps each
output pixel to the input position it samples, in pixel-centre coordinates, like Pillow's
``Image.transform(..., Image.AFFINE, data)`` and TensorFlow's projective transforms.
:func:`rotate` turns counter-clockwise as ``PIL.Image.rotate`` does; shears act about the image
centre so that a centred cell stays centred.

Example:
    >>> import numpy as np
    >>> from bloodcell.augment import ops
    >>> images = np.full((2, 8, 8, 3), 100, np.uint8)
    >>> out = ops.solarize(images, threshold=[50, 200])   # one threshold per image
    >>> out[:, 0, 0, 0].numpy()
    array([155, 100], dtype=uint8)
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

from bloodcell._validation import check_choice, is_number, received
from bloodcell.errors import ConfigurationError, InvalidDataError

__all__ = [
    "affine_transform",
    "autocontrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "posterize",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
]

INTERPOLATIONS = ("bilinear", "nearest")
FILL_MODES = ("constant", "nearest", "reflect", "wrap")

# Pillow's integer grey level: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (ITU-R 601-2 luma).
_LUMA = (19595, 38470, 7471)


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# lookup tables (the colour ops of ImageOps)
# ----------------------------------------------------------------------------------------------
def _histograms(levels: Any) -> Any:
    """Per image and channel histograms (N, C, 256), int32, of int32 levels (N, H, W, C)."""
    tf = _tf()
    n, c = tf.shape(levels)[0], tf.shape(levels)[3]
    rows = tf.reshape(tf.range(n * c) * 256, tf.stack([n, 1, 1, c]))
    ids = tf.reshape(levels + rows, [-1])
    counts = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, n * c * 256)
    return tf.reshape(counts, tf.stack([n, c, 256]))


def _identity_lut(shape_like: Any) -> Any:
    tf = _tf()
    return tf.broadcast_to(tf.range(256, dtype=tf.int32), tf.shape(shape_like))


def _autocontrast_lut(hist: Any) -> Any:
    """``ImageOps.autocontrast`` (cutoff 0): stretch each channel's [lowest, highest] level to [0, 255]."""
    tf = _tf()
    idx = tf.range(256, dtype=tf.int32)
    present = hist > 0
    lo = tf.reduce_min(tf.where(present, idx, 256), -1, keepdims=True)
    hi = tf.reduce_max(tf.where(present, idx, -1), -1, keepdims=True)
    # float64 like Pillow's Python arithmetic, so int() truncation lands on the same level.
    scale = 255.0 / tf.cast(tf.maximum(hi - lo, 1), tf.float64)
    offset = -tf.cast(lo, tf.float64) * scale
    lut = tf.cast(tf.cast(idx, tf.float64) * scale + offset, tf.int32)  # int() truncates toward zero
    lut = tf.clip_by_value(lut, 0, 255)
    return tf.where(hi <= lo, idx, lut)


def _exclusive_cumsum(x: Any) -> Any:
    """Exclusive running sum over the last axis (256 levels) by doubling: 8 shifted adds.

    Exact for integers, and twice as fast under XLA on a CPU as ``tf.cumsum``.
    """
    tf = _tf()
    pad = [[0, 0]] * (x.shape.rank - 1)
    shift = 1
    while shift < 256:
        x = x + tf.pad(x[..., :-shift], [*pad, [shift, 0]])
        shift *= 2
    return tf.pad(x[..., :-1], [*pad, [1, 0]])


def _equalize_lut(hist: Any) -> Any:
    """``ImageOps.equalize``: Pillow's cumulative-histogram table, channel by channel."""
    tf = _tf()
    idx = tf.range(256, dtype=tf.int32)
    present = hist > 0
    n_levels = tf.reduce_sum(tf.cast(present, tf.int32), -1, keepdims=True)
    last = tf.reduce_max(tf.where(present, idx, -1), -1, keepdims=True)
    last_count = tf.reduce_sum(tf.where(idx == last, hist, 0), -1, keepdims=True)
    total = tf.reduce_sum(hist, -1, keepdims=True)
    step = (total - last_count) // 255
    cumulative = _exclusive_cumsum(hist)
    lut = tf.minimum((step // 2 + cumulative) // tf.maximum(step, 1), 255)
    return tf.where((n_levels <= 1) | (step == 0), idx, lut)


def _posterize_lut(bits: Any, levels: Any = None) -> Any:
    """``ImageOps.posterize``: keep the top ``bits`` bits (shape (..., 1)) of ``levels`` (all 256 by default)."""
    tf = _tf()
    idx = tf.range(256, dtype=tf.int32) if levels is None else levels
    keep = 256 - tf.bitwise.left_shift(1, 8 - bits)  # ~(2**(8-bits) - 1) & 0xFF
    return tf.bitwise.bitwise_and(idx, keep)


def _solarize_lut(threshold: Any, levels: Any = None) -> Any:
    """``ImageOps.solarize``: invert the ``levels`` (all 256 by default) at or above ``threshold`` (shape (..., 1))."""
    tf = _tf()
    idx = tf.range(256, dtype=tf.int32) if levels is None else levels
    return tf.where(idx < threshold, idx, 255 - idx)


def _blend_lut(degenerate: Any, factor: Any, levels: Any = None) -> Any:
    """Pillow's ``Image.blend(degenerate, image, factor)`` of ``levels`` (all 256 by default): truncated, clipped."""
    tf = _tf()
    idx = tf.range(256, dtype=tf.float32) if levels is None else tf.cast(levels, tf.float32)
    out = degenerate + factor * (idx - degenerate)
    return tf.cast(tf.floor(tf.clip_by_value(out, 0.0, 255.0)), tf.int32)


def _apply_lut(levels: Any, luts: Any) -> Any:
    """Map int32 levels (N, H, W, C) through per-image, per-channel tables (N, C, 256); int32 out."""
    tf = _tf()
    n, c = tf.shape(levels)[0], tf.shape(levels)[3]
    rows = tf.reshape(tf.range(n * c) * 256, tf.stack([n, 1, 1, c]))
    return tf.gather(tf.reshape(luts, [-1]), levels + rows)


def _lut_op(images: Any, make_lut: Any) -> Any:
    tf = _tf()
    x = _check_images(images)
    levels = _levels(x)
    out = _apply_lut(levels, make_lut(levels))
    return tf.cast(out, x.dtype)


def autocontrast(images: Any) -> Any:
    """Stretch each channel so its darkest level becomes 0 and its brightest 255 (``ImageOps.autocontrast``).

    Example:
        >>> import numpy as np
        >>> img = np.full((1, 4, 4, 3), 50, np.uint8)
        >>> img[:, :2] = 150                      # two grey levels, 50 and 150
        >>> out = autocontrast(img).numpy()
        >>> int(out.min()), int(out.max())
        (0, 255)
    """
    return _lut_op(images, lambda levels: _autocontrast_lut(_histograms(levels)))


def equalize(images: Any) -> Any:
    """Equalise each channel's histogram (``ImageOps.equalize``)."""
    return _lut_op(images, lambda levels: _equalize_lut(_histograms(levels)))


def posterize(images: Any, bits: Any) -> Any:
    """Keep the ``bits`` most significant bits of each level (1–8; ``ImageOps.posterize``).

    Example:
        >>> import numpy as np
        >>> int(posterize(np.full((1, 2, 2, 3), 200, np.uint8), bits=2)[0, 0, 0, 0])
        192
    """
    tf = _tf()
    x = _check_images(images)
    b = _per_image(bits, x, "bits", tf.int32)
    if is_number(bits) and not 1 <= bits <= 8:
        raise ConfigurationError(f"bits must lie in 1..8. {received('bits', bits)}")
    b = tf.clip_by_value(b, 1, 8)
    return _lut_op(
        x,
        lambda levels: tf.broadcast_to(
            _posterize_lut(b[:, None, None]), [tf.shape(x)[0], tf.shape(x)[3], 256]
        ),
    )


def solarize(images: Any, threshold: Any = 128) -> Any:
    """Invert every level at or above ``threshold`` (``ImageOps.solarize``); 256 changes nothing."""
    tf = _tf()
    x = _check_images(images)
    t = _per_image(threshold, x, "threshold", tf.int32)
    return _lut_op(
        x,
        lambda levels: tf.broadcast_to(
            _solarize_lut(t[:, None, None]), [tf.shape(x)[0], tf.shape(x)[3], 256]
        ),
    )


# ----------------------------------------------------------------------------------------------
# ImageEnhance blends
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# geometry: one resampler for every affine map
# ----------------------------------------------------------------------------------------------
def _check_geometry(interpolation: str, fill_mode: str) -> None:
    check_choice(interpolation, "interpolation", INTERPOLATIONS)
    check_choice(fill_mode, "fill_mode", FILL_MODES)


def _map_coordinates(coords: Any, size: Any, fill_mode: str) -> Any:
    """Fold sample coordinates back into the image for the fill modes that reuse its pixels.

    The result lies in [-1, size] in pixel-centre units; one padded pixel on each side of the
    image (see :func:`_pad_for_fill`) then supplies what the fill mode asks for at the border.
    Folding uses ``floor`` rather than ``floormod``, which XLA turns into a slow ``fmod`` call.
    """
    tf = _tf()
    n = tf.cast(size, tf.float32)
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a, the mirror lies half a pixel outside
        period = 2.0 * n
        u = coords + 0.5
        u = u - period * tf.floor(u / period)
        coords = tf.where(u > n, period - u, u) - 0.5
    elif fill_mode == "wrap":
        u = coords + 0.5
        coords = u - n * tf.floor(u / n) - 0.5
    elif fill_mode == "nearest":
        coords = tf.clip_by_value(coords, 0.0, n - 1.0)
    return tf.clip_by_value(coords, -1.0, n)


def _pad_for_fill(x: Any, fill_mode: str, fill_value: Any) -> Any:
    """Pad one pixel on each side of H and W (and one more at the end, so 2×2 windows never overrun)."""
    tf = _tf()
    if fill_mode == "constant":
        return tf.pad(x, [[0, 0], [1, 2], [1, 2], [0, 0]], constant_values=tf.cast(fill_value, x.dtype))
    if fill_mode == "wrap":
        x = tf.concat([x[:, -1:], x, x[:, :2]], axis=1)
        return tf.concat([x[:, :, -1:], x, x[:, :, :2]], axis=2)
    x = tf.concat([x[:, :1], x, x[:, -1:], x[:, -1:]], axis=1)  # nearest and reflect: repeat the edge
    return tf.concat([x[:, :, :1], x, x[:, :, -1:], x[:, :, -1:]], axis=2)


def _axis_coordinates(
    transforms: Any, axis: int, height: int, width: int, interpolation: str, fill_mode: str
) -> tuple[Any, Any]:
    """Sample positions along one axis (0: x, 1: y) for every output pixel, in the padded frame.

    Returns ``(start, weight)``, both float32 (N, H·W): the first row or column of the 2×2
    neighbourhood each output pixel reads, and the bilinear weight of the second one.

    Shapes stay two-dimensional on purpose: XLA's CPU code for broadcasts over small trailing
    axes is many times slower than for this flat layout.
    """
    tf = _tf()
    gx = tf.tile(tf.range(width, dtype=tf.float32), [height])[None, :]
    gy = tf.repeat(tf.range(height, dtype=tf.float32), width)[None, :]
    t = tf.cast(transforms, tf.float32)
    size = width if axis == 0 else height
    s = (
        t[:, 3 * axis : 3 * axis + 1] * gx
        + t[:, 3 * axis + 1 : 3 * axis + 2] * gy
        + t[:, 3 * axis + 2 : 3 * axis + 3]
    )
    s = _map_coordinates(s, size, fill_mode) + 1.0  # +1: the padded frame
    if interpolation == "nearest":
        s = tf.floor(s + 0.5)  # round half up (s ≥ 0 here), like TensorFlow's kernel
    start = tf.minimum(tf.floor(s), float(size))
    return start, s - start


def _windows(padded: Any, transforms: Any, interpolation: str, fill_mode: str, use_xla_gather: bool) -> Any:
    """The 2×2 neighbourhood each output pixel reads: (N, H·W, 2, 2·C), rows then (x, x+1) pixels.

    ``padded`` is the batch after :func:`_pad_for_fill` (N, H+3, W+3, C); the sample positions are
    computed here from ``transforms`` rather than stored, which saves two full-size arrays.
    """
    tf = _tf()
    n, hp, wp, c = tf.shape(padded)[0], padded.shape[1], padded.shape[2], padded.shape[3]
    height, width = hp - 3, wp - 3
    x0, _ = _axis_coordinates(transforms, 0, height, width, interpolation, fill_mode)
    y0, _ = _axis_coordinates(transforms, 1, height, width, interpolation, fill_mode)
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    rows = tf.reshape(padded, tf.stack([n, hp, wp * c]))  # a pixel pair is one contiguous run of a row
    if use_xla_gather:
        # Under XLA a windowed gather copies each 2×2 block in two runs: several times faster on a
        # CPU than gathering the four pixels one by one (see benchmarks/augment.py).
        from tensorflow.compiler.tf2xla.python import xla
        from tensorflow.compiler.xla import xla_data_pb2

        image = tf.broadcast_to(tf.range(n)[:, None], tf.shape(y0))
        starts = tf.stack([image, y0, x0 * c], axis=0)  # (3, N, H·W)
        dims = xla_data_pb2.GatherDimensionNumbers()
        dims.offset_dims.extend([2, 3])
        dims.collapsed_slice_dims.extend([0])
        dims.start_index_map.extend([0, 1, 2])
        dims.index_vector_dim = 0
        windows = xla.gather(rows, starts, dims, [1, 2, 2 * c], indices_are_sorted=False)
        return tf.ensure_shape(windows, [None, height * width, 2, 2 * c])
    # Portable path: put each pixel's right neighbour beside it, then gather the two rows.
    pairs = tf.concat([padded[:, :, :-1], padded[:, :, 1:]], axis=-1)  # (N, H+3, W+2, 2C)
    top = tf.gather_nd(pairs, tf.stack([y0, x0], axis=-1), batch_dims=1)
    bottom = tf.gather_nd(pairs, tf.stack([y0 + 1, x0], axis=-1), batch_dims=1)
    return tf.ensure_shape(tf.stack([top, bottom], axis=2), [None, height * width, 2, 2 * c])


# A faster gather for 8-bit RGB: each pixel packed into one 32-bit word, and each word beside its
# right neighbour's in one 64-bit word, so that a 2×2 neighbourhood is two words, which XLA's CPU
# gather copies much faster than the twelve separate bytes of :func:`_windows`.
def _pack_pixels(levels: Any) -> Any:
    """RGB levels 0–255 (M, H, W, 3), any integer dtype → int32 words (M, H, W): R | G << 8 | B << 16."""
    tf = _tf()
    x = tf.cast(levels, tf.int32)
    return x[..., 0] + tf.bitwise.left_shift(x[..., 1], 8) + tf.bitwise.left_shift(x[..., 2], 16)


def _pixel_pairs(words: Any) -> Any:
    """Pixel words (M, H, W) int32 → int64 (M, H, W−1): each pixel in the low half, its right neighbour high."""
    tf = _tf()
    left = tf.cast(words[:, :, :-1], tf.int64)  # words are below 2**24: no sign to extend
    return tf.bitwise.bitwise_or(left, tf.bitwise.left_shift(tf.cast(words[:, :, 1:], tf.int64), 32))


def _pair_windows(
    pairs: Any, transforms: Any, interpolation: str, fill_mode: str, use_xla_gather: bool
) -> Any:
    """The 2×2 neighbourhood each output pixel reads, as two pair words: int64 (M, H·W, 2).

    ``pairs`` is :func:`_pixel_pairs` of a batch padded by :func:`_pad_for_fill` (M, H+3, W+2).
    """
    tf = _tf()
    m, hp, wq = tf.shape(pairs)[0], pairs.shape[1], pairs.shape[2]
    height, width = hp - 3, wq - 2
    x0, _ = _axis_coordinates(transforms, 0, height, width, interpolation, fill_mode)
    y0, _ = _axis_coordinates(transforms, 1, height, width, interpolation, fill_mode)
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    if use_xla_gather:
        from tensorflow.compiler.tf2xla.python import xla
        from tensorflow.compiler.xla import xla_data_pb2

        image = tf.broadcast_to(tf.range(m)[:, None], tf.shape(y0))
        dims = xla_data_pb2.GatherDimensionNumbers()
        dims.offset_dims.extend([2])
        dims.collapsed_slice_dims.extend([0, 2])
        dims.start_index_map.extend([0, 1, 2])
        dims.index_vector_dim = 0
        windows = xla.gather(
            pairs, tf.stack([image, y0, x0], axis=0), dims, [1, 2, 1], indices_are_sorted=False
        )
        return tf.ensure_shape(windows, [None, height * width, 2])
    flat = tf.reshape(pairs, [-1])
    top = (tf.range(m)[:, None] * hp + y0) * wq + x0
    windows = tf.stack([tf.gather(flat, top), tf.gather(flat, top + wq)], axis=-1)
    return tf.ensure_shape(windows, [None, height * width, 2])


def _window_bytes(windows: Any) -> Any:
    """Pair-word windows (M, H·W, 2) → uint8 (M, H·W, 2, 8): R G B · R G B · per row (no copy).

    Called outside XLA, where ``tf.bitcast`` is a view of the same buffer rather than a copy.
    """
    tf = _tf()
    raw = tf.bitcast(windows, tf.uint8)
    return raw if sys.byteorder == "little" else tf.reverse(raw, [-1])


def _interpolate(
    windows: Any,
    transforms: Any,
    height: int,
    width: int,
    interpolation: str,
    fill_mode: str,
    packed: bool = False,
) -> Any:
    """Bilinear blend of the windows of :func:`_windows` → float32 (N, H·W, C).

    With ``packed``, ``windows`` are the RGB bytes of :func:`_window_bytes` (N, H·W, 2, 8), each
    row's right pixel starting at byte 4.
    """
    tf = _tf()
    c = 3 if packed else windows.shape[-1] // 2
    stride = 4 if packed else c
    _, fx = _axis_coordinates(transforms, 0, height, width, interpolation, fill_mode)
    _, fy = _axis_coordinates(transforms, 1, height, width, interpolation, fill_mode)
    win = tf.cast(windows, tf.float32)
    fx, fy = fx[..., None], fy[..., None]
    a, b = win[:, :, 0, :c], win[:, :, 0, stride : stride + c]
    d, e = win[:, :, 1, :c], win[:, :, 1, stride : stride + c]
    top = a + fx * (b - a)
    bottom = d + fx * (e - d)
    return top + fy * (bottom - top)


def _warp(
    images: Any,
    transforms: Any,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value: float = 0.0,
    use_xla_gather: bool = False,
) -> Any:
    """Resample ``images`` (N, H, W, C) under affine ``transforms`` (N, 6); float32 out (one graph)."""
    tf = _tf()
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    windows = _windows(
        _pad_for_fill(images, fill_mode, fill_value), transforms, interpolation, fill_mode, use_xla_gather
    )
    out = _interpolate(windows, transforms, h, w, interpolation, fill_mode)
    return tf.reshape(out, tf.stack([tf.shape(images)[0], h, w, c]))


class _StagedWarp:
    """The resampler as two XLA programs: the window gather, then the interpolation.

    One program for both runs several times slower on a CPU: XLA fuses the gather into each of
    its consumers and recomputes it per neighbour and channel.
    """

    def __init__(self, interpolation: str, fill_mode: str, jit_compile: bool) -> None:
        tf = _tf()
        jit = functools.partial(tf.function, jit_compile=jit_compile, autograph=False)
        self.windows = jit(
            lambda images, transforms, fill_value: _windows(
                _pad_for_fill(images, fill_mode, fill_value),
                transforms,
                interpolation,
                fill_mode,
                jit_compile,
            )
        )
        self.interpolate = jit(
            lambda windows, transforms, h, w: _interpolate(
                windows, transforms, h, w, interpolation, fill_mode
            )
        )

    def __call__(self, images: Any, transforms: Any, fill_value: Any) -> Any:
        tf = _tf()
        h, w, c = images.shape[1], images.shape[2], images.shape[3]
        if h is None or w is None or c is None:
            raise InvalidDataError(
                f"affine_transform needs a known image size, got shape {tuple(images.shape)}."
            )
        windows = self.windows(images, transforms, fill_value)
        out = self.interpolate(windows, transforms, int(h), int(w))
        return tf.reshape(out, tf.stack([tf.shape(images)[0], h, w, c]))


@functools.cache
def _staged_warp(interpolation: str, fill_mode: str, jit_compile: bool) -> _StagedWarp:
    return _StagedWarp(interpolation, fill_mode, jit_compile)


def affine_transform(
    images: Any,
    transforms: Any,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value: float = 0.0,
    jit_compile: bool = True,
) -> Any:
    """Resample each image under its own affine map.

    Args:
        images: Batch (N, H, W, C), uint8 or float in 0–255.
        transforms: (N, 6) or (6,): ``[a0, a1, a2, b0, b1, b2]`` maps output pixel (x, y) to the
            input position (a0·x + a1·y + a2, b0·x + b1·y + b2), pixel centres at integers; the
            order of Pillow's ``Image.AFFINE`` data and of TensorFlow's projective transforms.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_mode: What lies outside the image: ``"constant"`` (``fill_value``), ``"nearest"``
            (edge pixels repeated), ``"reflect"`` (mirrored about the edge: d c b a | a b c d) or
            ``"wrap"`` (tiled), as in ``keras.layers.RandomRotation``.
        fill_value: The value for ``fill_mode="constant"``.
        jit_compile: Compile the resampler with XLA (about twice as fast on a CPU; use False on a
            platform without XLA).

    Returns:
        The resampled batch, same shape and dtype (uint8 results are rounded).

    Example:
        >>> import numpy as np
        >>> img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
        >>> shift_left = [1, 0, 1, 0, 1, 0]          # each output pixel samples one to its right
        >>> affine_transform(img, shift_left, jit_compile=False).numpy()[0, 0, :, 0]
        array([1, 2, 3, 0], dtype=uint8)
    """
    tf = _tf()
    _check_geometry(interpolation, fill_mode)
    x = _check_images(images)
    t = tf.cast(tf.convert_to_tensor(transforms), tf.float32)
    if t.shape.rank == 1:
        t = tf.broadcast_to(t[None, :], tf.stack([tf.shape(x)[0], 6]))
    if t.shape.rank != 2 or (t.shape[-1] is not None and t.shape[-1] != 6):
        raise InvalidDataError(f"transforms must have shape (N, 6) or (6,), got {tuple(t.shape)}.")
    out = _staged_warp(interpolation, fill_mode, bool(jit_compile))(x, t, tf.constant(fill_value, tf.float32))
    return _to_dtype(out, x.dtype)


def _centre(images: Any) -> tuple[Any, Any]:
    tf = _tf()
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    return (w - 1.0) / 2.0, (h - 1.0) / 2.0


def _rotation_transforms(radians: Any, cx: Any, cy: Any) -> Any:
    """Transforms (N, 6) turning images counter-clockwise by ``radians`` about (cx, cy)."""
    tf = _tf()
    c, s = tf.cos(radians), tf.sin(radians)
    # Output → input is the clockwise rotation (y points down), as in PIL.Image.rotate.
    return tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy], axis=-1)


def rotate(images: Any, degrees: Any, **kwargs: Any) -> Any:
    """Rotate counter-clockwise by ``degrees`` about the centre (as ``PIL.Image.rotate``).

    Keyword arguments go to :func:`affine_transform` (interpolation, fill_mode, fill_value, jit_compile).
    """
    x = _check_images(images)
    cx, cy = _centre(x)
    radians = _per_image(degrees, x, "degrees") * (math.pi / 180.0)
    return affine_transform(x, _rotation_transforms(radians, cx, cy), **kwargs)


def shear_x(images: Any, factor: Any, **kwargs: Any) -> Any:
    """Shear horizontally about the centre: the output pixel (x, y) samples (x + factor·(y − cy), y)."""
    tf = _tf()
    x = _check_images(images)
    cx, cy = _centre(x)
    f = _per_image(factor, x, "factor")
    one, zero = tf.ones_like(f), tf.zeros_like(f)
    return affine_transform(x, tf.stack([one, f, -f * cy, zero, one, zero], -1), **kwargs)


def shear_y(images: Any, factor: Any, **kwargs: Any) -> Any:
    """Shear vertically about the centre: the output pixel (x, y) samples (x, y + factor·(x − cx))."""
    tf = _tf()
    x = _check_images(images)
    cx, cy = _centre(x)
    f = _per_image(factor, x, "factor")
    one, zero = tf.ones_like(f), tf.zeros_like(f)
    return affine_transform(x, tf.stack([one, zero, zero, f, one, -f * cx], -1), **kwargs)


def translate_x(images: Any, pixels: Any, **kwargs: Any) -> Any:
    """Move the content ``pixels`` to the right (negative: to the left)."""
    tf = _tf()
    x = _check_images(images)
    p = _per_image(pixels, x, "pixels")
    one, zero = tf.ones_like(p), tf.zeros_like(p)
    return affine_transform(x, tf.stack([one, zero, -p, zero, one, zero], -1), **kwargs)


def translate_y(images: Any, pixels: Any, **kwargs: Any) -> Any:
    """Move the content ``pixels`` down (negative: up)."""
    tf = _tf()
    x = _check_images(images)
    p = _per_image(pixels, x, "pixels")
    one, zero = tf.ones_like(p), tf.zeros_like(p)
    return affine_transform(x, tf.stack([one, zero, zero, zero, one, -p], -1), **kwargs)
