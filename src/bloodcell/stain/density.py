"""Optical density and stain vectors: the colour science that stain normalisers, stain augmenters and
the stain corruptions share.

One convention for the whole library. Light that passes a stained cell is attenuated by each dye
(Beer–Lambert), so colour is handled as *optical density* per channel, in which the dyes add up:

    OD = −ln((I + 1) / (I0 + 1)),     I = (I0 + 1)·exp(−OD) − 1,

with ``I`` a pixel value in 0–255 and ``I0`` the brightness of unstained background (255: a white
background has OD 0; the +1 keeps black finite). Densities are natural-log; an augmenter that
quotes decadic densities (microscopists' absorbance, ``OD / ln 10``) converts with :data:`LN10`.

A stain is a unit vector of the optical density it adds per unit of dye (:data:`STAIN_VECTORS`);
an image's stain amounts are its densities solved against those vectors (:data:`UNMIX` for the
three fixed vectors, :func:`stain_concentrations` for two estimated ones by least squares).

The NumPy functions compute in float64 and never import TensorFlow; the ``*_tf`` twins run in the
graph in the input's float type.

Example:
    >>> import numpy as np
    >>> od = optical_density(np.array([[127, 0]], np.uint8))
    >>> od.round(3).tolist(), bool(optical_density(255) == 0)
    ([[0.693, 5.545]], True)
    >>> transmitted(od).round(6).tolist()
    [[127.0, 0.0]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND",
    "LN10",
    "STAIN_VECTORS",
    "UNMIX",
    "optical_density",
    "optical_density_tf",
    "stain_concentrations",
    "stain_concentrations_tf",
    "transmitted",
    "transmitted_tf",
]

#: Brightness of unstained background, ``I0``: the white of a bright-field image.
BACKGROUND = 255.0

#: ln 10: natural-log density = ``LN10`` × decadic density.
LN10 = math.log(10.0)

#: Optical-density colour of haematoxylin, eosin and DAB (rows; Ruifrok & Johnston 2001), unit length.
STAIN_VECTORS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float64)
STAIN_VECTORS = STAIN_VECTORS / np.linalg.norm(STAIN_VECTORS, axis=1, keepdims=True)

#: Densities (row vectors) ``@ UNMIX`` = the amounts of the three stains of :data:`STAIN_VECTORS`.
UNMIX = np.linalg.inv(STAIN_VECTORS)


def optical_density(images: Any, background: float = BACKGROUND) -> np.ndarray:
    """Optical density, float64, of pixel values in 0–255 (any shape): ``−ln((I + 1) / (I0 + 1))``."""
    return -np.log((np.asarray(images, np.float64) + 1.0) / (background + 1.0))


def transmitted(od: Any, background: float = BACKGROUND) -> np.ndarray:
    """Pixel values (float64, unclipped) of optical densities: the inverse of :func:`optical_density`."""
    return (background + 1.0) * np.exp(-np.asarray(od, np.float64)) - 1.0


def optical_density_tf(images: Any, background: float = BACKGROUND) -> Any:
    """:func:`optical_density` in the graph, in the input's float type (integers become float32)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    return -tf.math.log((x + 1.0) / (background + 1.0))


def transmitted_tf(od: Any, background: float = BACKGROUND) -> Any:
    """:func:`transmitted` in the graph; ``exp`` rather than a power, several times faster."""
    import tensorflow as tf

    return (background + 1.0) * tf.exp(-od) - 1.0


def stain_concentrations(stains: np.ndarray, od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares amounts (N, 2, P) of two stains in OD pixels (N, P, 3), for stain matrices (N, 3, 2).

    Also returns the determinant of each Gram matrix (N,): near 0 when the two stains are parallel
    and the amounts mean nothing.

    Example:
        >>> stains = STAIN_VECTORS[:2].T[None]                    # haematoxylin and eosin
        >>> od = (0.5 * STAIN_VECTORS[0] + 0.2 * STAIN_VECTORS[1])[None, None]
        >>> amounts, det = stain_concentrations(stains, od)
        >>> amounts[0, :, 0].round(6).tolist()
        [0.5, 0.2]
    """
    gram = np.einsum("nki,nkj->nij", stains, stains)  # (N, 2, 2)
    det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] * gram[:, 1, 0]
    safe = np.where(np.abs(det) > 1e-12, det, 1.0)
    inverse = (
        np.stack(
            [np.stack([gram[:, 1, 1], -gram[:, 0, 1]], -1), np.stack([-gram[:, 1, 0], gram[:, 0, 0]], -1)], -2
        )
        / safe[:, None, None]
    )
    pinv = np.einsum("nij,nkj->nik", inverse, stains)  # (N, 2, 3)
    return np.einsum("nik,npk->nip", pinv, od), det


def stain_concentrations_tf(stains: Any, od: Any) -> tuple[Any, Any]:
    """:func:`stain_concentrations` in the graph."""
    import tensorflow as tf

    gram = tf.einsum("nki,nkj->nij", stains, stains)
    det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] * gram[:, 1, 0]
    safe = tf.where(tf.abs(det) > 1e-12, det, tf.ones_like(det))
    inverse = (
        tf.stack(
            [tf.stack([gram[:, 1, 1], -gram[:, 0, 1]], -1), tf.stack([-gram[:, 1, 0], gram[:, 0, 0]], -1)], -2
        )
        / safe[:, None, None]
    )
    pinv = tf.einsum("nij,nkj->nik", inverse, stains)
    return tf.einsum("nik,npk->nip", pinv, od), det
