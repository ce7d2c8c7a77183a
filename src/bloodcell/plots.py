"""Figures as PNG files: confusion matrices, training curves, augmentation grids, outlier galleries.

Every function writes a PNG (atomically) and returns its path; matplotlib runs on the non-interactive
Agg backend, so plots work on servers without a display.
"""

from __future__ import annotations

__all__: list[str] = []
