"""Stain and colour: how the same cell looks after another lab's staining and another camera's colours.

Two augmenters, both batched with parameters drawn per image (see :mod:`.domain` for
``severity`` and ``p``):

* :class:`RandomStain` jitters the amount of each stain. An image is converted to optical density
  (OD = −log10 of the transmitted fraction of light, which adds up over absorbing dyes, Beer–Lambert)
  and unmixed into haematoxylin, eosin and DAB densities with the colour deconvolution matrix of
  Ruifrok & Johnston (2001). Each density is scaled by α and shifted by β, drawn per image and
  stain (as Tellez et al. 2019 do), then mixed back. α models a stain that is more or less
  concentrated or left on longer; β a tint the whole slide took up. Peripheral blood smears are
  stained with Romanowsky dyes (May–Grünwald–Giemsa: a blue-purple basic dye and the red eosin)
  rather than H&E, whose two vectors are close enough to span the same colours.
* :class:`RandomColor` changes what the camera and the display pipeline do: exposure (brightness
  gain), gamma, contrast, saturation and hue.

:func:`rgb_to_hed` and :func:`hed_to_rgb` are the conversions, exact inverses in float. The optical
density and the stain vectors are the library's one convention, :mod:`bloodcell.stain.density`,
expressed here in decadic units (``OD / ln 10``), in which ``max_shift`` is given.

Example:
    >>> from bloodcell.datasets import load_sample
    >>> images = load_sample(per_class=1).images
    >>> RandomStain(severity=3, seed=0)(images).shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_number
from bloodcell.augment.base import _check_batch, split_seed
from bloodcell.augment.domain import DomainAugmenter, uniform
from bloodcell.stain.density import LN10, STAIN_VECTORS, UNMIX, optical_density_tf, transmitted_tf

__all__ = ["RandomStain", "RandomColor", "rgb_to_hed", "hed_to_rgb", "STAIN_VECTORS"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey


def _optical_density(images: Any) -> Any:
    """Decadic optical density of 0–255 values, −log10((x + 1) / 256): 0 for 255."""
    return optical_density_tf(tf.cast(images, tf.float32)) * (1.0 / LN10)


def _transmitted(od: Any) -> Any:
    """0–255 values (unclipped) from decadic optical density."""
    return transmitted_tf(LN10 * od)


def _mix_channels(x: Any, matrix: Any) -> Any:
    """Each pixel's channel vector times a 3×3 matrix, one for all (3, 3) or one per image (N, 3, 3)."""
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.stack([shape[0], -1, 3]))
    if matrix.shape.rank == 2:
        matrix = tf.broadcast_to(matrix, tf.stack([shape[0], 3, 3]))
    return tf.reshape(tf.linalg.matmul(flat, matrix), shape)


def rgb_to_hed(images: Any) -> Any:
    """Stain densities (haematoxylin, eosin, DAB) of RGB images in 0–255: float32, same shape.

    The optical density is ``−log10((x + 1) / 256)`` per channel (the +1 keeps black finite), and
    the densities solve ``OD = hed @ STAIN_VECTORS``. Background (255) has density 0.

    Example:
        >>> import numpy as np
        >>> hed = rgb_to_hed(np.full((1, 2, 2, 3), 255, np.uint8))
        >>> float(np.abs(hed).max())
        0.0
    """
    return _mix_channels(_optical_density(_check_batch(images)), tf.constant(UNMIX, tf.float32))


