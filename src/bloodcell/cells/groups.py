"""Which images show the same cell: shifted, re-cropped or recoloured copies of one photograph.

Public cell sets are often padded with copies of each cell (shifted, padded with black bars,
recoloured) to look larger. A split or a few-shot draw that puts one copy in the labelled part and
another in the evaluated part scores the model on a cell it was shown. :func:`same_cell_groups`
gives the copies of one cell one group id, for :func:`bloodcell.adapt.sample_support` and any
group-aware split.

Each image's cell is centred and brought to one scale first (:func:`~bloodcell.cells.crop_cells`),
so a shift or a re-crop no longer moves the picture; the crops are then compared by a 256-bit
perceptual hash of their grey levels (robust to recolouring), and images within ``max_distance``
bits are linked into one group (single linkage).

Example:
    >>> import numpy as np, bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=2)
    >>> shifted = np.roll(data.images[:1], 3, axis=2)  # the first cell again, 3 px to the right
    >>> groups = same_cell_groups(np.concatenate([data.images, shifted]))
    >>> int(groups[-1]) == int(groups[0]), len(set(groups[:-1].tolist()))
    (True, 16)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._validation import check_int

__all__ = ["SAME_CELL_DISTANCE", "same_cell_groups"]

#: Default largest distance (bits of 256) between two copies of one cell's centred crop. It leans
#: towards joining: for a leak-free draw, two distinct cells in one group cost little, while copies
#: left apart leak (benchmarks/RESULTS.md, "Copies of one cell").
SAME_CELL_DISTANCE = 64

_HASH_SIZE = 16  # 256 bits: 64 bits cannot tell two lymphocytes' centred crops apart


def same_cell_groups(
    data: Any, *, max_distance: int = SAME_CELL_DISTANCE, batch_size: int = 256
) -> np.ndarray:
    """A group id per image; copies of one cell (shifted, re-cropped, recoloured) share it.

    Args:
        data: uint8 images (N, H, W, 3) or a :class:`~bloodcell.datasets.BloodCellDataset`.
        max_distance: Largest Hamming distance (of 256 bits) between the perceptual hashes of two
            cell-centred crops that still count as one cell. Lower it to split fewer images
            together, raise it to catch harder copies.
        batch_size: Images cropped at a time.

    Returns:
        int64 array (N,): group ids 0..G-1, numbered in the order of each group's first image.
    """
    from bloodcell.cells.crop import crop_cells
    from bloodcell.outliers.perceptual import hash_groups, perceptual_hash

    check_int(max_distance, "max_distance", minimum=0, maximum=_HASH_SIZE * _HASH_SIZE - 1)
    crops, _ = crop_cells(data.images if hasattr(data, "images") else data, batch_size=batch_size)
    groups, _ = hash_groups(perceptual_hash(crops, hash_size=_HASH_SIZE), int(max_distance))
    return groups.astype(np.int64)
