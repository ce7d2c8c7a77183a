"""BloodMNIST (MedMNIST v2 / MedMNIST+) from its published npz files, checked by MD5. No torch."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal, overload

from bloodcell._io import atomic_path
from bloodcell._validation import received
from bloodcell.datasets.core import BloodCellDataset
from bloodcell.datasets.npz import DatasetSplits, load_npz
from bloodcell.errors import ChecksumError, ConfigurationError, DataFileNotFoundError, DownloadError

__all__ = ["load_medmnist", "medmnist_file_info", "MEDMNIST_FILES"]

_RECORD = "https://zenodo.org/records/10519652/files"

#: (file name, URL, MD5) per image size, as published in the medmnist package's INFO.
MEDMNIST_FILES: dict[str, dict[int, tuple[str, str, str]]] = {
    "bloodmnist": {
        28: ("bloodmnist.npz", f"{_RECORD}/bloodmnist.npz?download=1", "7053d0359d879ad8a5505303e11de1dc"),
        64: (
            "bloodmnist_64.npz",
            f"{_RECORD}/bloodmnist_64.npz?download=1",
            "2b94928a2ae4916078ca51e05b6b800b",
        ),
        128: (
            "bloodmnist_128.npz",
            f"{_RECORD}/bloodmnist_128.npz?download=1",
            "adace1e0ed228fccda1f39692059dd4c",
        ),
        224: (
            "bloodmnist_224.npz",
            f"{_RECORD}/bloodmnist_224.npz?download=1",
            "b718ff6835fcbdb22ba9eacccd7b2601",
        ),
    }
}


def default_root() -> Path:
    """Where the medmnist package keeps its files: ``$MEDMNIST_ROOT`` or ``~/.medmnist``."""
    return Path(os.environ.get("MEDMNIST_ROOT", Path.home() / ".medmnist"))


def medmnist_file_info(name: str = "bloodmnist", size: int = 28) -> tuple[str, str, str]:
    """``(file name, URL, MD5)`` of a MedMNIST file.

    Example:
        >>> medmnist_file_info("bloodmnist", 64)[0]
        'bloodmnist_64.npz'
    """
    key = name.lower().replace("_", "")
    if key not in MEDMNIST_FILES:
        raise ConfigurationError(
            f"unknown MedMNIST dataset {name!r}; bloodcell reads {sorted(MEDMNIST_FILES)}."
        )
    sizes = MEDMNIST_FILES[key]
    if size not in sizes:
        raise ConfigurationError(f"{name} comes in sizes {sorted(sizes)}. {received('size', size)}")
    return sizes[size]


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # the published checksums are MD5; used for integrity only
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, md5: str) -> None:
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except (urllib.error.URLError, OSError) as err:
            raise DownloadError(
                f"could not download {url}: {err}. Without internet, fetch the file on another machine "
                f"and put it at {target} (MD5 {md5}), then call again with download=False."
            ) from err
        got = _md5(tmp)
        if got != md5:
            raise ChecksumError(
                f"downloaded {url} has MD5 {got}, expected {md5}; the download is damaged, try again."
            )


@overload
def load_medmnist(
    name: str = ...,
    size: int = ...,
    split: Literal["train", "val", "test"] = ...,
    *,
    root: str | os.PathLike[str] | None = ...,
    download: bool = ...,
    image_size: int | None = ...,
    verify: bool = ...,
    verbose: bool = ...,
) -> BloodCellDataset: ...
@overload
def load_medmnist(
    name: str = ...,
    size: int = ...,
    split: Literal["all"] = ...,
    *,
    root: str | os.PathLike[str] | None = ...,
    download: bool = ...,
    image_size: int | None = ...,
    verify: bool = ...,
    verbose: bool = ...,
) -> DatasetSplits: ...
def load_medmnist(
    name: str = "bloodmnist",
    size: int = 28,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = 96,
    verify: bool = True,
    verbose: bool = False,
) -> BloodCellDataset | DatasetSplits:
    """Load BloodMNIST from the medmnist package's npz files, resized to ``image_size``.

    Reads ``<root>/bloodmnist[_<size>].npz`` (the names the medmnist package uses), checks its MD5
    against the published one, and resizes with antialiased bicubic resampling. Nothing is
    downloaded unless ``download=True``.

    Args:
        name: ``"bloodmnist"``.
        size: The published image size: 28, 64, 128 or 224.
        split: ``"train"``, ``"val"``, ``"test"``, or ``"all"`` for a :class:`DatasetSplits`.
        root: Folder of the files (default ``$MEDMNIST_ROOT`` or ``~/.medmnist``).
        download: Fetch the file from Zenodo when it is missing (written atomically, MD5-checked).
        image_size: Output size (default 96, the library's size); None keeps ``size``.
        verify: Check the MD5 (a few seconds for the 224-px file).
        verbose: Show progress while resizing.

    Raises:
        DataFileNotFoundError: the file is missing and ``download`` is False (the message gives
            the URL, the MD5 and where to put the file).
        DownloadError: the download failed (offline); the message says how to place the file by hand.
        ChecksumError: the file's MD5 is not the published one.

    Example:
        >>> load_medmnist(size=64, root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bloodcell.errors.DataFileNotFoundError: BloodMNIST file not found: /nonexistent/bloodmnist_64.npz. ...
    """
    filename, url, md5 = medmnist_file_info(name, size)
    folder = Path(root) if root is not None else default_root()
    path = folder / filename
    if not path.exists():
        if not download:
            raise DataFileNotFoundError(
                f"BloodMNIST file not found: {path}. Download it from {url} (MD5 {md5}) and put it "
                f"there, or pass root= to point at the folder holding it, or download=True to fetch it."
            )
        _download(url, path, md5)
    elif verify:
        got = _md5(path)
        if got != md5:
            raise ChecksumError(
                f"{path} has MD5 {got}, but the published {filename} has {md5}. The file is damaged or "
                f"another version: delete it and download it again from {url}, or pass verify=False."
            )
    return load_npz(path, split, image_size=image_size, verbose=verbose)  # type: ignore[call-overload,no-any-return]
