"""Image quality: dark, overexposed, low-information (blank, uniform), blurry and grayscale images."""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._progress import Progress
from bloodcell._validation import check_number
from bloodcell.outliers.base import Detection, FeatureCache, ImageData, OutlierDetector

__all__ = ["ImageQuality", "quality_measures"]

#: The measures, in column order of :func:`quality_measures`.
MEASURES = ("brightness", "contrast", "sharpness", "colourfulness")
_CHUNK = 256


def quality_measures(images: np.ndarray, *, verbose: bool = False) -> np.ndarray:
    """Four measures per image, float64 (N, 4), columns as in ``MEASURES``.

    - ``brightness``: mean luminance (ITU-R 601), 0–255.
    - ``contrast``: standard deviation of the luminance (0 for a blank image).
    - ``sharpness``: standard deviation of the 4-neighbour Laplacian divided by ``contrast + 1``,
      so that it measures edges relative to the image's own contrast (a dark but sharp image
      stays sharp; a blurred one loses its high frequencies whatever its brightness).
    - ``colourfulness``: mean over pixels of ``max(R,G,B) - min(R,G,B)``, divided by the mean of
      ``max(R,G,B)`` (a saturation in 0–1: 0 for grey images, unchanged by darkening).

    Example:
        >>> imgs = np.zeros((1, 8, 8, 3), np.uint8); imgs[0, :, :4] = 200
        >>> m = quality_measures(imgs)[0]
        >>> float(m[0]), float(m[1]), float(m[3])
        (100.0, 100.0, 0.0)
    """
    out = np.empty((len(images), len(MEASURES)), np.float64)
    with Progress(len(images), "image quality", enabled=verbose) as bar:
        for start in range(0, len(images), _CHUNK):
            x = images[start : start + _CHUNK]
            n = len(x)
            c = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # channels first: contiguous reductions
            lum = c[:, 0] * np.float32(0.299) + c[:, 1] * np.float32(0.587) + c[:, 2] * np.float32(0.114)
            flat = lum.reshape(n, -1)
            mean = flat.mean(axis=1)
            centred = flat - mean[:, None]
            contrast = np.sqrt(np.einsum("np,np->n", centred, centred) / flat.shape[1])
            lap = (
                4 * lum[:, 1:-1, 1:-1]
                - lum[:, :-2, 1:-1]
                - lum[:, 2:, 1:-1]
                - lum[:, 1:-1, :-2]
                - lum[:, 1:-1, 2:]
            ).reshape(n, -1)
            lap -= lap.mean(axis=1, keepdims=True)
            lap_std = np.sqrt(np.einsum("np,np->n", lap, lap) / lap.shape[1])
            hi = np.maximum(np.maximum(c[:, 0], c[:, 1]), c[:, 2]).reshape(n, -1)
            lo = np.minimum(np.minimum(c[:, 0], c[:, 1]), c[:, 2]).reshape(n, -1)
            spread = (hi - lo).sum(axis=1, dtype=np.uint32).astype(np.float64)
            top = hi.sum(axis=1, dtype=np.uint32).astype(np.float64)
            out[start : start + n, 0] = mean
            out[start : start + n, 1] = contrast
            out[start : start + n, 2] = lap_std / (contrast + 1.0)
            out[start : start + n, 3] = spread / np.maximum(top, 1.0)
            bar.update(n)
    return out


