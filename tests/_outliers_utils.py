"""Helpers shared by the outlier tests: non-blood pictures at 96 px, and the sample with planted contaminants."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bloodcell.datasets import BloodCellDataset


def rgb(a: np.ndarray) -> np.ndarray:
    """A grey, RGB or RGBA picture as uint8 RGB (transparency over white)."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4] / 255.0
        a = a[..., :3] * alpha + 255 * (1 - alpha)
    return np.asarray(a, np.uint8)


def resize(a: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A picture (optionally cropped to ``box``) at 96 × 96 px, RGB."""
    img = Image.fromarray(rgb(a))
    if box is not None:
        img = img.crop(box)
    return np.asarray(img.resize((96, 96), Image.Resampling.BICUBIC))


def planted_dataset(sample: BloodCellDataset) -> tuple[BloodCellDataset, dict[str, np.ndarray]]:
    """The 800 real cells (first), then planted contaminants of each kind; kind → indices."""
    skd = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)
    n_real = len(sample)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cartoon = resize(skd.logo())
    parts["copies"] = (np.repeat(cartoon[None], 40, 0), np.arange(40) % 8)  # spread over classes
    photos = [resize(skd.astronaut(), (100, 0, 400, 300)), resize(skd.chelsea()), resize(skd.coffee()),
              resize(skd.rocket()), resize(skd.immunohistochemistry()), resize(skd.retina()),
              resize(skd.colorwheel()), resize(skd.hubble_deep_field(), (0, 0, 500, 500))]  # fmt: skip
    greys = [resize(skd.camera()), resize(skd.text()), resize(skd.coins()), resize(skd.page())]
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::6] = (20, 200, 40)
    unique = np.stack(photos + greys + [stripes])
    parts["non_blood"] = (unique, rng.integers(0, 8, len(unique)))
    colours = np.array([[235, 235, 235], [0, 0, 0], [210, 190, 200], [90, 60, 140]], np.uint8)
    parts["blank"] = (np.broadcast_to(colours[:, None, None], (4, 96, 96, 3)).copy(), np.zeros(4, np.int64))
    pick = rng.choice(n_real, 16, replace=False)
    parts["dark"] = ((sample.images[pick[:8]] * 0.3).astype(np.uint8), sample.labels[pick[:8]])
    blurred = [
        np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(2.0)))
        for im in sample.images[pick[8:]]
    ]
    parts["blurred"] = (np.stack(blurred), sample.labels[pick[8:]])
    near = []
    for im in sample.images[[3, 4]]:
        buf = io.BytesIO()
        Image.fromarray(np.clip(im.astype(int) + 6, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=70)
        near.append(np.asarray(Image.open(buf)))
    parts["near_copy"] = (np.stack(near), sample.labels[[3, 4]])
    # Exact copies of real cells 0..2; the copy of cell 2 under another label.
    copy_labels = sample.labels[[0, 1, 2]].copy()
    copy_labels[2] = (copy_labels[2] + 1) % 8
    parts["exact_copy"] = (sample.images[[0, 1, 2]].copy(), copy_labels)

    images, labels, kinds = [sample.images], [sample.labels], {"real": np.arange(n_real)}
    start = n_real
    for kind, (imgs, labs) in parts.items():
        images.append(imgs)
        labels.append(labs)
        kinds[kind] = np.arange(start, start + len(imgs))
        start += len(imgs)
    return BloodCellDataset(np.concatenate(images), np.concatenate(labels)), kinds
