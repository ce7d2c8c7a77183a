"""Regenerate the static figures of the user guide from the bundled real sample.

Usage:
    python docs/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import bloodcell as bc

STATIC = Path(__file__).resolve().parent / "_static"


def main() -> None:
    data = bc.datasets.load_sample()
    bc.plots.augmentation_grid(
        data,
        bc.augment.AugMix(),
        STATIC / "augmix_grid.png",
        n_augmentations=5,
        seed=0,
        dpi=72,
        title="AugMix(severity=3, width=3, depth=-1, alpha=1.0): one real cell per class, five augmentations",
    )
    bc.plots.augmentation_grid(
        data,
        bc.augment.RandomGeometric(),
        STATIC / "geometric_grid.png",
        n_augmentations=5,
        seed=0,
        dpi=72,
        title="RandomGeometric(rotation=180, translation=0.1, flip='both')",
    )


if __name__ == "__main__":
    main()
