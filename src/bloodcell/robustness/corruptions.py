"""A corruption suite for blood smear crops: stain and colour shifts, optics, smear artefacts, scale.

Each corruption has five severities (1 mild … 5 severe) set by one documented parameter. The
suite is written with NumPy, SciPy and Pillow only, apart from the library's in-graph training
augmentations, so that measuring robustness does not replay the code a model was trained with.

Randomness (stain directions, speck positions, noise...) comes from one generator per image,
seeded by ``seed``, the corruption's name and the image's position, and never by the severity:
a higher severity moves the same image further the same way, and ``corrupt(x[:10])`` equals
``corrupt(x)[:10]``.

Example:
    >>> import bloodcell as bc
    >>> images = bc.datasets.load_sample(per_class=1).images
    >>> blurred = corrupt(images, "defocus_blur", severity=3, seed=0)
    >>> blurred.shape, blurred.dtype
    ((8, 96, 96, 3), dtype('uint8'))
    >>> "jpeg" in list_corruptions("optics")
    True
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from bloodcell._validation import check_seed, is_integer, received, suggest
from bloodcell.datasets.core import BloodCellDataset, as_images
from bloodcell.errors import ConfigurationError, InvalidDtypeError, UnknownNameError
from bloodcell.stain.density import STAIN_VECTORS, UNMIX, optical_density, transmitted

__all__ = [
    "Corruption",
    "CORRUPTIONS",
    "GROUPS",
    "SEVERITIES",
    "corrupt",
    "corrupt_dataset",
    "list_corruptions",
]

SEVERITIES = (1, 2, 3, 4, 5)
GROUPS = ("stain", "optics", "artefact", "scale")

# Images are corrupted this many at a time, so the float32 working copy stays small.
_CHUNK = 128

# Rec. 601 luma weights: the brightness a viewer perceives, used as the grey axis.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

Kernel = Callable[[np.ndarray, float, list[np.random.Generator]], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption and its five severities.

    Attributes:
        name: The kind's name (``"defocus_blur"``).
        group: ``"stain"`` (stain and colour), ``"optics"`` (capture), ``"artefact"`` (smear) or ``"scale"``.
        description: What it imitates and how.
        parameter: What the severity values mean.
        values: The parameter at severities 1..5.
    """

    name: str
    group: str
    description: str
    parameter: str
    values: tuple[float, ...]
    kernel: Kernel

    def value(self, severity: int) -> float:
        """The parameter at ``severity`` (1..5)."""
        return self.values[_check_severity(severity) - 1]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0


def _signs(rngs: list[np.random.Generator], k: int = 1) -> np.ndarray:
    """Per image, ``k`` random signs (±1)."""
    return np.array([np.where(r.random(k) < 0.5, -1.0, 1.0) for r in rngs], np.float32)


def _luma(x: np.ndarray) -> np.ndarray:
    return (x @ _LUMA)[..., None]


def _pil_map(x: np.ndarray, fn: Callable[[Any], Any]) -> np.ndarray:
    """Apply ``fn`` to each image as a Pillow RGB image; back to uint8."""
    from PIL import Image

    return np.stack([np.asarray(fn(Image.fromarray(img, "RGB")).convert("RGB"), np.uint8) for img in x])


def _disk_kernel(radius: float) -> np.ndarray:
    """A flat disk (a defocused lens's point spread), antialiased at the rim by 4× supersampling."""
    half = int(np.ceil(radius))
    fine = (np.arange((2 * half + 1) * 4) + 0.5) / 4 - (half + 0.5)
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    inside = (np.hypot(yy, xx) <= radius).astype(np.float32)
    kernel = inside.reshape(2 * half + 1, 4, 2 * half + 1, 4).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    """A straight streak of ``length`` pixels at ``angle`` radians (a camera or stage moving)."""
    half = int(np.ceil(length / 2))
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float32)
    ts = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(length) * 4))
    ys, xs = half + ts * np.sin(angle), half + ts * np.cos(angle)
    # Bilinear splatting of each sample point onto the four nearest pixels.
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)
            np.add.at(kernel, (yi, xi), wy * wx)
    return kernel / kernel.sum()


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(
        np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij"
    )


