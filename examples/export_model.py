"""
Export a classifier: .keras, SavedModel, TFLite and the AN2DL submission
========================================================================

Build a small classifier, fit it briefly on the real cells bundled with bloodcell, and write it in
every format :mod:`bloodcell.export` knows. Then check that the exported copies agree with the Keras
model: the TFLite model (float32 and dynamic-range quantised) and the AN2DL submission's
``model.py``, imported here as the grader would import it.

The point is the export, not the accuracy: the model trains for a few epochs from scratch. With
``--smoke`` it is a tiny two-layer CNN and the script finishes in well under a minute; without it, a
MobileNetV3Small, which takes several minutes on a two-core CPU.

Usage::

    python examples/export_model.py --smoke
    python examples/export_model.py --out exported/
"""

# %%
# Setup
# -----
# Outputs go to ``--out`` or to a fresh temporary folder.

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
except NameError:  # sphinx-gallery runs the script without __file__
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bloodcell as bc  # noqa: E402
from bloodcell import export  # noqa: E402

parser = argparse.ArgumentParser(description="Export a classifier in every bloodcell.export format.")
parser.add_argument("--smoke", action="store_true", help="a tiny CNN, finishes in well under a minute")
parser.add_argument("--out", default=None, help="output folder (default: a new temporary folder)")
args, _ = parser.parse_known_args()  # sphinx-gallery passes its own arguments
out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bloodcell-export-"))
started = time.perf_counter()

# %%
# A small classifier on real cells
# --------------------------------
# ``--smoke`` registers a tiny CNN as a backbone, so the model still holds bloodcell's own layers
# (pixel preprocessing, ``Classifier``) that the standalone formats must do without.

if args.smoke:

    @bc.backbones.register_backbone("smoke_export_cnn", family="smoke", preprocessing="unit", overwrite=True)
    def smoke_export_cnn(input_shape=(96, 96, 3), weights=None):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        return keras.Model(inputs, x, name="smoke_export_cnn")


backbone = "smoke_export_cnn" if args.smoke else "mobilenetv3small"
keras.utils.set_random_seed(0)
model = bc.build_classifier(backbone, head="linear", weights=None, input_shape=(96, 96, 3))
data = bc.datasets.load_sample(per_class=10 if args.smoke else 100)
train, test = bc.datasets.split(data, val=0, test=0.25, seed=0)  # val=0: no validation part
model.compile(keras.optimizers.Adam(0.01 if args.smoke else 0.001), "sparse_categorical_crossentropy")
model.fit(train.images, train.labels, batch_size=16, epochs=5, verbose=0)
expected = model.predict(test.images, verbose=0)
print(f"{model.name}: {model.count_params():,} parameters, {len(test)} held-out cells")

# %%
# Every format
# ------------
# :func:`bloodcell.export.export` dispatches on ``format`` and returns the path written.

paths = {
    "keras": export.export(model, out / "model.keras"),
    "savedmodel": export.export(model, out / "savedmodel", format="savedmodel"),
    "tflite": export.export(model, out / "model.tflite", format="tflite"),
    "tflite (dynamic)": export.export(
        model, out / "model_dynamic.tflite", format="tflite", quantize="dynamic"
    ),
    "submission": export.export(model, out / "submission.zip", format="submission"),
}
for name, path in paths.items():
    size = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*"))
    print(f"{name:>17}: {path} ({size / 1024:.0f} KiB)")

# %%
# TFLite agrees with Keras
# ------------------------

for name in ("tflite", "tflite (dynamic)"):
    probabilities = export.TFLiteModel(paths[name]).predict(test.images)
    same = np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1))
    print(
        f"{name}: same class for {same:.0%} of cells, largest probability difference "
        f"{np.abs(probabilities - expected).max():.1e}"
    )

# %%
# The submission, imported as the grader does
# -------------------------------------------
# The zip holds ``model.py`` and ``saved_model/``; ``Model()`` finds the SavedModel beside its file.

with zipfile.ZipFile(paths["submission"]) as archive:
    archive.extractall(out / "submission")
spec = importlib.util.spec_from_file_location("submission_model", out / "submission" / "model.py")
submission = importlib.util.module_from_spec(spec)
spec.loader.exec_module(submission)
labels = submission.Model().predict(test.images)
agree = np.array_equal(labels, expected.argmax(axis=1))
print(f"submission: labels {labels[:8].tolist()}... equal to the Keras model's: {agree}")
print(f"Done in {time.perf_counter() - started:.0f} s; outputs in {out}")
