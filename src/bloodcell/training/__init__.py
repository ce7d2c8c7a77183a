"""Training: the :class:`Trainer`, its resumable run state, its learning-rate schedule, precise BatchNorm,
distribution helpers and TensorFlow's CPU threads.

Names load on first use, so the settings that describe training (:mod:`bloodcell.training.monitors`)
are read without importing TensorFlow.

Example:
    >>> import bloodcell as bc
    >>> bc.training.Trainer.__name__
    'Trainer'
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports

# Public names and the module that defines each (PEP 562 lazy loading).
_ATTRIBUTES = {
    "BALANCE_OPTIONS": "bloodcell.training.trainer",
    "LRFinderResult": "bloodcell.training.lr_finder",
    "MONITORS": "bloodcell.training.monitors",
    "OPTIMIZERS": "bloodcell.training.trainer",
    "RecalibrateBatchNorm": "bloodcell.training.batchnorm",
    "SwapEMAWeights": "bloodcell.training.callbacks",
    "TimeBudget": "bloodcell.training.budget",
    "Trainer": "bloodcell.training.trainer",
    "TrainingState": "bloodcell.training.callbacks",
    "WarmupCosine": "bloodcell.training.schedules",
    "current_strategy": "bloodcell.training.distribute",
    "find_lr": "bloodcell.training.lr_finder",
    "is_chief": "bloodcell.training.distribute",
    "logical_cpus": "bloodcell.training.distribute",
    "multi_worker_strategy": "bloodcell.training.distribute",
    "num_replicas": "bloodcell.training.distribute",
    "recalibrate_batchnorm": "bloodcell.training.batchnorm",
    "set_cpu_threads": "bloodcell.training.threads",
    "worker_id": "bloodcell.training.distribute",
}

__all__ = sorted(_ATTRIBUTES)


__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES)
