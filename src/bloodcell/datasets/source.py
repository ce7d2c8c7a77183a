"""One loader for the three ways a dataset is named: ``"sample"``, a class-folder root, an ``.npz`` file.

The command line, :func:`bloodcell.robustness.evaluate_robustness` and user code name datasets the
same way; :func:`load` is the one place that turns such a name into a
:class:`~bloodcell.datasets.BloodCellDataset`.

Example:
    >>> import bloodcell as bc
    >>> bc.datasets.load("sample").image_shape
    (96, 96, 3)
"""

from __future__ import annotations

import os

from bloodcell.datasets.core import BloodCellDataset
from bloodcell.errors import DataFileNotFoundError, InvalidDtypeError

__all__ = ["load", "SOURCE_HELP"]

#: How a dataset may be named, for error and help messages.
SOURCE_HELP = (
    "'sample' (the 800 real cells bundled with bloodcell), a folder of class folders, or an .npz file"
)


def load(
    source: str | os.PathLike[str] | BloodCellDataset,
    *,
    image_size: int | None = None,
    verbose: bool = False,
) -> BloodCellDataset:
    """A dataset from ``"sample"``, a folder of class folders or an ``.npz`` file.

    Args:
        source: ``"sample"`` (:func:`load_sample`), a folder of class folders
            (:func:`load_folder`), an ``.npz`` file (:func:`load_npz`, AN2DL or MedMNIST layout),
            or a :class:`BloodCellDataset`, returned as it is.
        image_size: Resize to this square side; None keeps the data's own size (folders: 96 px,
            :func:`load_folder`'s default).
        verbose: Progress line while decoding and resizing.

    Raises:
        DataFileNotFoundError: ``source`` names no file or folder.
        InvalidDtypeError: ``source`` is neither a name, a path nor a dataset.

    Example:
        >>> import bloodcell as bc
        >>> bc.datasets.load("sample", image_size=64).image_shape
        (64, 64, 3)
    """
    from bloodcell.datasets.folder import load_folder
    from bloodcell.datasets.imageio import resize_images
    from bloodcell.datasets.npz import load_npz
    from bloodcell.datasets.sample import load_sample

    if isinstance(source, BloodCellDataset):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text == "sample":
            data = load_sample()
        elif os.path.isdir(text):
            return load_folder(text, image_size=96 if image_size is None else image_size, verbose=verbose)
        else:
            require_source(text)
            return load_npz(text, image_size=image_size, verbose=verbose)
    else:
        raise InvalidDtypeError(
            f"a dataset must be given as {SOURCE_HELP}, or a BloodCellDataset; got {type(source).__name__}."
        )
    if image_size is not None and data.image_shape[0] != image_size:
        data = data.replace(images=resize_images(data.images, image_size, verbose=verbose))
    return data


def require_source(source: str | os.PathLike[str]) -> None:
    """Raise :class:`DataFileNotFoundError` unless ``source`` is ``"sample"`` or an existing path.

    The command line calls it before making its output folder, so a mistyped path leaves nothing behind.
    """
    text = os.fspath(source)
    if text != "sample" and not os.path.exists(text):
        raise DataFileNotFoundError(f"no such file or folder: {text!r}. Give {SOURCE_HELP}.")
