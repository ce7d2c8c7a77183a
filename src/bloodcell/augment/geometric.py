"""`RandomGeometric`: rotation by any angle, both flips and small shifts, in one resampling per image.

A blood cell has no orientation: rotated or mirrored, a neutrophil is still a neutrophil, so every
angle and both flips keep the label. The flip, rotation and translation of each image are composed
into one affine map and resampled once (flips alone are exact pixel moves, no blur).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_number, is_number, received
from bloodcell.augment import ops as _ops
from bloodcell.augment.base import Augmenter, _as_seed_tensor, _check_batch, split_seed
from bloodcell.errors import ConfigurationError

__all__ = ["RandomGeometric"]

_FLIPS = {
    "both": (True, True),
    "horizontal": (True, False),
    "vertical": (False, True),
    "none": (False, False),
}


def _translation_fractions(translation: Any) -> tuple[float, float]:
    if is_number(translation):
        pair = (float(translation), float(translation))
    elif (
        isinstance(translation, (tuple, list)) and len(translation) == 2 and all(map(is_number, translation))
    ):
        pair = (float(translation[0]), float(translation[1]))
    else:
        raise ConfigurationError(
            "translation must be a fraction of the image size or a (height, width) pair. "
            f"{received('translation', translation)}"
        )
    if not all(0.0 <= t <= 1.0 for t in pair):
        raise ConfigurationError(
            f"translation fractions must lie in [0, 1]. {received('translation', translation)}"
        )
    return pair


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomGeometric(Augmenter):
    """Random rotation, flips and translation per image, resampled once.

    Args:
        rotation: Largest rotation in degrees; each image turns by U(-rotation, rotation).
            The default 180 allows any angle.
        translation: Largest shift as a fraction of the image size, one number or a
            (height, width) pair; each image shifts by U(-t, t)·size along each axis.
        flip: ``"both"`` (mirror left-right and up-down, each with probability 1/2),
            ``"horizontal"``, ``"vertical"``, ``"none"``; ``True`` means ``"both"`` and ``False`` ``"none"``.
        fill_mode: Outside the image: ``"reflect"`` (default: the slide background continues),
            ``"constant"``, ``"nearest"``, ``"wrap"``.
        fill_value: Value for ``fill_mode="constant"``.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        jit_compile: Resample with XLA (faster on a CPU); False on a platform without XLA.
        seed: Seed for use as a layer or function (``to_tf_dataset`` passes per-batch seeds).
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> aug = RandomGeometric(rotation=180, translation=0.1, flip="both", seed=0)
        >>> aug(np.zeros((4, 96, 96, 3), np.uint8)).shape
        TensorShape([4, 96, 96, 3])
    """

    def __init__(
        self,
        rotation: float = 180.0,
        translation: float | tuple[float, float] = 0.1,
        flip: str | bool = "both",
        fill_mode: str = "reflect",
        *,
        fill_value: float = 0.0,
        interpolation: str = "bilinear",
        jit_compile: bool = True,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        rotation = check_number(rotation, "rotation", low=0, high=180)
        if flip is True:
            flip = "both"
        elif flip is False:
            flip = "none"
        if flip not in _FLIPS:
            raise ConfigurationError(
                f"flip must be one of {sorted(_FLIPS)} (or True/False). {received('flip', flip)}"
            )
        _ops._check_geometry(interpolation, fill_mode)
        self.rotation = float(rotation)
        self.translation = _translation_fractions(translation)
        self.flip = flip
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.interpolation = interpolation
        self.jit_compile = bool(jit_compile)

    def transforms(self, batch_size: Any, height: Any, width: Any, seed: Any) -> Any:
        """The per-image output→input affine maps (N, 6) this augmenter draws for ``seed``."""
        seed = _as_seed_tensor(seed)
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        n = tf.stack([batch_size])
        degrees = tf.random.stateless_uniform(n, split_seed(seed, 0), -self.rotation, self.rotation)
        dy = tf.random.stateless_uniform(n, split_seed(seed, 1), -1.0, 1.0) * self.translation[0] * h
        dx = tf.random.stateless_uniform(n, split_seed(seed, 2), -1.0, 1.0) * self.translation[1] * w
        flip_x, flip_y = _FLIPS[self.flip]
        coins = tf.random.stateless_uniform(tf.stack([batch_size, 2]), split_seed(seed, 3)) < 0.5
        sx = tf.where(coins[:, 0] & flip_x, -1.0, 1.0)  # mirror x about the centre
        sy = tf.where(coins[:, 1] & flip_y, -1.0, 1.0)
        radians = degrees * (math.pi / 180.0)
        c, s = tf.cos(radians), tf.sin(radians)
        # out = translate(rotate(flip(x))): output p samples x at F·R·T·p (each map output → input).
        # T·p = p - d; R about the centre (counter-clockwise); F mirrors about the centre.
        ux, uy = -dx - cx, -dy - cy  # T·p minus the centre, constant part
        rx_x, rx_y, rx_0 = c, -s, c * ux - s * uy  # R·(T·p) - centre, x row
        ry_x, ry_y, ry_0 = s, c, s * ux + c * uy  # y row
        return tf.stack([sx * rx_x, sx * rx_y, sx * rx_0 + cx, sy * ry_x, sy * ry_y, sy * ry_0 + cy], axis=-1)

    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        t = self.transforms(tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], seed)
        return _ops.affine_transform(
            x,
            t,
            interpolation=self.interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            jit_compile=self.jit_compile,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            rotation=self.rotation,
            translation=self.translation,
            flip=self.flip,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            interpolation=self.interpolation,
            jit_compile=self.jit_compile,
        )
        return config
