"""Finding the white cell in a crop: where its nucleus is and how large it looks.

A white cell's nucleus is the most purple thing on a Romanowsky-stained smear. Purple absorbs
green light and lets blue through, while red cells (pink in one lab, blue-grey in another), the
slide's background and black padding absorb the two about equally. So the optical density of the
green channel minus that of the blue, ``OD_G − OD_B``, shows nuclei bright on a dark field in every
lab's colours, where the haematoxylin channel of a colour deconvolution also lights up the
blue-grey red cells of some labs.

The finder, batched and in TensorFlow (the same ops measure a dataset and run inside a model):

1. ``OD_G − OD_B`` per pixel;
2. Otsu's threshold of it; while more than ``max_fraction`` of the image lies above the threshold
   (stained red cells took the upper class), Otsu again on the pixels above it;
3. from the image centre, a few steps of a Gaussian-weighted mean shift over the thresholded
   pixels, the window following their spread: it settles on the nucleus nearest the centre, lobes
   included, away from cells cut by the border;
4. the size: ``2·√2`` times the root-mean-square distance of the nucleus pixels in the window from
   their centre, the diameter of a disk with the same spread (lobes spread over the whole cell);
5. ``found`` unless the nucleus is too faint against the rest (``min_contrast``), too small, or
   the whole image.

The search runs on the image averaged down to a grid of about 48 px, and everything is relative
to the image's side, so crops of any size work. Cost: see ``benchmarks/cells.py``.

Example:
    >>> from bloodcell.datasets import load_sample
    >>> found = find_cells(load_sample(per_class=2).images)
    >>> found.size.shape, bool(found.found.all())
    ((16,), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["CellMeasurements", "find_cells", "measure_cells", "purple_density"]

_LN10 = math.log(10.0)
_BINS = 128
_SHIFT_STEPS = 8
_GRID = 48  # the side of the grid the search runs on


@dataclass(frozen=True, eq=False)
class CellMeasurements:
    """Where the white cell of each image is and how large it looks (arrays of shape (N,)).

    Attributes:
        centre_y, centre_x: The nucleus's centre, in pixels from the top-left pixel's centre.
        size: The nucleus's extent in pixels: the diameter of a disk whose pixels spread as far
            from its centre as the nucleus's do.
        found: False where no cell stands out (then the centre is the image's and the size 0).
        contrast: How much more purple (``OD_G − OD_B``) the nucleus is than the rest.
    """

    centre_y: np.ndarray
    centre_x: np.ndarray
    size: np.ndarray
    found: np.ndarray
    contrast: np.ndarray

    def __len__(self) -> int:
        return len(self.size)


def purple_density(images: Any) -> Any:
    """``OD_G − OD_B`` of each pixel (N, H, W): high on nuclei, near 0 on red cells and background.

    Example:
        >>> import numpy as np
        >>> purple = np.array([[[[120, 40, 160]]]], np.uint8)   # a nucleus's colour
        >>> round(float(purple_density(purple)[0, 0, 0]), 2)
        0.59
    """
    x = tf.cast(images, tf.float32)
    od = -tf.math.log((x + 1.0) / 256.0) / _LN10
    return od[..., 1] - od[..., 2]


def _otsu(values: Any, valid: Any, low: Any, high: Any) -> Any:
    """Otsu's threshold (N,) of each row of ``values`` (N, P) over its ``valid`` entries."""
    n = tf.shape(values)[0]
    span = tf.maximum(high - low, 1e-6)
    index = tf.clip_by_value(
        tf.cast(tf.floor((values - low[:, None]) / span[:, None] * _BINS), tf.int32), 0, _BINS - 1
    )
    flat = index + _BINS * tf.range(n)[:, None]
    counts = tf.math.unsorted_segment_sum(tf.cast(valid, tf.float32), flat, n * _BINS)
    p = tf.reshape(counts, [n, _BINS])
    p = p / tf.maximum(tf.reduce_sum(p, axis=1, keepdims=True), 1.0)
    centres = (tf.range(_BINS, dtype=tf.float32) + 0.5) / _BINS
    w0 = tf.cumsum(p, axis=1)
    m0 = tf.cumsum(p * centres, axis=1)
    split = (w0 > 1e-4) & (w0 < 1.0 - 1e-4)  # both classes hold pixels (float32 sums never reach 1)
    between = tf.where(split, (m0[:, -1:] * w0 - m0) ** 2 / tf.maximum(w0 * (1.0 - w0), 1e-12), 0.0)
    best = tf.cast(tf.argmax(between, axis=1), tf.float32)
    return low + (best + 1.0) / _BINS * span  # the upper edge of the last bin of the lower class


def measure_cells(
    images: Any, *, max_fraction: float = 0.25, min_contrast: float = 0.1, rounds: int = 3
) -> tuple[Any, Any, Any, Any, Any]:
    """The finder on a batch, as tensors: ``(centre_y, centre_x, size, found, contrast)``, each (N,).

    Graph-friendly (fixed loops, static shapes): :class:`~bloodcell.cells.CellCrop` runs it inside
    a model. See :func:`find_cells` for the arguments.
    """
    x = tf.convert_to_tensor(images)
    # The search runs on a grid of about 48 px: a cell spans a dozen cells of it or more, and every
    # step costs a quarter of what it would at 96 px (the layer runs in every training step).
    stride = max(1, min(x.shape[1] or 0, x.shape[2] or 0) // _GRID)
    density = purple_density(x)[..., None]
    if stride > 1:
        density = tf.nn.avg_pool2d(density, stride, stride, "VALID")
    n, h, w = tf.shape(density)[0], tf.shape(density)[1], tf.shape(density)[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    purple = tf.reshape(density, [n, -1])
    low, high = tf.reduce_min(purple, axis=1), tf.reduce_max(purple, axis=1)

    threshold = _otsu(purple, tf.ones_like(purple, tf.bool), low, high)
    for _ in range(rounds - 1):  # red cells took the upper class: split it again
        above = purple > threshold[:, None]
        crowded = tf.reduce_mean(tf.cast(above, tf.float32), axis=1) > max_fraction
        threshold = tf.where(crowded, _otsu(purple, above, low, high), threshold)
    mask = tf.cast(purple > threshold[:, None], tf.float32)

    ys = tf.repeat(tf.range(hf), w)[None, :]  # pixel coordinates, flattened like the mask
    xs = tf.tile(tf.range(wf), [h])[None, :]
    cy = tf.fill([n], (hf - 1.0) / 2.0)
    cx = tf.fill([n], (wf - 1.0) / 2.0)
    radius = tf.fill([n], tf.minimum(hf, wf) / 3.0)
    smallest, largest = tf.minimum(hf, wf) / 24.0, tf.maximum(hf, wf)
    for _ in range(_SHIFT_STEPS):
        d2 = (ys - cy[:, None]) ** 2 + (xs - cx[:, None]) ** 2
        weight = mask * tf.exp(-d2 / (2.0 * radius[:, None] ** 2))
        total = tf.reduce_sum(weight, axis=1) + 1e-9
        cy = tf.reduce_sum(weight * ys, axis=1) / total
        cx = tf.reduce_sum(weight * xs, axis=1) / total
        spread = tf.sqrt(tf.reduce_sum(weight * d2, axis=1) / total)
        radius = tf.clip_by_value(2.0 * spread, smallest, largest)
    d2 = (ys - cy[:, None]) ** 2 + (xs - cx[:, None]) ** 2
    inside = mask * tf.cast(d2 <= radius[:, None] ** 2, tf.float32)
    area = tf.reduce_sum(inside, axis=1)
    size = 2.0 * math.sqrt(2.0) * tf.sqrt(tf.reduce_sum(inside * d2, axis=1) / tf.maximum(area, 1.0))

    on = tf.reduce_sum(mask, axis=1)
    off = tf.cast(h * w, tf.float32) - on
    contrast = tf.reduce_sum(mask * purple, axis=1) / tf.maximum(on, 1.0) - tf.reduce_sum(
        (1.0 - mask) * purple, axis=1
    ) / tf.maximum(off, 1.0)
    found = (
        (contrast >= min_contrast)
        & (area >= (hf * wf) / 2000.0)
        & (size >= 2.0 * smallest)
        & (on < 0.9 * hf * wf)
    )
    # Back to the image's pixels: grid cell i covers pixels i·stride ... i·stride + stride − 1.
    full_h, full_w = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
    centre_y = tf.where(found, cy * stride + (stride - 1) / 2.0, (full_h - 1.0) / 2.0)
    centre_x = tf.where(found, cx * stride + (stride - 1) / 2.0, (full_w - 1.0) / 2.0)
    return centre_y, centre_x, tf.where(found, size * stride, 0.0), found, contrast


def find_cells(
    images: Any,
    *,
    max_fraction: float = 0.25,
    min_contrast: float = 0.1,
    rounds: int = 3,
    batch_size: int = 256,
) -> CellMeasurements:
    """Find the white cell in each image: its centre, its size and whether one stands out at all.

    Args:
        images: uint8 or float images in 0–255: a batch (N, H, W, 3), one image (H, W, 3), or a
            :class:`~bloodcell.datasets.BloodCellDataset`. Any size.
        max_fraction: The largest share of the image a nucleus may cover; above it, the thresholded
            pixels are taken to hold red cells too and are split again.
        min_contrast: The least ``OD_G − OD_B`` by which the nucleus must exceed the rest to count
            as found.
        rounds: Otsu thresholds at most (the first, and the splits of crowded upper classes).
        batch_size: Images measured at a time.

    Returns:
        The :class:`CellMeasurements` of the images.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> cells = find_cells(load_sample(per_class=1).images)
        >>> bool((cells.size > 5).all()), len(cells)
        (True, 8)
    """
    from bloodcell._validation import check_int
    from bloodcell.datasets import BloodCellDataset, as_images

    batch = images.images if isinstance(images, BloodCellDataset) else np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    batch = as_images(batch) if batch.dtype == np.uint8 else batch
    check_int(batch_size, "batch_size", minimum=1)
    check_int(rounds, "rounds", minimum=1)
    parts = [
        [
            t.numpy()
            for t in measure_cells(
                batch[i : i + batch_size], max_fraction=max_fraction, min_contrast=min_contrast, rounds=rounds
            )
        ]
        for i in range(0, len(batch), batch_size)
    ]
    cy, cx, size, found, contrast = (
        (np.concatenate(column) for column in zip(*parts)) if parts else [np.zeros(0)] * 5
    )
    return CellMeasurements(cy, cx, size, found.astype(bool), contrast)
