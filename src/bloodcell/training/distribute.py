"""Distribution helpers: replica counts, the chief worker, and strategies from the environment.

Training under a ``tf.distribute`` strategy needs three things the :class:`~bloodcell.training.Trainer`
does for you: the model, its optimizer and ``compile`` live inside ``strategy.scope()``; the global
batch is the per-replica batch times the number of replicas; and with several workers only the chief
writes files (checkpoints, logs), while every worker reads the chief's state to resume.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = [
    "current_strategy",
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
    if communication not in implementations:
        raise ConfigurationError(
            f"communication must be one of {sorted(implementations)}, got {communication!r}."
        )
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
