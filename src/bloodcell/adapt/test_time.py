"""Test-time adaptation to another lab's images, without labels: AdaBN, TENT and the lab's cell scale.

A network's BatchNorm layers normalise each feature with the mean and variance it had on the
training images. Another lab's images (another stain, camera, magnification) shift those
statistics, and every layer after the first receives features it never saw. Each function here
returns a **new** model adapted on unlabelled images of the target lab; the original is untouched.

* :func:`adapt_batchnorm` (AdaBN; Li et al. 2016): the moving statistics of every BatchNorm layer,
  frozen ones included, re-estimated on the target images.
* :func:`tent` (Wang et al. 2021): the BatchNorm scales and shifts trained a few steps to make the
  predictions on target images confident (minimum entropy), with the batch statistics, then the
  statistics re-estimated as in AdaBN so that the model predicts one image at a time.
* :func:`fit_cell_scale`: a model holding a :class:`~bloodcell.cells.CellCrop` with
  ``scale="dataset"`` learns the target lab's magnification from its images.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=2)
    >>> model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=(96, 96, 3), weights=None)
    >>> adapted = adapt_batchnorm(model, data, batches=2, batch_size=8)
    >>> adapted is not model
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from bloodcell._validation import check_choice, check_int, check_positive, check_seed, received
from bloodcell.datasets.core import BloodCellDataset, as_images
from bloodcell.errors import ConfigurationError, EmptyDatasetError

__all__ = ["METHODS", "DEFAULT_TENT_STEPS", "adapt", "adapt_batchnorm", "fit_cell_scale", "tent"]

#: TENT's default number of steps: one pass over the target images, at most this many batches.
DEFAULT_TENT_STEPS = 50


def _images(data: Any, what: str) -> np.ndarray:
    images = data.images if isinstance(data, BloodCellDataset) else as_images(np.asarray(data))
    if len(images) == 0:
        raise EmptyDatasetError(f"{what}() got no images of the target lab.")
    return images


def _batchnorm_layers(model: Any) -> list[Any]:
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not layers:
        raise ConfigurationError(
            f"{getattr(model, 'name', type(model).__name__)!r} has no BatchNormalization layer to adapt."
        )
    return layers


@contextlib.contextmanager
def _unfrozen(layers: list[Any]) -> Iterator[None]:
    """Frozen BatchNorm layers made trainable for the block: a frozen one keeps its statistics in
    training-mode calls, and adapting needs every layer's batch statistics."""
    frozen = [layer for layer in layers if not layer.trainable]
    for layer in frozen:
        layer.trainable = True
    try:
        yield
    finally:
        for layer in frozen:
            layer.trainable = False


def _reestimate(model: Any, images: np.ndarray, batches: int, batch_size: int, seed: int) -> None:
    """AdaBN on ``model`` itself: every BatchNorm layer's statistics from the target images."""
    from bloodcell.training.batchnorm import recalibrate_batchnorm

    with _unfrozen(_batchnorm_layers(model)):
        recalibrate_batchnorm(model, images, batches=batches, batch_size=batch_size, seed=seed)


