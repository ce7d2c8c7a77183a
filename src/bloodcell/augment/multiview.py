"""MultiView: the clean batch and several independently augmented views of it, for consistency training.

In ``to_tf_dataset`` it yields ``images`` of shape (B, 1 + num_views, H, W, 3): the clean batch,
then each augmented view, all with the same labels. :class:`bloodcell.training.consistency.ConsistencyModel`
trains a classifier on such batches with the AugMix paper's Jensen–Shannon loss.

Example:
    >>> import bloodcell as bc
    >>> from bloodcell.pipeline import to_tf_dataset
    >>> data = bc.datasets.load_sample(per_class=2)
    >>> views = bc.augment.MultiView(bc.augment.AugMix(), num_views=2)
    >>> images, labels = next(iter(to_tf_dataset(data, batch_size=4, augment=views, seed=0)))
    >>> tuple(images.shape)
    (4, 3, 96, 96, 3)
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_int
from bloodcell.augment.base import (
    Augmenter,
    _as_seed_tensor,
    _check_batch,
    apply_augmenter,
    requires_one_hot,
    split_seed,
)
from bloodcell.errors import ConfigurationError

__all__ = ["MultiView"]


@keras.saving.register_keras_serializable(package="bloodcell")
class MultiView(Augmenter):
    """Stack the clean batch and ``num_views`` independently augmented copies: (B, 1 + num_views, H, W, 3).

    Args:
        augmenter: A label-preserving augmenter (AugMix in the paper); anything
            :class:`~bloodcell.augment.Compose` accepts. MixUp and CutMix are refused: the views
            must share their labels.
        num_views: Augmented views per image (the paper uses 2).
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> from bloodcell.augment import AugMix
        >>> MultiView(AugMix(), num_views=2)(np.zeros((2, 32, 32, 3), np.uint8)).shape
        TensorShape([2, 3, 32, 32, 3])
    """

    def __init__(
        self,
        augmenter: Any,
        num_views: int = 2,
        *,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        num_views = check_int(num_views, "num_views", minimum=1)
        if requires_one_hot(augmenter):
            raise ConfigurationError(
                f"MultiView needs a label-preserving augmenter; {type(augmenter).__name__} mixes labels, "
                "so the views would disagree on their labels. Apply MixUp/CutMix without consistency "
                "training."
            )
        self.augmenter = augmenter
        self.num_views = num_views

    def augment_batch(self, images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
        x = _check_batch(images)
        seed = _as_seed_tensor(seed)
        views = [x]
        for v in range(self.num_views):
            view, _ = apply_augmenter(self.augmenter, x, labels, split_seed(seed, v))
            views.append(tf.cast(view, x.dtype))
        return tf.stack(views, axis=1), labels

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], 1 + self.num_views, *input_shape[1:])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(augmenter=keras.saving.serialize_keras_object(self.augmenter), num_views=self.num_views)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiView:
        """Rebuild from :meth:`get_config` (the wrapped augmenter deserialised)."""
        config = dict(config)
        config["augmenter"] = keras.saving.deserialize_keras_object(config["augmenter"])
        return cls(**config)
