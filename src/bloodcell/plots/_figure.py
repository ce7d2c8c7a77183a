"""What every figure shares: matplotlib on the Agg backend, and the atomic PNG writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bloodcell._io import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; keep a backend the user chose
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str], dpi: int, *, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically, close it, and return the path."""
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        plt.close(fig)
    return Path(path)
