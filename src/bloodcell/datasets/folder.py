"""Loading class folders of image files (the layout the PBC dataset ships in)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np

from bloodcell._validation import check_choice
from bloodcell.classes import CLASS_NAMES, normalize_class_name
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.datasets.imageio import CropMode, _check_size, decode_image, run_parallel
from bloodcell.errors import (
    BloodcellWarning,
    DataFileNotFoundError,
    EmptyDatasetError,
    UnknownClassError,
    UnreadableFileError,
)

__all__ = ["load_folder", "list_image_files", "SkippedFile", "IMAGE_EXTENSIONS"]

#: File name endings read as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class SkippedFile(NamedTuple):
    """A file ``load_folder(..., on_error="skip")`` could not read, and why."""

    path: str
    reason: str


def list_image_files(
    root: str | os.PathLike[str],
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    class_map: Mapping[str, str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[tuple[Path, int]]:
    """Find ``root/<class folder>/**/<image file>`` and the class index of each, in a stable order.

    Folder names are normalised (``"Neutrophils"``, ``"IG"``, ``"plt"`` all work); folders that
    map to no class raise :class:`UnknownClassError` unless ``class_map`` maps them, and a class
    folder without image files raises :class:`EmptyDatasetError` (a root may lack class folders
    altogether). Hidden files and folders are ignored.

    Example:
        >>> list_image_files("/no/such/folder")
        Traceback (most recent call last):
        ...
        bloodcell.errors.DataFileNotFoundError: no such folder: '/no/such/folder'.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise DataFileNotFoundError(f"no such folder: {os.fspath(root)!r}.")
    if not root_path.is_dir():
        raise DataFileNotFoundError(
            f"{os.fspath(root)!r} is a file, not a folder of class sub-folders. For .npz files use load_npz()."
        )
    exts = tuple(e.lower() for e in extensions)
    class_map = dict(class_map or {})
    subdirs = sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p.name for p in root_path.iterdir() if p.is_file() and p.suffix.lower() in exts]
    if not subdirs:
        hint = f" It holds {len(loose)} image files directly; move them into class folders." if loose else ""
        raise EmptyDatasetError(
            f"{os.fspath(root)!r} has no class sub-folders (expected e.g. root/basophil/*.jpg).{hint}"
        )
    files: list[tuple[Path, int]] = []
    unknown: list[str] = []
    empty: list[Path] = []
    for sub in subdirs:
        try:
            name = normalize_class_name(class_map.get(sub.name, sub.name), class_names)
        except UnknownClassError:
            unknown.append(sub.name)
            continue
        label = list(class_names).index(name)
        found = _walk_images(sub, exts)
        if not found:
            empty.append(sub)
        files.extend((p, label) for p in found)
    if unknown:
        raise UnknownClassError(
            f"folder(s) {unknown} in {os.fspath(root)!r} name no known class ({', '.join(class_names)}). "
            "Rename them, or pass class_map={'folder name': 'class name'}."
        )
    if empty:
        # A class folder without images is most likely a failed copy or a wrong extension; loading
        # on would silently train without that class.
        others = [f for sub in empty for f in _walk_images(sub, ("",))]
        what = (
            f"class folder {os.fspath(empty[0])!r} holds"
            if len(empty) == 1
            else f"class folders {[os.fspath(p) for p in empty]} hold"
        )
        hint = (
            f" Files with other endings are there, e.g. {others[0].name!r}; pass extensions= to read them."
            if others
            else ""
        )
        raise EmptyDatasetError(
            f"{what} no image files ({', '.join(exts)}).{hint} Add images, or remove the empty "
            f"folder(s): a root may lack some classes. Received: root={os.fspath(root)!r}."
        )
    return files


def _walk_images(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Image files under ``folder`` in sorted order, skipping hidden files and folders (os.walk: fast)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, f) for f in filenames if not f.startswith(".") and f.lower().endswith(exts)
        )
    return [Path(f) for f in sorted(found)]


