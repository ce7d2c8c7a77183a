"""StainNormalization: a fitted stain normaliser as a Keras layer, saved with the model.

Example:
    >>> import bloodcell as bc
    >>> from bloodcell.stain import ReinhardNormalizer
    >>> layer = ReinhardNormalizer().fit(bc.datasets.load_sample(per_class=1)).to_layer()
    >>> type(layer).__name__
    'StainNormalization'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from bloodcell.errors import InvalidDtypeError
from bloodcell.stain.base import Normalizer
from bloodcell.stain.methods import from_config

__all__ = ["StainNormalization"]


@keras.saving.register_keras_serializable(package="bloodcell")
class StainNormalization(keras.layers.Layer):
    """A fitted stain normaliser as a Keras layer: images in 0–255 in, normalised images in 0–255 out.

    The fitted target is part of the layer's config, so it is saved in the ``.keras`` file and the
    loaded model (safe mode) applies the same transform. The layer has no weights and does not train;
    it computes in float32 (whatever the model's mixed-precision policy) and clips to 0–255.

    Args:
        normalizer: A fitted :class:`~bloodcell.stain.MacenkoNormalizer` /
            :class:`~bloodcell.stain.ReinhardNormalizer`, or its
            ``get_config()`` dictionary (how Keras rebuilds the layer).
        **kwargs: Keras layer arguments (``name``...).

    Example:
        >>> import bloodcell as bc, numpy as np
        >>> from bloodcell.stain import ReinhardNormalizer
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
        if not isinstance(normalizer, Normalizer):
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
