"""Perceptual hashes (pHash, dHash) of image batches, and groups of hashes within a Hamming distance.

Written here with NumPy rather than taken from ``imagehash`` because that package hashes one PIL
image at a time; these functions hash a whole uint8 batch with a few array operations (area resize
and DCT folded into two small matrix products), so hashing a whole dataset costs a fraction of
the per-image loop (benchmarks/RESULTS.md, "Perceptual hash speed"). The hashes follow the same
recipes (pHash: the signs of the lowest DCT frequencies against their median; dHash: the signs of
horizontal gradients).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from bloodcell._progress import Progress
from bloodcell._validation import check_choice, is_integer, received
from bloodcell.errors import ConfigurationError

__all__ = ["perceptual_hash", "hash_groups", "hamming_distances"]

HashMethod = Literal["phash", "dhash"]
_CHUNK = 1024  # images per step: bounds the float32 working memory to a few tens of MB


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """A (dst, src) matrix whose rows average the source pixels each output pixel covers."""
    edges = np.linspace(0.0, src, dst + 1)
    pos = np.arange(src)
    # Overlap of source pixel [p, p+1) with output bin [e0, e1).
    lo = np.maximum(pos[None, :], edges[:-1, None])
    hi = np.minimum(pos[None, :] + 1, edges[1:, None])
    weights = np.clip(hi - lo, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (n, n), as scipy.fft.dct(..., norm="ortho") applies it."""
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _gray(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luminance, float32 (N, H, W)."""
    return (
        images[..., 0] * np.float32(0.299)
        + images[..., 1] * np.float32(0.587)
        + images[..., 2] * np.float32(0.114)
    )


def perceptual_hash(
    images: np.ndarray,
    method: HashMethod = "phash",
    *,
    hash_size: int = 8,
    verbose: bool = False,
) -> np.ndarray:
    """Perceptual hash of each image, as packed bits: uint8 array (N, hash_size**2 / 8).

    Args:
        images: uint8 array (N, H, W, 3).
        method: ``"phash"`` (DCT of a 4·hash_size square thumbnail; robust to JPEG re-encoding,
            brightness and contrast changes, slight blur and resizing) or ``"dhash"`` (signs of
            horizontal differences on a hash_size × (hash_size + 1) thumbnail; cheaper, a little
            less robust).
        hash_size: Side of the bit grid; the hash has ``hash_size**2`` bits (multiple of 8).
        verbose: Show progress.

    Example:
        >>> imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        >>> h = perceptual_hash(imgs)
        >>> h.shape, int(hamming_distances(h[:1], h)[0, 0])
        ((2, 8), 0)
    """
    check_choice(method, "method", ("phash", "dhash"))
    if not is_integer(hash_size) or hash_size < 2 or (hash_size * hash_size) % 8:
        raise ConfigurationError(
            f"hash_size must be an integer ≥ 2 with hash_size**2 divisible by 8. {received('hash_size', hash_size)}"
        )
    out = np.empty((len(images), hash_size * hash_size // 8), np.uint8)
    if method == "phash":
        # Area resize to a 4·hash_size square, then the lowest hash_size DCT-II frequencies: both
        # are linear, so one (hash_size, H) matrix per axis does the two at once.
        side = 4 * hash_size
        rows = _dct_matrix(side)[:hash_size] @ _area_matrix(images.shape[1], side)
        cols = _dct_matrix(side)[:hash_size] @ _area_matrix(images.shape[2], side)
    else:
        rows = _area_matrix(images.shape[1], hash_size)
        cols = _area_matrix(images.shape[2], hash_size + 1)
    with Progress(len(images), f"{method}", enabled=verbose) as bar:
        for start in range(0, len(images), _CHUNK):
            batch = images[start : start + _CHUNK]
            small = np.einsum("hy,nyx,wx->nhw", rows, _gray(batch), cols, optimize=True)
            if method == "phash":
                low = small.reshape(len(batch), -1)
                bits = low > np.median(low, axis=1, keepdims=True)
            else:
                bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(batch), -1)
            out[start : start + len(batch)] = np.packbits(bits, axis=1)
            bar.update(len(batch))
    return out


def _as_words(hashes: np.ndarray) -> np.ndarray:
    """View packed hash bytes as uint64 words (zero-padded), for fast XOR and popcount."""
    nbytes = hashes.shape[1]
    padded = np.zeros((len(hashes), -(-nbytes // 8) * 8), np.uint8)
    padded[:, :nbytes] = hashes
    return padded.view(np.uint64)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    return np.unpackbits(words.view(np.uint8), axis=-1).reshape(*words.shape, 64).sum(-1)  # pragma: no cover


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between every hash in ``a`` and every hash in ``b``: int array (len(a), len(b)).

    Example:
        >>> a = np.array([[0b1111_0000]], np.uint8); b = np.array([[0b1111_0000], [0b0000_0000]], np.uint8)
        >>> hamming_distances(a, b).tolist()
        [[0, 4]]
    """
    wa, wb = _as_words(a), _as_words(b)
    dist = np.zeros((len(wa), len(wb)), np.int32)
    for k in range(wa.shape[1]):
        dist += _popcount(wa[:, k, None] ^ wb[None, :, k])
    return dist


def hash_groups(
    hashes: np.ndarray, max_distance: int, *, verbose: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Group hashes that lie within ``max_distance`` bits of each other (single linkage).

    Returns ``(groups, nearest)``: a group id per hash (0..G-1, numbered in first-seen order;
    two hashes share an id when a chain of hashes, each within ``max_distance`` of the next, links
    them), and each hash's distance to its nearest other hash (the number of bits when it is alone).

    Identical hashes are collapsed first, so a hash repeated a thousand times costs one row of
    the all-pairs comparison, not a thousand. The comparison is brute force in blocks (XOR and
    popcount on 64-bit words): about 10⁸ pairs a second, ample for tens of thousands of images.

    Example:
        >>> h = np.array([[0], [1], [255], [0]], np.uint8)
        >>> groups, nearest = hash_groups(h, 1)
        >>> groups.tolist(), nearest.tolist()
        ([0, 0, 1, 0], [0, 1, 7, 0])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_bits = hashes.shape[1] * 8
    unique, first, inverse = np.unique(hashes, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    words = _as_words(unique)
    nearest_u = np.full(len(unique), n_bits, np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    step = 1024
    with Progress(len(unique), "comparing hashes", enabled=verbose) as bar:
        for start in range(0, len(unique), step):
            block = words[start : start + step]
            dist = np.zeros((len(block), len(words) - start), np.int32)
            for k in range(words.shape[1]):
                dist += _popcount(block[:, k, None] ^ words[None, start:, k])
            # Each pair is seen once (upper triangle); the diagonal is a hash against itself.
            local = np.arange(len(block))
            dist[local, local] = n_bits + 1
            dist[np.tril_indices(len(block), -1)] = n_bits + 1
            nearest_u[start : start + len(block)] = np.minimum(
                nearest_u[start : start + len(block)], dist.min(axis=1)
            )
            np.minimum.at(nearest_u, np.arange(start, len(unique)), dist.min(axis=0))
            ii, jj = np.nonzero(dist <= max_distance)
            rows.append(ii + start)
            cols.append(jj + start)
            bar.update(len(block))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(len(unique), len(unique)))
    _, comp_u = connected_components(graph, directed=False)
    comp = comp_u[inverse]
    # Renumber components by the position of their first image.
    _, first_img, comp_inv = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.empty(len(first_img), np.int64)
    rank[np.argsort(first_img)] = np.arange(len(first_img))
    groups = rank[comp_inv.reshape(-1)]
    counts = np.bincount(inverse, minlength=len(unique))
    nearest = np.where(counts[inverse] > 1, 0, nearest_u[inverse])
    return groups, nearest
