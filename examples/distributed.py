"""
Distributed training: MirroredStrategy on two logical CPUs
==========================================================

The :class:`~bloodcell.Trainer` trains under any ``tf.distribute`` strategy: it builds the model
and its optimizer inside the strategy's scope, and makes each optimizer step take ``batch_size``
images per replica, ``batch_size × replicas`` in all (the global batch). With one GPU per replica
that is how a study scales to several GPUs, or several machines.

Without GPUs, the same code runs on a CPU split into two logical devices: TensorFlow then runs two
replicas and adds up their gradients, exactly as it would on two GPUs. This example trains the same
model twice, on two replicas of 16 images and on one device with batches of 32, and shows that the
two runs take the same steps: same losses, same weights.

Usage::

    python examples/distributed.py            # 800 cells at 48 px, 5 epochs
    python examples/distributed.py --smoke    # 128 cells at 48 px, 3 epochs

Several machines: see the last section, and :doc:`/guide/distributed`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bloodcell as bc
from bloodcell.errors import ConfigurationError

# Logical devices can only be made before TensorFlow initialises, so this comes first.
try:
    devices = bc.training.logical_cpus(2)
except ConfigurationError:
    # TensorFlow was already running (as in the docs build, which runs every example in one
    # process and splits the CPU in two before it starts): use the logical CPUs it has.
    import tensorflow as tf

    devices = [device.name for device in tf.config.list_logical_devices("CPU")]

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser(description="MirroredStrategy on two logical CPUs against one device.")
parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
parser.add_argument("--smoke", action="store_true", help="a tiny, fast run that checks the machinery")
args, _ = parser.parse_known_args()
if args.smoke:
    args.epochs = 3
print("devices:", devices)

# %%
# The data and the model
# ----------------------
# The model is built by a function, so the Trainer can build it inside the strategy's scope (a
# model built outside is copied in, and the trained weights copied back). It has no
# BatchNormalization: under a strategy each replica normalises with the statistics of its own
# 16 images, which is a (small) difference from one device seeing 32. Use
# ``keras.layers.BatchNormalization(synchronized=True)`` to pool the statistics across replicas.

data = bc.datasets.load_sample(per_class=16 if args.smoke else None)
data = data.replace(images=bc.datasets.resize_images(data.images, 48))
train, val = bc.datasets.split(data, val=0.25, test=0, seed=0)


def small_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)  # the same initial weights on every call
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(data.image_shape),
            layers.Rescaling(1 / 255),
            layers.Conv2D(16, 3, strides=2, activation="relu"),
            layers.Conv2D(32, 3, strides=2, activation="relu"),
            layers.Conv2D(64, 3, strides=2, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(data.num_classes, activation="softmax"),
        ],
        name="small_cnn",
    )


settings = dict(learning_rate=3e-3, early_stopping_patience=None, restore_best=False, seed=0, verbose=0)

# %%
# Two replicas
# ------------
# ``batch_size`` is per replica: with two replicas each step takes 2 × 16 = 32 images, split
# across the devices; the gradients of both halves are summed before the update.

strategy = tf.distribute.MirroredStrategy(devices)
mirrored = bc.Trainer(small_cnn, strategy=strategy, batch_size=16, **settings)
print(f"replicas: {mirrored.num_replicas}, global batch: {mirrored.global_batch_size}")
h_mirrored = mirrored.fit(train, val, epochs=args.epochs).history
print("variables are", type(mirrored.model.weights[0].value).__name__)

# %%
# One device, the same global batch
# ---------------------------------

single = bc.Trainer(small_cnn(), batch_size=mirrored.global_batch_size, **settings)
h_single = single.fit(train, val, epochs=args.epochs).history

for epoch, (a, b) in enumerate(zip(h_mirrored["loss"], h_single["loss"]), start=1):
    print(f"epoch {epoch}: loss {a:.5f} on {mirrored.num_replicas} replicas, {b:.5f} on one device")
difference = max(
    float(np.abs(a - b).max()) for a, b in zip(mirrored.model.get_weights(), single.model.get_weights())
)
print(f"largest weight difference after training: {difference:.2e}")
report = mirrored.evaluate(val)
print(f"validation accuracy {report.accuracy:.1%}, macro F1 {report.f1_macro:.1%} on {report.n} cells")

epochs = np.arange(1, args.epochs + 1)
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(epochs, h_mirrored["loss"], "o-", label=f"MirroredStrategy, {mirrored.num_replicas} × 16")
ax.plot(epochs, h_single["loss"], "x--", markersize=10, label="one device, 32")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()

# %%
# Several machines: MultiWorkerMirroredStrategy
# ---------------------------------------------
# Run the same script on every machine. Each one's ``TF_CONFIG`` environment variable lists the
# whole cluster and says which worker it is (only ``"index"`` differs)::
#
#     export TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
#                        "task": {"type": "worker", "index": 0}}'
#
# and, first thing in the script, before any other TensorFlow work::
#
#     strategy = bc.training.multi_worker_strategy()     # reads TF_CONFIG
#     trainer = bc.Trainer(build_model, strategy=strategy, batch_size=32,
#                          output_dir="/shared/runs/mw")  # a folder every worker sees
#
# Worker 0 is the chief: it alone writes checkpoints and logs; after a failure, restart all
# workers and each resumes from the chief's state. ``bc.training.is_chief(strategy)`` tells a
# script whether to write its own files.
