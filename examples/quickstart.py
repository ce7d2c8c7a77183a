"""
Quickstart: train and evaluate a classifier on real blood cells
================================================================

Load the 800 real PBC cells bundled with bloodcell, split them without leaks, train a small
convolutional network from scratch with the :class:`~bloodcell.Trainer`, and evaluate it on the
held-out test part: accuracy, macro F1 and a confusion matrix.

No pretrained weights are needed, so this runs offline on a CPU. With ImageNet
weights and the seed's EfficientNetV2S the same few lines are the study's recipe; see
:doc:`/guide/training`.

Usage::

    python examples/quickstart.py                 # 800 cells at 96 px, 30 epochs (minutes on a CPU)
    python examples/quickstart.py --smoke         # 800 cells at 48 px, 6 epochs (about a minute)

The docs gallery runs every example with ``--smoke``, so the numbers shown there come from a few
epochs of a small network: they check the machinery, not the method.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib.pyplot as plt

import bloodcell as bc

parser = argparse.ArgumentParser(description="Train and evaluate a small classifier on the bundled cells.")
parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
parser.add_argument("--image-size", type=int, default=96, help="image side in pixels (default 96)")
parser.add_argument("--out", type=Path, default=None, help="folder for the figures (default runs/quickstart)")
parser.add_argument("--smoke", action="store_true", help="a tiny, fast run that checks the machinery")
args, _ = parser.parse_known_args()
if args.smoke:  # small images, few epochs: the machinery, not the accuracy
    args.epochs, args.image_size = 6, 48
out = args.out or (
    Path(tempfile.mkdtemp(prefix="bloodcell-quickstart-")) if args.smoke else Path("runs/quickstart")
)
out.mkdir(parents=True, exist_ok=True)


def show(path: Path) -> None:
    """Open a PNG written by :mod:`bloodcell.plots` as a figure (the docs gallery picks it up)."""
    image = plt.imread(path)
    fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    ax.imshow(image)
    ax.axis("off")


# %%
# Load and split the data
# -----------------------
# :func:`~bloodcell.datasets.load_sample` returns a :class:`~bloodcell.datasets.BloodCellDataset`:
# uint8 images, integer labels and the eight class names. :func:`~bloodcell.datasets.split` is
# stratified by class and keeps identical images in the same part, so no copy of a test image can
# sit in the training set.

data = bc.datasets.load_sample()
if args.image_size != 96:
    data = data.replace(images=bc.datasets.resize_images(data.images, args.image_size))
print(data.summary())

train, val, test = bc.datasets.split(data, val=0.15, test=0.15, seed=0)
print(f"\ntrain {len(train)}, val {len(val)}, test {len(test)} images")

# %%
# Build a classifier
# ------------------
# :func:`bloodcell.build_classifier` puts a backbone, global pooling and a head into one Keras model
# that takes pixels in 0–255. The backbone is usually a registered name (``"efficientnetv2s"``,
# ``"mobilenetv3small"``, see :func:`bloodcell.backbones.list_backbones`); any Keras model that maps
# images to feature maps works too. Here a small convolutional network trained from scratch keeps
# the example fast on a CPU. For real work, write
# ``bc.build_classifier("efficientnetv2s", weights="imagenet", freeze=120)``, the seed study's model.
# ``keras.utils.set_random_seed`` before building makes the run repeatable.

keras.utils.set_random_seed(0)
layers = keras.layers
backbone = keras.Sequential(
    [keras.Input(data.image_shape), layers.Rescaling(1 / 255)]
    + [
        block
        for filters in (16, 32, 64, 128)
        for block in (
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.MaxPooling2D(),
        )
    ],
    name="small_cnn",
)
model = bc.build_classifier(backbone, head=bc.heads.Linear(dropout=0.2), num_classes=data.num_classes)
print(bc.backbones.trainable_summary(model))

# %%
# Train
# -----
# The :class:`~bloodcell.Trainer` holds the training recipe as explicit keywords. Random rotations,
# flips and shifts (:class:`~bloodcell.augment.RandomGeometric`) run on each batch inside ``tf.data``:
# a cell has no orientation, so none of them changes its class. The best epoch on the validation
# part is kept.

trainer = bc.Trainer(
    model,
    optimizer="adamw",
    learning_rate=2e-3,
    augment=bc.augment.RandomGeometric(),
    batch_size=32,
    early_stopping_patience=None,
    seed=0,
    verbose=0,
)
start = time.perf_counter()
history = trainer.fit(train, val, epochs=args.epochs)
print(f"{args.epochs} epochs in {time.perf_counter() - start:.0f} s")
print("validation accuracy per epoch:", [round(v, 3) for v in history.history["val_accuracy"]])
show(bc.plots.training_curves(history, out / "curves.png", dpi=80))

# %%
# Evaluate on the test part
# -------------------------
# :func:`bloodcell.evaluate` returns a :class:`~bloodcell.metrics.Report`: accuracy, balanced
# accuracy, precision, recall and F1 (macro, weighted and per class), ROC-AUC and the confusion
# matrix. Rows of the matrix are the true classes; the diagonal holds each class's recall.

report = bc.evaluate(model, test)
print(report)
report.to_json(out / "report.json")
show(bc.plots.confusion_matrix(report, out / "confusion.png", dpi=80))
print(f"figures and report in {out}")