class ImageQuality(OutlierDetector):
    """Degenerate images: dark, overexposed, low-information (blank, uniform), blurry, grayscale.

    :meth:`fit` learns the *typical* value of each measure (see :func:`quality_measures`): its
    median over the distinct images of the dataset (identical copies count once, so a thousand
    copies of one frame cannot move it). Each check compares an image with that typical value:

    ========================  =====================================================================
    reason                    flagged when
    ========================  =====================================================================
    ``"dark"``                brightness < ``dark`` × typical brightness
    ``"overexposed"``         headroom (255 − brightness) < ``overexposed`` × typical headroom
    ``"low_information"``     contrast < ``low_information`` × typical contrast
    ``"blurry"``              sharpness < ``blurry`` × typical sharpness (not checked on
                              low-information images, which have no edges to judge)
    ``"grayscale"``           colourfulness < ``grayscale`` × typical colourfulness (not checked
                              on low-information images either)
    ========================  =====================================================================

    The score is the largest *severity* over the checks, where a check's severity is its cut-off
    fraction divided by the image's ratio to typical (e.g. ``dark / (brightness / typical)``); so
    the default threshold is 1.0: an image is flagged exactly when one check's ratio falls below
    its cut-off, and a score of 2 means twice as far past it. Set a fraction to ``None`` to turn
    that check off. Each default sits below the lowest ratio that real PBC cells reach, so a
    well-taken cell is never flagged and only an image far from the set's typical one is.

    Args:
        dark: Fraction of the typical brightness below which an image is dark.
        overexposed: Fraction of the typical headroom below which an image is overexposed.
        low_information: Fraction of the typical contrast below which an image is low-information.
        blurry: Fraction of the typical sharpness below which an image is blurry.
        grayscale: Fraction of the typical colourfulness below which an image is grayscale.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.load_sample()
        >>> blank = bc.datasets.BloodCellDataset(np.full((1, 96, 96, 3), 230, np.uint8), [0])
        >>> det = ImageQuality().fit(data)
        >>> det.explain(blank)
        [('low_information',)]
    """

    name = "image_quality"
    reasons = ("dark", "overexposed", "low_information", "blurry", "grayscale")

    def __init__(
        self,
        *,
        dark: float | None = 0.6,
        overexposed: float | None = 0.25,
        low_information: float | None = 0.2,
        blurry: float | None = 0.35,
        grayscale: float | None = 0.15,
    ) -> None:
        self.dark = dark
        self.overexposed = overexposed
        self.low_information = low_information
        self.blurry = blurry
        self.grayscale = grayscale

    def _cutoffs(self) -> dict[str, float | None]:
        cut = {r: getattr(self, r) for r in self.reasons}
        for reason, value in cut.items():
            check_number(value, reason, low=0, high=1, low_open=True, high_open=True, allow_none=True)
        return cut

    def _fit(self, data: ImageData, verbose: bool) -> None:
        self._cutoffs()
        self._cache = FeatureCache()
        measures = self._cache.put(data.images, quality_measures(data.images, verbose=verbose))
        typical = np.median(np.unique(measures, axis=0), axis=0)
        self.typical_ = dict(zip(MEASURES, typical.tolist()))

    def _get_state(self) -> dict[str, Any]:
        return {"typical": dict(self.typical_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.typical_ = {m: float(state["typical"][m]) for m in MEASURES}
        self._cache = FeatureCache()

    def ratios(self, dataset: object, *, verbose: bool = False) -> dict[str, np.ndarray]:
        """Each image's ratio to typical for every check (the quantities the cut-offs apply to)."""
        from bloodcell.outliers.base import as_image_data

        self._check_fitted()
        images = as_image_data(dataset).images
        m = self._cache.get(images)
        if m is None:
            m = quality_measures(images, verbose=verbose)
        t = self.typical_
        eps = 1e-6
        return {
            "dark": m[:, 0] / max(t["brightness"], eps),
            "overexposed": (255.0 - m[:, 0]) / max(255.0 - t["brightness"], eps),
            "low_information": m[:, 1] / max(t["contrast"], eps),
            "blurry": m[:, 2] / max(t["sharpness"], eps),
            "grayscale": m[:, 3] / max(t["colourfulness"], eps),
        }

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        cut = self._cutoffs()
        ratios = self.ratios(data, verbose=verbose)
        n = len(data.images)
        severity = {
            r: (float(c) / np.maximum(ratios[r], 1e-3) if c is not None else np.zeros(n))
            for r, c in cut.items()
        }
        flagged = {r: s >= 1.0 for r, s in severity.items()}
        # A blank image has neither edges nor colour to judge: call it low-information only.
        for judged in ("blurry", "grayscale"):
            flagged[judged] &= ~flagged["low_information"]
            severity[judged] = np.where(flagged["low_information"], 0.0, severity[judged])
        scores = np.max(np.stack(list(severity.values())), axis=0) if n else np.zeros(0)
        reasons: list[tuple[str, ...]] = [()] * n
        any_flag = np.any(np.stack(list(flagged.values())), axis=0) if n else np.zeros(0, bool)
        for i in np.flatnonzero(any_flag):
            reasons[i] = tuple(r for r in self.reasons if flagged[r][i])
        return Detection(scores.astype(np.float64), any_flag, reasons)
