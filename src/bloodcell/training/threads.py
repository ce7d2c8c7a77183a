"""TensorFlow's CPU thread pools, set before TensorFlow starts, with a clear error when it is too late.

TensorFlow runs each op on up to *intra-op* threads and up to *inter-op* ops at once, and picks
both from the number of cores. On a machine with few cores, one thread per op (``intra_op=1``)
can train faster than TensorFlow's defaults, because the pools then stop competing for the same
cores (``benchmarks/RESULTS.md``, "Trainer throughput", has the measurement). The setting is process-wide and fixed once TensorFlow has run its first op, which is why it is a
function to call first rather than a Trainer option.
"""

from __future__ import annotations

from bloodcell._validation import check_int
from bloodcell.errors import ConfigurationError

__all__ = ["set_cpu_threads"]


def set_cpu_threads(intra_op: int | None = None, inter_op: int | None = None) -> tuple[int, int]:
    """Set TensorFlow's threads per op (``intra_op``) and ops at once (``inter_op``).

    Call it first, before loading data with TensorFlow, building a model or making any tensor:
    TensorFlow fixes its thread pools when it runs its first op. ``None`` leaves a setting as it
    is; 0 means TensorFlow's choice (from the number of cores). Calling it again with the values
    already in force is allowed at any time.

    Args:
        intra_op: Threads one op may use. 1 suits small models on a few cores.
        inter_op: Ops that may run at the same time.

    Returns:
        The settings now in force, ``(intra_op, inter_op)`` (0: TensorFlow's choice).

    Raises:
        ConfigurationError: a value that is not a count of threads, or TensorFlow has already
            started with other values.

    Example (in a fresh process)::

        import bloodcell as bc
        bc.training.set_cpu_threads(intra_op=1)   # before anything else runs
        trainer = bc.Trainer(bc.build_classifier("mobilenetv3small", weights=None))
    """
    # None leaves a setting as it is, 0 is TensorFlow's choice.
    intra_op = check_int(intra_op, "intra_op", minimum=0, allow_none=True)
    inter_op = check_int(inter_op, "inter_op", minimum=0, allow_none=True)
    import tensorflow as tf

    threading = tf.config.threading
    wanted = {
        "intra_op": (
            intra_op,
            threading.get_intra_op_parallelism_threads,
            threading.set_intra_op_parallelism_threads,
        ),
        "inter_op": (
            inter_op,
            threading.get_inter_op_parallelism_threads,
            threading.set_inter_op_parallelism_threads,
        ),
    }
    for name, (value, get, set_) in wanted.items():
        if value is None or value == get():
            continue  # TensorFlow also accepts an unchanged value after it has started
        try:
            set_(value)
        except RuntimeError as err:
            raise ConfigurationError(
                f"TensorFlow has already started with {name}={get()} (0: its choice), so {name}={value} "
                "cannot be set any more. Call set_cpu_threads() first in a fresh process, before loading "
                "data, building a model or making any tensor."
            ) from err
    return threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()
