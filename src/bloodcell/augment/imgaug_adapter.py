"""`ImgaugAugmenter`: run any imgaug pipeline inside ``tf.data`` (or a Keras model), seeded per batch.

imgaug runs NumPy code, so the batch leaves the graph through ``tf.numpy_function``: it runs on
the CPU and holds Python's GIL, which makes it several times slower than the in-graph augmenters
(see benchmarks/augment.py). It is here for pipelines that already exist in imgaug, such as the
seed study's rotations and translations. Install with ``pip install bloodcell[imgaug]``; on
NumPy 2 the import goes through :mod:`bloodcell._compat.imgaug`.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import tensorflow as tf

from bloodcell._compat.imgaug import import_imgaug
from bloodcell.augment.base import Augmenter, _as_seed_tensor, _check_batch, _restore_dtype
from bloodcell.errors import ConfigurationError, InvalidDataError

__all__ = ["ImgaugAugmenter"]


def _entropy(seed: np.ndarray) -> int:
    """One non-negative integer seed for imgaug from the stateless pair."""
    a, b = (int(v) & 0xFFFFFFFF for v in np.asarray(seed).reshape(-1)[:2])
    return (a * 0x9E3779B1 + b) % (2**31 - 1)


class ImgaugAugmenter(Augmenter):
    """Wrap an imgaug pipeline (``imgaug.augmenters.Sequential([...])`` or any imgaug augmenter).

    Each batch reseeds the pipeline from the per-batch seed, so a ``to_tf_dataset`` pipeline
    with a fixed seed gives the same images every run. Images reach imgaug as uint8 (rounded
    and clipped) and come back in the input dtype; the pipeline must keep the image size.

    Args:
        pipeline: An imgaug augmenter. Get imgaug's module with
            :func:`bloodcell.augment.import_imgaug` (it works on NumPy 2).
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> from bloodcell.augment import import_imgaug
        >>> iaa = import_imgaug()
        >>> aug = ImgaugAugmenter(iaa.Sequential([iaa.Fliplr(0.5), iaa.Affine(rotate=(-180, 180))]))
        >>> aug(np.zeros((2, 32, 32, 3), np.uint8)).shape
        TensorShape([2, 32, 32, 3])
    """

    def __init__(
        self, pipeline: Any, *, seed: int | None = None, name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        self.supports_jit = False  # NumPy code through tf.numpy_function
        iaa = import_imgaug()
        if not isinstance(pipeline, iaa.Augmenter):
            raise ConfigurationError(
                "ImgaugAugmenter takes an imgaug augmenter (e.g. imgaug.augmenters.Sequential), "
                f"got {type(pipeline).__name__}."
            )
        # imgaug's Sequential subclasses list: keep Keras's attribute tracking from wrapping it.
        object.__setattr__(self, "pipeline", pipeline)
        self._imgaug_lock = threading.Lock()  # tf.data calls in parallel; imgaug augmenters carry RNG state

    def _run(self, images: np.ndarray, seed: np.ndarray) -> np.ndarray:
        with self._imgaug_lock:
            self.pipeline.seed_(_entropy(seed))
            out = self.pipeline.augment_images(images)
        out = np.asarray(out)
        if out.shape != images.shape:
            raise InvalidDataError(
                f"the imgaug pipeline changed the batch shape from {images.shape} to {out.shape}; "
                "bloodcell pipelines need size-preserving augmenters (add iaa.Resize or a crop back to size)."
            )
        return np.ascontiguousarray(out, dtype=np.uint8)

    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        batch = (
            x
            if x.dtype == tf.uint8
            else tf.cast(tf.round(tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 255.0)), tf.uint8)
        )
        out = tf.numpy_function(self._run, [batch, _as_seed_tensor(seed)], tf.uint8, stateful=False)
        out = tf.ensure_shape(out, x.shape)
        return _restore_dtype(out, x.dtype)

    def get_config(self) -> dict[str, Any]:
        raise ConfigurationError(
            "an ImgaugAugmenter holds an imgaug pipeline and cannot be saved with a Keras model."
        )

    def __repr__(self) -> str:
        return f"ImgaugAugmenter({self.pipeline!r})"
