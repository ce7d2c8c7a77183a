"""What the commands read: datasets and image files named on the command line.

Saved models are read by :func:`bloodcell.models.load_model`, imported where a command runs so
that parsing the command line does not import Keras.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._validation import check_int
from bloodcell.datasets import BloodCellDataset
from bloodcell.datasets.source import SOURCE_HELP
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, EmptyDatasetError

DATA_HELP = SOURCE_HELP  # the commands' help text for a DATA argument


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    limit: int | None = None,
    verbose: bool = True,
) -> BloodCellDataset:
    """Load ``sample``, a class-folder root or an ``.npz`` file, at ``image_size`` px if given.

    Args:
        spec: ``"sample"``, a folder of class folders, or an ``.npz`` file (AN2DL layout); see
            :func:`bloodcell.datasets.load`.
        image_size: Resize to this square side; None keeps the data's size (96 px for folders).
        limit: Keep at most this many images of each class (the first ones, in dataset order).
        verbose: Progress line while decoding and resizing.

    Raises:
        DataFileNotFoundError: ``spec`` names no file or folder.
    """
    from bloodcell import datasets

    if os.fspath(spec) == "sample" and image_size is not None:
        # Keep fewer images before resizing: less to resize.
        return datasets.load(
            limit_per_class(datasets.load("sample"), limit), image_size=image_size, verbose=verbose
        )
    return limit_per_class(datasets.load(spec, image_size=image_size, verbose=verbose), limit)


def limit_per_class(data: BloodCellDataset, limit: int | None) -> BloodCellDataset:
    """The first ``limit`` images of each class (all of them for None)."""
    if limit is None:
        return data
    limit = check_int(limit, "limit", minimum=1)
    keep = np.concatenate([np.flatnonzero(data.labels == k)[:limit] for k in range(data.num_classes)])
    return data.subset(np.sort(keep))


def image_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files named on the command line, folders expanded (recursively, sorted).

    Raises:
        DataFileNotFoundError: a path that does not exist.
        EmptyDatasetError: no image file found at all.
    """
    from bloodcell.datasets import IMAGE_EXTENSIONS

    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)  # named explicitly: read whatever its extension, decoding will tell
        else:
            raise DataFileNotFoundError(f"no such image file or folder: {os.fspath(item)!r}.")
    if not found:
        raise EmptyDatasetError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(os.fspath, paths))}."
        )
    return found


def model_image_size(model: Any) -> int:
    """The square side of the images the model takes."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        raise ConfigurationError(f"the model takes inputs of shape {shape}, not square RGB images.")
    return int(shape[0])