# ---------------------------------------------------------------------------------------------
# Stain and colour
# ---------------------------------------------------------------------------------------------
def _hed_shift(x8: np.ndarray, strength: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Stain amounts live in optical density (Beer–Lambert): scale and offset the H and E amounts.
    stains = optical_density(x8) @ UNMIX
    draws = np.array([r.uniform(0.5, 1.0, 4) * np.where(r.random(4) < 0.5, -1, 1) for r in rngs], np.float32)
    scale = np.ones((len(x8), 3), np.float32)
    shift = np.zeros((len(x8), 3), np.float32)
    scale[:, :2] += strength * draws[:, :2]
    shift[:, :2] = 0.25 * strength * draws[:, 2:]
    stains = stains * scale[:, None, None, :] + shift[:, None, None, :]
    return transmitted(np.maximum(stains @ STAIN_VECTORS, 0.0)) / 255.0


def _hue_shift(x8: np.ndarray, degrees: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Rotate the chroma plane of YIQ about the grey axis: hue turns, luma stays.
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    from_yiq = np.linalg.inv(to_yiq).astype(np.float32)
    theta = np.deg2rad(degrees) * _signs(rngs)[:, 0]
    mats = np.zeros((len(x8), 3, 3), np.float32)
    mats[:, 0, 0] = 1.0
    mats[:, 1, 1] = mats[:, 2, 2] = np.cos(theta)
    mats[:, 1, 2], mats[:, 2, 1] = -np.sin(theta), np.sin(theta)
    full = from_yiq[None] @ mats @ to_yiq[None]  # (N, 3, 3), RGB to RGB
    return np.einsum("nhwc,ndc->nhwd", _float(x8), full)


def _saturation(x8: np.ndarray, factor: float, rngs: list[np.random.Generator]) -> np.ndarray:
    x = _float(x8)
    grey = _luma(x)
    return grey + factor * (x - grey)


def _brightness_up(x8: np.ndarray, amount: float, rngs: list[np.random.Generator]) -> np.ndarray:
    x = _float(x8)  # overexposure: every pixel moves part of the way to white
    return x + amount * (1.0 - x)


def _brightness_down(x8: np.ndarray, amount: float, rngs: list[np.random.Generator]) -> np.ndarray:
    return _float(x8) * (1.0 - amount)


def _contrast(x8: np.ndarray, factor: float, rngs: list[np.random.Generator]) -> np.ndarray:
    x = _float(x8)
    mean = _luma(x).mean(axis=(1, 2, 3), keepdims=True)
    return mean + factor * (x - mean)


def _gamma(x8: np.ndarray, log_gamma: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # A random direction per image: half the images get darker mid-tones, half lighter.
    gamma = np.exp(log_gamma * _signs(rngs)[:, 0])
    return _float(x8) ** gamma[:, None, None, None]


# ---------------------------------------------------------------------------------------------
# Optics and capture
# ---------------------------------------------------------------------------------------------
def _defocus_blur(x8: np.ndarray, radius: float, rngs: list[np.random.Generator]) -> np.ndarray:
    from scipy import ndimage

    kernel = _disk_kernel(radius)[None, :, :, None]
    return ndimage.convolve(_float(x8), kernel, mode="reflect")


def _motion_blur(x8: np.ndarray, length: float, rngs: list[np.random.Generator]) -> np.ndarray:
    from scipy import ndimage

    x = _float(x8)
    angles = np.array([r.uniform(0.0, np.pi) for r in rngs])
    return np.stack(
        [
            ndimage.convolve(img, _line_kernel(length, a)[:, :, None], mode="reflect")
            for img, a in zip(x, angles)
        ]
    )


def _gaussian_noise(x8: np.ndarray, sigma: float, rngs: list[np.random.Generator]) -> np.ndarray:
    noise = np.stack([r.standard_normal(x8.shape[1:], np.float32) for r in rngs])
    return _float(x8) + sigma * noise


def _shot_noise(x8: np.ndarray, photons: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Photon counting: a pixel of brightness v collects Poisson(v · photons) photons.
    x = _float(x8)
    return np.stack([r.poisson(img * photons).astype(np.float32) / photons for r, img in zip(rngs, x)])


def _jpeg(x8: np.ndarray, quality: float, rngs: list[np.random.Generator]) -> np.ndarray:
    from PIL import Image

    def compress(img: Any) -> Any:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        return Image.open(io.BytesIO(buf.getvalue()))

    return _pil_map(x8, compress)


def _pixelate(x8: np.ndarray, factor: float, rngs: list[np.random.Generator]) -> np.ndarray:
    from PIL import Image

    h, w = x8.shape[1:3]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    return _pil_map(
        x8, lambda img: img.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.NEAREST)
    )


# ---------------------------------------------------------------------------------------------
# Smear artefacts
# ---------------------------------------------------------------------------------------------
_MAX_DEPOSITS = 22
_DEPOSIT_COLOUR = np.array([0.20, 0.10, 0.30], np.float32)  # dark violet: precipitated stain


def _stain_deposits(x8: np.ndarray, count: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Every image draws all _MAX_DEPOSITS specks; a severity shows the first `count` of them.
    n, h, w = x8.shape[:3]
    yy, xx = _grid(h, w)
    x = _float(x8)
    for img, r in zip(x, rngs):
        centres = r.uniform([0, 0], [h, w], (_MAX_DEPOSITS, 2))
        axes = r.uniform(1.0, 3.2, (_MAX_DEPOSITS, 2))
        angle = r.uniform(0, np.pi, _MAX_DEPOSITS)
        opacity = r.uniform(0.7, 0.95, _MAX_DEPOSITS)
        k = int(count)
        dy = yy[None] - centres[:k, 0, None, None]
        dx = xx[None] - centres[:k, 1, None, None]
        c, s = np.cos(angle[:k, None, None]), np.sin(angle[:k, None, None])
        u, v = (c * dx + s * dy) / axes[:k, 0, None, None], (-s * dx + c * dy) / axes[:k, 1, None, None]
        # Ellipses with a one-pixel soft rim; overlapping specks take the stronger one.
        alpha = (np.clip(1.5 - np.hypot(u, v), 0.0, 1.0) * opacity[:k, None, None]).max(axis=0)
        img += alpha[..., None] * (_DEPOSIT_COLOUR - img)
    return x


_MAX_BUBBLES = 5


def _bubbles(x8: np.ndarray, count: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Air bubbles under the cover slip: a dark refracting rim around a slightly brighter disc.
    n, h, w = x8.shape[:3]
    yy, xx = _grid(h, w)
    x = _float(x8)
    scale = min(h, w) / 96.0
    for img, r in zip(x, rngs):
        centres = r.uniform([0, 0], [h, w], (_MAX_BUBBLES, 2))
        radii = r.uniform(7.0, 18.0, _MAX_BUBBLES) * scale
        for (cy, cx), rad in list(zip(centres, radii))[: int(count)]:
            d = np.hypot(yy - cy, xx - cx)
            rim = np.exp(-(((d - rad) / (1.3 * scale)) ** 2))
            inside = np.clip(rad - d, 0.0, 1.0)
            img += (0.15 * inside)[..., None] * (1.0 - img)
            img *= (1.0 - 0.5 * rim)[..., None]
    return x


def _uneven_illumination(x8: np.ndarray, strength: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # A lamp off-centre: light falls off across the field along a random direction, with some vignetting.
    n, h, w = x8.shape[:3]
    yy, xx = _grid(h, w)
    yy, xx = yy / h - 0.5, xx / w - 0.5
    fields = []
    for r in rngs:
        angle = r.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy + 0.5  # 0..1 across the image (≈)
        vignette = (xx**2 + yy**2) * 2.0
        mix = r.uniform(0.2, 0.5)
        fields.append(1.0 - strength * np.clip((1 - mix) * ramp + mix * vignette, 0.0, 1.0))
    return _float(x8) * np.stack(fields)[..., None]


# ---------------------------------------------------------------------------------------------
# Scale
# ---------------------------------------------------------------------------------------------
def _zoom_in(x8: np.ndarray, crop: float, rngs: list[np.random.Generator]) -> np.ndarray:
    from PIL import Image

    h, w = x8.shape[1:3]
    ch, cw = h * crop, w * crop
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return _pil_map(x8, lambda img: img.resize((w, h), Image.Resampling.BICUBIC, box=box))


def _zoom_out(x8: np.ndarray, scale: float, rngs: list[np.random.Generator]) -> np.ndarray:
    # Shrink the crop and fill the margin with the image's own background (its border's median colour).
    from PIL import Image

    h, w = x8.shape[1:3]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (h - sh) // 2, (w - sw) // 2
    out = np.empty_like(x8)
    for i, img in enumerate(x8):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        out[i] = np.median(border, axis=0).astype(np.uint8)
        small = Image.fromarray(img, "RGB").resize((sw, sh), Image.Resampling.LANCZOS)
        out[i, top : top + sh, left : left + sw] = np.asarray(small)
    return out


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
_TABLE = (
    # Stain and colour
    ("hed_shift", "stain", "Haematoxylin and eosin amounts scaled and offset in optical density, "
     "random direction per image (staining protocol, stain age).",
     "relative change of each stain's amount", (0.06, 0.12, 0.2, 0.3, 0.42), _hed_shift),
    ("hue_shift", "stain", "Hue rotated about the grey axis, clockwise or anticlockwise per image "
     "(white balance, stain batch).", "rotation in degrees", (6.0, 12.0, 20.0, 30.0, 42.0), _hue_shift),
    ("saturation_up", "stain", "Colours pushed away from grey (overstaining, camera saturation).",
     "chroma factor", (1.3, 1.6, 2.0, 2.5, 3.1), _saturation),
    ("saturation_down", "stain", "Colours pulled towards grey (faded or understained smears).",
     "chroma factor", (0.8, 0.62, 0.46, 0.32, 0.18), _saturation),
    ("brightness_up", "stain", "Every pixel moved part of the way to white (overexposure).",
     "fraction of the distance to white", (0.08, 0.16, 0.26, 0.38, 0.5), _brightness_up),
    ("brightness_down", "stain", "Every pixel scaled towards black (underexposure, dim lamp).",
     "fraction of brightness removed", (0.06, 0.12, 0.2, 0.28, 0.38), _brightness_down),
    ("contrast", "stain", "Pixels pulled towards the image's mean grey (flat illumination, glare).",
     "contrast factor", (0.78, 0.62, 0.48, 0.36, 0.25), _contrast),
    ("gamma", "stain", "Mid-tones darkened or lightened (gamma), direction random per image "
     "(camera response curve).", "absolute log-gamma (random sign per image)", (0.15, 0.3, 0.45, 0.62, 0.8), _gamma),
    # Optics and capture
    ("defocus_blur", "optics", "Convolution with a flat disk (out-of-focus lens).",
     "disk radius in pixels", (0.8, 1.2, 1.7, 2.3, 3.0), _defocus_blur),
    ("motion_blur", "optics", "Convolution with a straight streak at a random angle per image "
     "(stage or camera moving).", "streak length in pixels", (3.0, 5.0, 7.0, 9.5, 12.0), _motion_blur),
    ("gaussian_noise", "optics", "Additive Gaussian noise (sensor read noise).",
     "standard deviation on the 0–1 scale", (0.02, 0.035, 0.05, 0.07, 0.1), _gaussian_noise),
    ("shot_noise", "optics", "Poisson photon noise (short exposure, dim light).",
     "photons for a white pixel", (600.0, 300.0, 150.0, 80.0, 40.0), _shot_noise),
    ("jpeg", "optics", "JPEG compression and decompression with Pillow (lossy storage).",
     "JPEG quality", (45.0, 28.0, 17.0, 11.0, 6.0), _jpeg),
    ("pixelate", "optics", "Box-filtered down-sampling and nearest-neighbour up-sampling "
     "(low-resolution capture, resampling).", "size factor of the small copy",
     (0.75, 0.6, 0.48, 0.38, 0.3), _pixelate),
    # Smear artefacts
    ("stain_deposits", "artefact", "Small dark violet specks of precipitated stain at random places.",
     "number of specks", (3.0, 6.0, 10.0, 15.0, 22.0), _stain_deposits),
    ("bubbles", "artefact", "Air bubbles: discs with a dark refracting rim, 7–18 px radius.",
     "number of bubbles", (1.0, 2.0, 3.0, 4.0, 5.0), _bubbles),
    ("uneven_illumination", "artefact", "Light falling off across the field along a random direction, "
     "with vignetting.", "darkening at the dark side", (0.15, 0.25, 0.35, 0.46, 0.58), _uneven_illumination),
    # Scale
    ("zoom_in", "scale", "Central crop enlarged to the full size (higher magnification).",
     "side of the crop as a fraction", (0.9, 0.82, 0.74, 0.67, 0.6), _zoom_in),
    ("zoom_out", "scale", "Image shrunk and centred on its own background colour (lower magnification).",
     "scale factor", (0.9, 0.82, 0.74, 0.67, 0.6), _zoom_out),
)  # fmt: skip

CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType(
    {
        name: Corruption(name, group, desc, param, tuple(values), fn)
        for name, group, desc, param, values, fn in _TABLE
    }
)
"""Every corruption kind by name, in suite order (stain, optics, artefact, scale)."""


def list_corruptions(group: str | None = None) -> list[str]:
    """Names of the corruption kinds, in suite order; only those of ``group`` when given.

    Args:
        group: ``"stain"``, ``"optics"``, ``"artefact"``, ``"scale"`` or None (all).

    Example:
        >>> list_corruptions("scale")
        ['zoom_in', 'zoom_out']
    """
    if group is not None and group not in GROUPS:
        raise ConfigurationError(f"Unknown corruption group {group!r}; groups: {list(GROUPS)}.")
    return [name for name, c in CORRUPTIONS.items() if group is None or c.group == group]


def get_corruption(kind: str) -> Corruption:
    """The :class:`Corruption` called ``kind``.

    Raises:
        UnknownNameError: for a name that is not in the suite (the message lists the closest names).
    """
    if not isinstance(kind, str):
        raise InvalidDtypeError(f"A corruption kind is a name (str). {received('kind', kind)}")
    if kind not in CORRUPTIONS:
        raise UnknownNameError(
            f"Unknown corruption {kind!r}.{suggest(kind, CORRUPTIONS, cutoff=0.4)} Kinds: "
            f"{', '.join(CORRUPTIONS)} (bloodcell.robustness.list_corruptions()). {received('kind', kind)}"
        )
    return CORRUPTIONS[kind]


def _check_severity(severity: Any) -> int:
    if not is_integer(severity) or not 1 <= severity <= 5:
        raise ConfigurationError(
            f"severity must be an integer from 1 (mild) to 5 (severe). {received('severity', severity)}"
        )
    return int(severity)


def _rngs(seed: int, kind: str, start: int, stop: int) -> list[np.random.Generator]:
    # One generator per image, keyed by its position: results do not depend on batching.
    key = zlib.crc32(kind.encode())
    return [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, i))) for i in range(start, stop)
    ]


def corrupt(images: Any, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt a batch of images.

    Args:
        images: uint8 array (N, H, W, 3).
        kind: A name from :func:`list_corruptions` (see :data:`CORRUPTIONS` for what each does).
        severity: 1 (mild) to 5 (severe).
        seed: Seeds the random parts; the same images, kind, severity and seed give the same output.

    Returns:
        A new uint8 array of the same shape.

    Raises:
        UnknownNameError: an unknown kind (the message names the closest ones).
        ConfigurationError: a severity outside 1..5.
        InvalidDataError, InvalidDtypeError: images that are not uint8 (N, H, W, 3).

    Example:
        >>> import numpy as np
        >>> grey = np.full((2, 32, 32, 3), 128, np.uint8)
        >>> int(corrupt(grey, "brightness_up", 5).mean()) > 128
        True
    """
    spec = get_corruption(kind)
    value = spec.value(severity)
    seed = check_seed(seed)
    x = as_images(images)
    out = np.empty_like(x)
    for start in range(0, len(x), _CHUNK):
        stop = min(len(x), start + _CHUNK)
        result = spec.kernel(x[start:stop], value, _rngs(int(seed), kind, start, stop))
        if result.dtype != np.uint8:
            result = np.rint(np.clip(result, 0.0, 1.0) * 255.0)
        out[start:stop] = result
    return out


def corrupt_dataset(dataset: BloodCellDataset, kind: str, severity: int, seed: int = 0) -> BloodCellDataset:
    """A new dataset with the images corrupted (labels, class names, ids and sources kept).

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=1)
        >>> noisy = corrupt_dataset(data, "gaussian_noise", 2)
        >>> len(noisy) == len(data), bool((noisy.labels == data.labels).all())
        (True, True)
    """
    if not isinstance(dataset, BloodCellDataset):
        raise InvalidDtypeError(f"corrupt_dataset() takes a BloodCellDataset, got {type(dataset).__name__}.")
    return dataset.replace(images=corrupt(dataset.images, kind, severity, seed))
