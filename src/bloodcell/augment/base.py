"""The augmenter abstraction: one object that works in ``tf.data``, in a Keras model and on its own.

An :class:`Augmenter` is a Keras layer with one extra method, ``augment_batch(images, labels, seed)``:

* :func:`bloodcell.pipeline.to_tf_dataset` calls ``augment_batch`` on every float batch with an
  explicit per-batch seed (an int64 tensor of shape [2]) and the labels, so the pipeline is
  deterministic for its seed, in parallel maps too, and an augmenter may change labels (MixUp);
* inside a model, ``layer(images, training=True)`` draws its seeds from a
  ``keras.random.SeedGenerator`` (seeded by ``seed=``) and is the identity at inference;
* on its own, ``aug(images)`` augments a batch (N, H, W, 3) of uint8 or float images in 0–255.

Outputs keep the input's dtype (uint8 results are rounded). Subclasses implement
``augment_images(images, seed)`` (label-preserving) or override ``augment_batch``.

:class:`Compose` chains bloodcell augmenters, Keras's own image layers (``RandAugment``,
``MixUp``, ``CutMix``, ``RandomRotation``...) and plain callables. Keras layers receive the
stateless per-batch seed too, through their ``get_random_transformation(..., seed=...)`` hook, so
a composed pipeline stays reproducible (RandAugment ignores that hook; its ``seed=`` argument
decides).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_seed
from bloodcell.errors import ConfigurationError, InvalidDataError

__all__ = ["Augmenter", "Compose", "split_seed", "requires_one_hot"]

_PACKAGE = "bloodcell"


def split_seed(seed: Any, index: int) -> Any:
    """A new stateless seed (int64 [2]) for the ``index``-th consumer of ``seed``.

    Example:
        >>> a = split_seed(tf.constant([1, 2], tf.int64), 0)
        >>> b = split_seed(tf.constant([1, 2], tf.int64), 1)
        >>> bool(tf.reduce_any(a != b))
        True
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, index)


def requires_one_hot(augmenter: Any) -> bool:
    """Whether an augmenter mixes labels (MixUp, CutMix, or a Compose holding one)."""
    if getattr(augmenter, "requires_one_hot", False):
        return True
    return isinstance(augmenter, (keras.layers.MixUp, keras.layers.CutMix))


def _check_batch(images: Any) -> Any:
    x = images if isinstance(images, tf.Tensor) else tf.convert_to_tensor(images)
    if x.shape.rank is not None and x.shape.rank != 4:
        raise InvalidDataError(
            f"augmenters take a batch of images (N, H, W, 3), got shape {tuple(x.shape)}; "
            "add a batch axis with images[None] for a single image."
        )
    if x.shape.rank == 4 and x.shape[-1] is not None and x.shape[-1] != 3:
        raise InvalidDataError(f"augmenters take RGB images (N, H, W, 3), got shape {tuple(x.shape)}.")
    if not (x.dtype.is_floating or x.dtype == tf.uint8):
        raise InvalidDataError(f"images must be uint8 or float in 0–255, got dtype {x.dtype.name}.")
    return x


def _restore_dtype(images: Any, dtype: Any) -> Any:
    if images.dtype == dtype:
        return images
    if dtype == tf.uint8:
        return tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)), tf.uint8)
    return tf.cast(images, dtype)


def _as_seed_tensor(seed: Any) -> Any:
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


class _StatelessSeeds(keras.random.SeedGenerator):
    """Hands a Keras layer fresh seeds derived from one stateless seed tensor.

    Keras's random ops accept a ``SeedGenerator`` and call its ``next()``; this one creates no
    variable and derives each seed from the per-batch seed, so Keras layers become as
    reproducible as ours inside a pipeline.
    """

    def __init__(self, seed: Any) -> None:  # no super().__init__: no state variable
        self.name = "bloodcell_stateless_seeds"
        self.backend = keras.backend
        self._seed = seed
        self._count = 0

    def next(self, ordered: bool = True) -> Any:
        self._count += 1
        return split_seed(self._seed, self._count)


