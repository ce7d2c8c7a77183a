"""Embedding outliers: features from a network, then IsolationForest or LocalOutlierFactor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from bloodcell._progress import Progress
from bloodcell._validation import check_choice, check_int
from bloodcell.errors import ConfigurationError, InvalidDataError
from bloodcell.outliers.base import Detection, FeatureCache, ImageData, OutlierDetector

__all__ = ["EmbeddingOutliers", "embed"]

Method = Literal["isolation_forest", "lof"]
#: Default threshold of each method, on the score scale described in :class:`EmbeddingOutliers`.
DEFAULT_THRESHOLDS = {"isolation_forest": 0.6, "lof": 2.0}


def _resolve_extractor(
    extractor: Any, input_shape: tuple[int, ...], weights: Any
) -> Callable[[np.ndarray], Any]:
    if isinstance(extractor, str):
        from bloodcell.models import feature_extractor

        return feature_extractor(extractor, input_shape=input_shape, weights=weights)
    if callable(extractor):
        return extractor
    raise ConfigurationError(
        "extractor must be a backbone name, a Keras model or a callable mapping a float32 batch "
        f"(B, H, W, 3) of 0–255 pixels to features (B, D); got {type(extractor).__name__}."
    )


def _call(extractor: Any, batch: np.ndarray) -> np.ndarray:
    if hasattr(extractor, "predict_on_batch"):  # a Keras model: no per-call tf.function retrace
        out = extractor.predict_on_batch(batch)
    else:
        out = extractor(batch)
    out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)
    if out.ndim == 4:  # feature maps: global average pooling
        out = out.mean(axis=(1, 2))
    if out.ndim != 2 or len(out) != len(batch):
        raise InvalidDataError(
            f"the extractor returned shape {out.shape} for a batch of {len(batch)} images; it must return "
            "one feature vector per image, (B, D), or feature maps (B, h, w, D)."
        )
    return out


def embed(images: np.ndarray, extractor: Any, *, batch_size: int = 128, verbose: bool = False) -> np.ndarray:
    """Features of each image from ``extractor`` (called on float32 batches of 0–255 pixels), float32 (N, D).

    Example:
        >>> imgs = np.zeros((3, 8, 8, 3), np.uint8)
        >>> embed(imgs, lambda x: x.mean(axis=(1, 2))).shape
        (3, 3)
    """
    chunks = []
    with Progress(len(images), "embedding", enabled=verbose) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].astype(np.float32)
            chunks.append(_call(extractor, batch))
            bar.update(len(batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


class EmbeddingOutliers(OutlierDetector):
    """Images far from the rest in a network's feature space (IsolationForest or LocalOutlierFactor).

    :meth:`fit` embeds the dataset with ``extractor``, standardises the features, reduces them to
    ``n_components`` principal components, and fits the outlier model on the distinct rows
    (identical images count once), globally or one model per class (``per_class=True``).

    Scores (higher = more anomalous) and default thresholds:

    - ``"isolation_forest"``: the forest's anomaly score ``s`` in (0, 1) (``-score_samples``):
      about 0.5 or less for ordinary images, towards 1 for images isolated in few splits. Default
      threshold 0.6.
    - ``"lof"``: the local outlier factor (about 1 for ordinary images). Default threshold 2.0.

    Which features? Anything that maps images to vectors: a backbone name (resolved with
    ``bloodcell.models.feature_extractor(name, input_shape=..., weights=weights)``), a Keras model
    (2-D output, or feature maps that are average-pooled), or a callable on float32 batches of
    0–255 pixels. ImageNet features separate cells from other images best; offline, features
    of a bloodcell model trained on the data itself work too (see the outliers guide for measured
    figures).

    Args:
        extractor: Backbone name, Keras model or callable (see above).
        method: ``"isolation_forest"`` or ``"lof"``.
        per_class: One model per class (needs labels), so an image is judged against its own class.
        n_components: Principal components kept (``None``: keep the standardised features).
        threshold: Score above which an image is flagged (reason ``"embedding_outlier"``);
            ``None`` means the method's default above.
        n_neighbors: LOF neighbourhood size.
        n_estimators: Trees in the isolation forest.
        weights: Passed to ``feature_extractor`` when ``extractor`` is a name.
        batch_size: Images per call of the extractor.
        random_state: Seed of the forest and the PCA.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample()[:200]
        >>> colour = lambda x: np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
        >>> det = EmbeddingOutliers(extractor=colour, n_components=None).fit(data)
        >>> det.score(data).shape
        (200,)
    """

    name = "embedding"
    reasons = ("embedding_outlier",)

    def __init__(
        self,
        *,
        extractor: Any = "efficientnetv2s",
        method: Method = "isolation_forest",
        per_class: bool = False,
        n_components: int | None = 32,
        threshold: float | None = None,
        n_neighbors: int = 50,
        n_estimators: int = 200,
        weights: Any = "imagenet",
        batch_size: int = 128,
        random_state: int | None = 0,
    ) -> None:
        self.extractor = extractor
        self.method = method
        self.per_class = per_class
        self.n_components = n_components
        self.threshold = threshold
        self.n_neighbors = n_neighbors
        self.n_estimators = n_estimators
        self.weights = weights
        self.batch_size = batch_size
        self.random_state = random_state

    @property
    def threshold_(self) -> float:
        """The threshold in force (``threshold``, or the method's default)."""
        return float(DEFAULT_THRESHOLDS[self.method] if self.threshold is None else self.threshold)

    def _check(self) -> None:
        check_choice(self.method, "method", tuple(DEFAULT_THRESHOLDS))
        check_int(self.n_components, "n_components", minimum=1, allow_none=True)

    def embed(self, dataset: Any, *, verbose: bool = False) -> np.ndarray:
        """The raw features of each image, float32 (N, D)."""
        from bloodcell.outliers.base import as_image_data

        data = as_image_data(dataset)
        if not hasattr(self, "_extractor"):
            self._extractor = _resolve_extractor(self.extractor, tuple(data.images.shape[1:]), self.weights)
        return embed(data.images, self._extractor, batch_size=self.batch_size, verbose=verbose)

    def _project(self, feats: np.ndarray) -> np.ndarray:
        z = (feats - self.mean_) / self.std_
        return z if self.pca_ is None else self.pca_.transform(z)

    def _model(self, rows: np.ndarray) -> Any:
        from sklearn.ensemble import IsolationForest
        from sklearn.neighbors import LocalOutlierFactor

        if self.method == "lof":
            return LocalOutlierFactor(
                n_neighbors=int(min(self.n_neighbors, len(rows) - 1)), novelty=True
            ).fit(rows)
        return IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state).fit(rows)

    def _fit(self, data: ImageData, verbose: bool) -> None:
        from sklearn.decomposition import PCA

        self._check()
        if self.per_class and data.labels is None:
            raise ConfigurationError(
                "per_class=True needs labels: pass a BloodCellDataset, not a bare array."
            )
        self._extractor = _resolve_extractor(self.extractor, tuple(data.images.shape[1:]), self.weights)
        feats = embed(data.images, self._extractor, batch_size=self.batch_size, verbose=verbose)
        unique, first = np.unique(feats, axis=0, return_index=True)
        self.mean_ = unique.mean(axis=0)
        self.std_ = np.maximum(unique.std(axis=0), 1e-6)
        self.pca_ = None
        if self.n_components is not None and self.n_components < unique.shape[1]:
            self.pca_ = PCA(self.n_components, random_state=self.random_state).fit(
                (unique - self.mean_) / self.std_
            )
        rows = self._project(unique)
        self._fitted = {}
        self.models_: dict[int, Any] = {}
        groups = (
            {-1: np.arange(len(rows))}
            if not self.per_class
            else {int(c): np.flatnonzero(data.labels[first] == c) for c in np.unique(data.labels)}
        )
        for key, idx in groups.items():
            if len(idx) < 3:
                continue  # too few images in this class to judge; they are scored by no model (0)
            model = self._model(rows[idx])
            self.models_[key] = model
            if self.method == "lof":  # training LOF values (each image without itself as neighbour)
                for row, v in zip(rows[idx], model.negative_outlier_factor_):
                    self._fitted[(key, row.tobytes())] = -float(v)
        self._cache = FeatureCache()
        self._cache.put(data.images, feats)

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        self._check()
        if self.per_class and data.labels is None:
            raise ConfigurationError(
                "per_class=True needs labels: pass a BloodCellDataset, not a bare array."
            )
        feats = self._cache.get(data.images)  # scoring the fitted set: reuse its features
        if feats is None:
            feats = embed(data.images, self._extractor, batch_size=self.batch_size, verbose=verbose)
        rows = self._project(feats)
        keys = np.full(len(rows), -1) if not self.per_class else np.asarray(data.labels)
        scores = np.zeros(len(rows), np.float64)
        for key in np.unique(keys):
            model = self.models_.get(int(key))
            if model is None:
                continue
            idx = np.flatnonzero(keys == key)
            if self.method == "lof":
                known = [self._fitted.get((int(key), rows[i].tobytes())) for i in idx]
                todo = [i for i, k in zip(idx, known) if k is None]
                scores[idx] = [k if k is not None else np.nan for k in known]
                if todo:
                    scores[todo] = -model.score_samples(rows[todo])
            else:
                scores[idx] = -model.score_samples(rows[idx])
        flags = scores > self.threshold_
        reasons = [("embedding_outlier",) if f else () for f in flags]
        return Detection(scores, flags, reasons)
