"""Stain profile: images whose colour statistics do not look like a stained blood smear."""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._progress import Progress
from bloodcell._validation import check_int, check_positive
from bloodcell.errors import EmptyDatasetError
from bloodcell.outliers.base import Detection, FeatureCache, ImageData, OutlierDetector, as_image_data

__all__ = ["StainProfile", "colour_features"]

#: The colour features, in column order of :func:`colour_features`.
FEATURES = (
    "mean_red", "mean_green", "mean_blue",
    "std_red", "std_green", "std_blue",
    "chroma",
    "luminance_p5", "luminance_p50", "luminance_p95",
)  # fmt: skip
_CHUNK = 512


def colour_features(images: np.ndarray, *, verbose: bool = False) -> np.ndarray:
    """Ten colour statistics per image, float64 (N, 10), columns as in ``FEATURES``.

    Mean and standard deviation of each channel, mean chroma (``max(R,G,B) - min(R,G,B)``) and
    the 5th, 50th and 95th percentiles of the luminance, over every second pixel in each direction
    (colour statistics need no more, and it quarters the work).

    Example:
        >>> imgs = np.zeros((1, 8, 8, 3), np.uint8); imgs[..., 0] = 255
        >>> colour_features(imgs)[0, :3].tolist(), float(colour_features(imgs)[0, 6])
        ([255.0, 0.0, 0.0], 255.0)
    """
    out = np.empty((len(images), len(FEATURES)), np.float64)
    with Progress(len(images), "colour features", enabled=verbose) as bar:
        for start in range(0, len(images), _CHUNK):
            x = images[start : start + _CHUNK, ::2, ::2]
            n = len(x)
            # Channels first, so every reduction runs over contiguous memory.
            c = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(n, 3, -1)
            m = c.shape[2]
            f = c.astype(np.float32)
            mean = f.sum(axis=2) / m
            f -= mean[:, :, None]
            out[start : start + n, 0:3] = mean
            out[start : start + n, 3:6] = np.sqrt(np.einsum("ncp,ncp->nc", f, f) / m)
            hi = np.maximum(np.maximum(c[:, 0], c[:, 1]), c[:, 2])
            lo = np.minimum(np.minimum(c[:, 0], c[:, 1]), c[:, 2])
            out[start : start + n, 6] = (hi - lo).sum(axis=1, dtype=np.uint32) / m
            # 8-bit luminance fits uint16 (77 + 150 + 29 = 256); sorting 16-bit keys is a radix sort.
            c16 = c.astype(np.uint16)
            lum = np.sort((77 * c16[:, 0] + 150 * c16[:, 1] + 29 * c16[:, 2]) >> 8, axis=1)
            for col, q in zip((7, 8, 9), (0.05, 0.5, 0.95)):
                out[start : start + n, col] = lum[:, min(int(q * m), m - 1)]
            bar.update(n)
    return out


