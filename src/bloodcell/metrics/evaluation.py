"""Scoring a model: :func:`evaluate` and the prediction restricted to a lab's subset of the classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bloodcell._validation import check_int
from bloodcell.classes import CLASS_NAMES
from bloodcell.errors import EmptyDatasetError, InvalidDataError, InvalidDtypeError
from bloodcell.metrics.report import Report, _as_indices

__all__ = ["evaluate", "restrict_to_classes"]


def evaluate(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 64,
    class_names: Sequence[str] | None = None,
    verbose: int = 0,
    tta: str | Sequence[Any] | None = None,
) -> Report:
    """Evaluate a classifier on a labelled set and return a :class:`Report`.

    Args:
        model: A ``keras.Model`` mapping 0–255 images to class probabilities (e.g. from
            :func:`bloodcell.build_classifier`), or any object with a Keras-like ``predict``.
        dataset: A :class:`~bloodcell.datasets.BloodCellDataset`, or a ``tf.data.Dataset`` of
            ``(images, labels)`` batches (labels as indices or one-hot rows).
        batch_size: Images per prediction batch (for a ``BloodCellDataset``).
        class_names: Class names; default: the dataset's, else the eight blood cell classes. When
            they are a subset of the model's classes (another lab's five white cells), the
            prediction is restricted to them (:func:`restrict_to_classes`).
        verbose: Keras progress output during prediction (0 = silent).
        tta: Test-time augmentation: average the probabilities over flipped/rotated copies
            (``"d4"``, ``"flips"``, ``"rot90"`` or a list of transforms, see :mod:`bloodcell.tta`);
            None: a plain prediction.

    Returns:
        The metrics, with the labels and predicted probabilities kept in ``y_true``/``y_prob``.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> report = bc.evaluate(model, data)
        >>> report.n, report.confusion_matrix.shape
        (16, (8, 8))
    """
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.pipeline import to_tf_dataset

    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if isinstance(dataset, BloodCellDataset):
        dataset.check_not_empty("evaluate()")
        names = tuple(class_names) if class_names is not None else dataset.class_names
        if tta is not None:
            from bloodcell import tta as tta_module

            prob = tta_module.predict(model, dataset, tta, batch_size=batch_size, verbose=verbose)
        else:
            prob = model.predict(
                to_tf_dataset(dataset, batch_size=batch_size, shuffle=False), verbose=verbose
            )
        return Report.from_predictions(dataset.labels, restrict_to_classes(prob, model, names), names)

    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise InvalidDtypeError(
            "evaluate() takes a BloodCellDataset or a tf.data.Dataset of (images, labels). "
            f"Received: dataset={type(dataset).__name__}."
        )
    labels, probs = [], []
    for batch in dataset:
        if not isinstance(batch, tuple) or len(batch) < 2:
            raise InvalidDataError("The tf.data.Dataset must yield (images, labels) batches.")
        images, y = batch[0], batch[1]
        if tta is not None:
            from bloodcell import tta as tta_module

            probs.append(tta_module.predict_on_batch(model, images, tta))
        else:
            probs.append(np.asarray(model.predict_on_batch(images)))
        labels.append(np.asarray(y))
    if not probs:
        raise EmptyDatasetError("evaluate(): the tf.data.Dataset yielded no batches.")
    prob = np.concatenate(probs)
    names = tuple(class_names) if class_names is not None else CLASS_NAMES[: prob.shape[1]]
    y_all = np.concatenate(labels)
    return Report.from_predictions(
        _as_indices(y_all, len(names)), restrict_to_classes(prob, model, names), names
    )


def restrict_to_classes(prob: Any, model: Any, class_names: Sequence[str]) -> np.ndarray:
    """The model's probabilities (N, C) for the data's classes only, renormalised: its prediction
    restricted to them.

    A dataset from another lab may hold only some of the model's classes (five white cells of the
    eight): its labels count in its own class order, and the model's other classes cannot be
    right, so they are left out of the argmax. Data with the model's classes is returned as it is.

    Raises:
        InvalidDataError: the data names classes the model does not predict.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8)])
        >>> restrict_to_classes(np.full((1, 8), 0.125), model, ("lymphocyte", "monocyte")).tolist()
        [[0.5, 0.5]]
    """
    from bloodcell.classes import model_class_names

    prob = np.asarray(prob, np.float64)
    names = tuple(str(c) for c in class_names)
    model_names = model_class_names(model) if hasattr(model, "outputs") else names
    if names == model_names or prob.ndim != 2 or prob.shape[1] != len(model_names):
        return prob
    unknown = [c for c in names if c not in model_names]
    if unknown:
        raise InvalidDataError(
            f"The data's classes {unknown} are not among the model's {list(model_names)}; give data whose "
            "class names are the model's, or a subset of them."
        )
    kept = prob[:, [model_names.index(c) for c in names]]
    return kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------- summaries over runs
