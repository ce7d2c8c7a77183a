"""Smear artefacts: stain deposits, air bubbles and uneven illumination.

Three augmenters, batched with parameters drawn per image (see :mod:`.domain` for ``severity``
and ``p``):

* :class:`RandomDeposits`: stain precipitate left on the slide, from fine specks to large, nearly
  opaque clumps that hide part of a cell. Each speck is a small ellipse of dye with an optical
  density; densities add where specks overlap and the light they let through follows Beer–Lambert
  (``x · 10^(−density · colour)``), so a deposit can only darken, and its colour lies between the
  basic (blue-purple) dye's and a neutral grey-black.
* :class:`RandomBubbles`: air trapped under the coverslip or in the mounting medium. Inside, the
  bubble washes the image out towards white; its edge, where light is refracted away from the
  objective, is a dark ring (faint or absent when the bubble is out of the focal plane), with a
  thin bright ring just inside it.
* :class:`RandomIllumination`: a lamp or condenser out of alignment: a smooth brightness field
  (vignetting about an off-centre point times a low-frequency random field) that multiplies the
  image.

Example:
    >>> from bloodcell.datasets import load_sample
    >>> images = load_sample(per_class=1).images
    >>> RandomDeposits(severity=3, seed=0)(images).shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bloodcell._validation import check_int, check_number
from bloodcell.augment.base import split_seed
from bloodcell.augment.domain import DomainAugmenter, uniform
from bloodcell.stain.density import LN10, STAIN_VECTORS

__all__ = ["RandomDeposits", "RandomBubbles", "RandomIllumination"]


def _grid(images: Any) -> tuple[Any, Any]:
    """Pixel-centre coordinates, y (1, 1, H, 1) and x (1, 1, 1, W), for (N, K, H, W) arithmetic."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    y = tf.cast(tf.range(h), tf.float32)[None, None, :, None]
    x = tf.cast(tf.range(w), tf.float32)[None, None, None, :]
    return y, x


