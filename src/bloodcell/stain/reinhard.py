"""Reinhard et al. (2001) colour transfer: match each lαβ channel's mean and standard deviation to a target.

Example:
    >>> import bloodcell as bc
    >>> normalizer = ReinhardNormalizer().fit(bc.datasets.load_sample(per_class=1))
    >>> normalizer.means_.shape
    (3,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._validation import check_int, check_number, check_seed, received
from bloodcell.errors import ConfigurationError
from bloodcell.stain.base import Normalizer
from bloodcell.stain.density import optical_density, optical_density_tf

__all__ = ["ReinhardNormalizer"]

# Ruderman et al.'s RGB -> LMS cone response matrix, as used by Reinhard et al. (2001).
_RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]], dtype=np.float64
)
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
# log10(LMS) -> lαβ: an orthogonal decorrelating transform (rows: l, α, β).
_LOG_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
_LAB_TO_LOG_LMS = np.linalg.inv(_LOG_LMS_TO_LAB)


class ReinhardNormalizer(Normalizer):
    """Reinhard et al. (2001) colour transfer: match each lαβ channel's mean and standard deviation.

    Per image: RGB (as ``(I + 1) / 256``) to LMS cone space, log10, then Ruderman's decorrelating
    lαβ transform; every pixel is shifted and scaled, ``(x - mean) / std * target_std + target_mean``
    per channel, and converted back. With ``mask_background`` the means and standard deviations are
    measured on stained pixels only (every channel's optical density ``-ln((I + 1) / 256)`` above
    ``od_threshold``), so the amount of pale background in a crop does not sway them; the transform
    still applies to every pixel.

    Fitting takes the median, over the training images, of the per-image means and standard
    deviations. An image is returned unchanged when a channel's standard deviation is (nearly) zero
    (a blank image) or, with ``mask_background``, when fewer than ``min_stain_fraction`` of its
    pixels are stained.

    Args:
        mask_background: Measure the statistics on stained pixels only (default: the whole image,
            as in Reinhard et al.).
        od_threshold: Optical density every channel must exceed for a pixel to count as stained.
        min_stain_fraction: With ``mask_background``, fewer stained pixels than this fraction: the
            image is left unchanged.
        max_images: Fit on at most this many images (a random subset drawn with ``seed``); None: all.
        seed: Seed of that subset.
        batch_size: Images processed at once by ``fit``/``transform``.

    Attributes:
        means_: Target lαβ means, (3,), after ``fit``.
        stds_: Target lαβ standard deviations, (3,), after ``fit``.
        n_fitted_images_: Images the target was estimated from.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> normalizer = ReinhardNormalizer().fit(data)
        >>> normalizer.means_.shape, bool((normalizer.stds_ > 0).all())
        ((3,), True)
    """

    method = "reinhard"
    _fitted_names = ("means_", "stds_")
    _target_keys = ("means", "stds")

    def __init__(
        self,
        *,
        mask_background: bool = False,
        od_threshold: float = 0.15,
        min_stain_fraction: float = 0.005,
        max_images: int | None = 2000,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        if not isinstance(mask_background, (bool, np.bool_)):
            raise ConfigurationError(
                f"mask_background must be True or False. {received('mask_background', mask_background)}"
            )
        self.mask_background = bool(mask_background)
        self.od_threshold = check_number(od_threshold, "od_threshold", low=0.0, high=5.0)
        self.min_stain_fraction = check_number(min_stain_fraction, "min_stain_fraction", low=0.0, high=1.0)
        self.max_images = check_int(max_images, "max_images", minimum=1, allow_none=True)
        self.seed = check_seed(seed)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.means_: np.ndarray | None = None
        self.stds_: np.ndarray | None = None
        self.n_fitted_images_: int | None = None

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, as given to the constructor."""
        return {
            "mask_background": self.mask_background,
            "od_threshold": self.od_threshold,
            "min_stain_fraction": self.min_stain_fraction,
            "max_images": self.max_images,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def _np_estimate(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n = len(images)
        unit = (images.reshape(n, -1, 3).astype(np.float64) + 1.0) / 256.0
        lab = np.log10(unit @ _RGB_TO_LMS.T) @ _LOG_LMS_TO_LAB.T  # (N, P, 3)
        if self.mask_background:
            mask = (optical_density(images.reshape(n, -1, 3)) > self.od_threshold).all(-1)
        else:
            mask = np.ones(lab.shape[:2], bool)
        count = mask.sum(1)
        weight = mask[..., None].astype(np.float64)
        mean = (lab * weight).sum(1) / np.maximum(count, 1)[:, None]
        std = np.sqrt((((lab - mean[:, None]) ** 2) * weight).sum(1) / np.maximum(count, 1)[:, None])
        valid = (count >= max(self.min_stain_fraction * lab.shape[1], 3)) & (std > 1e-4).all(-1)
        return {"means": mean, "stds": std, "lab": lab, "valid": valid}

    def _set_target(self, estimates: dict[str, np.ndarray]) -> None:
        self.means_ = np.median(estimates["means"], axis=0)
        self.stds_ = np.median(estimates["stds"], axis=0)

    def _np_transform(self, images: np.ndarray) -> np.ndarray:
        est = self._np_estimate(images)
        std = np.where(est["valid"][:, None], est["stds"], 1.0)
        lab = (est["lab"] - est["means"][:, None]) / std[:, None] * self.stds_ + self.means_
        unit = np.exp((lab @ _LAB_TO_LOG_LMS.T) * np.log(10.0)) @ _LMS_TO_RGB.T  # exp: faster than 10**
        out = (unit * 256.0 - 1.0).reshape(images.shape)
        return np.where(est["valid"][:, None, None, None], out, images.astype(np.float64))

    def _tf_transform(self, images: Any) -> Any:
        import tensorflow as tf

        shape = tf.shape(images)
        n = shape[0]
        unit = (tf.reshape(images, [n, -1, 3]) + 1.0) / 256.0
        dtype = unit.dtype

        def matmul(x: Any, matrix: np.ndarray) -> Any:
            return tf.einsum("npi,ji->npj", x, tf.constant(matrix, dtype))

        log10 = np.log(10.0)
        lab = matmul(tf.math.log(matmul(unit, _RGB_TO_LMS)) / log10, _LOG_LMS_TO_LAB)
        if self.mask_background:
            mask = tf.reduce_all(
                optical_density_tf(tf.reshape(images, [n, -1, 3])) > self.od_threshold, axis=-1
            )
        else:
            mask = tf.ones(tf.shape(lab)[:2], tf.bool)
        weight = tf.cast(mask, dtype)[..., None]
        count = tf.reduce_sum(weight[..., 0], axis=1)
        mean = tf.reduce_sum(lab * weight, axis=1) / tf.maximum(count, 1.0)[:, None]
        std = tf.sqrt(
            tf.reduce_sum(tf.square(lab - mean[:, None]) * weight, axis=1) / tf.maximum(count, 1.0)[:, None]
        )
        min_count = tf.maximum(self.min_stain_fraction * tf.cast(tf.shape(lab)[1], dtype), 3.0)
        valid = (count >= min_count) & tf.reduce_all(std > 1e-4, axis=-1)
        std = tf.where(valid[:, None], std, tf.ones_like(std))
        target_mean = tf.constant(self.means_, dtype)
        target_std = tf.constant(self.stds_, dtype)
        lab = (lab - mean[:, None]) / std[:, None] * target_std + target_mean
        unit = matmul(tf.exp(matmul(lab, _LAB_TO_LOG_LMS) * log10), _LMS_TO_RGB)
        out = tf.reshape(unit * 256.0 - 1.0, shape)
        return tf.where(valid[:, None, None, None], out, images)
