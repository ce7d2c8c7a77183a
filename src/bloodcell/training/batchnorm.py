"""Recompute BatchNorm statistics for the weights a model ends with ("precise BatchNorm").

During training a BatchNormalization layer keeps an exponential moving average of the batch
statistics. From scratch, bloodcell uses momentum 0.9 so that the average keeps up with weights that
change fast; at the end of training that average covers only the last ~10 batches, so validation
accuracy swings between epochs even when the weights hardly move. With weight averaging (EMA) it is
worse: Keras averages the trainable weights only, and the averaged weights are evaluated with moving
statistics that were gathered for the raw weights. :func:`recalibrate_batchnorm` replaces the moving
statistics with the mean of the batch statistics over many batches, computed with the model's
current weights (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", section 3).

What it gains for the ``"cpu"`` recipe (MobileNetV3Small from scratch with EMA weights) is measured
in benchmarks/RESULTS.md (the CPU accuracy track).

Example:
    >>> import keras, numpy as np
    >>> from bloodcell.training.batchnorm import recalibrate_batchnorm
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.BatchNormalization()])
    >>> images = np.full((32, 8, 8, 3), 10, np.uint8)
    >>> recalibrate_batchnorm(model, images, batches=2, batch_size=16)
    1
    >>> float(model.layers[0].moving_mean.numpy()[0])
    10.0
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from bloodcell._validation import check_seed
from bloodcell.datasets.core import BloodCellDataset, as_images
from bloodcell.errors import ConfigurationError, EmptyDatasetError

__all__ = ["RecalibrateBatchNorm", "recalibrate_batchnorm", "trainable_batchnorm_layers"]


def trainable_batchnorm_layers(model: Any) -> list[Any]:
    """The BatchNormalization layers of ``model`` (nested ones too) that update their statistics.

    Frozen layers (``trainable=False``) run in inference mode in Keras 3 and are left out.
    """
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def recalibrate_batchnorm(
    model: Any,
    data: BloodCellDataset | Any,
    *,
    batches: int = 100,
    batch_size: int = 64,
    seed: int = 0,
) -> int:
    """Set every trainable BatchNorm layer's moving statistics to the mean over ``batches`` batches.

    The batches are drawn at random (without replacement) from ``data``, because datasets loaded
    from class folders are sorted by class and a batch of one class has too small a variance. Pass
    images as the model will see them at inference: no augmentation. The model's weights are not
    changed, only ``moving_mean`` and ``moving_variance``; on any error the old statistics are put back.

    Args:
        model: A Keras model with BatchNormalization layers.
        data: A :class:`~bloodcell.datasets.BloodCellDataset` or uint8 images (N, H, W, 3).
        batches: Number of batches to average (fewer if ``data`` has fewer images).
        batch_size: Images per batch; the statistics are those of batches of this size, so use the
            training batch size.
        seed: Seed of the random choice of images.

    Returns:
        The number of layers recalibrated.

    Raises:
        ConfigurationError: ``batches`` or ``batch_size`` below 1, or a model without a trainable
            BatchNormalization layer.
        EmptyDatasetError: no images.
    """
    if int(batches) < 1 or int(batch_size) < 1:
        raise ConfigurationError(
            f"batches and batch_size must be >= 1, got batches={batches!r}, batch_size={batch_size!r}."
        )
    images = data.images if isinstance(data, BloodCellDataset) else as_images(data)
    if len(images) == 0:
        raise EmptyDatasetError("recalibrate_batchnorm() got no images.")
    layers = trainable_batchnorm_layers(model)
    if not layers:
        raise ConfigurationError(
            f"{getattr(model, 'name', type(model).__name__)!r} has no trainable BatchNormalization layer to "
            "recalibrate (frozen layers keep their statistics)."
        )
    batch_size = min(int(batch_size), len(images))
    n_batches = min(int(batches), len(images) // batch_size)
    order = np.random.default_rng(check_seed(seed)).permutation(len(images))[: n_batches * batch_size]

    saved = [(layer.momentum, layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    try:
        # Momentum 0: after each training-mode call the moving statistics are that batch's statistics.
        for layer in layers:
            layer.momentum = 0.0
        forward = _training_forward(model)
        for start in range(0, len(order), batch_size):
            forward(images[np.sort(order[start : start + batch_size])])
            for total, layer in zip(sums, layers):
                total[0] += keras.ops.convert_to_numpy(layer.moving_mean)
                total[1] += keras.ops.convert_to_numpy(layer.moving_variance)
        for total, layer in zip(sums, layers):
            layer.moving_mean.assign((total[0] / n_batches).astype(layer.moving_mean.dtype))
            layer.moving_variance.assign((total[1] / n_batches).astype(layer.moving_variance.dtype))
    except BaseException:
        for (_, mean, variance), layer in zip(saved, layers):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise
    finally:
        for (momentum, _, _), layer in zip(saved, layers):
            layer.momentum = momentum
    return len(layers)


def _training_forward(model: Any) -> Any:
    """``model(x, training=True)``, compiled into one graph on TensorFlow (eager elsewhere)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Traced here, after the momentum change, so the graph uses momentum 0.
        return tf.function(lambda x: model(x, training=True), reduce_retracing=True)
    return lambda x: model(x, training=True)


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """Recompute BatchNorm statistics before each validation pass of ``fit`` (a Keras callback).

    Put it after :class:`bloodcell.training.callbacks.SwapEMAWeights` (or Keras's) so that it sees
    the averaged weights that are validated. The statistics stay as they are after validation:
    training mode normalises with the batch statistics, so they change no gradient, and the moving
    average forgets them within a few dozen batches. Checkpoints taken at the epoch's end therefore hold weights and statistics that
    belong together. (The extra forward passes do advance the random state of dropout layers, so
    the run is repeatable but not identical to one without the callback.) Does nothing for a model without a trainable BatchNorm layer (a frozen
    backbone in the first phase of transfer learning).

    Args:
        model: The classifier whose statistics to recompute (not a training wrapper around it).
        images: Training images, uint8 (N, H, W, 3), without augmentation.
        batches: Batches per recalibration.
        batch_size: Images per batch (the training batch size).
        seed: Seed of the choice of images (the same images each epoch).

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.BatchNormalization()])
        >>> callback = RecalibrateBatchNorm(model, np.zeros((32, 8, 8, 3), np.uint8), batches=2, batch_size=16)
        >>> callback.on_test_begin()
        >>> callback.recalibrations
        1
    """

    def __init__(self, model: Any, images: Any, *, batches: int, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.target = model
        self.images = as_images(images)
        self.batches = int(batches)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.recalibrations = 0
        self._active = bool(trainable_batchnorm_layers(model))

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._active:
            recalibrate_batchnorm(
                self.target, self.images, batches=self.batches, batch_size=self.batch_size, seed=self.seed
            )
            self.recalibrations += 1
