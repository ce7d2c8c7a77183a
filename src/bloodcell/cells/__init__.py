"""Finding the white cell in a crop, and cell-centred, scale-normalised crops.

Other labs' microscopes frame a cell at another size and place: :func:`find_cells` measures where
each image's white cell is and how large it looks, :class:`CellCrop` (a Keras layer, saved with a
model) and :func:`crop_cells` (arrays and datasets) centre it and bring it to PBC's scale.

Example:
    >>> import bloodcell as bc
    >>> cells = bc.cells.find_cells(bc.datasets.load_sample(per_class=1))
    >>> bool(cells.found.all())
    True
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports

_ATTRIBUTES = {
    "CellCrop": "bloodcell.cells.crop",
    "CellMeasurements": "bloodcell.cells.finder",
    "PBC_CELL_FRACTION": "bloodcell.cells.crop",
    "SCALES": "bloodcell.cells.crop",
    "crop_cells": "bloodcell.cells.crop",
    "find_cells": "bloodcell.cells.finder",
    "measure_cells": "bloodcell.cells.finder",
    "purple_density": "bloodcell.cells.finder",
    "SAME_CELL_DISTANCE": "bloodcell.cells.groups",
    "same_cell_groups": "bloodcell.cells.groups",
}

__all__ = sorted(_ATTRIBUTES)

__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES)
