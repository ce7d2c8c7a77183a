"""Macenko et al. (2009) stain normalisation: per-image stain vectors and stain amounts mapped to a target.

Example:
    >>> import bloodcell as bc
    >>> normalizer = MacenkoNormalizer().fit(bc.datasets.load_sample(per_class=1))
    >>> normalizer.stain_matrix_.shape
    (3, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._validation import check_int, check_number, check_seed
from bloodcell.stain.base import Normalizer
from bloodcell.stain.density import (
    optical_density,
    optical_density_tf,
    stain_concentrations,
    stain_concentrations_tf,
    transmitted,
    transmitted_tf,
)
from bloodcell.stain.percentile import _np_masked_percentile, _tf_masked_percentile

__all__ = ["MacenkoNormalizer"]


class MacenkoNormalizer(Normalizer):
    """Macenko et al. (2009) stain normalisation: per-image stain vectors and amounts mapped to a target.

    Per image: optical density ``OD = -ln((I + 1) / (I0 + 1))`` per channel; pixels with every
    channel's OD above ``od_threshold`` (β) count as stained; the plane of the two largest
    eigenvectors of their OD covariance; the angle of each stained pixel in that plane, and the
    ``alpha``-th and ``(100 - alpha)``-th percentiles of those angles give the two stain vectors (the
    one with the larger red OD, the purple nuclear stain, first); least-squares stain concentrations
    of every pixel; their ``max_percentile``-th percentile per stain is scaled to the target's, and
    the image is rebuilt with the target's stain vectors.

    Fitting takes the median, over the training images, of the per-image stain vectors (each then
    rescaled to unit length) and of the per-image 99th-percentile concentrations.

    An image is returned unchanged when fewer than ``min_stain_fraction`` of its pixels are stained,
    when its two stain vectors are nearly parallel (cosine above ``max_stain_cosine``: one stain
    colour only), or when a stain is absent.

    Args:
        background_intensity: I0, the brightness of unstained background (255 for these images,
            whose background is white to pale yellow).
        od_threshold: β, the optical density every channel must exceed for a pixel to count as stained.
        alpha: Percentile (in %) of the extreme angles that defines the stain vectors (robust to outliers).
        max_percentile: Percentile (in %) of the concentrations taken as each image's maximum.
        min_stain_fraction: Fewer stained pixels than this fraction: the image is left unchanged.
        max_stain_cosine: Stain vectors closer than this (cosine): the image is left unchanged.
        max_images: Fit on at most this many images (a random subset drawn with ``seed``); None: all.
        seed: Seed of that subset.
        batch_size: Images processed at once by ``fit``/``transform``.

    Attributes:
        stain_matrix_: Target stain vectors, (3, 2), unit columns (nuclear stain first), after ``fit``.
        max_concentrations_: Target maximum concentrations, (2,), after ``fit``.
        n_fitted_images_: Images the target was estimated from.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> normalizer = MacenkoNormalizer().fit(data)
        >>> bool((normalizer.stain_matrix_ > 0).all()), normalizer.n_fitted_images_
        (True, 16)
    """

    method = "macenko"
    _fitted_names = ("stain_matrix_", "max_concentrations_")
    _target_keys = ("stains", "max_conc")

    def __init__(
        self,
        *,
        background_intensity: float = 255.0,
        od_threshold: float = 0.15,
        alpha: float = 1.0,
        max_percentile: float = 99.0,
        min_stain_fraction: float = 0.005,
        max_stain_cosine: float = 0.995,
        max_images: int | None = 2000,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        self.background_intensity = check_number(
            background_intensity, "background_intensity", low=1, high=255
        )
        self.od_threshold = check_number(od_threshold, "od_threshold", low=0.0, high=5.0)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=49.0)
        self.max_percentile = check_number(max_percentile, "max_percentile", low=50.0, high=100.0)
        self.min_stain_fraction = check_number(min_stain_fraction, "min_stain_fraction", low=0.0, high=1.0)
        self.max_stain_cosine = check_number(max_stain_cosine, "max_stain_cosine", low=0.0, high=1.0)
        self.max_images = check_int(max_images, "max_images", minimum=1, allow_none=True)
        self.seed = check_seed(seed)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.stain_matrix_: np.ndarray | None = None
        self.max_concentrations_: np.ndarray | None = None
        self.n_fitted_images_: int | None = None

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, as given to the constructor."""
        return {
            "background_intensity": self.background_intensity,
            "od_threshold": self.od_threshold,
            "alpha": self.alpha,
            "max_percentile": self.max_percentile,
            "min_stain_fraction": self.min_stain_fraction,
            "max_stain_cosine": self.max_stain_cosine,
            "max_images": self.max_images,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    # ---------------------------------------------------------------- NumPy
    def _np_estimate(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per-image stain matrices (N, 3, 2), max concentrations (N, 2), concentrations and validity."""
        # Images without stained pixels produce inf/NaN along the way; they are marked invalid.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return self._np_estimate_unchecked(images)

    def _np_estimate_unchecked(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n = len(images)
        od = optical_density(images.reshape(n, -1, 3), self.background_intensity)
        mask = (od > self.od_threshold).all(-1)  # (N, P) stained pixels
        count = mask.sum(1)
        weight = mask[..., None].astype(np.float64)
        mean = (od * weight).sum(1) / np.maximum(count, 1)[:, None]  # (N, 3)
        centred = (od - mean[:, None]) * weight
        cov = np.einsum("npi,npj->nij", centred, centred) / np.maximum(count - 1, 1)[:, None, None]
        _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues: column 0 is the plane's normal
        normal, plane = vectors[..., 0], vectors[..., 1:]
        # In-plane axes: the first points along the mean stained OD, so the angles of the (positive)
        # OD vectors stay well inside (-pi, pi) whatever signs eigh gave the eigenvectors.
        along = np.einsum("nij,nj->ni", plane, np.einsum("nji,nj->ni", plane, mean))
        along_norm = np.linalg.norm(along, axis=-1)
        axis1 = along / np.maximum(along_norm, 1e-12)[:, None]
        axis2 = np.cross(normal, axis1)
        angle = np.arctan2(np.einsum("npi,ni->np", od, axis2), np.einsum("npi,ni->np", od, axis1))
        low = _np_masked_percentile(angle, mask, self.alpha)
        high = _np_masked_percentile(angle, mask, 100.0 - self.alpha)
        v_low = np.cos(low)[:, None] * axis1 + np.sin(low)[:, None] * axis2
        v_high = np.cos(high)[:, None] * axis1 + np.sin(high)[:, None] * axis2
        # The purple nuclear stain absorbs red more than blue, the pink one blue more than red.
        low_first = (v_low[:, 0] - v_low[:, 2] > v_high[:, 0] - v_high[:, 2])[:, None]
        stains = np.stack([np.where(low_first, v_low, v_high), np.where(low_first, v_high, v_low)], -1)
        concentrations, gram_det = stain_concentrations(stains, od)
        max_conc = _np_masked_percentile(concentrations.reshape(2 * n, -1), None, self.max_percentile)
        max_conc = max_conc.reshape(n, 2)
        cosine = np.abs((stains[..., 0] * stains[..., 1]).sum(-1))
        valid = (
            (count >= max(self.min_stain_fraction * od.shape[1], 3))
            & (along_norm > 1e-6)
            & (cosine < self.max_stain_cosine)
            & (gram_det > 1e-9)
            & (max_conc > 1e-6).all(-1)
        )
        return {"stains": stains, "max_conc": max_conc, "conc": concentrations, "valid": valid}

    def _set_target(self, estimates: dict[str, np.ndarray]) -> None:
        stains = np.median(estimates["stains"], axis=0)
        self.stain_matrix_ = stains / np.linalg.norm(stains, axis=0, keepdims=True)
        self.max_concentrations_ = np.median(estimates["max_conc"], axis=0)

    def _np_transform(self, images: np.ndarray) -> np.ndarray:
        est = self._np_estimate(images)
        scale = self.max_concentrations_ / np.where(est["valid"][:, None], est["max_conc"], 1.0)
        od = np.einsum("ij,njp->npi", self.stain_matrix_, est["conc"] * scale[..., None])
        out = transmitted(od, self.background_intensity)
        out = out.reshape(images.shape)
        return np.where(est["valid"][:, None, None, None], out, images.astype(np.float64))

    # ---------------------------------------------------------------- TF
    def _tf_transform(self, images: Any) -> Any:
        import tensorflow as tf

        shape = tf.shape(images)
        n = shape[0]
        x = tf.reshape(images, [n, -1, 3])
        pixels = tf.shape(x)[1]
        od = optical_density_tf(x, self.background_intensity)
        mask = tf.reduce_all(od > self.od_threshold, axis=-1)
        count = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        weight = tf.cast(mask, od.dtype)[..., None]
        count_f = tf.cast(count, od.dtype)
        mean = tf.reduce_sum(od * weight, axis=1) / tf.maximum(count_f, 1.0)[:, None]
        centred = (od - mean[:, None]) * weight
        cov = tf.einsum("npi,npj->nij", centred, centred) / tf.maximum(count_f - 1.0, 1.0)[:, None, None]
        _, vectors = tf.linalg.eigh(cov)
        normal, plane = vectors[..., 0], vectors[..., 1:]
        along = tf.einsum("nij,nj->ni", plane, tf.einsum("nji,nj->ni", plane, mean))
        along_norm = tf.norm(along, axis=-1)
        axis1 = along / tf.maximum(along_norm, 1e-12)[:, None]
        axis2 = tf.linalg.cross(normal, axis1)
        angle = tf.atan2(tf.einsum("npi,ni->np", od, axis2), tf.einsum("npi,ni->np", od, axis1))
        low = _tf_masked_percentile(angle, mask, self.alpha)
        high = _tf_masked_percentile(angle, mask, 100.0 - self.alpha)
        v_low = tf.cos(low)[:, None] * axis1 + tf.sin(low)[:, None] * axis2
        v_high = tf.cos(high)[:, None] * axis1 + tf.sin(high)[:, None] * axis2
        low_first = (v_low[:, 0] - v_low[:, 2] > v_high[:, 0] - v_high[:, 2])[:, None]
        stains = tf.stack([tf.where(low_first, v_low, v_high), tf.where(low_first, v_high, v_low)], -1)
        concentrations, gram_det = stain_concentrations_tf(stains, od)
        flat = tf.reshape(concentrations, [2 * n, pixels])
        max_conc = tf.reshape(_tf_masked_percentile(flat, None, self.max_percentile), [n, 2])
        cosine = tf.abs(tf.reduce_sum(stains[..., 0] * stains[..., 1], axis=-1))
        min_count = tf.maximum(self.min_stain_fraction * tf.cast(pixels, od.dtype), 3.0)
        valid = (
            (count_f >= min_count)
            & (along_norm > 1e-6)
            & (cosine < self.max_stain_cosine)
            & (gram_det > 1e-9)
            & tf.reduce_all(max_conc > 1e-6, axis=-1)
        )
        target_max = tf.constant(self.max_concentrations_, od.dtype)
        scale = target_max / tf.where(valid[:, None], max_conc, tf.ones_like(max_conc))
        target = tf.constant(self.stain_matrix_, od.dtype)
        new_od = tf.einsum("ij,njp->npi", target, concentrations * scale[..., None])
        out = transmitted_tf(new_od, self.background_intensity)
        return tf.where(valid[:, None, None, None], tf.reshape(out, shape), images)
