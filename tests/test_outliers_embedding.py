"""EmbeddingOutliers with a callable, a Keras model and a registry backbone; offline ImageNet fails clearly."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcell.errors import ConfigurationError
from bloodcell.outliers import EmbeddingOutliers


def test_embedding_outliers_with_a_callable(sample, planted):
    data, kinds = planted

    def colour_stats(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)

    for method in ("isolation_forest", "lof"):
        det = EmbeddingOutliers(
            extractor=colour_stats, method=method, n_components=None, n_estimators=50
        ).fit(data)
        scores = det.score(data)
        assert scores.shape == (len(data),)
        # The planted non-blood images rank above the typical real cell.
        assert np.median(scores[kinds["non_blood"]]) > np.percentile(scores[kinds["real"]], 90), method
    per_class = EmbeddingOutliers(
        extractor=colour_stats, per_class=True, n_components=None, n_estimators=20
    ).fit(sample)
    assert len(per_class.models_) == 8
    with pytest.raises(ConfigurationError, match="labels"):
        EmbeddingOutliers(extractor=colour_stats, per_class=True).fit(sample.images)


def test_embedding_outliers_with_a_keras_model(small_sample):
    import keras

    inputs = keras.Input((96, 96, 3))
    maps = keras.layers.Conv2D(4, 3, strides=4)(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, maps)  # feature maps: pooled by the detector
    det = EmbeddingOutliers(extractor=model, n_components=2, batch_size=8).fit(small_sample)
    assert det.embed(small_sample).shape == (16, 4)
    assert det.predict(small_sample).shape == (16,)


def test_embedding_outliers_from_a_registry_backbone_name(small_sample):
    det = EmbeddingOutliers(
        extractor="mobilenetv3small", weights=None, n_components=2, n_estimators=20, batch_size=16
    ).fit(small_sample)
    features = det.embed(small_sample)
    assert features.shape[0] == 16 and features.shape[1] > 2
    assert np.isfinite(det.score(small_sample)).all()


def test_embedding_outliers_imagenet_name_fails_clearly_offline(small_sample, monkeypatch, tmp_path):
    import urllib.error

    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    from bloodcell.errors import WeightsUnavailableError

    def offline(*args, **kwargs):  # what urllib raises without DNS
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # an empty cache: Keras must download
    with pytest.raises(WeightsUnavailableError, match="weights=None"):
        EmbeddingOutliers(extractor="mobilenetv3small", weights="imagenet").fit(small_sample)
