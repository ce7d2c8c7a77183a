"""
Augmentation gallery: AugMix, geometric transforms and Keras layers on real cells
=================================================================================

Augmentations must leave a cell recognisable: a neutrophil turned by any angle, mirrored or shifted
is still a neutrophil, while too strong a colour change can make an eosinophil's granules vanish.
Look at them on real cells before training. :func:`bloodcell.plots.augmentation_grid` shows one
real cell per class beside several augmented versions of it.

Usage::

    python examples/augmentation_gallery.py            # five augmentations per cell, runs/augmentation
    python examples/augmentation_gallery.py --smoke    # three per cell
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib.pyplot as plt

import bloodcell as bc

parser = argparse.ArgumentParser(description="Show augmentations of real cells, one per class.")
parser.add_argument("--augmentations", type=int, default=5, help="augmented versions per cell (default 5)")
parser.add_argument(
    "--out", type=Path, default=None, help="folder for the figures (default runs/augmentation)"
)
parser.add_argument("--smoke", action="store_true", help="fewer augmentations, a temporary folder")
args, _ = parser.parse_known_args()
if args.smoke:
    args.augmentations = 3
out = args.out or (
    Path(tempfile.mkdtemp(prefix="bloodcell-augmentation-")) if args.smoke else Path("runs/augmentation")
)
out.mkdir(parents=True, exist_ok=True)


def show(path: Path) -> None:
    """Open a PNG written by :mod:`bloodcell.plots` as a figure (the docs gallery picks it up)."""
    image = plt.imread(path)
    fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    ax.imshow(image)
    ax.axis("off")


data = bc.datasets.load_sample()

# %%
# AugMix
# ------
# :class:`~bloodcell.augment.AugMix` follows the paper (Hendrycks et al. 2020): per image, three
# chains of one to three operations (autocontrast, equalize, posterize, rotate, solarize, shear,
# translate), mixed with random Dirichlet weights and then with the original. Every draw is made per
# image, inside the TensorFlow graph. The seed study found it better than oversampling or SMOTE.

augmix = bc.augment.AugMix(severity=3, width=3, depth=-1, alpha=1.0)
show(
    bc.plots.augmentation_grid(
        data,
        augmix,
        out / "augmix.png",
        n_augmentations=args.augmentations,
        seed=0,
        dpi=60,
        title="AugMix (the paper's settings)",
    )
)

# %%
# Rotations, flips and shifts
# ---------------------------
# A cell on a slide has no orientation. :class:`~bloodcell.augment.RandomGeometric` turns each
# image by any angle, mirrors it both ways and shifts it by up to 10 %, in one resampling; the
# corners uncovered by a rotation are filled by reflecting the image, so the slide background
# continues instead of black corners.

geometric = bc.augment.RandomGeometric(rotation=180, translation=0.1, flip="both")
show(
    bc.plots.augmentation_grid(
        data,
        geometric,
        out / "geometric.png",
        n_augmentations=args.augmentations,
        seed=0,
        dpi=60,
        title="RandomGeometric(rotation=180, translation=0.1, flip='both')",
    )
)

# %%
# Composing with Keras layers
# ---------------------------
# :class:`~bloodcell.augment.Compose` chains bloodcell augmenters, Keras's own image layers and
# plain functions. Each member gets a seed drawn from the batch seed, so the pipeline gives the same
# images for the same seed. Here: geometry, then a mild colour jitter (stain intensity differs from
# lab to lab), then a small blur.

composed = bc.augment.Compose(
    [
        bc.augment.RandomGeometric(),
        keras.layers.RandomColorJitter(
            value_range=(0, 255), brightness_factor=0.1, contrast_factor=0.15, saturation_factor=(0.4, 0.6)
        ),
        keras.layers.RandomGaussianBlur(factor=0.5, sigma=(0.1, 0.8), value_range=(0, 255)),
    ]
)
show(
    bc.plots.augmentation_grid(
        data,
        composed,
        out / "composed.png",
        n_augmentations=args.augmentations,
        seed=0,
        dpi=60,
        title="Compose: RandomGeometric, RandomColorJitter, RandomGaussianBlur",
    )
)

# %%
# In a training pipeline
# ----------------------
# The same objects go to :func:`bloodcell.pipeline.to_tf_dataset` (or ``Trainer(augment=...)``),
# which augments each batch inside ``tf.data`` with a seed per batch: reproducible, and different
# from epoch to epoch. Images stay uint8 in memory; the batches come out as the model wants them.

ds = bc.pipeline.to_tf_dataset(data, batch_size=16, augment=augmix, shuffle=True, seed=0)
images, labels = next(iter(ds))
print("batch:", images.shape, images.dtype.name, "labels:", labels.numpy().tolist())

fig, axes = plt.subplots(2, 8, figsize=(9.6, 2.8))
for ax, image, label in zip(axes.flat, images.numpy(), labels.numpy()):
    ax.imshow(image.astype("uint8"))
    ax.set_title(data.class_names[label], fontsize=7)
    ax.axis("off")
fig.suptitle("one AugMix training batch from to_tf_dataset", fontsize=9)
print(f"figures in {out}")
