"""The real PBC sample bundled with the package: 800 cells, 100 per class, as original JPEG files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from bloodcell._validation import check_int
from bloodcell.classes import CLASS_NAMES
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.datasets.imageio import decode_image, run_parallel

__all__ = ["load_sample", "write_sample_folder", "sample_attribution", "SAMPLE_CITATION"]

SAMPLE_CITATION = (
    'A. Acevedo, A. Merino, S. Alférez, Á. Molina, L. Boldú, J. Rodellar, "A dataset of microscopic '
    'peripheral blood cell images for development of automatic recognition systems", Data in Brief 30 '
    "(2020) 105474. Licence CC BY 4.0."
)


def _bundle() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ref = resources.files("bloodcell.datasets").joinpath("_data/pbc96_sample.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        return npz["jpeg"], npz["offsets"], npz["labels"], npz["ids"]


def _selection(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    if per_class is None:
        return np.arange(len(labels))
    per_class = check_int(per_class, "per_class", minimum=1, maximum=100)
    return np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(len(CLASS_NAMES))])


def load_sample(per_class: int | None = None) -> BloodCellDataset:
    """The bundled real sample: 800 PBC images at 96×96, 100 per class (fewer with ``per_class``).

    The images are real cells from the PBC dataset (Acevedo et al. 2020, CC BY 4.0); see
    :func:`sample_attribution`. ``ids`` are the original file names, e.g.
    ``"train/basophil/BA_100102.jpg"``.

    Example:
        >>> data = load_sample(per_class=10)
        >>> len(data), data.image_shape
        (80, (96, 96, 3))
    """
    jpeg, offsets, labels, ids = _bundle()
    pick = _selection(labels, per_class)
    images = np.empty((len(pick), 96, 96, 3), np.uint8)

    def work(i: int) -> None:
        k = pick[i]
        images[i] = decode_image(jpeg[offsets[k] : offsets[k + 1]].tobytes())

    failures = run_parallel(work, len(pick), num_workers=None, label="decoding sample", verbose=False)
    if failures:  # the bundle is part of the package: a failure means a broken install
        raise RuntimeError(f"the bundled sample is damaged ({failures[0][1]}); reinstall bloodcell.")
    return BloodCellDataset(
        images, labels[pick], CLASS_NAMES, ids=ids[pick], sources=np.full(len(pick), "pbc96_sample")
    )


def write_sample_folder(dest: str | os.PathLike[str], per_class: int | None = None) -> Path:
    """Write the bundled sample's original JPEG files as ``dest/<class>/<name>.jpg`` and return ``dest``.

    Handy to try :func:`~bloodcell.datasets.load_folder` and the command line on real files.

    Example:
        >>> import tempfile
        >>> root = write_sample_folder(tempfile.mkdtemp(), per_class=1)
        >>> sorted(p.name for p in root.iterdir())[:2]
        ['basophil', 'eosinophil']
    """
    jpeg, offsets, labels, ids = _bundle()
    root = Path(dest)
    for k in _selection(labels, per_class):
        target = root / CLASS_NAMES[labels[k]] / Path(str(ids[k])).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg[offsets[k] : offsets[k + 1]].tobytes())
    return root


def sample_attribution() -> str:
    """The attribution and licence text shipped beside the bundled sample."""
    ref = resources.files("bloodcell.datasets").joinpath("_data/ATTRIBUTION.md")
    return ref.read_text(encoding="utf-8")
