"""Model cards: what a saved classifier is, in the file itself, for whoever reads its labels later.

A haematologist given a ``.keras`` file needs to know which classes it names, what images it
takes, what it was trained on and with which recipe, how well it did on validation images, and
whether its probabilities were calibrated. :func:`model_card` gathers all of it: what the model's
own layers say (input size, backbone and its pixel preprocessing, cell crop, stain normalisation,
temperature) and the fields stored with it (:func:`set_model_card`: class names, recipe, data
summary, metrics, calibration). The stored fields live in the config of the
:class:`~bloodcell.models.Classifier`, so they survive ``save_model`` → ``load_model`` (safe mode)
and ``copy_model``; ``bloodcell info MODEL`` prints the card, and the exports write it beside
the exported model (``card.json``).

Example:
    >>> import bloodcell as bc
    >>> model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3), weights=None)
    >>> model = bc.models.set_model_card(model, recipe={"name": "doctest"})
    >>> card = bc.models.model_card(model)
    >>> card["input_shape"], card["recipe"], card["class_names"][3]
    ([32, 32, 3], {'name': 'doctest'}, 'ig')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bloodcell.errors import ConfigurationError, InvalidDtypeError

__all__ = ["card_lines", "data_summary", "metrics_summary", "model_card", "set_model_card", "training_card"]

# Report attributes a card keeps (the rest, per class and confusion matrix, stays in report.json).
_CARD_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr", "log_loss", "ece", "brier")


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON values (dicts with string keys, lists, str, finite float, int, bool, None)."""
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.metrics import Report

    if isinstance(value, Report):
        return metrics_summary(value)
    if isinstance(value, BloodCellDataset):
        return data_summary(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    if value is None or isinstance(value, str):
        return value
    raise InvalidDtypeError(
        f"A model card holds plain values (text, numbers, lists, dicts), reports and datasets. "
        f"Received: {where} of type {type(value).__name__}."
    )


def metrics_summary(report: Any) -> dict[str, Any]:
    """The headline metrics of a :class:`~bloodcell.metrics.Report`, as a card keeps them.

    Example:
        >>> import numpy as np
        >>> from bloodcell.metrics import Report
        >>> summary = metrics_summary(Report.from_predictions([0, 1], np.eye(2), class_names=("a", "b")))
        >>> summary["n"], summary["accuracy"], summary["brier"]
        (2, 1.0, 0.0)
    """
    out: dict[str, Any] = {"n": int(report.n)}
    for name in _CARD_METRICS:
        value = getattr(report, name, None)
        if value is not None:
            out[name] = _plain(value, name)
    return out


def data_summary(dataset: Any, path: str | None = None) -> dict[str, Any]:
    """Size, images per class and origin of a :class:`~bloodcell.datasets.BloodCellDataset`.

    Args:
        dataset: The images.
        path: Where they were read from, if known (kept as given).

    Example:
        >>> import bloodcell as bc
        >>> summary = data_summary(bc.datasets.load_sample(per_class=2))
        >>> summary["n"], summary["class_counts"]["platelet"], summary["sources"]
        (16, 2, {'pbc96_sample': 16})
    """
    out: dict[str, Any] = {"n": len(dataset), "class_counts": dict(dataset.class_counts())}
    if dataset.sources is not None:
        names, counts = np.unique(dataset.sources, return_counts=True)
        out["sources"] = {str(n): int(c) for n, c in zip(names, counts)}
    if path is not None:
        out["path"] = str(path)
    return out


def training_card(
    config: Any, train: Any, val: Any, test: Any = None, report: Any = None, *, name: str | None = None
) -> dict[str, Any]:
    """The card fields of a model trained by :func:`bloodcell.experiments.run` (for :func:`set_model_card`).

    Args:
        config: The run's :class:`~bloodcell.experiments.Config`.
        train, val, test: Its training, validation and test sets (``test`` None or ``val``: the
            report is a validation report).
        report: The run's evaluation :class:`~bloodcell.metrics.Report`.
        name: The run's name.

    Returns:
        ``{"class_names", "recipe", "data", "metrics"}``: the recipe's name, its preset when it is
        one unchanged, and every setting; the sets' sizes and class counts; the report's headline
        metrics under ``"test"`` or ``"validation"``.
    """
    from bloodcell.experiments import PRESETS

    preset = next((key for key, value in PRESETS.items() if value == config), None)
    sets = {"train": train, "validation": val}
    if test is not None and test is not val:
        sets["test"] = test
    fields: dict[str, Any] = {
        "class_names": list(train.class_names),
        "recipe": {"name": name, "preset": preset, "config": config.to_dict()},
        "data": {key: data_summary(value) for key, value in sets.items()},
    }
    if report is not None:
        fields["metrics"] = {"test" if "test" in sets else "validation": metrics_summary(report)}
    return fields


def set_model_card(model: Any, **fields: Any) -> Any:
    """Store fields in a classifier's card (saved with it); a field set to None is removed.

    Fields are free-form; bloodcell writes ``class_names``, ``recipe``, ``data``, ``metrics``
    (``{"validation": report}``...) and ``calibration``. Values are plain JSON values; a
    :class:`~bloodcell.metrics.Report` is stored as its headline metrics and a
    :class:`~bloodcell.datasets.BloodCellDataset` as its size, class counts and origins.

    Args:
        model: A :class:`~bloodcell.models.Classifier` (from :func:`bloodcell.build_classifier`,
            :func:`bloodcell.calibrate`...).
        **fields: The fields to set.

    Returns:
        ``model`` itself (its card changed in place).

    Example:
        >>> import keras
        >>> set_model_card(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), notes="x")
        Traceback (most recent call last):
        ...
        bloodcell.errors.InvalidDtypeError: Only a bloodcell Classifier carries a model card ...
    """
    from bloodcell.models import Classifier

    if not isinstance(model, Classifier):
        raise InvalidDtypeError(
            "Only a bloodcell Classifier carries a model card (build it with bloodcell.build_classifier, or "
            f"calibrate it with bloodcell.calibrate). Received: model={type(model).__name__}."
        )
    card = dict(model.card)
    for key, value in fields.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = _plain(value, key)
    if "class_names" in card:
        names = card["class_names"]
        if not isinstance(names, list) or len(names) != model.num_classes or len(set(names)) != len(names):
            raise ConfigurationError(
                f"class_names must name each of the model's {model.num_classes} outputs once. "
                f"Received: class_names={names!r}."
            )
    model._card_json = json.dumps(card, allow_nan=False)
    return model


def _preprocessing(model: Any) -> dict[str, Any]:
    from bloodcell.backbones.imagemodel import find_backbone, flat_layers
    from bloodcell.backbones.preprocessing import PixelPreprocessing

    out: dict[str, Any] = {"pixels": "RGB, 0-255 (uint8 or float32); the model scales them itself"}
    backbone = find_backbone(model)
    if backbone is not None:
        out["backbone"] = backbone.backbone_name
    for layer in flat_layers(model):
        if isinstance(layer, PixelPreprocessing):
            out["backbone_preprocessing"] = layer.mode
        kind = type(layer).__name__
        if kind == "CellCrop":
            out["cell_crop"] = layer.scale
        elif kind == "StainNormalization":
            out["stain_normalization"] = layer.normalizer.method
    return out


def model_card(model: Any) -> dict[str, Any]:
    """Everything known about a classifier, as plain values: what its layers say and its stored card.

    Keys: ``name``, ``class_names``, ``input_shape``, ``preprocessing``, ``temperature`` (None:
    not calibrated), then the stored fields (:func:`set_model_card`), e.g. ``recipe``, ``data``,
    ``metrics``, ``calibration``. Works on any single-input Keras model (one without a stored card
    gets what its layers say).

    Args:
        model: A Keras model, or the path of a ``.keras`` file.
    """
    from bloodcell.calibration.temperature import temperature_of
    from bloodcell.classes import model_class_names
    from bloodcell.models import as_model

    model = as_model(model)
    derived: dict[str, Any] = {
        "name": model.name,
        "class_names": list(model_class_names(model)),
        "input_shape": [None if d is None else int(d) for d in model.inputs[0].shape[1:]],
        "preprocessing": _preprocessing(model),
        "temperature": temperature_of(model),
    }
    stored = dict(getattr(model, "card", None) or {})
    return {**derived, **{k: v for k, v in stored.items() if k not in derived}}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return str(value)


def card_lines(card: Mapping[str, Any]) -> list[str]:
    """A card as readable lines (``bloodcell info MODEL`` prints them).

    Example:
        >>> card_lines({"name": "m", "class_names": ["a", "b"], "temperature": 1.5})
        ['name           m', 'class_names    a, b', 'temperature    1.5']
    """
    lines = []
    for key, value in card.items():
        if key == "temperature" and value is None:
            value = "none (not calibrated)"
        if isinstance(value, Mapping) and value and any(isinstance(v, Mapping) for v in value.values()):
            lines.append(key)
            lines += [f"  {sub:<13}{_value(v)}" for sub, v in value.items()]
        else:
            lines.append(f"{key:<15}{_value(value)}")
    return lines
