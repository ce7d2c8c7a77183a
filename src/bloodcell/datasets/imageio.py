"""Decoding and resizing single images with Pillow, and resizing whole arrays in parallel threads.

Pillow releases the GIL while it decodes and resamples, so a thread pool uses every core without
the memory cost of worker processes; results are written straight into one preallocated uint8 array.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from bloodcell._progress import Progress
from bloodcell._validation import check_choice, check_int
from bloodcell.errors import UnreadableFileError

__all__ = ["decode_image", "resize_image", "resize_images", "default_workers", "CropMode"]

CropMode = Literal["center", "none"]


def default_workers() -> int:
    """Threads for decoding: the cores this process may use (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check_size(image_size: int | None) -> None:
    check_int(image_size, "image_size", minimum=8, allow_none=True)


def resize_image(image: Image.Image, image_size: int | None, crop: CropMode = "center") -> np.ndarray:
    """Make a Pillow image RGB, crop it square (``crop="center"``) and resize it with antialiasing.

    Bicubic resampling with Pillow's antialiasing filter support, the preparation used for the
    bundled PBC images. ``crop="none"`` stretches non-square images instead.

    Example:
        >>> resize_image(Image.new("RGB", (120, 100)), 96).shape
        (96, 96, 3)
    """
    if image.mode != "RGB":
        # Palette and alpha images are composited on white, the colour of an empty smear.
        if image.mode in ("RGBA", "LA", "P", "PA"):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            image = image.convert("RGB")
    if image_size is not None:
        w, h = image.size
        if crop == "center" and w != h:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        elif crop not in ("center", "none"):
            check_choice(crop, "crop", ("center", "none"))
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def decode_image(
    source: str | os.PathLike[str] | bytes, image_size: int | None = None, crop: CropMode = "center"
) -> np.ndarray:
    """Decode an image file (or its bytes) to uint8 H×W×3, optionally square-cropped and resized.

    Raises:
        UnreadableFileError: not an image, truncated, unsupported, or over Pillow's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``); the message names the file.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (10, 10), "red").save(buf, "PNG")
        >>> decode_image(buf.getvalue())[0, 0].tolist()
        [255, 0, 0]
    """
    name = "<bytes>" if isinstance(source, bytes) else os.fspath(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            _check_pixels(img.size, name)
            img.load()  # Image.open is lazy: truncation shows up only here
            return resize_image(img, image_size, crop)
    except UnreadableFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow refuses images over twice its limit while opening (and raises the warning too
        # where warnings are errors), before the size can be read from the image.
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise UnreadableFileError(_bomb_message(name, pixels)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UnreadableFileError(
            f"cannot decode image {name}: {err}. Remove or replace the file, or load with on_error='skip'."
        ) from err


def _check_pixels(size: tuple[int, int], name: str) -> None:
    """Refuse images over Pillow's decompression-bomb limit, which Pillow itself only warns about."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise UnreadableFileError(_bomb_message(name, f"{size[0]}×{size[1]} = {size[0] * size[1]:,} pixels"))


def _bomb_message(name: str, pixels: str) -> str:
    return (
        f"image {name} has {pixels}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS), which guards against decompression bombs. Crop or downscale "
        "the image first; or, if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS before loading."
    )


def resize_images(
    images: np.ndarray,
    image_size: int | None,
    *,
    num_workers: int | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Resize a uint8 N×H×W×3 array to N×S×S×3 (antialiased bicubic), in parallel threads.

    Returns ``images`` itself when it already has the size.

    Example:
        >>> resize_images(np.zeros((2, 28, 28, 3), np.uint8), 96).shape
        (2, 96, 96, 3)
    """
    _check_size(image_size)
    if image_size is None or images.shape[1:3] == (image_size, image_size):
        return images
    out = np.empty((len(images), image_size, image_size, 3), np.uint8)

    def work(i: int) -> None:
        out[i] = resize_image(Image.fromarray(np.ascontiguousarray(images[i])), image_size, crop="center")

    run_parallel(work, len(images), num_workers=num_workers, label="resizing", verbose=verbose)
    return out


def run_parallel(
    work: Callable[[int], object],
    n: int,
    *,
    num_workers: int | None,
    label: str,
    verbose: bool,
) -> list[tuple[int, BaseException]]:
    """Call ``work(i)`` for i in range(n) on a thread pool; return the (index, error) pairs that failed.

    Work is handed out in chunks so thread overhead stays small next to a 96-px decode.
    """
    workers = num_workers or default_workers()
    chunk = 64
    failures: list[tuple[int, BaseException]] = []

    def run_chunk(start: int) -> list[tuple[int, BaseException]]:
        errs = []
        for i in range(start, min(start + chunk, n)):
            try:
                work(i)
            except Exception as err:  # collected and reported by the caller
                errs.append((i, err))
        return errs

    with Progress(n, label, enabled=verbose) as bar:
        if workers == 1:
            for start in range(0, n, chunk):
                failures += run_chunk(start)
                bar.update(min(chunk, n - start))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                starts = range(0, n, chunk)
                for start, errs in zip(starts, pool.map(run_chunk, starts)):
                    failures += errs
                    bar.update(min(chunk, n - start))
    return failures