def _active(n: Any, most: int, seed: Any) -> Any:
    """(N, most) mask: each image keeps between 1 and ``most`` of its ``most`` candidates."""
    count = tf.random.stateless_uniform(tf.stack([n, 1]), seed, 1, most + 1, tf.int32)
    return tf.cast(tf.range(most)[None, :] < count, tf.float32)


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomDeposits(DomainAugmenter):
    """Stain precipitate: dark specks or clumps, with a count, size, darkness and colour per image.

    With s = severity/5, each image gets between 1 and ceil(``max_count``·s) specks scattered
    about a random point (spread 5–40 % of the image size), each an ellipse (axis ratio 0.5–1,
    any orientation). Precipitate comes as fine grains or as coarse clumps, so each image first
    draws its grain size R uniformly in [1, 1 + (``max_radius`` − 1)·s] pixels, and each
    speck a radius U(R/2, R): from specks of a pixel or two to large ones that merge into an
    irregular, nearly black clump. Each speck's optical density at its centre is
    U(0.3, ``max_density``); the image's deposit colour is a random mix of the basic dye's and a
    neutral one.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_count: Most specks per image, at severity 5 (default 12).
        max_radius: Largest grain size R in pixels, at severity 5 (default 12: clumps of up to
            about a quarter of a 96-pixel image).
        max_density: Largest optical density (log10) at a speck's centre (default 2.5: under 4 %
            of the light passes in every channel).
        seed: Seed for use as a layer or function.
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images
        >>> out = RandomDeposits(severity=5, seed=0)(images).numpy().astype(int)
        >>> bool((out <= images.astype(int) + 1).all())        # deposits only absorb light
        True
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_count: int = 12,
        max_radius: float = 12.0,
        max_density: float = 2.5,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_count = check_int(max_count, "max_count", minimum=1, maximum=200)
        self.max_radius = check_number(max_radius, "max_radius", low=1.0, high=30.0)
        self.max_density = check_number(max_density, "max_density", low=0.3, high=3.0)

    def transform(self, images: Any, seed: Any) -> Any:
        most = math.ceil(self.max_count * self.strength)
        if most == 0:
            return images
        n = tf.shape(images)[0]
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        draw = lambda i, lo, hi: uniform(n, split_seed(seed, i), lo, hi, extra=(most,))  # noqa: E731
        active = _active(n, most, split_seed(seed, 0))
        centre = uniform(n, split_seed(seed, 1), 0.0, 1.0, extra=(2,)) * size  # (N, 2): y, x
        spread = uniform(n, split_seed(seed, 2), 0.05, 0.4)[:, None] * size[0]
        offsets = tf.random.stateless_normal(tf.stack([n, most, 2]), split_seed(seed, 3))
        # Specks that would fall outside the frame wrap round, so every image shows its count.
        cy = tf.math.floormod(centre[:, None, 0] + spread * offsets[..., 0], size[0])
        cx = tf.math.floormod(centre[:, None, 1] + spread * offsets[..., 1], size[1])
        grain = uniform(n, split_seed(seed, 9), 1.0, 1.0 + (self.max_radius - 1.0) * self.strength)
        radius = draw(4, 0.5, 1.0) * grain[:, None]  # U(R/2, R) per speck
        ratio = draw(5, 0.5, 1.0)
        angle = draw(6, 0.0, math.pi)
        density = draw(7, 0.3, self.max_density) * active
        y, x = _grid(images)
        dy, dx = y - cy[:, :, None, None], x - cx[:, :, None, None]
        c, s = tf.cos(angle)[:, :, None, None], tf.sin(angle)[:, :, None, None]
        r = radius[:, :, None, None]
        u = (c * dx + s * dy) / (r * ratio[:, :, None, None])
        v = (-s * dx + c * dy) / r
        # Anti-aliased ellipse: full density inside, a one-pixel ramp at the edge.
        profile = tf.clip_by_value((1.0 - tf.sqrt(u * u + v * v)) * r + 0.5, 0.0, 1.0)
        od = tf.reduce_sum(density[:, :, None, None] * profile, axis=1)[..., None]  # (N, H, W, 1)
        mix = uniform(n, split_seed(seed, 8))[:, None]
        neutral = tf.fill([1, 3], 1.0 / math.sqrt(3.0))
        dye = tf.constant(STAIN_VECTORS[:1], tf.float32)
        colour = mix * dye + (1.0 - mix) * neutral  # (N, 3), optical density per unit dye
        return images * tf.exp(-LN10 * od * colour[:, None, None, :])  # 10^−OD, faster

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_count=self.max_count, max_radius=self.max_radius, max_density=self.max_density)
        return config


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomBubbles(DomainAugmenter):
    """Air bubbles: washed-out discs with a refractive rim and a thin bright inner ring.

    With s = severity/5, each image gets between 1 and ceil(``max_count``·s) bubbles, centred
    anywhere in or slightly outside the frame, of radius U(0.04, 0.04 + (``max_radius`` − 0.04)·s)
    times the image size. Inside, each pixel moves a fraction U(0.05, 0.05 + 0.45·s) of the way to
    white; the rim, 1–2.5 pixels wide, keeps 1 − U(0, 0.7) of the light: a sharp dark ring for a
    bubble in focus, hardly any for one above or below the focal plane.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_count: Most bubbles per image at severity 5 (default 5).
        max_radius: Largest bubble radius as a fraction of the image size, at severity 5
            (default 0.3).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_count: int = 5,
        max_radius: float = 0.3,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.max_count = check_int(max_count, "max_count", minimum=1, maximum=20)
        self.max_radius = check_number(max_radius, "max_radius", low=0.04, high=1.0)

    def transform(self, images: Any, seed: Any) -> Any:
        most = math.ceil(self.max_count * self.strength)
        if most == 0:
            return images
        s = self.strength
        n = tf.shape(images)[0]
        size = tf.cast(tf.shape(images)[1], tf.float32)
        draw = lambda i, lo, hi: uniform(n, split_seed(seed, i), lo, hi, extra=(most,))[:, :, None, None]  # noqa: E731
        active = _active(n, most, split_seed(seed, 0))[:, :, None, None]
        cy = draw(1, -0.15, 1.15) * size
        cx = draw(2, -0.15, 1.15) * size
        radius = draw(3, 0.04, 0.04 + (self.max_radius - 0.04) * s) * size
        haze = draw(4, 0.05, 0.05 + 0.45 * s) * active
        darkness = draw(5, 0.0, 0.7) * active
        width = draw(6, 1.0, 2.5)
        y, x = _grid(images)
        rho = tf.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        inside = tf.sigmoid((radius - rho) / 0.7)
        rim = tf.exp(-(((rho - radius) / width) ** 2))
        glint = tf.exp(-(((rho - radius + 2.0 * width) / (0.6 * width)) ** 2))
        # Per bubble: the fraction moved to white (haze, glint) and the fraction of light kept (rim).
        whiten = 1.0 - tf.reduce_prod(1.0 - tf.clip_by_value(haze * (inside + glint), 0.0, 1.0), axis=1)
        keep = tf.reduce_prod(1.0 - darkness * rim, axis=1)
        out = images + whiten[..., None] * (255.0 - images)
        return out * keep[..., None]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_count=self.max_count, max_radius=self.max_radius)
        return config


