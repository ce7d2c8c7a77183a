"""Training: the :class:`Trainer`, its resumable run state, its learning-rate schedule, precise BatchNorm,
distribution helpers and TensorFlow's CPU threads.

Example:
    >>> import bloodcell as bc
    >>> bc.training.Trainer.__name__
    'Trainer'
"""

from bloodcell.training.batchnorm import RecalibrateBatchNorm, recalibrate_batchnorm
from bloodcell.training.budget import TimeBudget
from bloodcell.training.callbacks import TrainingState
from bloodcell.training.distribute import (
    current_strategy,
    is_chief,
    logical_cpus,
    multi_worker_strategy,
    num_replicas,
    worker_id,
)
from bloodcell.training.schedules import WarmupCosine
from bloodcell.training.threads import set_cpu_threads
from bloodcell.training.trainer import BALANCE_OPTIONS, OPTIMIZERS, Trainer

__all__ = [
    "BALANCE_OPTIONS",
    "OPTIMIZERS",
    "RecalibrateBatchNorm",
    "TimeBudget",
    "Trainer",
    "TrainingState",
    "WarmupCosine",
    "current_strategy",
    "is_chief",
    "logical_cpus",
    "multi_worker_strategy",
    "num_replicas",
    "recalibrate_batchnorm",
    "set_cpu_threads",
    "worker_id",
]
