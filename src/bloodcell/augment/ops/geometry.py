"""Geometry: one resampler, :func:`affine_transform`, for every affine map (rotate, shear, translate).

The transform maps each output pixel to the input position it samples, in pixel-centre
coordinates, like Pillow's ``Image.transform(..., Image.AFFINE, data)`` and TensorFlow's projective
transforms. :func:`rotate` turns counter-clockwise as ``PIL.Image.rotate`` does; shears act about
the image centre so that a centred cell stays centred.

Example:
    >>> import numpy as np
    >>> images = np.zeros((1, 4, 4, 3), np.uint8); images[0, 0, 0] = 255
    >>> int(translate_x(images, 1)[0, 0, 1, 0])
    255
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

from bloodcell._validation import check_choice
from bloodcell.augment.ops._input import _check_images, _per_image, _tf, _to_dtype
from bloodcell.errors import InvalidDataError

__all__ = [
    "affine_transform",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "FILL_MODES",
    "INTERPOLATIONS",
]

INTERPOLATIONS = ("bilinear", "nearest")
FILL_MODES = ("constant", "nearest", "reflect", "wrap")


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
