"""Per-row percentiles of masked values, in NumPy and in TensorFlow, computing the same numbers.

Only the tail that holds the percentile is partitioned out (NumPy) or taken with ``top_k``
(TensorFlow), not the whole row sorted: Macenko's stain angles need the 1st and 99th percentiles
of every image's stained pixels, on every batch the layer sees.

Example:
    >>> import numpy as np
    >>> values = np.arange(10.0)[None]
    >>> float(_np_masked_percentile(values, None, 50.0)[0]) == float(np.percentile(values, 50.0))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["_np_masked_percentile", "_tf_masked_percentile"]


def _tail_size(q: float, pixels: Any) -> Any:
    """How many of the smallest (q <= 50) or largest values hold the q-th percentile of a row."""
    # Position (n - 1) * q / 100 of n <= pixels values lies within this many of the nearer end;
    # +3 covers the interpolation neighbour and float rounding.
    return min(q, 100.0 - q) / 100.0 * (pixels - 1) // 1 + 3


def _np_masked_percentile(values: np.ndarray, mask: np.ndarray | None, q: float) -> np.ndarray:
    """Per-row q-th percentile (linear interpolation, as ``np.percentile``) of the masked values.

    Only the tail that holds the percentile is partitioned out and sorted, not the whole row.
    """
    rows, pixels = values.shape
    count = np.full(rows, pixels) if mask is None else mask.sum(1)
    low_tail = q <= 50.0
    signed = values if low_tail else -values  # the wanted tail becomes the smallest values
    if mask is not None:
        signed = np.where(mask, signed, np.inf)
    k = int(min(_tail_size(q, pixels), pixels))
    tail = np.sort(np.partition(signed, k - 1, axis=1)[:, :k], axis=1)
    n = np.maximum(count, 1)
    pos = (n - 1) * (q / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    index = np.arange(rows)
    if low_tail:
        return tail[index, lo] * (1 - frac) + tail[index, hi] * frac
    return -tail[index, n - 1 - lo] * (1 - frac) - tail[index, n - 1 - hi] * frac


def _tf_masked_percentile(values: Any, mask: Any, q: float) -> Any:
    """TF twin of :func:`_np_masked_percentile`: ``tf.math.top_k`` of the tail instead of a full sort."""
    import tensorflow as tf

    pixels = tf.shape(values)[1]
    count = (
        tf.fill(tf.shape(values)[:1], pixels) if mask is None else tf.reduce_sum(tf.cast(mask, tf.int32), 1)
    )
    low_tail = q <= 50.0
    signed = -values if low_tail else values  # top_k takes the largest: the wanted tail
    if mask is not None:
        signed = tf.where(mask, signed, tf.constant(-np.inf, values.dtype))
    k = tf.minimum(tf.cast(_tail_size(q, tf.cast(pixels, tf.float64)), tf.int32), pixels)
    tail = tf.math.top_k(signed, k=k, sorted=True).values  # descending
    if low_tail:
        tail = -tail  # ascending smallest values
    n = tf.maximum(count, 1)
    pos = tf.cast(n - 1, values.dtype) * (q / 100.0)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, n - 1)
    frac = pos - tf.cast(lo, values.dtype)
    if not low_tail:  # ascending index i is descending index n - 1 - i
        lo, hi = n - 1 - lo, n - 1 - hi
    low = tf.gather(tail, lo[:, None], batch_dims=1)[:, 0]
    high = tf.gather(tail, hi[:, None], batch_dims=1)[:, 0]
    return low * (1 - frac) + high * frac
