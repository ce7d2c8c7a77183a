"""Distribution helpers: replica counts, the chief worker, and strategies from the environment.

Training under a ``tf.distribute`` strategy needs three things the :class:`~bloodcell.training.Trainer`
does for you: the model, its optimizer and ``compile`` live inside ``strategy.scope()``; the global
batch is the per-replica batch times the number of replicas; and with several workers only the chief
writes files (checkpoints, logs), while every worker reads the chief's state to resume.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from bloodcell._validation import check_choice

__all__ = [
    "current_strategy",
    "has_custom_strategy",
    "keras_multi_worker_fix",
    "place_model",
    "num_replicas",
    "is_chief",
    "worker_id",
    "multi_worker_strategy",
    "logical_cpus",
]


def current_strategy(strategy: Any = None) -> Any:
    """``strategy`` if given, else the strategy of the enclosing ``strategy.scope()`` (or TF's default)."""
    import tensorflow as tf

    return strategy if strategy is not None else tf.distribute.get_strategy()


def num_replicas(strategy: Any = None) -> int:
    """Number of replicas that share each global batch (1 without a strategy)."""
    return int(current_strategy(strategy).num_replicas_in_sync)


def _task(strategy: Any) -> tuple[str | None, int | None]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, None
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: Any = None) -> bool:
    """True on the worker that writes files: the ``chief`` task, or worker 0 when there is no chief.

    Without a multi-worker strategy this process is the chief.
    """
    task_type, task_id = _task(current_strategy(strategy))
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    if task_type == "worker" and task_id == 0:
        cluster = getattr(current_strategy(strategy).cluster_resolver, "cluster_spec", None)
        jobs = cluster().as_dict() if callable(cluster) else {}
        return "chief" not in jobs
    return False


def worker_id(strategy: Any = None) -> str:
    """``"worker-1"`` style name of this task, or ``"local"`` without a cluster."""
    task_type, task_id = _task(current_strategy(strategy))
    return "local" if task_type is None else f"{task_type}-{task_id}"


def multi_worker_strategy(
    tf_config: dict[str, Any] | str | None = None,
    *,
    communication: str = "auto",
) -> Any:
    """A ``MultiWorkerMirroredStrategy`` for the cluster described by ``TF_CONFIG``.

    Every worker runs the same script; each one's ``TF_CONFIG`` lists all workers and says which
    one it is::

        TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                    "task": {"type": "worker", "index": 0}}'

    Create the strategy at the start of the program, before any other TensorFlow operation (TF
    cannot join a cluster after it has initialised its devices). Worker 0 is the chief: it writes
    the checkpoints and logs.

    Args:
        tf_config: The cluster as a dict or JSON text; written to ``TF_CONFIG`` before the strategy
            reads it. Default: the ``TF_CONFIG`` already in the environment.
        communication: ``"auto"``, ``"ring"`` (gRPC, what CPUs use) or ``"nccl"`` (NVIDIA GPUs).

    Returns:
        The strategy; pass it to ``Trainer(strategy=...)``.
    """
    import tensorflow as tf

    from bloodcell.errors import ConfigurationError

    if tf_config is not None:
        os.environ["TF_CONFIG"] = tf_config if isinstance(tf_config, str) else json.dumps(tf_config)
    if not os.environ.get("TF_CONFIG"):
        raise ConfigurationError(
            "multi_worker_strategy() needs TF_CONFIG: set the environment variable on every worker, e.g. "
            '{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, "task": {"type": "worker", '
            '"index": 0}}, or pass tf_config=.'
        )
    implementations = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }
    check_choice(communication, "communication", implementations)
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementations[communication])
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def logical_cpus(n: int = 2) -> list[str]:
    """Split the CPU into ``n`` logical devices (for trying ``MirroredStrategy`` without GPUs).

    Must run before TensorFlow initialises its devices (before any tensor is made).

    Returns:
        The device names, e.g. ``["/cpu:0", "/cpu:1"]``, for ``tf.distribute.MirroredStrategy(devices)``.
    """
    import tensorflow as tf

    from bloodcell.errors import ConfigurationError

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:
        raise ConfigurationError(
            "logical_cpus() must run before TensorFlow initialises (before any tensor or model is made): "
            f"{err}"
        ) from err
    return [f"/cpu:{i}" for i in range(n)]


def has_custom_strategy(strategy: Any) -> bool:
    """False for TF's default (no-op) strategy, True for any real one."""
    import tensorflow as tf

    return strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy()


def place_model(model: Any, strategy: Any) -> tuple[Any, Any]:
    """``(model to train, user's model or None)``: the model inside ``strategy``'s scope.

    A function is called in the scope. Keras binds a model to the strategy in force when it was
    created, so a model built outside a real strategy is copied into its scope; the user's model is
    then returned second, for the trained weights to be copied back.
    """
    import keras

    from bloodcell.errors import ConfigurationError, InvalidDtypeError

    if not isinstance(model, keras.Model):
        with strategy.scope():
            built = model()
        if not isinstance(built, keras.Model):
            raise InvalidDtypeError(
                f"The model function returned a {type(built).__name__}, not a keras.Model."
            )
        return built, None
    if not has_custom_strategy(strategy) or getattr(model, "_distribute_strategy", None) is strategy:
        return model, None
    with strategy.scope():
        try:
            copy = keras.models.clone_model(model)
        except Exception as err:  # subclassed models cannot always be cloned
            raise ConfigurationError(
                f"{type(model).__name__} was built outside the strategy's scope and cannot be copied into "
                "it; pass a function that builds the model, e.g. Trainer(lambda: bc.build_classifier(...), "
                "strategy=...)."
            ) from err
        copy.set_weights(model.get_weights())
    return copy, model


@contextlib.contextmanager
def keras_multi_worker_fix(model: Any, strategy: Any) -> Iterator[None]:
    """Let Keras 3 ``fit`` run under ``MultiWorkerMirroredStrategy``.

    Keras 3 (3.15 at least; keras-team/keras#20585, tensorflow/tensorflow#72388) fails there twice:

    1. A model bound to the strategy gets a "symbolic build" that calls ``strategy.reduce`` on a
       whole input batch, which the collective strategy cannot do. A model not bound to a strategy
       skips that step and takes the strategy from the enclosing scope, with the same training step.
    2. Each step's scalar metrics are averaged across workers with ``reduce("MEAN", v, axis=0)``,
       which needs at least one dimension: the step's scalars are returned with shape [1] (the
       reduction brings them back to scalars).
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return

    def with_one_dim(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapped(data: Any) -> Any:
            logs = step(data)
            return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v for k, v in logs.items()}

        return wrapped

    bound = model._distribute_strategy
    model._distribute_strategy = None
    model.train_step = with_one_dim(model.train_step)
    model.test_step = with_one_dim(model.test_step)
    try:
        with strategy.scope():
            yield
    finally:
        model._distribute_strategy = bound
        del model.train_step, model.test_step  # back to the class's methods
