"""Helpers shared by the tests: a tiny real Keras classifier, subprocess running, the submission's grader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bloodcell

SRC = str(Path(bloodcell.__file__).resolve().parents[1])


def tiny_classifier(seed: int = 0, dropout: float = 0.0, num_classes: int = 8, batchnorm: bool = True):
    """A small CNN that maps 0–255 images (96×96×3) to class probabilities, like build_classifier's models."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = [
        keras.Input((96, 96, 3)),
        keras.layers.Rescaling(1 / 255.0, name="rescale"),
        keras.layers.Conv2D(8, 3, strides=2, name="conv1"),
    ]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(name="bn1"))
    layers += [
        keras.layers.ReLU(name="relu1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="head"))
    return keras.Sequential(layers, name="tiny")


def run_python(
    code_or_path: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a Python file (or code with ``-c``) with this checkout's ``src`` on the path."""
    full_env = {**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    cmd = (
        [sys.executable, code_or_path, *args]
        if code_or_path.endswith(".py")
        else [sys.executable, "-c", code_or_path, *args]
    )
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)


def popen_python(path: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(
        [sys.executable, path, *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# The grader of an AN2DL submission, run in a fresh interpreter (``python -I -c GRADER folder X.npy``):
# bloodcell cannot be imported there, and the weights are found beside model.py. Prints the labels.
SUBMISSION_GRADER = """
import json, sys
sys.modules["bloodcell"] = None
try:
    import bloodcell
except ImportError:
    pass
else:
    raise SystemExit("bloodcell was importable")
sys.path.insert(0, sys.argv[1])
import numpy as np
from model import Model
labels = Model().predict(np.load(sys.argv[2]))
print(json.dumps({"labels": labels.tolist(), "dtype": str(labels.dtype), "shape": list(labels.shape)}))
"""
