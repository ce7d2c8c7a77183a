"""Deprecated: class balancing moved to :mod:`bloodcell.datasets.balance` (a dataset operation).

Every name still resolves here, to the same object, with a :class:`DeprecationWarning`.
"""

from bloodcell._deprecation import moved_module

__getattr__, __dir__ = moved_module(__name__, "bloodcell.datasets.balance")
