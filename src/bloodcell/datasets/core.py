"""`BloodCellDataset`: images, labels and class names that travel together and never change."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bloodcell._io import atomic_path
from bloodcell.classes import CLASS_NAMES, normalize_class_names
from bloodcell.errors import (
    EmptyDatasetError,
    InvalidDataError,
    InvalidDtypeError,
    UnknownClassError,
)

__all__ = ["BloodCellDataset", "concat", "as_images", "as_label_indices"]

IndexLike = int | slice | Sequence[int] | Sequence[bool] | np.ndarray


def as_images(images: Any, *, cast: bool = False, name: str = "images") -> np.ndarray:
    """Check an image array and return it as uint8 N×H×W×3 without copying when it already is.

    Args:
        images: Array-like of shape (N, H, W, 3).
        cast: Opt in to converting other dtypes. Floats whose maximum is at most 1.0 are taken as
            0–1 and scaled by 255; other floats and integers must lie in 0–255 and are rounded.
            Without it, anything but uint8 is an error, because a silent conversion of 0–1 floats
            to uint8 (all zeros and ones) is a classic way to train on black images.
        name: What to call the array in error messages.

    Raises:
        InvalidDtypeError: object arrays, non-numeric arrays, or non-uint8 without ``cast``.
        InvalidDataError: wrong number of dimensions or channels, NaN/inf, values outside 0–255.

    Example:
        >>> as_images(np.zeros((2, 8, 8, 3), np.uint8)).shape
        (2, 8, 8, 3)
    """
    arr = np.asarray(images)
    if arr.dtype == object:
        raise InvalidDtypeError(
            f"{name} is an object array (dtype=object, shape {arr.shape}); bloodcell needs one "
            "numeric uint8 array of shape (N, H, W, 3). Stack equally sized images with np.stack."
        )
    if arr.ndim != 4:
        hint = ""
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            hint = " A single image? Add a batch axis with images[None]."
        elif arr.ndim == 3:
            hint = " Grayscale images? bloodcell needs RGB: np.repeat(images[..., None], 3, axis=-1)."
        raise InvalidDataError(
            f"{name} must have 4 dimensions (N, H, W, 3), got shape {arr.shape} ({arr.ndim} dimensions).{hint}"
        )
    if arr.shape[-1] != 3:
        what = {1: "grayscale", 4: "RGBA"}.get(arr.shape[-1], "unsupported")
        raise InvalidDataError(
            f"{name} must have 3 colour channels (RGB, channels last), got shape {arr.shape} "
            f"({arr.shape[-1]} channels: {what}). Convert to RGB first; channels-first arrays need "
            "np.moveaxis(images, 1, -1)."
        )
    if arr.dtype == np.uint8:
        return arr
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidDtypeError(f"{name} must be numeric, got dtype {arr.dtype}.")
    if not cast:
        raise InvalidDtypeError(
            f"{name} must be uint8 with values 0–255, got dtype {arr.dtype}. bloodcell keeps images "
            "as uint8 and converts to float inside the pipeline. Pass cast=True to convert (floats "
            "with max ≤ 1 are scaled by 255), or convert yourself with images.astype(np.uint8)."
        )
    return _cast_to_uint8(arr, name)


def _cast_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            raise InvalidDataError(f"{name} holds {bad} NaN or infinite values; fix or drop those images.")
        hi = float(arr.max()) if arr.size else 0.0
        lo = float(arr.min()) if arr.size else 0.0
        scale = 255.0 if hi <= 1.0 else 1.0
        if lo < 0 or hi * scale > 255.5:
            raise InvalidDataError(f"{name} values must lie in 0–255 (or 0–1), got range [{lo:g}, {hi:g}].")
        out = np.empty(arr.shape, np.uint8)
        # Convert in chunks so a large float array never gets a second full-size float copy.
        for start in range(0, len(arr), 1024):
            chunk = arr[start : start + 1024].astype(np.float32) * scale
            out[start : start + 1024] = np.rint(chunk)
        return out
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 255:
        raise InvalidDataError(
            f"{name} values must lie in 0–255, got range [{lo}, {hi}] (dtype {arr.dtype})."
        )
    return arr.astype(np.uint8)


def as_label_indices(
    labels: Any,
    num_classes: int,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    class_map: Mapping[str, str] | None = None,
    name: str = "labels",
) -> np.ndarray:
    """Convert labels given as ints (N or N×1), one-hot rows (N×C) or class-name strings to int64 (N,).

    Raises:
        InvalidDataError: labels out of range, fractional, NaN, or of a shape that is none of the above.
        InvalidDtypeError: object arrays.
        UnknownClassError: strings that name no class.

    Example:
        >>> as_label_indices([[0], [7]], 8)
        array([0, 7])
        >>> as_label_indices([[0, 1, 0]], 3)
        array([1])
    """
    arr = np.asarray(labels)
    if arr.dtype == object:
        raise InvalidDtypeError(
            f"{name} is an object array (dtype=object); pass integers, one-hot rows or class-name strings."
        )
    if arr.dtype.kind in "US":
        names = normalize_class_names([str(x) for x in arr.reshape(-1)], class_names, class_map)
        lookup = {c: i for i, c in enumerate(class_names)}
        return np.asarray([lookup[n] for n in names], dtype=np.int64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        if arr.shape[1] != num_classes:
            raise InvalidDataError(
                f"{name} has shape {arr.shape}: one-hot labels need {num_classes} columns, one per class."
            )
        is_binary = np.isin(arr, (0, 1)).all()
        if not (is_binary and (arr.sum(axis=1) == 1).all()):
            raise InvalidDataError(
                f"{name} has shape {arr.shape} but its rows are not one-hot (each row needs exactly one 1). "
                "Soft labels are not supported; pass integer class indices."
            )
        return arr.argmax(axis=1).astype(np.int64)
    if arr.ndim != 1:
        raise InvalidDataError(f"{name} must have shape (N,), (N, 1) or (N, {num_classes}); got {arr.shape}.")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise InvalidDtypeError(f"{name} must be integer class indices, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidDataError(f"{name} holds NaN or infinite values.")
        if not np.equal(np.mod(arr, 1), 0).all():
            raise InvalidDataError(f"{name} holds fractional values; class indices must be whole numbers.")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        bad = out[(out < 0) | (out >= num_classes)]
        raise InvalidDataError(
            f"{name} must lie in 0..{num_classes - 1} ({num_classes} classes), got values "
            f"{sorted(set(bad.tolist()))[:10]}. Check the class order, or pass class_names."
        )
    return out


def _as_str_array(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    if arr.dtype.kind not in "US":
        arr = arr.astype(str)
    if arr.shape != (n,):
        raise InvalidDataError(f"{name} must have one entry per image ({n}), got shape {arr.shape}.")
    return arr.astype(str)


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


class BloodCellDataset:
    """An immutable set of blood cell images with integer labels.

    Images are uint8 N×H×W×3 and stay so: the library converts to float batch by batch inside
    ``tf.data`` or the model, never for the whole set. Every method that changes something returns
    a new dataset; the arrays are read-only views.

    Args:
        images: uint8 array (N, H, W, 3). Other dtypes need ``cast=True`` (see :func:`as_images`).
        labels: integer class indices (N,) or (N, 1), one-hot rows (N, C), or class-name strings.
        class_names: Name of each class; label ``i`` means ``class_names[i]``.
        ids: Optional identifier per image (file path, original index...), kept through subsets.
        sources: Optional origin per image (``"pbc96/train"``, ``"bloodmnist_64/test"``...).
        cast: Convert non-uint8 images (see :func:`as_images`).

    Raises:
        InvalidDataError: shapes, lengths or label values that do not fit.
        InvalidDtypeError: non-uint8 images without ``cast``, object arrays.

    Example:
        >>> import numpy as np
        >>> data = BloodCellDataset(np.zeros((4, 96, 96, 3), np.uint8), [0, 1, 1, 7])
        >>> len(data), data.class_counts()["eosinophil"]
        (4, 2)
        >>> data[1:3].labels
        array([1, 1])
    """

    __slots__ = ("_images", "_labels", "_class_names", "_ids", "_sources")

    def __init__(
        self,
        images: Any,
        labels: Any,
        class_names: Sequence[str] = CLASS_NAMES,
        *,
        ids: Any = None,
        sources: Any = None,
        cast: bool = False,
    ) -> None:
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) < 2 or len(set(class_names)) != len(class_names):
            raise InvalidDataError(f"class_names must hold at least two distinct names, got {class_names}.")
        imgs = as_images(images, cast=cast)
        labs = as_label_indices(labels, len(class_names), class_names=class_names)
        if len(labs) != len(imgs):
            raise InvalidDataError(
                f"images and labels differ in length: {len(imgs)} images, {len(labs)} labels."
            )
        self._images = _readonly(imgs)
        self._labels = _readonly(labs)
        self._class_names = class_names
        self._ids = None if ids is None else _readonly(_as_str_array(ids, len(imgs), "ids"))
        self._sources = None if sources is None else _readonly(_as_str_array(sources, len(imgs), "sources"))

    # -- attributes ---------------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray:
        """uint8 (N, H, W, 3), read-only."""
        return self._images

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,), read-only."""
        return self._labels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    @property
    def ids(self) -> np.ndarray | None:
        """Identifier per image, or None."""
        return self._ids

    @property
    def sources(self) -> np.ndarray | None:
        """Origin per image, or None."""
        return self._sources

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._images.shape[1:])  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Size of the image array in bytes."""
        return int(self._images.nbytes)

    def __len__(self) -> int:
        return len(self._labels)

    # -- selection ----------------------------------------------------------------------------
    def _index_array(self, index: IndexLike) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise InvalidDataError(f"a boolean mask needs {len(self)} entries, got shape {idx.shape}.")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise InvalidDtypeError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}.")
        idx = idx.reshape(-1).astype(np.int64)
        if idx.min() < -len(self) or idx.max() >= len(self):
            raise InvalidDataError(
                f"indices out of range for a dataset of {len(self)} images: min {idx.min()}, max {idx.max()}."
            )
        return idx % max(len(self), 1)

    def subset(self, index: IndexLike) -> BloodCellDataset:
        """A new dataset holding the images at ``index`` (indices, slice or boolean mask), in that order.

        Repeated indices repeat images (that is how oversampling works).
        """
        idx = self._index_array(index)
        if isinstance(index, slice):
            take = lambda a: a[index]  # noqa: E731 - a slice keeps views, no copy
        else:
            take = lambda a: a[idx]  # noqa: E731
        return self._new(
            take(self._images),
            take(self._labels),
            None if self._ids is None else take(self._ids),
            None if self._sources is None else take(self._sources),
        )

    def __getitem__(self, index: IndexLike) -> Any:
        """``data[i]`` → ``(image, label)``; ``data[indices | slice | mask]`` → a new dataset."""
        if isinstance(index, (int, np.integer)):
            i = int(self._index_array([index])[0])
            return self._images[i], int(self._labels[i])
        return self.subset(index)

    def drop(self, index: IndexLike) -> BloodCellDataset:
        """A new dataset without the images at ``index`` (indices or boolean mask).

        Example:
            >>> data = BloodCellDataset(np.zeros((3, 8, 8, 3), np.uint8), [0, 1, 2])
            >>> data.drop([1]).labels
            array([0, 2])
        """
        keep = np.ones(len(self), bool)
        keep[self._index_array(index)] = False
        return self.subset(keep)

    def drop_absent_classes(self) -> BloodCellDataset:
        """The same images with only the classes that have images, in their order (labels renumbered).

        A set from another lab holding five of the eight classes then scores a model with its
        prediction restricted to those five (see :func:`bloodcell.metrics.evaluate`).

        Example:
            >>> data = BloodCellDataset(np.zeros((3, 8, 8, 3), np.uint8), [1, 4, 4])
            >>> kept = data.drop_absent_classes()
            >>> kept.class_names, kept.labels.tolist()
            (('eosinophil', 'lymphocyte'), [0, 1, 1])
        """
        present = np.unique(self._labels)
        if len(present) == self.num_classes:
            return self
        if len(present) < 2:
            raise EmptyDatasetError(
                f"drop_absent_classes(): the dataset holds {len(present)} class(es); at least two are needed."
            )
        renumber = np.full(self.num_classes, -1, np.int64)
        renumber[present] = np.arange(len(present))
        return self.replace(
            labels=renumber[self._labels], class_names=tuple(self._class_names[k] for k in present)
        )

    def concat(self, *others: BloodCellDataset) -> BloodCellDataset:
        """This dataset followed by ``others`` (same class names and image size)."""
        return concat([self, *others])

    def replace(self, **changes: Any) -> BloodCellDataset:
        """A copy with some fields replaced (``labels=``, ``ids=``, ``sources=``, ``class_names=``...).

        Example:
            >>> data = BloodCellDataset(np.zeros((2, 8, 8, 3), np.uint8), [0, 1])
            >>> data.replace(labels=[1, 1]).labels
            array([1, 1])
        """
        unknown = set(changes) - {"images", "labels", "class_names", "ids", "sources"}
        if unknown:
            raise TypeError(f"replace() got unknown fields {sorted(unknown)}")
        fields = dict(
            images=self._images,
            labels=self._labels,
            class_names=self._class_names,
            ids=self._ids,
            sources=self._sources,
        )
        fields.update(changes)
        return BloodCellDataset(**fields)

    def _new(self, images, labels, ids, sources) -> BloodCellDataset:  # type: ignore[no-untyped-def]
        # Fields are already validated: skip the checks (and their passes over the images).
        new = object.__new__(BloodCellDataset)
        new._images = _readonly(images)
        new._labels = _readonly(labels)
        new._class_names = self._class_names
        new._ids = None if ids is None else _readonly(ids)
        new._sources = None if sources is None else _readonly(sources)
        return new

    # -- summaries ----------------------------------------------------------------------------
    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order (classes with no images included)."""
        counts = np.bincount(self._labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self._class_names, counts)}

    def summary(self) -> str:
        """A per-class table: count and share of the dataset, plus mean colour per class.

        Example:
            >>> data = BloodCellDataset(np.zeros((2, 8, 8, 3), np.uint8), [0, 0])
            >>> print(data.summary().splitlines()[0])
            2 images of 8×8×3 (uint8), 8 classes
        """
        h, w, c = self.image_shape if len(self._images.shape) == 4 else (0, 0, 3)
        lines = [f"{len(self)} images of {h}×{w}×{c} (uint8), {self.num_classes} classes"]
        lines.append(f"{'class':<14}{'images':>8}{'share':>8}   mean RGB")
        counts = self.class_counts()
        for k, name in enumerate(self._class_names):
            n = counts[name]
            share = n / len(self) if len(self) else 0.0
            if n:
                mean = _mean_rgb(self._images, self._labels == k)
                rgb = " ".join(f"{v:5.1f}" for v in mean)
            else:
                rgb = "-"
            lines.append(f"{name:<14}{n:>8}{share:>8.1%}   {rgb}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.class_counts().items())
        shape = "x".join(str(s) for s in self.image_shape) if len(self._images.shape) == 4 else "?"
        return f"BloodCellDataset(n={len(self)}, image_shape={shape}, {counts})"

    def check_not_empty(self, what: str = "this step") -> None:
        """Raise :class:`EmptyDatasetError` if the dataset holds no images."""
        if len(self) == 0:
            raise EmptyDatasetError(f"{what} needs at least one image, got an empty dataset: {self!r}.")

    # -- files --------------------------------------------------------------------------------
    def save_npz(self, path: str | os.PathLike[str], *, compress: bool = False) -> str:
        """Save in the AN2DL layout (``images``, ``labels``) plus ``class_names``, ``ids``, ``sources``.

        The file is written atomically and loads back with :func:`bloodcell.datasets.load_npz`
        without pickle.
        """
        arrays: dict[str, np.ndarray] = {
            "images": np.ascontiguousarray(self._images),
            "labels": np.asarray(self._labels),
            "class_names": np.asarray(self._class_names),
        }
        if self._ids is not None:
            arrays["ids"] = np.asarray(self._ids)
        if self._sources is not None:
            arrays["sources"] = np.asarray(self._sources)
        with atomic_path(path, suffix=".npz") as tmp:
            (np.savez_compressed if compress else np.savez)(tmp, **arrays)
        return os.fspath(path)


def _mean_rgb(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(mask)
    total = np.zeros(3, np.float64)
    for start in range(0, len(idx), 512):  # chunked: no full float copy
        total += images[idx[start : start + 512]].reshape(-1, 3).sum(axis=0, dtype=np.float64)
    pixels = len(idx) * images.shape[1] * images.shape[2]
    return total / max(pixels, 1)


def concat(datasets: Iterable[BloodCellDataset]) -> BloodCellDataset:
    """Concatenate datasets that share class names and image size.

    ``ids``/``sources`` are kept when every part has them.

    Example:
        >>> a = BloodCellDataset(np.zeros((1, 8, 8, 3), np.uint8), [0])
        >>> len(concat([a, a]))
        2
    """
    parts = list(datasets)
    if not parts:
        raise EmptyDatasetError("concat() needs at least one dataset, got none.")
    first = parts[0]
    for p in parts[1:]:
        if not isinstance(p, BloodCellDataset):
            raise InvalidDtypeError(f"concat() takes BloodCellDataset objects, got {type(p).__name__}.")
        if p.class_names != first.class_names:
            raise UnknownClassError(
                f"cannot concatenate datasets with different class names: {first.class_names} vs {p.class_names}."
            )
        if p.image_shape != first.image_shape:
            raise InvalidDataError(
                f"cannot concatenate images of different sizes: {first.image_shape} vs {p.image_shape}. "
                "Load both with the same image_size."
            )

    def join(attr: str) -> np.ndarray | None:
        values = [getattr(p, attr) for p in parts]
        if any(v is None for v in values):
            return None
        return np.concatenate(values)

    return first._new(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        join("ids"),
        join("sources"),
    )