@keras.saving.register_keras_serializable(package="bloodcell")
class RandomIllumination(DomainAugmenter):
    """A smooth brightness field: vignetting about an off-centre point times a low-frequency field.

    With s = severity/5, each image draws a vignetting strength v ~ U(0, ``max_vignetting``·s),
    so the light falls quadratically to 1 − v at the distance of a corner from the point (and no lower) (which lies up to 30 %
    of the size away from the centre), and a ``grid`` × ``grid`` field of log gains
    U(−g, g), g = ln(1 + ``max_unevenness``·s), smoothly interpolated (bicubic) over the image.

    Args:
        severity: 0–5 (0: identity).
        p: Probability that an image is augmented.
        max_vignetting: Largest fall of the light towards the corners at severity 5 (default 0.4).
        max_unevenness: Largest relative gain of the low-frequency field at severity 5 (default 0.25).
        grid: Nodes per side of the low-frequency field (default 3: one smooth bump or slope).
        seed: Seed for use as a layer or function.
        name: Layer name.
    """

    def __init__(
        self,
        severity: float = 3.0,
        p: float = 1.0,
        *,
        max_vignetting: float = 0.4,
        max_unevenness: float = 0.25,
        grid: int = 3,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(severity, p, seed=seed, name=name, **kwargs)
        self.supports_jit = False  # bicubic resizing has no XLA kernel
        self.max_vignetting = check_number(max_vignetting, "max_vignetting", low=0.0, high=0.95)
        self.max_unevenness = check_number(max_unevenness, "max_unevenness", low=0.0, high=2.0)
        self.grid = check_int(grid, "grid", minimum=2, maximum=16)

    def field(self, images: Any, seed: Any) -> Any:
        """The multiplicative brightness field (N, H, W, 1) of each image for ``seed``."""
        s = self.strength
        n = tf.shape(images)[0]
        h, w = images.shape[1], images.shape[2]
        size = tf.cast(tf.stack([h, w]), tf.float32)
        strength = uniform(n, split_seed(seed, 0), 0.0, self.max_vignetting * s)[:, None, None, None]
        centre = (0.5 + uniform(n, split_seed(seed, 1), -0.3, 0.3, extra=(2,))) * size
        y, x = _grid(images)
        rho2 = (y - centre[:, None, 0, None, None]) ** 2 + (x - centre[:, None, 1, None, None]) ** 2
        corner2 = float(np.hypot(h, w) / 2.0) ** 2
        vignette = tf.transpose(1.0 - strength * tf.minimum(rho2 / corner2, 1.0), [0, 2, 3, 1])
        g = math.log1p(self.max_unevenness * s)
        nodes = uniform(n, split_seed(seed, 2), -g, g, extra=(self.grid, self.grid, 1))
        smooth = tf.image.resize(nodes, [h, w], method="bicubic")
        return tf.maximum(vignette, 0.0) * tf.exp(smooth)

    def transform(self, images: Any, seed: Any) -> Any:
        return images * self.field(images, seed)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(max_vignetting=self.max_vignetting, max_unevenness=self.max_unevenness, grid=self.grid)
        return config
