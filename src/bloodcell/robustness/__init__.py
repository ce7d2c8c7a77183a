"""Robustness: a corruption suite for blood smear crops and a report of accuracy under each corruption.

Example:
    >>> import bloodcell as bc
    >>> len(bc.robustness.list_corruptions()) >= 19
    True
"""

from __future__ import annotations

from bloodcell.robustness.corruptions import (
    CORRUPTIONS,
    GROUPS,
    SEVERITIES,
    Corruption,
    corrupt,
    corrupt_dataset,
    get_corruption,
    list_corruptions,
)
from bloodcell.robustness.report import RobustnessReport, evaluate_robustness

__all__ = [
    "CORRUPTIONS",
    "GROUPS",
    "SEVERITIES",
    "Corruption",
    "RobustnessReport",
    "corrupt",
    "corrupt_dataset",
    "evaluate_robustness",
    "get_corruption",
    "list_corruptions",
]
