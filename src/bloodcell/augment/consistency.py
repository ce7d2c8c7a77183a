"""Deprecated: consistency training moved: :class:`~bloodcell.augment.MultiView` to
:mod:`bloodcell.augment.multiview`, the model and loss to :mod:`bloodcell.training.consistency`.

Every name still resolves here, to the same object, with a :class:`DeprecationWarning`.
"""

from bloodcell._deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "MultiView": "bloodcell.augment.multiview",
        "ConsistencyModel": "bloodcell.training.consistency",
        "jensen_shannon": "bloodcell.training.consistency",
        "JSD_WEIGHT": "bloodcell.training.consistency",
    },
)
