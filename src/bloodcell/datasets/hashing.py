"""Content digests of images, for finding byte-identical copies (splits, duplicate detection)."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["image_digests", "identical_groups"]


def image_digests(images: np.ndarray) -> np.ndarray:
    """A 16-byte BLAKE2b digest of each image's pixels (shape included), as an ``S16`` array.

    Two images get the same digest exactly when their pixels are identical (up to the
    negligible chance of a 128-bit collision).

    Example:
        >>> imgs = np.zeros((3, 4, 4, 3), np.uint8); imgs[2] = 1
        >>> d = image_digests(imgs)
        >>> bool(d[0] == d[1]), bool(d[0] == d[2])
        (True, False)
    """
    shape = repr(images.shape[1:]).encode()
    out = np.empty(len(images), "S16")
    for i in range(len(images)):
        h = hashlib.blake2b(shape, digest_size=16)
        h.update(np.ascontiguousarray(images[i]).data)
        out[i] = h.digest()
    return out


def identical_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image: images with identical pixels share an id; ids are 0..G-1 in first-seen order.

    Example:
        >>> imgs = np.zeros((3, 4, 4, 3), np.uint8); imgs[1] = 9
        >>> identical_groups(imgs).tolist()
        [0, 1, 0]
    """
    digests = image_digests(images)
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    # np.unique sorts by digest; renumber groups by the position of their first image.
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)]
