"""Temperature scaling (Guo et al. 2017): one number, fitted on validation images, that calibrates a softmax.

A network trained to a low training loss is over-confident: its top probability says 0.99 where
it is right 90 % of the time. Dividing its logits by a temperature ``T > 1`` softens every
probability row without changing which class is on top, so accuracy, the confusion matrix and
every label stay the same while the confidences become honest. ``T`` is the one value that
minimises the negative log-likelihood (NLL) of the validation labels.

bloodcell's models end in a softmax, so the layer works on log-probabilities: ``log p = logit +
c`` with one constant ``c`` per image, and ``softmax(log p / T) = softmax(logit / T)``.
:class:`TemperatureScaling` is that layer; :func:`calibrate` returns a copy of a model with it
on top, saved in the ``.keras`` file like any layer.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from bloodcell._validation import check_int, check_positive
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError

__all__ = ["BOUNDS", "TemperatureScaling", "calibrate", "fit_temperature", "temperature_of"]

# Probabilities below this are taken as this before the logarithm: a float32 softmax underflows to
# exactly 0 for classes far below the top one, and log 0 would poison the rescaled row.
_FLOOR = float(np.finfo(np.float32).tiny)

#: The temperatures :func:`fit_temperature` searches between.
BOUNDS = (0.05, 20.0)


@keras.saving.register_keras_serializable(package="bloodcell")
class TemperatureScaling(keras.layers.Layer):
    """Rescale probability rows by a temperature: ``softmax(log(p) / temperature)``.

    The top class of every row is kept; ``temperature > 1`` softens the probabilities, ``< 1``
    sharpens them, 1 leaves them as they are.

    Args:
        temperature: A positive number (fit one with :func:`fit_temperature`).
        **kwargs: Other ``keras.layers.Layer`` arguments (``name``...).

    Example:
        >>> import numpy as np
        >>> layer = TemperatureScaling(2.0)
        >>> np.asarray(layer(np.array([[0.8, 0.2]]))).astype("float64").round(3).tolist()
        [[0.667, 0.333]]
    """

    def __init__(self, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = float(check_positive(temperature, "temperature"))

    def call(self, probabilities: Any) -> Any:
        log_p = keras.ops.log(keras.ops.maximum(keras.ops.cast(probabilities, "float32"), _FLOOR))
        return keras.ops.softmax(log_p / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


def _nll(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = log_p / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(y_true: Any, y_prob: Any) -> float:
    """The temperature that minimises the NLL of ``y_true`` under ``softmax(log(y_prob) / T)``.

    A bounded 1-D search over ``log T`` (SciPy's ``minimize_scalar``) within :data:`BOUNDS`.

    Args:
        y_true: Integer class indices (N,).
        y_prob: The model's probabilities (N, C) for those images.

    Example:
        >>> import numpy as np
        >>> over_confident = np.array([[0.99, 0.01]] * 8 + [[0.01, 0.99]] * 2)  # right 8 times in 10
        >>> round(fit_temperature([0] * 10, over_confident), 2) > 1
        True
    """
    from scipy.optimize import minimize_scalar

    prob = np.asarray(y_prob, np.float64)
    labels = np.asarray(y_true)
    if prob.ndim != 2 or labels.shape != (len(prob),) or len(prob) == 0:
        raise InvalidDataError(
            "fit_temperature() needs class indices (N,) and probabilities (N, C) for the same N > 0 "
            f"images. Received: y_true of shape {labels.shape}, y_prob of shape {prob.shape}."
        )
    labels = labels.astype(np.int64)
    log_p = np.log(np.maximum(prob, _FLOOR))
    low, high = (math.log(b) for b in BOUNDS)
    result = minimize_scalar(
        lambda log_t: _nll(log_p, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def temperature_of(model: Any) -> float | None:
    """The temperature of a model calibrated by :func:`calibrate` (None if it has none).

    Example:
        >>> temperature_of(keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])) is None
        True
    """
    layers = getattr(model, "layers", None) or []
    last = layers[-1] if layers else None
    return last.temperature if isinstance(last, TemperatureScaling) else None


def _model_labels(model: Any, dataset: Any) -> np.ndarray:
    """The dataset's labels as indices of the model's outputs (its classes may be a subset)."""
    from bloodcell.classes import model_class_names

    names = model_class_names(model)
    if tuple(dataset.class_names) == tuple(names):
        return np.asarray(dataset.labels, np.int64)
    unknown = [c for c in dataset.class_names if c not in names]
    if unknown:
        raise InvalidDataError(
            f"The validation set's classes {unknown} are not among the model's {list(names)}; calibrate "
            "on images of the model's classes."
        )
    mapping = np.array([names.index(c) for c in dataset.class_names], np.int64)
    return mapping[np.asarray(dataset.labels, np.int64)]


def calibrate(model: Any, val: Any, *, batch_size: int = 64, verbose: int = 0) -> Any:
    """A new model whose probabilities are calibrated on ``val`` by temperature scaling.

    The model predicts ``val`` once (batched, as :func:`bloodcell.evaluate` does), the temperature
    minimising the NLL of its labels is fitted (:func:`fit_temperature`), and a copy of the model
    with a :class:`TemperatureScaling` layer on top is returned; ``model`` itself is not changed.
    The argmax of every image, hence the accuracy and the labels, is the same as ``model``'s.

    Calibrating a calibrated model replaces its temperature: the new one is fitted on the
    uncalibrated probabilities, so the result has one temperature layer and equals calibrating
    the original model on the same images.

    The temperature, the set's size and its NLL and ECE before and after are written to the
    returned model's card (:func:`bloodcell.models.model_card`), and so is the validation set's
    class list if the model carried none.

    Args:
        model: A classifier ending in a softmax (a :class:`bloodcell.models.Classifier`, any
            single-input ``keras.Model``), or the path of a ``.keras`` file.
        val: A :class:`~bloodcell.datasets.BloodCellDataset` of labelled images not used to train
            the model (its classes: the model's, or a subset of them).
        batch_size: Images per prediction batch.
        verbose: Keras progress output during prediction (0 = silent).

    Returns:
        A :class:`bloodcell.models.Classifier` whose output is the calibrated softmax.

    Example:
        >>> import bloodcell as bc
        >>> model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=(32, 32, 3), weights=None)
        >>> sample = bc.datasets.load_sample(per_class=4)
        >>> val = bc.datasets.BloodCellDataset(bc.datasets.resize_images(sample.images, 32), sample.labels)
        >>> calibrated = bc.calibrate(model, val)
        >>> calibrated.layers[-1].name, bc.calibration.temperature_of(model) is None
        ('temperature', True)
    """
    from bloodcell.backbones.imagemodel import ImageModel
    from bloodcell.calibration.scores import expected_calibration_error
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.models import Classifier, as_model, copy_model, set_model_card
    from bloodcell.pipeline import to_tf_dataset

    model = as_model(model)
    if not isinstance(val, BloodCellDataset):
        raise InvalidDtypeError(
            f"calibrate() takes the validation images as a BloodCellDataset. Received: val={type(val).__name__}."
        )
    val.check_not_empty("calibrate()")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigurationError(
            f"calibrate() takes a model with one image input and one probability output; {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    labels = _model_labels(model, val)
    twin = copy_model(model)
    uncalibrated = twin.layers[-1].input if temperature_of(twin) is not None else twin.outputs[0]
    base = ImageModel(twin.inputs[0], uncalibrated)  # checks the images' shape against the model
    prob = np.asarray(
        base.predict(to_tf_dataset(val, batch_size=batch_size, shuffle=False), verbose=verbose), np.float64
    )
    if not np.allclose(prob.sum(axis=1), 1.0, atol=1e-3) or prob.min() < -1e-6:
        raise InvalidDataError(
            f"calibrate() needs a model that outputs probabilities (a softmax); {model.name!r} returned rows "
            f"summing to {prob.sum(axis=1).min():.3g}..{prob.sum(axis=1).max():.3g}."
        )
    temperature = fit_temperature(labels, prob)
    outputs = TemperatureScaling(temperature, name="temperature")(uncalibrated)
    card = dict(getattr(model, "card", None) or {})
    calibrated = Classifier(inputs=twin.inputs[0], outputs=outputs, name=model.name, card=card)
    log_p = np.log(np.maximum(prob, _FLOOR))
    after = np.exp(log_p / temperature - (log_p / temperature).max(axis=1, keepdims=True))
    after /= after.sum(axis=1, keepdims=True)
    summary = {
        "temperature": temperature,
        "n": len(val),
        "nll_before": _nll(log_p, labels, 1.0),
        "nll_after": _nll(log_p, labels, temperature),
        "ece_before": expected_calibration_error(labels, prob),
        "ece_after": expected_calibration_error(labels, after),
    }
    fields: dict[str, Any] = {"calibration": summary}
    if "class_names" not in card and len(val.class_names) == prob.shape[1]:
        fields["class_names"] = list(val.class_names)
    return set_model_card(calibrated, **fields)