def hed_to_rgb(hed: Any) -> Any:
    """RGB in 0–255 (float32, not clipped) from stain densities: the inverse of :func:`rgb_to_hed`."""
    return _transmitted(_mix_channels(tf.cast(hed, tf.float32), tf.constant(STAIN_VECTORS, tf.float32)))


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomStain(DomainAugmenter):
    """Jitter the amount of haematoxylin, eosin and DAB per image (HED colour augmentation).

    Each image and stain draws a scale α ~ U(1 − a, 1 + a) and a shift β ~ U(−b, b) (in optical
    density units, log10) with a = ``max_scale``·severity/5 and b = ``max_shift``·severity/5; the
    stain's density d becomes α·d + β.

    Args:
        severity: 0–5 (0: identity). At 5 the densities scale by up to ±``max_scale`` and shift
            by up to ±``max_shift``.
        p: Probability that an image is augmented.
        max_scale: Largest relative change of a stain's density, at severity 5 (default 0.4:
            between 0.6 and 1.4 times as much stain).
        max_shift: Largest added density, at severity 5 (default 0.05: a faint tint; background
            then transmits down to 89 % of the light in its most absorbed channel).
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images
        >>> same = RandomStain(severity=0)(images.astype(np.float32))
        >>> float(np.abs(same - images).max()) < 0.01
        True
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_scale: float = 0.4,
        max_shift: float = 0.05,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_scale = check_number(max_scale, "max_scale", low=0.0, high=1.0)
        self.max_shift = check_number(max_shift, "max_shift", low=0.0, high=1.0)

    def transform(self, images: Any, seed: Any) -> Any:
        n = tf.shape(images)[0]
        a = self.max_scale * self.strength
        b = self.max_shift * self.strength
        alpha = uniform(n, split_seed(seed, 0), 1.0 - a, 1.0 + a, extra=(3,))
        beta = uniform(n, split_seed(seed, 1), -b, b, extra=(3,))
        # Unmix, scale, mix back: one 3×3 matrix per image on the optical density, plus an offset.
        unmix = tf.constant(UNMIX, tf.float32)
        stains = tf.constant(STAIN_VECTORS, tf.float32)
        matrix = tf.linalg.matmul(
            unmix[None] * alpha[:, None, :], tf.broadcast_to(stains, tf.stack([n, 3, 3]))
        )
        offset = tf.linalg.matmul(beta[:, None, :], tf.broadcast_to(stains, tf.stack([n, 3, 3])))
        od = _mix_channels(_optical_density(images), matrix) + offset[:, :, None, :]
        return _transmitted(od)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_scale=self.max_scale, max_shift=self.max_shift)
        return config


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomColor(DomainAugmenter):
    """White balance, exposure, gamma, contrast, saturation and hue, each drawn per image.

    In this order (the order of a camera pipeline), each image draws: a gain per colour channel
    w_c ~ U(1 − w, 1 + w) (the colour of the lamp and the camera's white balance: one lab's
    background is white, another's beige); a brightness gain
    g ~ U(1 − b, 1 + b) (x → g·x); a gamma γ = exp(U(−c, c)) with c = ln(1 + ``max_gamma``·s)
    (x → 255·(x/255)^γ); a contrast factor k ~ U(1 − k₀, 1 + k₀) about the image's mean grey;
    a saturation factor about each pixel's grey; and a hue rotation of up to ±``max_hue`` of the
    colour circle (a turn of the colours about the grey axis of RGB space). Every range is its maximum times s = severity/5.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_channel_gain: Largest relative gain of each colour channel at severity 5 (default
            0.4: PBC's beige background, (255, 228, 203), and a white one are 0.26 apart in blue).
        max_brightness: Largest relative exposure change at severity 5 (default 0.5).
        max_gamma: At severity 5 the gamma lies in [1/(1 + max_gamma), 1 + max_gamma] (default 0.5).
        max_contrast: Largest relative contrast change at severity 5 (default 0.5).
        max_saturation: Largest relative saturation change at severity 5 (default 0.5).
        max_hue: Largest hue rotation at severity 5, as a fraction of the circle (default 0.06,
            about 22°: stains drift in hue, they do not turn green).
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> from bloodcell.datasets import load_sample
        >>> RandomColor(severity=2, seed=0)(load_sample(per_class=1).images).dtype.name
        'uint8'
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_channel_gain: float = 0.4,
        max_brightness: float = 0.5,
        max_gamma: float = 0.5,
        max_contrast: float = 0.5,
        max_saturation: float = 0.5,
        max_hue: float = 0.06,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_channel_gain = check_number(max_channel_gain, "max_channel_gain", low=0.0, high=0.9)
        self.max_brightness = check_number(max_brightness, "max_brightness", low=0.0, high=0.9)
        self.max_gamma = check_number(max_gamma, "max_gamma", low=0.0, high=4.0)
        self.max_contrast = check_number(max_contrast, "max_contrast", low=0.0, high=0.9)
        self.max_saturation = check_number(max_saturation, "max_saturation", low=0.0, high=1.0)
        self.max_hue = check_number(max_hue, "max_hue", low=0.0, high=0.5)

    def transform(self, images: Any, seed: Any) -> Any:
        n = tf.shape(images)[0]
        s = self.strength

        def factor(index: int, largest: float) -> Any:
            return uniform(n, split_seed(seed, index), 1.0 - largest * s, 1.0 + largest * s)

        w = self.max_channel_gain * s
        x = images * uniform(n, split_seed(seed, 5), 1.0 - w, 1.0 + w, extra=(3,))[:, None, None, :]
        x = tf.clip_by_value(x * factor(0, self.max_brightness)[:, None, None, None], 0.0, 255.0)
        log_gamma = math.log1p(self.max_gamma * s)
        gamma = tf.exp(uniform(n, split_seed(seed, 1), -log_gamma, log_gamma))[:, None, None, None]
        x = 255.0 * tf.exp(gamma * tf.math.log(tf.maximum(x / 255.0, 1e-6)))  # exp-log: faster than pow
        luma = tf.constant(_LUMA, tf.float32)
        mean = tf.reduce_sum(tf.reduce_mean(x, [1, 2]) * luma, -1)[:, None, None, None]
        x = mean + factor(2, self.max_contrast)[:, None, None, None] * (x - mean)
        # Saturation (about each pixel's grey) and hue (a turn about the grey axis) are linear in
        # RGB: one 3×3 matrix per image. Row vectors: out = x @ matrix.
        grey = tf.broadcast_to(luma[:, None], [3, 3])  # x @ grey puts the grey level in every channel
        saturation = factor(3, self.max_saturation)[:, None, None]
        matrix = grey + saturation * (tf.eye(3) - grey)
        theta = uniform(n, split_seed(seed, 4), -self.max_hue * s, self.max_hue * s) * (2.0 * math.pi)
        c, si = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
        axis = tf.fill([3, 3], 1.0 / 3.0)  # k kᵀ for k = (1, 1, 1)/√3
        cross = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3.0)
        rotation = c * tf.eye(3) + si * cross + (1.0 - c) * axis  # Rodrigues, acting on column vectors
        matrix = tf.linalg.matmul(matrix, tf.transpose(rotation, [0, 2, 1]))
        return _mix_channels(x, matrix)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_channel_gain=self.max_channel_gain,
            max_brightness=self.max_brightness,
            max_gamma=self.max_gamma,
            max_contrast=self.max_contrast,
            max_saturation=self.max_saturation,
            max_hue=self.max_hue,
        )
        return config
