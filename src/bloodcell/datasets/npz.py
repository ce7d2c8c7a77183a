"""Loading datasets from ``.npz`` files: the AN2DL layout and the MedMNIST layout, never unpickling."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, overload

import numpy as np

from bloodcell.classes import CLASS_NAMES
from bloodcell.datasets.core import BloodCellDataset, as_images, as_label_indices
from bloodcell.datasets.imageio import resize_images
from bloodcell.errors import (
    ConfigurationError,
    DataFileNotFoundError,
    InvalidDataError,
    InvalidDtypeError,
    UnreadableFileError,
)

__all__ = ["load_npz", "DatasetSplits", "MEDMNIST_SPLITS"]

MEDMNIST_SPLITS = ("train", "val", "test")
SplitName = Literal["train", "val", "test"]


class DatasetSplits(NamedTuple):
    """The three splits of a MedMNIST file, unpackable as ``train, val, test = ...``."""

    train: BloodCellDataset
    val: BloodCellDataset
    test: BloodCellDataset


def _open_npz(path: str | os.PathLike[str]) -> np.lib.npyio.NpzFile:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFileNotFoundError(f"no such file: {path!r}. Check the path (relative to {os.getcwd()!r}).")
    if os.path.isdir(path):
        raise DataFileNotFoundError(
            f"{path!r} is a folder, not an .npz file. For class folders of images use load_folder()."
        )
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        raise UnreadableFileError(f"cannot open {path!r}: {err}. Check the file's permissions.") from err
    # Checked before np.load: on anything but a zip archive numpy either returns a bare array
    # (.npy) or suggests allow_pickle=True, which would run code from an untrusted file.
    if not head.startswith(_ZIP_MAGIC):
        raise UnreadableFileError(
            f"{path!r} is not an .npz (zip) archive: {_describe(head)}. load_npz reads files written "
            "by np.savez or BloodCellDataset.save_npz; re-create or re-download the file."
        )
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise UnreadableFileError(
            f"cannot read {path!r} as an .npz file: {err}. Is the download complete? Re-create or re-download it."
        ) from err


#: How every zip archive starts: a local file header, or the end record of an empty archive.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_KNOWN_HEADS = (
    (b"\xff\xd8\xff", "it looks like a JPEG image; load image files with load_folder() or decode_image()"),
    (b"\x89PNG", "it looks like a PNG image; load image files with load_folder() or decode_image()"),
    (b"\x93NUMPY", "it looks like a single .npy array; save images and labels together with np.savez"),
    (b"\x1f\x8b", "it looks like a gzip file; unpack it first"),
)


def _describe(head: bytes) -> str:
    """What the first bytes of a file suggest it is, for error messages."""
    if not head:
        return "it is empty (0 bytes), perhaps an interrupted download"
    for magic, what in _KNOWN_HEADS:
        if head.startswith(magic):
            return what
    # The read may end inside a multi-byte character, so the last few bytes are not judged.
    text = head.decode("utf-8", errors="replace")
    body = text[:-3] if len(head) == 512 else text
    if "\ufffd" not in body and all(c.isprintable() or c.isspace() for c in body):
        if "<html" in text.lower() or text.lstrip().lower().startswith("<!doctype"):
            return f"it looks like an HTML page (an error page saved instead of the data?), starting {text[:40]!r}"
        return f"it looks like a text file, starting {text[:40]!r}"
    return f"it starts with the bytes {head[:8]!r}"


def _read(npz: np.lib.npyio.NpzFile, key: str, path: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as err:  # numpy refuses object arrays without allow_pickle
        raise InvalidDtypeError(
            f"array {key!r} in {path!r} holds Python objects (pickled), which bloodcell never loads "
            "because unpickling can run arbitrary code. Re-save it as a numeric array "
            "(np.savez(path, images=np.stack(images).astype(np.uint8), labels=np.asarray(labels)))."
        ) from err
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UnreadableFileError(f"array {key!r} in {path!r} is corrupt: {err}.") from err


@overload
def load_npz(
    path: str | os.PathLike[str],
    split: SplitName | None = ...,
    *,
    image_size: int | None = ...,
    class_names: Sequence[str] | None = ...,
    class_map: Mapping[str, str] | None = ...,
    cast: bool = ...,
    verbose: bool = ...,
) -> BloodCellDataset: ...
@overload
def load_npz(
    path: str | os.PathLike[str],
    split: Literal["all"],
    *,
    image_size: int | None = ...,
    class_names: Sequence[str] | None = ...,
    class_map: Mapping[str, str] | None = ...,
    cast: bool = ...,
    verbose: bool = ...,
) -> DatasetSplits: ...
def load_npz(
    path: str | os.PathLike[str],
    split: str | None = None,
    *,
    image_size: int | None = None,
    class_names: Sequence[str] | None = None,
    class_map: Mapping[str, str] | None = None,
    cast: bool = False,
    verbose: bool = False,
) -> BloodCellDataset | DatasetSplits:
    """Load images and labels from an ``.npz`` file, without ever unpickling.

    Two layouts are recognised from the keys:

    * AN2DL: ``images`` (N×H×W×3 uint8) and ``labels`` (ints N or N×1, one-hot N×C, or class-name
      strings). Files written by :meth:`BloodCellDataset.save_npz` also carry ``class_names``,
      ``ids`` and ``sources``, which are restored.
    * MedMNIST: ``train_images``, ``train_labels``, ``val_*``, ``test_*``. Pick one with
      ``split="train" | "val" | "test"``, or ``split="all"`` for a :class:`DatasetSplits`.

    Args:
        path: The ``.npz`` file.
        split: MedMNIST split to load (required for that layout; must be None for AN2DL files).
        image_size: Resize to this square size (antialiased bicubic); None keeps the stored size.
        class_names: Class names in label order (default: the file's own, else the eight PBC classes).
        class_map: Extra name mappings for string labels, e.g. ``{"Lymphs": "lymphocyte"}``.
        cast: Accept non-uint8 images and convert them (see :func:`bloodcell.datasets.as_images`).
        verbose: Show progress while resizing.

    Returns:
        A :class:`BloodCellDataset`, or a :class:`DatasetSplits` for ``split="all"``.

    Raises:
        DataFileNotFoundError: the file does not exist.
        UnreadableFileError: not an npz (zip) file, or a corrupt one.
        InvalidDataError: neither layout's keys, or arrays of the wrong shape.
        InvalidDtypeError: object (pickled) arrays, non-uint8 images without ``cast``.

    Example:
        >>> import tempfile, os
        >>> from bloodcell.datasets import load_sample
        >>> path = os.path.join(tempfile.mkdtemp(), "cells.npz")
        >>> _ = load_sample()[:16].save_npz(path)
        >>> load_npz(path)
        BloodCellDataset(n=16, image_shape=96x96x3, basophil=16, eosinophil=0, erythroblast=0, ig=0, lymphocyte=0, monocyte=0, neutrophil=0, platelet=0)
    """
    spath = os.fspath(path)
    with _open_npz(path) as npz:
        keys = set(npz.files)
        is_medmnist = {f"{s}_images" for s in MEDMNIST_SPLITS} & keys
        if "images" in keys or "labels" in keys:
            if split is not None:
                raise ConfigurationError(
                    f"{spath!r} is in the AN2DL layout (keys {sorted(keys)}), which has no splits; "
                    f"got split={split!r}. Drop the split argument and use bloodcell.datasets.split()."
                )
            missing = {"images", "labels"} - keys
            if missing:
                raise InvalidDataError(f"{spath!r} lacks key(s) {sorted(missing)}; it has {sorted(keys)}.")
            names = class_names
            if names is None and "class_names" in keys:
                names = [str(c) for c in _read(npz, "class_names", spath)]
            ids = _read(npz, "ids", spath) if "ids" in keys else None
            sources = _read(npz, "sources", spath) if "sources" in keys else None
            images = _read(npz, "images", spath)
            return BloodCellDataset(
                resize_images(_checked_images(images, spath, "images", cast), image_size, verbose=verbose),
                _labels(_read(npz, "labels", spath), names, class_map),
                tuple(names or CLASS_NAMES),
                ids=ids,
                sources=sources,
            )
        if not is_medmnist:
            raise InvalidDataError(
                f"{spath!r} has keys {sorted(keys)}; expected 'images' and 'labels' (AN2DL layout) or "
                "'train_images', 'train_labels', 'val_*', 'test_*' (MedMNIST layout)."
            )
        if split == "all":
            parts = [
                _medmnist_split(npz, s, spath, image_size, class_names, cast, verbose)
                for s in MEDMNIST_SPLITS
            ]
            return DatasetSplits(*parts)
        if split not in MEDMNIST_SPLITS:
            raise ConfigurationError(
                f"{spath!r} is in the MedMNIST layout; pass split='train', 'val', 'test' or 'all', got {split!r}."
            )
        return _medmnist_split(npz, split, spath, image_size, class_names, cast, verbose)


def _checked_images(images: np.ndarray, path: str, key: str, cast: bool) -> np.ndarray:
    return as_images(images, cast=cast, name=f"{key!r} in {os.path.basename(path)}")


def _labels(
    labels: np.ndarray, class_names: Sequence[str] | None, class_map: Mapping[str, str] | None
) -> np.ndarray:
    names = tuple(class_names or CLASS_NAMES)
    return as_label_indices(labels, len(names), class_names=names, class_map=class_map)


def _medmnist_split(
    npz: np.lib.npyio.NpzFile,
    split: str,
    path: str,
    image_size: int | None,
    class_names: Sequence[str] | None,
    cast: bool,
    verbose: bool,
) -> BloodCellDataset:
    img_key, lab_key = f"{split}_images", f"{split}_labels"
    missing = {img_key, lab_key} - set(npz.files)
    if missing:
        raise InvalidDataError(f"{path!r} lacks key(s) {sorted(missing)}; it has {sorted(npz.files)}.")
    images = _checked_images(_read(npz, img_key, path), path, img_key, cast)
    images = resize_images(images, image_size, verbose=verbose)
    stem = os.path.splitext(os.path.basename(path))[0]
    n = len(images)
    return BloodCellDataset(
        images,
        _labels(_read(npz, lab_key, path), class_names, None),
        tuple(class_names or CLASS_NAMES),
        ids=np.char.add(f"{split}/", np.arange(n).astype(str)),
        sources=np.full(n, f"{stem}/{split}"),
    )
