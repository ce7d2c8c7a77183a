"""Jensen–Shannon consistency training (AugMix paper, section 3): a clean view, two augmented views, one loss.

The paper trains on ``CE(p_clean, y) + λ·JS(p_clean, p_aug1, p_aug2)`` with λ = 12, where
``JS = (KL(p_clean‖M) + KL(p_aug1‖M) + KL(p_aug2‖M)) / 3`` and ``M`` is the mean of the three
predicted distributions (clipped to [1e-7, 1]). All three views go through the network as one
batch, so batch normalisation sees them together, as in the paper's code.

Three pieces, usable alone or together:

* :class:`~bloodcell.augment.MultiView` (an augmenter, in :mod:`bloodcell.augment.multiview`)
  wraps any label-preserving augmenter; in ``to_tf_dataset`` it yields ``images`` of shape
  (B, 1 + num_views, H, W, 3): the clean batch, then each augmented view;
* :func:`jensen_shannon` computes the divergence per example from (B, V, K) probabilities;
* :class:`ConsistencyModel` wraps a classifier and trains it on such batches with the loss above
  (its ``train_step``); validation, evaluation and prediction take ordinary (B, H, W, 3) batches.

Example:
    >>> import numpy as np
    >>> views = np.array([[[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]]], np.float32)  # (B, V, K): one cell, 3 views
    >>> float(jensen_shannon(views)[0]) > 0.0  # the third view disagrees
    True
    >>> float(jensen_shannon(views[:, :2])[0])  # two views that agree
    0.0
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_number
from bloodcell.errors import ConfigurationError, InvalidDataError

__all__ = ["ConsistencyModel", "jensen_shannon", "JSD_WEIGHT"]

#: The paper's weight λ of the Jensen–Shannon term.
JSD_WEIGHT = 12.0


def jensen_shannon(probabilities: Any, *, from_logits: bool = False, epsilon: float = 1e-7) -> Any:
    """Generalised Jensen–Shannon divergence between V predicted distributions, per example.

    Args:
        probabilities: (B, V, K): for each example, V predicted distributions over K classes
            (the clean view first, though the divergence is symmetric).
        from_logits: The inputs are logits; a softmax is applied first.
        epsilon: The mixture is clipped to [epsilon, 1] before the logarithm, as in the paper's code.

    Returns:
        float32 (B,): ``mean_v KL(p_v ‖ M)`` with ``M = mean_v p_v``; 0 when all views agree.

    Example:
        >>> import numpy as np
        >>> same = np.array([[[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]], np.float32)
        >>> float(jensen_shannon(same)[0]) < 1e-6
        True
    """
    p = tf.convert_to_tensor(probabilities)
    if not p.dtype.is_floating:
        p = tf.cast(p, tf.float32)
    if p.shape.rank != 3:
        raise InvalidDataError(
            f"probabilities must have shape (batch, views, classes), got {tuple(p.shape)}."
        )
    p = tf.cast(p, tf.float32)
    if from_logits:
        p = tf.nn.softmax(p, axis=-1)
    log_mixture = tf.math.log(tf.clip_by_value(tf.reduce_mean(p, axis=1, keepdims=True), epsilon, 1.0))
    # KL(p‖M) = Σ p·(log p − log M), with 0·log 0 = 0 (torch's kl_div does the same).
    kl = tf.reduce_sum(tf.math.xlogy(p, p) - p * log_mixture, axis=-1)  # (B, V)
    kl = tf.maximum(kl, 0.0)  # rounding can dip a hair below zero
    return tf.reduce_mean(kl, axis=1)


class ConsistencyModel(keras.Model):
    """Train a classifier with the AugMix paper's Jensen–Shannon consistency loss.

    Training batches come from ``to_tf_dataset(..., augment=MultiView(augmenter))``: images
    (B, V, H, W, 3), the clean view first. Each step runs the V·B images through ``model`` as one
    batch and minimises ``compiled_loss(y, p_clean) + weight · mean(JS(p_clean, p_aug1, ...))``.
    Compiled metrics are computed on the clean view; ``jsd`` is reported beside ``loss``.
    Validation, ``evaluate`` and ``predict`` take ordinary (B, H, W, 3) batches and run ``model``.

    The classifier's weights are shared, not copied: after ``fit``, save or evaluate ``model``
    itself (``wrapper.model``).

    Args:
        model: A Keras classifier returning class probabilities (or logits with ``from_logits``).
        weight: λ, the weight of the Jensen–Shannon term (the paper's 12).
        from_logits: ``model`` returns logits rather than probabilities.

    Example:
        >>> import keras
        >>> inputs = keras.Input((8, 8, 3))
        >>> pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        >>> outputs = keras.layers.Dense(2, activation="softmax")(pooled)
        >>> wrapper = ConsistencyModel(keras.Model(inputs, outputs), weight=12.0)
        >>> wrapper.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        >>> import numpy as np
        >>> views = np.random.default_rng(0).uniform(0, 255, (4, 3, 8, 8, 3)).astype("float32")
        >>> history = wrapper.fit(views, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
        >>> sorted(history.history)
        ['jsd', 'loss']
    """

    def __init__(
        self, model: keras.Model, weight: float = JSD_WEIGHT, *, from_logits: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise ConfigurationError(f"ConsistencyModel wraps a keras.Model, got {type(model).__name__}.")
        weight = check_number(weight, "weight", low=0)
        self.model = model
        self.weight = weight
        self.from_logits = bool(from_logits)
        self.jsd_tracker = keras.metrics.Mean(name="jsd")

    def call(self, inputs: Any, training: bool = False) -> Any:
        """(B, H, W, C) → the model's (B, K); (B, V, H, W, C) → (B, V, K), all views as one batch."""
        x = tf.convert_to_tensor(inputs)
        if x.shape.rank != 5:
            return self.model(x, training=training)
        shape = tf.shape(x)
        flat = tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))
        pred = self.model(flat, training=training)
        return tf.reshape(pred, tf.concat([shape[:2], tf.shape(pred)[1:]], axis=0))

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.convert_to_tensor(x)
        if x.shape.rank != 5:
            raise InvalidDataError(
                "ConsistencyModel trains on batches of views (B, V, H, W, C): build the training "
                f"pipeline with augment=bloodcell.augment.MultiView(...); got shape {tuple(x.shape)}."
            )
        with tf.GradientTape() as tape:
            pred = self(x, training=True)  # (B, V, K)
            clean = pred[:, 0]
            loss = self.compute_loss(x=x[:, 0], y=y, y_pred=clean, sample_weight=sample_weight, training=True)
            jsd = tf.reduce_mean(jensen_shannon(pred, from_logits=self.from_logits))
            total = loss + self.weight * jsd
            scaled = self.optimizer.scale_loss(total) if self.optimizer is not None else total
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        self.jsd_tracker.update_state(jsd)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(total)
        # Compiled metrics on the clean view; returns every metric's result, loss and jsd included.
        return self.compute_metrics(x[:, 0], y, clean, sample_weight=sample_weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        logs = super().test_step(data)  # plain batches: the classifier alone, no views
        logs.pop("jsd", None)
        return logs

    def get_config(self) -> dict[str, Any]:
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "weight": self.weight,
            "from_logits": self.from_logits,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConsistencyModel:
        """Rebuild from :meth:`get_config` (the classifier deserialised)."""
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