class StainProfile(OutlierDetector):
    """Images whose colours do not look like the dataset's stained smears (cartoons, photos, screenshots).

    :meth:`fit` describes each distinct image by ten colour statistics (:func:`colour_features`)
    and scales each statistic by its median and median absolute deviation (MAD). The score of an
    image is the distance to its ``n_neighbors``-th nearest fitted image in that space, divided by
    the median of the same distance over the fitted images: about 1 for an ordinary image, large
    for an image far from every group of smears.

    Why not a single robust Gaussian (e.g. :class:`~sklearn.covariance.MinCovDet`)? Real smear
    collections are multi-modal: the PBC images hold a second acquisition batch (about 2 %, with a
    lilac-grey background) whose robust Mahalanobis distance from the main batch (up to about 75)
    was as large as that of photographs (from about 70). A batch of hundreds of similar real images
    is dense, so its images have near neighbours and pass. Nor the local outlier factor: many
    scattered contaminants are each other's neighbours, and LOF then rates them as ordinary
    (it caught 20 % of the unique non-blood images in the project's benchmark, this score all).

    Robust to the data holding outliers: medians and MADs ignore a minority of odd images, and
    identical feature rows count once, so 1,600 copies of one cartoon frame are one isolated point,
    not a dense cluster. A group of more than ``n_neighbors`` *different* contaminants close
    together in colour would protect itself; raise ``n_neighbors`` if you expect one.

    Args:
        n_neighbors: Which neighbour's distance is the score (capped at the distinct images − 1).
        threshold: Score above which an image is flagged (reason ``"not_blood_smear"``). On the
            project's benchmark (pbc96/train plus planted images) the default 8.0 flagged 2 of
            11,856 real cells and, together with :class:`ImageQuality` (which catches grey and
            dark photographs), 397 of 400 unique non-blood images; 5.0 flagged 17 real cells and
            all 400. No cell of the bundled 800-image sample scores above 8.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.load_sample()
        >>> green = np.zeros((1, 96, 96, 3), np.uint8); green[..., 1] = 180; green[:, ::8] = 40
        >>> det = StainProfile().fit(data)
        >>> bool(det.predict(green)[0]), int(det.predict(data).sum()) <= 4
        (True, True)
    """

    name = "stain_profile"
    reasons = ("not_blood_smear",)

    def __init__(self, *, n_neighbors: int = 20, threshold: float = 8.0) -> None:
        self.n_neighbors = n_neighbors
        self.threshold = threshold

    def _check(self) -> None:
        check_int(self.n_neighbors, "n_neighbors", minimum=1)
        check_positive(self.threshold, "threshold")

    def _kth_distance(self, z: np.ndarray) -> np.ndarray:
        """Distance of each row to its k-th nearest fitted row, not counting the row itself."""
        dist, _ = self.neighbors_.kneighbors(z, n_neighbors=self.k_ + 1)
        # A row that is itself in the fitted set finds itself first, at distance 0 (fitted rows are distinct).
        return np.where(dist[:, 0] == 0, dist[:, self.k_], dist[:, self.k_ - 1])

    def _fit(self, data: ImageData, verbose: bool) -> None:
        from sklearn.neighbors import NearestNeighbors

        self._check()
        self._cache = FeatureCache()
        feats = self._cache.put(data.images, colour_features(data.images, verbose=verbose))
        unique = np.unique(feats, axis=0)
        if len(unique) < 3:
            raise EmptyDatasetError(
                f"StainProfile needs at least 3 distinct images to learn from, got {len(unique)}."
            )
        self.center_ = np.median(unique, axis=0)
        # MAD scaled to a standard deviation; floored so a constant feature cannot divide by ~0.
        self.scale_ = np.maximum(1.4826 * np.median(np.abs(unique - self.center_), axis=0), 0.5)
        z = (unique - self.center_) / self.scale_
        self.k_ = int(min(self.n_neighbors, len(unique) - 1))
        self.reference_ = z
        self.neighbors_ = NearestNeighbors().fit(z)
        self.typical_distance_ = float(max(np.median(self._kth_distance(z)), 1e-6))

    def _get_state(self) -> dict[str, Any]:
        return {
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "k": self.k_,
            "typical_distance": self.typical_distance_,
            "reference": self.reference_.tolist(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        from sklearn.neighbors import NearestNeighbors

        self._check()
        self.center_ = np.asarray(state["center"], np.float64)
        self.scale_ = np.asarray(state["scale"], np.float64)
        self.k_ = int(state["k"])
        self.typical_distance_ = float(state["typical_distance"])
        self.reference_ = np.asarray(state["reference"], np.float64).reshape(-1, len(FEATURES))
        if self.center_.shape != (len(FEATURES),) or not 1 <= self.k_ < len(self.reference_):
            raise ValueError("the fitted state does not match the colour features")
        self.neighbors_ = NearestNeighbors().fit(self.reference_)
        self._cache = FeatureCache()

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        self._check()
        feats = self._cache.get(data.images)
        if feats is None:
            feats = colour_features(data.images, verbose=verbose)
        z = (feats - self.center_) / self.scale_
        scores = self._kth_distance(z) / self.typical_distance_ if len(z) else np.zeros(0)
        flags = scores > self.threshold
        reasons = [("not_blood_smear",) if f else () for f in flags]
        return Detection(scores.astype(np.float64), flags, reasons)

    def features(self, dataset: object, *, verbose: bool = False) -> np.ndarray:
        """The colour features of each image (:func:`colour_features`), before scaling."""
        return colour_features(as_image_data(dataset).images, verbose=verbose)