def adapt_batchnorm(
    model: Any, data: BloodCellDataset | Any, *, batches: int = 100, batch_size: int = 64, seed: int = 0
) -> Any:
    """AdaBN: a copy of ``model`` whose BatchNorm statistics are those of the target lab's images.

    Args:
        model: A trained Keras classifier (its BatchNorm layers, frozen ones too, are adapted).
        data: The target lab's images, unlabelled: a dataset or uint8 images (N, H, W, 3), as the
            model will see them (no augmentation). A few hundred are plenty; a few dozen work.
        batches: Batches whose statistics are averaged (fewer if there are fewer images).
        batch_size: Images per batch.
        seed: Seed of the choice of images.

    Returns:
        A new, uncompiled model; ``model`` is unchanged.
    """
    from bloodcell.models import copy_model

    images = _images(data, "adapt_batchnorm")
    check_int(batches, "batches", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    adapted = copy_model(model)
    _reestimate(adapted, images, batches, batch_size, check_seed(seed))
    return adapted


def _class_indices(model: Any, classes: Sequence[str] | None) -> list[int] | None:
    if classes is None:
        return None
    from bloodcell.classes import model_class_names

    names = model_class_names(model)
    missing = [c for c in classes if c not in names]
    if missing or len(classes) < 2:
        raise ConfigurationError(
            f"classes must name at least two of the model's classes {list(names)}. {received('classes', classes)}"
        )
    return [names.index(c) for c in classes]


def tent(
    model: Any,
    data: BloodCellDataset | Any,
    *,
    steps: int | None = None,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    classes: Sequence[str] | None = None,
    batches: int = 100,
    seed: int = 0,
) -> Any:
    """TENT: a copy of ``model`` whose BatchNorm scales and shifts minimise the prediction entropy.

    Each step takes a batch of target images, runs the model with batch statistics (BatchNorm in
    training mode, dropout off) and moves only the BatchNorm scales and shifts (Adam) to lower the
    mean entropy of the predicted probabilities. Too many steps can collapse every prediction
    onto one class, hence a short default. At the end the BatchNorm statistics are re-estimated
    on the target images (:func:`adapt_batchnorm`), so the model predicts single images.

    Args:
        model: A trained Keras classifier with BatchNorm layers.
        data: The target lab's unlabelled images (a dataset or uint8 (N, H, W, 3)).
        steps: Optimisation steps; None: one pass over the images, at most
            :data:`DEFAULT_TENT_STEPS`.
        learning_rate: Adam's learning rate (the paper's 1e-3).
        batch_size: Images per step (and per batch of the final statistics).
        classes: The classes the lab's images can hold (e.g. the five white cells): the entropy is
            taken over the probabilities renormalised to them. None: all the model's classes.
        batches: Batches for the final statistics.
        seed: Seed of the batches drawn.

    Returns:
        A new, uncompiled model; ``model`` is unchanged.
    """
    import tensorflow as tf

    from bloodcell.models import copy_model

    images = _images(data, "tent")
    check_int(batch_size, "batch_size", minimum=1)
    check_int(steps, "steps", minimum=1, allow_none=True)
    seed = check_seed(seed)
    check_positive(learning_rate, "learning_rate")
    columns = _class_indices(model, classes)
    if steps is None:
        steps = min(DEFAULT_TENT_STEPS, math.ceil(len(images) / batch_size))

    adapted = copy_model(model)
    layers = _batchnorm_layers(adapted)
    dropouts = [
        (layer, layer.rate)
        for layer in adapted._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Dropout)
    ]
    params = [v for layer in layers for v in (layer.gamma, layer.beta) if v is not None]
    if not params:
        raise ConfigurationError("tent() needs BatchNorm layers with a scale or a shift (center/scale=True).")
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(params)

    @tf.function(reduce_retracing=True)
    def step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch([v.value for v in params])
            probs = adapted(x, training=True)
            if columns is not None:
                probs = tf.gather(probs, columns, axis=1)
                probs = probs / tf.reduce_sum(probs, axis=1, keepdims=True)
            entropy = -tf.reduce_mean(tf.reduce_sum(probs * tf.math.log(probs + 1e-12), axis=1))
        grads = tape.gradient(entropy, [v.value for v in params])
        optimizer.apply(grads, params)
        return entropy

    rng = np.random.default_rng(seed)
    for layer, _ in dropouts:
        layer.rate = 0.0
    try:
        with _unfrozen(layers):  # batch statistics everywhere while adapting
            size = min(batch_size, len(images))
            for _ in range(steps):
                chosen = np.sort(rng.choice(len(images), size, replace=False))
                step(tf.constant(images[chosen], tf.float32))
    finally:
        for layer, rate in dropouts:
            layer.rate = rate
    _reestimate(adapted, images, batches, batch_size, seed)
    return adapted


def _cell_crops(model: Any) -> list[Any]:
    from bloodcell.cells import CellCrop

    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, CellCrop)]


def fit_cell_scale(model: Any, data: BloodCellDataset | Any) -> Any:
    """A copy of ``model`` whose cell crop (``scale="dataset"``) is fitted to the target lab's magnification.

    Raises:
        ConfigurationError: the model holds no :class:`~bloodcell.cells.CellCrop`, or one that
            scales each image by itself (``scale="image"``) or not at all.
    """
    from bloodcell.models import copy_model

    images = _images(data, "fit_cell_scale")
    adapted = copy_model(model)
    crops = _cell_crops(adapted)
    if len(crops) != 1 or crops[0].scale != "dataset":
        raise ConfigurationError(
            "fit_cell_scale() needs a model holding one CellCrop(scale='dataset') (build_classifier(..., "
            f"cell_crop=CellCrop(scale='dataset'))). Received: {len(crops)} cell crop(s)"
            + (f" with scale={crops[0].scale!r}." if crops else ".")
        )
    crops[0].fit(images)
    return adapted


#: The test-time methods of :func:`adapt` (and of ``bloodcell adapt --method``).
METHODS = {"adabn": adapt_batchnorm, "tent": tent}


def adapt(
    model: Any,
    data: BloodCellDataset | Any,
    *,
    method: str = "adabn",
    cell_scale: bool | None = None,
    **options: Any,
) -> Any:
    """Adapt ``model`` to a lab's unlabelled images with one call: its cell scale, then ``method``.

    Args:
        model: A trained classifier.
        data: The lab's images (a dataset or uint8 (N, H, W, 3)).
        method: ``"adabn"`` (:func:`adapt_batchnorm`) or ``"tent"`` (:func:`tent`).
        cell_scale: Fit the model's ``CellCrop(scale="dataset")`` to the lab first
            (:func:`fit_cell_scale`); None (default): when the model holds one.
        **options: The method's keyword arguments.

    Returns:
        A new, uncompiled model.
    """
    check_choice(method, "method", sorted(METHODS))
    if cell_scale is None:
        cell_scale = any(crop.scale == "dataset" for crop in _cell_crops(model))
    if cell_scale:
        model = fit_cell_scale(model, data)
    return METHODS[method](model, data, **options)
