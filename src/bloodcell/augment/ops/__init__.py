"""Batched image operations with a magnitude per image: the primitives of AugMix and RandomGeometric.

One module per family: :mod:`.lut` (the ``ImageOps`` lookup tables), :mod:`.enhance` (the
``ImageEnhance`` blends) and :mod:`.geometry` (one affine resampler); every name is also here.

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

# Besides the public ops, the private building blocks that AugMix fuses into one graph (and the
# tests check one by one) are reached here as ``ops._name``.
from bloodcell.augment.ops._input import _check_images, _levels, _per_image  # noqa: F401, E402
from bloodcell.augment.ops.enhance import _LUMA, _smooth_plane, brightness, color, contrast, sharpness  # noqa: F401, E402
from bloodcell.augment.ops.geometry import (  # noqa: F401, E402
    FILL_MODES,
    INTERPOLATIONS,
    _check_geometry,
    _interpolate,
    _pack_pixels,
    _pad_for_fill,
    _pair_windows,
    _pixel_pairs,
    _window_bytes,
    _windows,
    affine_transform,
    rotate,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)
from bloodcell.augment.ops.lut import (  # noqa: F401, E402
    _autocontrast_lut,
    _blend_lut,
    _equalize_lut,
    _histograms,
    _posterize_lut,
    _solarize_lut,
    autocontrast,
    equalize,
    posterize,
    solarize,
)

__all__ = [
    "FILL_MODES",
    "INTERPOLATIONS",
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
