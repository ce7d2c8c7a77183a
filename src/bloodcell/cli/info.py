"""``bloodcell info [MODEL]``: versions, devices, and where downloads are cached; or a model's card."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import bloodcell


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "info",
        help="versions, devices and cache folders, or a model's card",
        description="Print the versions of bloodcell, Python, numpy, TensorFlow and Keras, the Keras "
        "backend, the devices TensorFlow sees, and where downloaded weights and data are cached. "
        "Given a .keras model, print its model card instead: class names, input size, preprocessing, "
        "temperature, recipe, data and metrics.",
    )
    parser.add_argument("model", nargs="?", default=None, help="a .keras model file: print its card")
    parser.set_defaults(run=run)


def info_lines() -> list[str]:
    """The lines ``bloodcell info`` prints."""
    import numpy as np

    from bloodcell.datasets.medmnist import default_root
    from bloodcell.experiments import PRESETS

    lines = [
        f"bloodcell   {bloodcell.__version__} ({os.path.dirname(bloodcell.__file__)})",
        f"python      {platform.python_version()} ({platform.platform()})",
        f"numpy       {np.__version__}",
    ]
    try:
        import keras
        import tensorflow as tf

        from bloodcell.backbones.factory import _keras_cache_dir

        devices = ", ".join(f"{d.name} ({d.device_type})" for d in tf.config.list_logical_devices())
        lines += [
            f"tensorflow  {tf.__version__}",
            f"keras       {keras.__version__} (backend: {keras.backend.backend()})",
            f"devices     {devices or 'none'}",
            f"weights     {_keras_cache_dir()} (Keras cache of ImageNet weights; KERAS_HOME moves it)",
        ]
    except ImportError as err:  # pragma: no cover - TensorFlow is a dependency
        lines.append(f"tensorflow  not importable ({err})")
    lines += [
        f"medmnist    {default_root()} (files of load_medmnist; MEDMNIST_ROOT moves it)",
        f"recipes     {', '.join(sorted(PRESETS))} (bloodcell train --recipe)",
    ]
    return lines


def card_lines(path: str) -> list[str]:
    """The lines ``bloodcell info MODEL`` prints: the model card of a ``.keras`` file."""
    from bloodcell.modelcard import card_lines as lines_of
    from bloodcell.models import load_model, model_card

    return [f"model          {path}", *lines_of(model_card(load_model(path)))]


def run(args: argparse.Namespace) -> int:
    model = getattr(args, "model", None)
    print("\n".join(info_lines() if model is None else card_lines(model)))
    return 0
