"""
Your own backbone and head: register, assemble, freeze, train
=============================================================

bloodcell's backbones live in a registry, like timm's: the Keras applications are there already
(``bc.backbones.list_backbones()``), and :func:`~bloodcell.backbones.register_backbone` adds your
own network under a name, with the preprocessing it expects. The registered name then works
everywhere a backbone name does: :func:`bloodcell.build_classifier`, :func:`bloodcell.backbones.create`,
:class:`bloodcell.experiments.Config`, :func:`bloodcell.models.feature_extractor`.

This example registers a small residual CNN, puts a head of its own on it with
:class:`bloodcell.models.Classifier`, freezes the first blocks, checks what trains with
:func:`~bloodcell.backbones.trainable_summary`, and trains briefly on the real bundled cells.

Usage::

    python examples/custom_backbone_head.py            # 800 cells at 64 px, 20 epochs
    python examples/custom_backbone_head.py --smoke    # 800 cells at 48 px, 4 epochs
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

import bloodcell as bc

parser = argparse.ArgumentParser(description="Register a backbone, add a head, freeze, train.")
parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
parser.add_argument("--smoke", action="store_true", help="a tiny, fast run that checks the machinery")
args, _ = parser.parse_known_args()
if args.smoke:
    args.epochs, args.image_size = 4, 48

print("registered Keras applications:", ", ".join(bc.backbones.list_backbones("mobilenet*")), "...")

# %%
# Register a backbone
# -------------------
# The decorated function receives ``input_shape`` and ``weights`` and returns a Keras model that
# maps images to feature maps. ``preprocessing="unit"`` tells bloodcell that the network wants
# pixels in 0–1: the model built from it still takes 0–255 (uint8 or float), and bloodcell divides
# by 255 in a preprocessing layer in front of it, so nobody has to remember.
# ``overwrite=True`` lets the script run twice in one Python session.


@bc.backbones.register_backbone(
    "residual_cnn", family="custom", preprocessing="unit", min_size=16, overwrite=True
)
def residual_cnn(input_shape=(96, 96, 3), weights=None, widths=(16, 32, 64, 128)):
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(widths[0], 3, padding="same", name="stem_conv")(inputs)
    for i, width in enumerate(widths):
        shortcut = layers.Conv2D(width, 1, strides=2, name=f"block{i}_shortcut")(x)
        x = layers.Conv2D(width, 3, strides=2, padding="same", name=f"block{i}_conv1")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn1")(x)
        x = layers.ReLU(name=f"block{i}_relu1")(x)
        x = layers.Conv2D(width, 3, padding="same", name=f"block{i}_conv2")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn2")(x)
        x = layers.ReLU(name=f"block{i}_out")(layers.Add(name=f"block{i}_add")([x, shortcut]))
    return keras.Model(inputs, x, name="residual_cnn")


spec = bc.backbones.get_spec("Residual-CNN")  # names are case- and separator-insensitive
print(spec.name, spec.family, spec.preprocessing, spec.input_range)

# %%
# A head of your own
# ------------------
# A head maps the pooled features (N, D) to class probabilities. bloodcell's presets are
# :class:`~bloodcell.heads.DenseStack` (the seed study's six Dense blocks) and
# :class:`~bloodcell.heads.Linear`; any Keras layer or model works too. Here: one hidden layer
# with dropout, and a softmax output (the Trainer and :func:`bloodcell.evaluate` expect
# probabilities).

data = bc.datasets.load_sample()
data = data.replace(images=bc.datasets.resize_images(data.images, args.image_size))
train, val, test = bc.datasets.split(data, val=0.15, test=0.15, seed=0)

keras.utils.set_random_seed(0)
head = keras.Sequential(
    [
        keras.layers.Dropout(0.2),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(data.num_classes, activation="softmax"),
    ],
    name="head",
)
backbone = bc.backbones.create("residual_cnn", input_shape=data.image_shape, weights=None)
model = bc.models.Classifier(backbone, head, num_classes=data.num_classes, pooling="avg")
print([layer.name for layer in model.layers])

# %%
# Freeze part of the backbone
# ---------------------------
# :func:`~bloodcell.backbones.freeze` counts Conv2D/DepthwiseConv2D layers, as the seed study did
# ("the first 120 conv layers" of EfficientNetV2S): ``first=3`` freezes every layer up to and
# including the third convolution. ``layers=N`` counts layers of any kind instead. Frozen
# BatchNormalization layers run in inference mode. (Freezing randomly initialised layers is done
# here only to show the mechanics; with pretrained weights it keeps the generic early features.)

bc.backbones.freeze(model, first=3)
print(bc.backbones.trainable_summary(model))

# %%
# Train briefly
# -------------
# The :class:`~bloodcell.Trainer` compiles the model itself, so the freezing takes effect.
# :meth:`~bloodcell.Trainer.fine_tune` would then unfreeze and continue at a lower learning rate.

trainer = bc.Trainer(
    model,
    learning_rate=2e-3,
    augment=bc.augment.RandomGeometric(),
    early_stopping_patience=None,
    seed=0,
    verbose=0,
)
history = trainer.fit(train, val, epochs=args.epochs)
print("validation accuracy per epoch:", [round(v, 3) for v in history.history["val_accuracy"]])
report = trainer.evaluate(test)
print(f"test accuracy {report.accuracy:.1%}, macro F1 {report.f1_macro:.1%} on {report.n} cells")

# %%
# The registered name works everywhere
# ------------------------------------
# For instance as a feature extractor for outlier detection or a scikit-learn model, and in an
# experiment config: ``bc.experiments.Config(backbone="residual_cnn", weights=None, head="linear")``.

extractor = bc.models.feature_extractor(model)  # pooled features, weights shared with the model
features = extractor.predict(test.images[:4], verbose=0)
print("features:", features.shape)
