"""Stain normalisation: map each image's staining onto a target learnt from the training images.

Slides stained in another lab, or on another day, look different (redder eosin, paler nuclei), and
a classifier trained on one lab's colours fails on the other's. Stain normalisation removes that
difference before the model sees the image. Two methods, in the scikit-learn manner (``fit`` on
training images, then ``transform``):

- :class:`MacenkoNormalizer` (Macenko et al., 2009): separates each image into two stains (for
  May–Grünwald–Giemsa/Wright smears: the purple of the nuclei and the pink of cytoplasm, granules and
  red cells) in optical density space, then rebuilds it with the target's stain colours and stain
  amounts. Changes hue as well as intensity.
- :class:`ReinhardNormalizer` (Reinhard et al., 2001): matches the mean and standard deviation of
  each channel in the decorrelated lαβ colour space. Cheaper, moves the whole colour distribution,
  knows nothing about stains.

:class:`StainNormalization` is the same transform as a Keras layer: put it in the model (see
``stain_normalization=`` of :func:`bloodcell.build_classifier`) and it is saved in the ``.keras``
file with its fitted target, so inference applies exactly the transform used in training. The
layer runs batched TF ops (``tf.linalg.eigh`` on 3×3 covariances, percentiles by ``top_k`` of the tail and gather,
masked statistics); the NumPy ``transform`` computes the same thing in float64. They agree to
within one grey level on real images (the float32 layer versus the rounded float64 NumPy result).

Images that carry no stain to estimate from (blank, white, too few stained pixels, a single stain
colour) come back unchanged, never as NaN.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> normalizer = bc.stain.MacenkoNormalizer().fit(data)
    >>> normalizer.stain_matrix_.shape, normalizer.max_concentrations_.shape
    ((3, 2), (2,))
    >>> normalizer.transform(data.images[:2]).dtype
    dtype('uint8')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDtypeError, NotFittedError

__all__ = [
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "StainNormalization",
    "METHODS",
    "from_config",
    "make_normalizer",
]

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


# ---------------------------------------------------------------------- shared helpers
def _as_image_batch(images: Any, what: str) -> np.ndarray:
    """uint8 (N, H, W, 3) from a BloodCellDataset, an (N, H, W, 3) or one (H, W, 3) uint8 array."""
    from bloodcell.datasets import BloodCellDataset, as_images

    if isinstance(images, BloodCellDataset):
        images.check_not_empty(what)
        return images.images
    arr = np.asarray(images)
    arr = as_images(arr[None] if arr.ndim == 3 else arr, name=f"{what} images")
    if len(arr) == 0:
        raise EmptyDatasetError(f"{what} got no images.")
    return arr


def _check_number(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}.")
    if not low <= float(value) <= high:
        raise ConfigurationError(f"{name} must lie in {low}..{high}, got {value!r}.")
    return float(value)


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


class _Normalizer:
    """What both normalisers share: parameters, fitting over batches, transform, config."""

    method: str = ""
    _fitted_names: tuple[str, ...] = ()  # the fitted target's attributes
    _target_keys: tuple[str, ...] = ()  # the per-image estimates the target is the median of

    # ---------------------------------------------------------------- sklearn-style API
    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run (or fitted values were given)."""
        return all(getattr(self, name, None) is not None for name in self._fitted_names)

    def _check_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__}.{what} needs a fitted target: call fit(training_images) first."
            )

    def fit(self, images: Any) -> Any:
        """Learn the target from training images: the median of the per-image estimates.

        Images that carry no stain to estimate from (see the class docstring) are left out. At most
        ``max_images`` images, drawn at random with ``seed``, are used.

        Args:
            images: A :class:`~bloodcell.datasets.BloodCellDataset` or uint8 images (N, H, W, 3).

        Returns:
            The normaliser itself, fitted.

        Raises:
            EmptyDatasetError: no image (or no usable image) to fit on.
        """
        arr = _as_image_batch(images, f"{type(self).__name__}.fit()")
        if self.max_images is not None and len(arr) > self.max_images:
            pick = np.random.default_rng(self.seed).choice(len(arr), self.max_images, replace=False)
            arr = arr[np.sort(pick)]
        # Keep only the per-image summaries: the per-pixel arrays would hold N x P floats.
        estimates = [
            {key: est[key] for key in (*self._target_keys, "valid")}
            for est in map(self._np_estimate, np.array_split(arr, -(-len(arr) // self.batch_size)))
        ]
        merged = {key: np.concatenate([e[key] for e in estimates]) for key in (*self._target_keys, "valid")}
        valid = merged.pop("valid")
        if not valid.any():
            raise EmptyDatasetError(
                f"{type(self).__name__}.fit(): none of the {len(arr)} images has enough stained pixels "
                "to estimate a target from; fit on real, stained training images."
            )
        self._set_target({key: value[valid] for key, value in merged.items()})
        self.n_fitted_images_ = int(valid.sum())
        return self

    def transform(self, images: Any) -> Any:
        """Normalise images to the fitted target (NumPy, float64, in batches of ``batch_size``).

        Args:
            images: uint8 images (N, H, W, 3) or one image (H, W, 3), or a
                :class:`~bloodcell.datasets.BloodCellDataset`.

        Returns:
            uint8 images of the same shape (a dataset with its images replaced, for a dataset).
            Images with nothing to estimate the stain from are returned unchanged.
        """
        from bloodcell.datasets import BloodCellDataset

        self._check_fitted("transform()")
        arr = _as_image_batch(images, f"{type(self).__name__}.transform()")
        out = np.empty_like(arr)
        for start in range(0, len(arr), self.batch_size):
            chunk = arr[start : start + self.batch_size]
            out[start : start + len(chunk)] = np.clip(np.rint(self._np_transform(chunk)), 0, 255)
        if isinstance(images, BloodCellDataset):
            return images.replace(images=out)
        return out[0] if np.asarray(images).ndim == 3 else out

    def fit_transform(self, images: Any) -> Any:
        """:meth:`fit` then :meth:`transform` on the same images."""
        return self.fit(images).transform(images)

    def to_layer(self, name: str = "stain_normalization") -> StainNormalization:
        """The fitted transform as a Keras layer (for a model; saved with it)."""
        self._check_fitted("to_layer()")
        return StainNormalization(self, name=name)

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters and fitted target as plain JSON values (``from_config`` rebuilds it)."""
        config: dict[str, Any] = {"method": self.method, **self.get_params()}
        for name in self._fitted_names:
            value = getattr(self, name, None)
            config[name] = None if value is None else np.asarray(value, np.float64).tolist()
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Rebuild a normaliser from :meth:`get_config`."""
        config = dict(config)
        method = config.pop("method", cls.method)
        if method != cls.method:
            raise ConfigurationError(f"{cls.__name__}.from_config() got a {method!r} config.")
        fitted = {name: config.pop(name, None) for name in cls._fitted_names}
        config.pop("n_fitted_images_", None)
        normalizer = cls(**config)
        for name, value in fitted.items():
            setattr(normalizer, name, None if value is None else np.asarray(value, np.float64))
        return normalizer

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params}){'' if self.is_fitted else ' (not fitted)'}"

    # ---------------------------------------------------------------- per method
    def _np_estimate(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_target(self, estimates: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _np_transform(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _tf_transform(self, images: Any) -> Any:
        raise NotImplementedError


# ---------------------------------------------------------------------- Macenko
class MacenkoNormalizer(_Normalizer):
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
        self.background_intensity = _check_number(
            "background_intensity", background_intensity, low=1, high=255
        )
        self.od_threshold = _check_number("od_threshold", od_threshold, high=5.0)
        self.alpha = _check_number("alpha", alpha, high=49.0)
        self.max_percentile = _check_number("max_percentile", max_percentile, low=50.0, high=100.0)
        self.min_stain_fraction = _check_number("min_stain_fraction", min_stain_fraction)
        self.max_stain_cosine = _check_number("max_stain_cosine", max_stain_cosine)
        self.max_images = _check_count("max_images", max_images, allow_none=True)
        self.seed = int(seed)
        self.batch_size = _check_count("batch_size", batch_size)
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
        od = -np.log((images.reshape(n, -1, 3).astype(np.float64) + 1.0) / (self.background_intensity + 1.0))
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
        concentrations, gram_det = _np_concentrations(stains, od)
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
        out = (self.background_intensity + 1.0) * np.exp(-od) - 1.0
        out = out.reshape(images.shape)
        return np.where(est["valid"][:, None, None, None], out, images.astype(np.float64))

    # ---------------------------------------------------------------- TF
    def _tf_transform(self, images: Any) -> Any:
        import tensorflow as tf

        shape = tf.shape(images)
        n = shape[0]
        x = tf.reshape(images, [n, -1, 3])
        pixels = tf.shape(x)[1]
        od = -tf.math.log((x + 1.0) / (self.background_intensity + 1.0))
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
        concentrations, gram_det = _tf_concentrations(stains, od)
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
        out = (self.background_intensity + 1.0) * tf.exp(-new_od) - 1.0
        return tf.where(valid[:, None, None, None], tf.reshape(out, shape), images)


def _np_concentrations(stains: np.ndarray, od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares stain amounts (N, 2, P) of OD pixels (N, P, 3) for stain matrices (N, 3, 2)."""
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


def _tf_concentrations(stains: Any, od: Any) -> tuple[Any, Any]:
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


# ---------------------------------------------------------------------- Reinhard
class ReinhardNormalizer(_Normalizer):
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
            raise ConfigurationError(f"mask_background must be True or False, got {mask_background!r}.")
        self.mask_background = bool(mask_background)
        self.od_threshold = _check_number("od_threshold", od_threshold, high=5.0)
        self.min_stain_fraction = _check_number("min_stain_fraction", min_stain_fraction)
        self.max_images = _check_count("max_images", max_images, allow_none=True)
        self.seed = int(seed)
        self.batch_size = _check_count("batch_size", batch_size)
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
            mask = (-np.log(unit) > self.od_threshold).all(-1)
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
            mask = tf.reduce_all(-tf.math.log(unit) > self.od_threshold, axis=-1)
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


def _check_count(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        extra = " or None" if allow_none else ""
        raise ConfigurationError(f"{name} must be a positive integer{extra}, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------- names and configs
METHODS: dict[str, type[_Normalizer]] = {"macenko": MacenkoNormalizer, "reinhard": ReinhardNormalizer}


def make_normalizer(method: str, **params: Any) -> MacenkoNormalizer | ReinhardNormalizer:
    """An unfitted normaliser by name (``"macenko"`` or ``"reinhard"``) with its keyword arguments.

    Example:
        >>> make_normalizer("reinhard", mask_background=True)
        ReinhardNormalizer(mask_background=True, ...) (not fitted)
    """
    key = str(method).lower()
    if key not in METHODS:
        raise ConfigurationError(f"Unknown stain normalisation {method!r}; choose from {sorted(METHODS)}.")
    return METHODS[key](**params)  # type: ignore[return-value]


def from_config(config: Mapping[str, Any]) -> MacenkoNormalizer | ReinhardNormalizer:
    """Rebuild a (fitted) normaliser from its ``get_config()`` dictionary.

    Example:
        >>> import bloodcell as bc
        >>> fitted = MacenkoNormalizer().fit(bc.datasets.load_sample(per_class=1))
        >>> copy = from_config(fitted.get_config())
        >>> bool((copy.stain_matrix_ == fitted.stain_matrix_).all())
        True
    """
    if not isinstance(config, Mapping) or "method" not in config:
        raise ConfigurationError(
            "A stain normaliser config is the dict from MacenkoNormalizer/ReinhardNormalizer.get_config() "
            f"(with a 'method' key); got {config!r}."
        )
    key = str(config["method"]).lower()
    if key not in METHODS:
        raise ConfigurationError(
            f"Unknown stain normalisation {config['method']!r}; choose from {sorted(METHODS)}."
        )
    return METHODS[key].from_config(config)  # type: ignore[return-value]


# ---------------------------------------------------------------------- Keras layer
@keras.saving.register_keras_serializable(package="bloodcell")
class StainNormalization(keras.layers.Layer):
    """A fitted stain normaliser as a Keras layer: images in 0–255 in, normalised images in 0–255 out.

    The fitted target is part of the layer's config, so it is saved in the ``.keras`` file and the
    loaded model (safe mode) applies the same transform. The layer has no weights and does not train;
    it computes in float32 (whatever the model's mixed-precision policy) and clips to 0–255.

    Args:
        normalizer: A fitted :class:`MacenkoNormalizer` / :class:`ReinhardNormalizer`, or its
            ``get_config()`` dictionary (how Keras rebuilds the layer).
        **kwargs: Keras layer arguments (``name``...).

    Example:
        >>> import bloodcell as bc, numpy as np
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> layer = StainNormalization(ReinhardNormalizer().fit(data))
        >>> out = layer(data.images[:4].astype("float32"))
        >>> tuple(out.shape), bool(np.abs(np.asarray(out) - layer.normalizer.transform(data.images[:4])).max() <= 1)
        ((4, 96, 96, 3), True)
    """

    def __init__(self, normalizer: Any, **kwargs: Any) -> None:
        kwargs.setdefault("name", "stain_normalization")
        kwargs["dtype"] = "float32"  # eigh and logarithms need float32, not a mixed-precision float16
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(normalizer, Mapping):
            normalizer = from_config(normalizer)
        if not isinstance(normalizer, _Normalizer):
            raise InvalidDtypeError(
                "StainNormalization takes a fitted MacenkoNormalizer or ReinhardNormalizer (or its config), "
                f"got {type(normalizer).__name__}."
            )
        normalizer._check_fitted("StainNormalization")
        self.normalizer = normalizer

    def call(self, images: Any) -> Any:
        import tensorflow as tf

        x = tf.cast(images, tf.float32)
        return tf.clip_by_value(self.normalizer._tf_transform(x), 0.0, 255.0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["normalizer"] = self.normalizer.get_config()
        return config