def _apply_keras_layer(layer: Any, images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
    """Run a Keras image preprocessing layer with our stateless seed (as its ``call`` would)."""
    images = tf.cast(images, tf.float32)
    data = images if labels is None else {"images": images, "labels": labels}
    if not layer.built:
        layer.build(images.shape)
    transformation = layer.get_random_transformation(data, training=True, seed=_StatelessSeeds(seed))
    out = layer.transform_images(images, transformation, training=True)
    if labels is not None:
        labels = layer.transform_labels(labels, transformation, training=True)
    return out, labels


def apply_augmenter(augmenter: Any, images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
    """Apply any supported augmenter to a batch: bloodcell's, a Keras image layer, or a callable."""
    if hasattr(augmenter, "augment_batch"):
        return augmenter.augment_batch(images, labels, seed)
    if hasattr(augmenter, "get_random_transformation") and hasattr(augmenter, "transform_images"):
        return _apply_keras_layer(augmenter, images, labels, seed)
    return augmenter(images), labels


class Augmenter(keras.layers.Layer):
    """Base class of bloodcell's augmenters: a Keras layer with a stateless, seeded batch method.

    Args:
        seed: Seeds the layer's own generator, used when it is called as a layer or function
            (``to_tf_dataset`` passes its own per-batch seeds instead). None draws one at random.
        name: Layer name.

    Subclasses implement :meth:`augment_images` (or override :meth:`augment_batch` to change
    labels) and list their hyper-parameters in ``get_config``.
    """

    #: Whether the labels must be one-hot (augmenters that mix images mix labels too).
    requires_one_hot: bool = False

    def __init__(self, *, seed: int | None = None, name: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(name=name, **kwargs)
        self.seed = check_seed(seed, allow_none=True)
        self._seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    # -- the protocol ------------------------------------------------------------------------
    def augment_images(self, images: Any, seed: Any) -> Any:
        """Augment a batch (N, H, W, 3) with a stateless seed (int64 [2]); returns the same dtype."""
        raise NotImplementedError(f"{type(self).__name__} must implement augment_images or augment_batch")

    def augment_batch(self, images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
        """The ``to_tf_dataset`` protocol: augment ``images`` with ``seed``; return ``(images, labels)``."""
        x = _check_batch(images)
        return self.augment_images(x, _as_seed_tensor(seed)), labels

    # -- Keras layer -------------------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        # No weights: members that are Keras layers are built when first applied.
        self.built = True

    def call(self, images: Any, training: bool = True) -> Any:
        if not training:
            return images
        seed = tf.cast(self._seed_generator.next(), tf.int64)
        out, _ = self.augment_batch(images, None, seed)
        return out

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("trainable", None)
        config["seed"] = self.seed
        return config

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_config().items() if k not in ("name", "dtype")}
        body = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({body})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Compose(Augmenter):
    """Apply augmenters one after another, each with its own seed drawn from the batch seed.

    Args:
        augmenters: bloodcell augmenters, Keras image layers (``keras.layers.RandAugment()``,
            ``MixUp()``, ``CutMix()``, ``RandomRotation(...)``...) or callables mapping a float
            batch to a batch. Keras layers get float32 images in 0–255.
        seed: Seed for use as a layer (see :class:`Augmenter`).
        name: Layer name.

    ``requires_one_hot`` is True when any member mixes labels, so ``to_tf_dataset`` asks for
    ``one_hot=True``.

    Example:
        >>> import keras, numpy as np
        >>> from bloodcell.augment import Compose, RandomGeometric
        >>> aug = Compose([RandomGeometric(), keras.layers.RandomContrast(0.2)])
        >>> aug(np.zeros((2, 32, 32, 3), np.uint8)).shape
        TensorShape([2, 32, 32, 3])
    """

    def __init__(
        self,
        augmenters: Sequence[Callable[..., Any]],
        *,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        if isinstance(augmenters, (str, bytes)) or not isinstance(augmenters, Sequence):
            raise ConfigurationError(f"Compose takes a list of augmenters, got {type(augmenters).__name__}.")
        for aug in augmenters:
            if not callable(aug) and not hasattr(aug, "augment_batch"):
                raise ConfigurationError(f"Compose members must be augmenters or callables, got {aug!r}.")
        self.augmenters = list(augmenters)
        self.requires_one_hot = any(requires_one_hot(a) for a in self.augmenters)

    def augment_batch(self, images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
        x = _check_batch(images)
        dtype = x.dtype
        seed = _as_seed_tensor(seed)
        for i, aug in enumerate(self.augmenters):
            x, labels = apply_augmenter(aug, x, labels, split_seed(seed, i))
        return _restore_dtype(x, dtype), labels

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for aug in self.augmenters:
            if not isinstance(aug, keras.layers.Layer):
                raise ConfigurationError(
                    f"Compose holds {aug!r}, which is not a Keras layer and cannot be saved; "
                    "save only pipelines made of layers."
                )
        config["augmenters"] = [keras.saving.serialize_keras_object(a) for a in self.augmenters]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Compose:
        """Rebuild from :meth:`get_config` (members deserialised as Keras objects)."""
        config = dict(config)
        config["augmenters"] = [keras.saving.deserialize_keras_object(a) for a in config["augmenters"]]
        return cls(**config)

    def __repr__(self) -> str:
        inner = ", ".join(repr(a) for a in self.augmenters)
        return f"Compose([{inner}])"
