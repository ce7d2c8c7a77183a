"""Perceptual hashes of real cells against a reference implementation."""

from __future__ import annotations

import numpy as np

import bloodcell as bc


def test_perceptual_hash_matches_scipy_dct_reference(sample):
    from scipy.fft import dctn

    imgs = sample.images[:5]
    ours = bc.outliers.perceptual_hash(imgs, "phash", hash_size=8)
    gray = imgs.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    small = gray.reshape(5, 32, 3, 32, 3).mean(axis=(2, 4))  # 96 → 32 by 3×3 area averaging
    low = dctn(small, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(5, -1)
    ref = np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)
    assert bc.outliers.hamming_distances(ours, ref).diagonal().max() <= 1
