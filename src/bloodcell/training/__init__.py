"""Training: the :class:`Trainer` and its settings (:class:`TrainerOptions`, :class:`RecipeOptions`), its
resumable run state, its learning-rate schedule, precise BatchNorm, distribution helpers and
TensorFlow's CPU threads.

Names load on first use, so the settings that describe training (:mod:`bloodcell.training.options`)
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
    "BALANCE_OPTIONS": "bloodcell.training.options",
    "ConsistencyModel": "bloodcell.training.consistency",
    "JSD_WEIGHT": "bloodcell.training.consistency",
    "LRFinderResult": "bloodcell.training.lr_finder",
    "MONITORS": "bloodcell.training.monitors",
    "OPTIMIZERS": "bloodcell.training.options",
    "RecalibrateBatchNorm": "bloodcell.training.batchnorm",
    "RecipeOptions": "bloodcell.training.options",
    "SwapEMAWeights": "bloodcell.training.callbacks",
    "TimeBudget": "bloodcell.training.budget",
    "Trainer": "bloodcell.training.trainer",
    "TrainerOptions": "bloodcell.training.options",
    "TrainingState": "bloodcell.training.callbacks",
    "WarmupCosine": "bloodcell.training.schedules",
    "current_strategy": "bloodcell.training.distribute",
    "find_lr": "bloodcell.training.lr_finder",
    "jensen_shannon": "bloodcell.training.consistency",
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
