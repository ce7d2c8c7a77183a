"""Optics and capture: focus, vibration, sensor noise, compression and resolution of another set-up.

Five augmenters, batched with parameters drawn per image (see :mod:`.domain` for ``severity``
and ``p``):

* :class:`RandomDefocus`: an out-of-focus lens spreads a point into a uniform disc (the
  geometric-optics blur circle); a disc kernel with a radius per image.
* :class:`RandomMotionBlur`: the stage or camera moving during the exposure smears a point into a
  line; a line kernel with a length and an angle per image.
* :class:`RandomNoise`: a camera sensor adds read noise (Gaussian, the same everywhere) and
  photon shot noise (Poisson: its variance grows with the light collected), per pixel and channel.
* :class:`RandomJPEG`: a JPEG round trip at a quality per image.
* :class:`RandomResample`: a camera or objective with fewer pixels per micrometre, then upscaled
  to the same size: down-sampling (with anti-aliasing) by a factor per image, and back.

The blurs run as one depthwise convolution over the whole batch (each image's kernel applied to
its three channels); JPEG and resampling run image by image in a ``tf.map_fn`` (TensorFlow's
JPEG codec and resizer take one quality or size per call), on the chosen images only.

Example:
    >>> from bloodcell.datasets import load_sample
    >>> images = load_sample(per_class=1).images
    >>> RandomDefocus(severity=3, seed=0)(images).shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from bloodcell._validation import check_int, check_number
from bloodcell.augment.base import split_seed
from bloodcell.augment.domain import DomainAugmenter, uniform

__all__ = [
    "RandomDefocus",
    "RandomMotionBlur",
    "RandomNoise",
    "RandomJPEG",
    "RandomResample",
    "filter_per_image",
]


def filter_per_image(images: Any, kernels: Any) -> Any:
    """Convolve each image of a float batch (N, H, W, C) with its own kernel (N, k, k), k odd.

    The border is extended by mirroring (the edge pixel repeated: d c b a | a b c d). The batch is folded into the channels, so one depthwise
    convolution filters every image and channel at once.

    Example:
        >>> import numpy as np
        >>> images = np.zeros((2, 5, 5, 3), np.float32); images[:, 2, 2] = 9.0
        >>> box = np.full((2, 3, 3), 1 / 9, np.float32)
        >>> float(filter_per_image(images, box)[0, 1, 1, 0])
        1.0
    """
    x = tf.cast(images, tf.float32)
    shape = x.shape
    kernels = tf.cast(kernels, tf.float32)
    k = kernels.shape[-1]
    r = k // 2
    n, h, w, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
    x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), tf.stack([1, h + 2 * r, w + 2 * r, n * c]))
    weights = tf.repeat(tf.transpose(kernels, [1, 2, 0]), c, axis=-1)[..., None]  # (k, k, N·C, 1)
    out = tf.nn.depthwise_conv2d(folded, weights, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.transpose(tf.reshape(out, tf.stack([h, w, n, c])), [2, 0, 1, 3])
    return tf.ensure_shape(out, shape)


def _kernel_grid(size: int) -> tuple[Any, Any]:
    r = size // 2
    axis = tf.range(-r, r + 1, dtype=tf.float32)
    return axis[None, :, None], axis[None, None, :]  # y, x of shape (1, k, 1) and (1, 1, k)


def disc_kernels(radius: Any, size: int) -> Any:
    """Normalised disc kernels (N, size, size) with an anti-aliased edge; radius 0 is the identity."""
    y, x = _kernel_grid(size)
    distance = tf.sqrt(x * x + y * y)
    weights = tf.clip_by_value(radius[:, None, None] + 0.5 - distance, 0.0, 1.0)
    return weights / tf.reduce_sum(weights, [1, 2], keepdims=True)


def line_kernels(length: Any, angle: Any, size: int) -> Any:
    """Normalised line kernels (N, size, size) through the centre, one pixel wide, anti-aliased.

    Length 0 keeps nearly all the weight on the centre (all of it at angles 0° and 90°).
    """
    y, x = _kernel_grid(size)
    ux, uy = tf.cos(angle)[:, None, None], tf.sin(angle)[:, None, None]
    half = length[:, None, None] / 2.0
    along = tf.abs(x * ux + y * uy)
    across = tf.abs(y * ux - x * uy)
    # Anti-aliased on both axes: a pixel counts by how much of it the segment covers.
    weights = tf.clip_by_value(half + 0.5 - along, 0.0, 1.0) * tf.clip_by_value(1.0 - across, 0.0, 1.0)
    return weights / tf.reduce_sum(weights, [1, 2], keepdims=True)


def _odd_size(reach: float) -> int:
    return 2 * math.ceil(reach) + 1


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomDefocus(DomainAugmenter):
    """Defocus blur: each image is convolved with a disc of radius r ~ U(0, ``max_radius``·severity/5).

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_radius: Largest blur-circle radius in pixels, at severity 5 (default 2.5; at 96 px
            a cell is about 50–70 px wide).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_radius: float = 2.5,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_radius = check_number(max_radius, "max_radius", low=0.0, high=20.0)

    def transform(self, images: Any, seed: Any) -> Any:
        reach = self.max_radius * self.strength
        radius = uniform(tf.shape(images)[0], seed, 0.0, reach)
        return filter_per_image(images, disc_kernels(radius, _odd_size(reach)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["max_radius"] = self.max_radius
        return config


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomMotionBlur(DomainAugmenter):
    """Motion blur: a line of length L ~ U(0, ``max_length``·severity/5) pixels at an angle U(0°, 180°).

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_length: Longest smear in pixels, at severity 5 (default 6).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_length: float = 6.0,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_length = check_number(max_length, "max_length", low=0.0, high=40.0)

    def transform(self, images: Any, seed: Any) -> Any:
        reach = self.max_length * self.strength
        n = tf.shape(images)[0]
        length = uniform(n, split_seed(seed, 0), 0.0, reach)
        angle = uniform(n, split_seed(seed, 1), 0.0, math.pi)
        return filter_per_image(images, line_kernels(length, angle, _odd_size(reach / 2.0)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["max_length"] = self.max_length
        return config


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomNoise(DomainAugmenter):
    """Sensor noise: read noise of standard deviation σ and shot noise of variance g·x, per pixel.

    Each image draws σ ~ U(0, ``max_sigma``·s) and the gain g ~ U(0, ``max_gain``·s), s =
    severity/5, and every pixel and channel gets x + sqrt(σ² + g·x)·z with z ~ N(0, 1): the Gaussian
    approximation of Poisson photon counts plus the electronics' noise.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_sigma: Largest read-noise standard deviation at severity 5, in levels of 0–255
            (default 8).
        max_gain: Largest shot-noise gain at severity 5, in levels (default 1.0: a pixel at 200
            then varies by up to ±14 levels, one standard deviation).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_sigma: float = 8.0,
        max_gain: float = 1.0,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_sigma = check_number(max_sigma, "max_sigma", low=0.0, high=128.0)
        self.max_gain = check_number(max_gain, "max_gain", low=0.0, high=64.0)

    def transform(self, images: Any, seed: Any) -> Any:
        n = tf.shape(images)[0]
        s = self.strength
        sigma = uniform(n, split_seed(seed, 0), 0.0, self.max_sigma * s)[:, None, None, None]
        gain = uniform(n, split_seed(seed, 1), 0.0, self.max_gain * s)[:, None, None, None]
        z = standard_normal(tf.shape(images), split_seed(seed, 2))
        return images + tf.sqrt(sigma * sigma + gain * tf.maximum(images, 0.0)) * z

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_sigma=self.max_sigma, max_gain=self.max_gain)
        return config


def standard_normal(shape: Any, seed: Any) -> Any:
    """Stateless N(0, 1) draws by the Box–Muller transform, cheaper on a CPU than
    ``tf.random.stateless_normal``: noise on every pixel and channel makes the draws a large share
    of the work.

    Example:
        >>> import tensorflow as tf
        >>> z = standard_normal([100_000], tf.constant([0, 1], tf.int64)).numpy()
        >>> bool(abs(z.mean()) < 0.01), round(float(z.std()), 1)
        (True, 1.0)
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
    half = (size + 1) // 2
    u = tf.random.stateless_uniform(tf.stack([2, half]), seed)
    radius = tf.sqrt(-2.0 * tf.math.log(1.0 - u[0]))  # 1 − u lies in (0, 1]
    angle = (2.0 * math.pi) * u[1]
    z = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)[:size]
    return tf.reshape(z, shape)


def jpeg_round_trip(images: Any, quality: Any) -> Any:
    """Encode and decode each image as JPEG at its own quality (int, 0–100): float32 out.

    ``tf.image.adjust_jpeg_quality`` takes one image and one quality, so this maps it over the
    batch (``tf.map_fn``); the codec runs on the CPU. Inputs are rounded to uint8 first.

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images[:2]
        >>> out = jpeg_round_trip(images, [90, 10])
        >>> err = np.abs(out.numpy() - images).mean(axis=(1, 2, 3))
        >>> bool(err[1] > err[0] > 0)
        True
    """
    x = tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)), tf.uint8)
    quality = tf.cast(tf.convert_to_tensor(quality), tf.int32)

    def one(args: Any) -> Any:
        image, q = args
        out = tf.image.adjust_jpeg_quality(image, q, dct_method="INTEGER_ACCURATE")
        return tf.ensure_shape(out, image.shape)

    out = tf.map_fn(one, (x, quality), fn_output_signature=tf.TensorSpec(x.shape[1:], tf.uint8))
    return tf.cast(out, tf.float32)


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomJPEG(DomainAugmenter):
    """JPEG compression at a quality per image, drawn from [95 − (95 − ``min_quality``)·s, 95].

    Args:
        severity: 0–5 (severity 0 still re-encodes at quality 95, which changes a few levels).
        p: Probability that an image is augmented.
        min_quality: The lowest quality, reached at severity 5 (default 10).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        min_quality: int = 10,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.supports_jit = False  # JPEG encoding has no XLA kernel
        self.min_quality = check_int(min_quality, "min_quality", minimum=1, maximum=95)

    def quality_range(self) -> tuple[int, int]:
        """The lowest and highest JPEG quality an image may draw."""
        return round(95 - (95 - self.min_quality) * self.strength), 95

    def transform(self, images: Any, seed: Any) -> Any:
        low, high = self.quality_range()
        quality = tf.random.stateless_uniform(tf.shape(images)[:1], seed, low, high + 1, tf.int32)
        return jpeg_round_trip(images, quality)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["min_quality"] = self.min_quality
        return config


def resample(images: Any, scale: Any) -> Any:
    """Down-sample each image by its own factor (0–1], anti-aliased, then back up (bicubic): float32.

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images[:2]
        >>> out = resample(images, [1.0, 0.5])
        >>> float(np.abs(out[0] - images[0]).max()) < 0.01
        True
    """
    x = tf.cast(images, tf.float32)
    scale = tf.cast(tf.convert_to_tensor(scale), tf.float32)
    h, w = x.shape[1], x.shape[2]

    def one(args: Any) -> Any:
        image, f = args
        size = tf.cast(tf.maximum(tf.round(f * tf.constant([h, w], tf.float32)), 2.0), tf.int32)
        small = tf.image.resize(image, size, method="bilinear", antialias=True)
        out = tf.image.resize(small, [h, w], method="bicubic")
        same = tf.reduce_all(tf.equal(size, [h, w]))
        return tf.where(same, image, tf.ensure_shape(out, image.shape))

    return tf.map_fn(one, (x, scale), fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32))


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomResample(DomainAugmenter):
    """Lower resolution: down-sample by f ~ U(1 − (1 − ``min_scale``)·s, 1), s = severity/5, and back up.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        min_scale: The smallest factor, reached at severity 5 (default 0.35: a 96 px image
            passes through 34 px).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        min_scale: float = 0.35,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.supports_jit = False  # tf.image.resize with antialias: no XLA kernel (ScaleAndTranslate)
        self.min_scale = check_number(min_scale, "min_scale", low=0.05, high=1.0)

    def transform(self, images: Any, seed: Any) -> Any:
        low = 1.0 - (1.0 - self.min_scale) * self.strength
        return resample(images, uniform(tf.shape(images)[0], seed, low, 1.0))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["min_scale"] = self.min_scale
        return config
