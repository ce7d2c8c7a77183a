"""Compiling for a training phase: the optimizer, the loss and ``compile`` from the Trainer's options."""

from __future__ import annotations

from typing import Any

import keras

from bloodcell.training.options import TrainerOptions

__all__ = ["compile_for_training", "make_loss", "make_optimizer", "steps_per_call"]


def make_optimizer(options: TrainerOptions, learning_rate: Any) -> keras.optimizers.Optimizer:
    """A fresh optimizer of ``options.optimizer`` at ``learning_rate`` (a float or a schedule).

    >>> make_optimizer(TrainerOptions(optimizer="sgd"), 0.1).nesterov
    True
    """
    common: dict[str, Any] = {"learning_rate": learning_rate}
    if options.ema:
        common.update(use_ema=True, ema_momentum=options.ema_momentum)
    if options.weight_decay is not None:
        common["weight_decay"] = float(options.weight_decay)
    if isinstance(options.optimizer, keras.optimizers.Optimizer):
        config = options.optimizer.get_config()
        config.pop("learning_rate", None)
        config.update(common)
        return type(options.optimizer).from_config(config)
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "lion": keras.optimizers.Lion,
    }
    if options.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=0.9, nesterov=True, **common)
    return classes[options.optimizer](**common)


def make_loss(options: TrainerOptions) -> keras.losses.Loss:
    """The loss of ``options.loss`` with its label smoothing (an instance is used as it is)."""
    if isinstance(options.loss, keras.losses.Loss):
        return options.loss
    if options.loss == "categorical_focal_crossentropy":
        return keras.losses.CategoricalFocalCrossentropy(label_smoothing=options.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing)


def steps_per_call(steps_per_epoch: int, requested: int) -> int:
    """The largest batch count up to ``requested`` that divides the epoch into whole calls.

    Keras runs ``steps_per_execution`` batches per call whatever the epoch has left, so with 4
    steps per epoch and 3 per call the second call would take two of the next epoch's batches.

    >>> steps_per_call(64, 8), steps_per_call(4, 3), steps_per_call(7, 4)
    (8, 2, 1)
    """
    return max(k for k in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


def compile_for_training(
    model: keras.Model, options: TrainerOptions, learning_rate: Any, steps_per_epoch: int, strategy: Any
) -> keras.Model:
    """Compile ``model`` (or, with consistency training, a wrapper sharing its weights) in ``strategy``'s
    scope, with its optimizer built; returns what Keras should ``fit``."""
    with strategy.scope():
        fit_model = model
        if options.consistency is not None:
            from bloodcell.training.consistency import ConsistencyModel

            # Shares the classifier's weights: training the wrapper trains the model.
            fit_model = ConsistencyModel(model, weight=options.consistency)
        fit_model.compile(
            optimizer=make_optimizer(options, learning_rate),
            loss=make_loss(options),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=options.jit_compile,
            steps_per_execution=steps_per_call(steps_per_epoch, options.steps_per_execution),
        )
        fit_model.optimizer.build(fit_model.trainable_variables)
    return fit_model