@overload
def load_folder(
    root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_size: int | None = ...,
    *,
    class_names: Sequence[str] = ...,
    class_map: Mapping[str, str] | None = ...,
    crop: CropMode = ...,
    on_error: Literal["raise", "skip"] = ...,
    return_skipped: Literal[False] = ...,
    num_workers: int | None = ...,
    extensions: Sequence[str] = ...,
    verbose: bool = ...,
) -> BloodCellDataset: ...
@overload
def load_folder(
    root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_size: int | None = ...,
    *,
    class_names: Sequence[str] = ...,
    class_map: Mapping[str, str] | None = ...,
    crop: CropMode = ...,
    on_error: Literal["raise", "skip"] = ...,
    return_skipped: Literal[True],
    num_workers: int | None = ...,
    extensions: Sequence[str] = ...,
    verbose: bool = ...,
) -> tuple[BloodCellDataset, list[SkippedFile]]: ...
def load_folder(
    root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_size: int | None = 96,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    class_map: Mapping[str, str] | None = None,
    crop: CropMode = "center",
    on_error: Literal["raise", "skip"] = "raise",
    return_skipped: bool = False,
    num_workers: int | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    verbose: bool = False,
) -> BloodCellDataset | tuple[BloodCellDataset, list[SkippedFile]]:
    """Load ``root/<class>/<image>`` files (JPEG, PNG, BMP, TIFF) into a dataset.

    Images are converted to RGB (transparency composited on white), cropped to a centred square
    and resized with antialiased bicubic resampling, decoded by a thread pool straight into one
    preallocated uint8 array (peak memory close to the images' own size).

    Args:
        root: Folder holding one sub-folder per class (sub-folders below those are searched too), or
            a list of such folders (e.g. PBC's ``train`` and ``val``), read into one array.
        image_size: Side of the square output; None keeps the files' size (all must then match).
        class_names: The classes, in label order.
        class_map: Folder names to class names, for folders the normaliser does not know.
        crop: ``"center"`` crops non-square images to a centred square; ``"none"`` stretches them.
        on_error: ``"raise"`` (default) stops at the first unreadable file; ``"skip"`` leaves such
            files out with a warning.
        return_skipped: Also return the list of skipped files as :class:`SkippedFile` tuples.
        num_workers: Decoding threads (default: the available cores).
        extensions: File endings to read.
        verbose: Show a progress line.

    Returns:
        The dataset (``ids`` are paths relative to ``root``, prefixed by the root's name when
        several roots are given; ``sources`` the root folder's name), or ``(dataset, skipped)``
        with ``return_skipped=True``.

    Raises:
        DataFileNotFoundError: ``root`` does not exist.
        EmptyDatasetError: no class folders, or a class folder without image files.
        UnknownClassError: a folder that names no class.
        UnreadableFileError: a file that cannot be decoded (with ``on_error="raise"``).

    Example:
        >>> import tempfile
        >>> from bloodcell.datasets import write_sample_folder
        >>> root = write_sample_folder(tempfile.mkdtemp(), per_class=2)
        >>> load_folder(root).class_counts()["platelet"]
        2
    """
    _check_size(image_size)
    check_choice(on_error, "on_error", ("raise", "skip"))
    roots = [Path(r) for r in ([root] if isinstance(root, (str, os.PathLike)) else root)]
    if not roots:
        raise EmptyDatasetError("load_folder() got an empty list of folders.")
    files: list[tuple[Path, int]] = []
    origin: list[int] = []  # which root each file came from
    for k, r in enumerate(roots):
        found = list_image_files(r, class_names=class_names, class_map=class_map, extensions=extensions)
        files.extend(found)
        origin.extend([k] * len(found))
    n = len(files)
    size = image_size
    if size is None:  # keep native size: read the first file to learn it
        first = decode_image(files[0][0])
        size_hw = first.shape[:2]
    else:
        size_hw = (size, size)
    images = np.empty((n, *size_hw, 3), np.uint8)

    def work(i: int) -> None:
        arr = decode_image(files[i][0], image_size, crop)
        if arr.shape[:2] != size_hw:
            raise UnreadableFileError(
                f"{files[i][0]} is {arr.shape[1]}×{arr.shape[0]}, unlike the first file "
                f"({size_hw[1]}×{size_hw[0]}); pass image_size= to resize them all."
            )
        images[i] = arr

    failures = run_parallel(work, n, num_workers=num_workers, label="decoding", verbose=verbose)
    skipped: list[SkippedFile] = []
    if failures:
        failures.sort(key=lambda f: f[0])
        if on_error == "raise":
            first_err = failures[0][1]
            more = f" ({len(failures) - 1} more files failed too)" if len(failures) > 1 else ""
            if isinstance(first_err, UnreadableFileError):
                raise UnreadableFileError(f"{first_err}{more}") from first_err
            raise UnreadableFileError(
                f"cannot read {files[failures[0][0]][0]}: {first_err}{more}"
            ) from first_err
        skipped = [SkippedFile(os.fspath(files[i][0]), str(err)) for i, err in failures]
        warnings.warn(
            f"load_folder skipped {len(skipped)} unreadable file(s) in {os.fspath(root)!r}, e.g. "
            f"{skipped[0].path}; pass return_skipped=True to get the list.",
            BloodcellWarning,
            stacklevel=2,
        )
        keep = np.ones(n, bool)
        keep[[i for i, _ in failures]] = False
        # Compact in place, row by row, so skipping files costs no second copy of the images.
        dst = 0
        for src in np.flatnonzero(keep):
            if src != dst:
                images[dst] = images[src]
            dst += 1
        images = images[:dst]
        files = [f for f, k in zip(files, keep) if k]
        origin = [o for o, k in zip(origin, keep) if k]
        if not files:
            raise EmptyDatasetError(f"none of the {n} files under {os.fspath(root)!r} could be read.")
    names = [r.resolve().name for r in roots]
    prefix = [f"{name}/" if len(roots) > 1 else "" for name in names]
    data = BloodCellDataset(
        images,
        np.fromiter((label for _, label in files), np.int64, len(files)),
        tuple(class_names),
        ids=[prefix[o] + p.relative_to(roots[o]).as_posix() for (p, _), o in zip(files, origin)],
        sources=[names[o] for o in origin],
    )
    return (data, skipped) if return_skipped else data
