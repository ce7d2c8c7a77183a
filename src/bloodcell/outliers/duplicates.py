"""Duplicate detectors: byte-identical images, and near-identical ones by perceptual hashing."""

from __future__ import annotations

from typing import Literal

import numpy as np

from bloodcell._validation import check_choice, check_int, is_integer
from bloodcell.datasets.hashing import identical_groups
from bloodcell.outliers.base import Detection, DuplicateGroup, ImageData, OutlierDetector
from bloodcell.outliers.perceptual import HashMethod, hash_groups, perceptual_hash

__all__ = ["ExactDuplicates", "NearDuplicates"]

Keep = Literal["first", "none"]


def _check_keep(keep: str) -> None:
    check_choice(keep, "keep", ("first", "none"))


def _group_detection(
    group_ids: np.ndarray, labels: np.ndarray | None, kind: str, keep: str, copy_reason: str
) -> tuple[np.ndarray, list[tuple[str, ...]], list[DuplicateGroup]]:
    """Flags, reasons and groups from one group id per image.

    Within each group of two or more images, every image but the first is flagged as a copy
    (all of them with ``keep="none"``); when the group's labels disagree, every image is flagged
    with ``"label_conflict"``, because no one of them can be trusted to carry the right label.
    """
    n = len(group_ids)
    flags = np.zeros(n, bool)
    reasons: list[tuple[str, ...]] = [()] * n
    sizes = np.bincount(group_ids, minlength=int(group_ids.max()) + 1 if n else 0)
    multi = np.flatnonzero(sizes > 1)
    groups: list[DuplicateGroup] = []
    if len(multi) == 0:
        return flags, reasons, groups
    in_multi = np.isin(group_ids, multi)
    order = np.argsort(group_ids[in_multi], kind="stable")
    members = np.flatnonzero(in_multi)[order]
    for idx in np.split(members, np.cumsum(sizes[multi])[:-1]):
        labs = labels[idx] if labels is not None else np.zeros(0, np.int64)
        group = DuplicateGroup(indices=idx, labels=labs, kind=kind)
        groups.append(group)
        if group.label_conflict:
            flags[idx] = True
            for i in idx:
                reasons[i] = (
                    (copy_reason, "label_conflict") if i != idx[0] or keep == "none" else ("label_conflict",)
                )
        else:
            copies = idx if keep == "none" else idx[1:]
            flags[copies] = True
            for i in copies:
                reasons[i] = (copy_reason,)
    groups.sort(key=lambda g: int(g.indices[0]))
    return flags, reasons, groups


class ExactDuplicates(OutlierDetector):
    """Images whose pixels are identical, as groups.

    The score of an image is the number of *other* images identical to it (0 for a unique image;
    1,599 for each of 1,600 copies of one frame). ``predict`` has no numeric threshold: identity is
    exact. It flags every copy after the first of each group (reason ``"duplicate"``; with
    ``keep="none"`` the first too), and every image of a group whose labels disagree
    (``"label_conflict"``), since no copy can be trusted to carry the right label.

    Duplicates are looked for within the dataset given to :meth:`detect` / :meth:`predict`;
    :meth:`fit` learns nothing (it is kept for the common interface).

    Args:
        keep: ``"first"`` keeps (does not flag) the first image of each group whose labels agree;
            ``"none"`` flags every member of every group.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> images = np.zeros((4, 8, 8, 3), np.uint8); images[3] = 200
        >>> data = bc.datasets.BloodCellDataset(images, [0, 0, 1, 2])
        >>> det = ExactDuplicates().fit(data)
        >>> det.score(data).tolist(), det.predict(data).tolist()
        ([2.0, 2.0, 2.0, 0.0], [True, True, True, False])
        >>> det.explain(data)[:2]
        [('label_conflict',), ('duplicate', 'label_conflict')]
    """

    name = "exact_duplicates"
    reasons = ("duplicate", "label_conflict")

    def __init__(self, *, keep: Keep = "first") -> None:
        self.keep = keep

    def _fit(self, data: ImageData, verbose: bool) -> None:
        _check_keep(self.keep)

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        _check_keep(self.keep)
        ids = identical_groups(data.images)
        sizes = np.bincount(ids) if len(ids) else np.zeros(0, np.int64)
        scores = (sizes[ids] - 1).astype(np.float64)
        flags, reasons, groups = _group_detection(ids, data.labels, "exact", self.keep, "duplicate")
        return Detection(scores, flags, reasons, groups)


class NearDuplicates(OutlierDetector):
    """Near-identical images (re-encoded, slightly shifted, brightened...), by perceptual hashing.

    Each image gets a perceptual hash (:func:`~bloodcell.outliers.perceptual.perceptual_hash`);
    images whose hashes differ in at most ``max_distance`` bits are linked, and linked images form
    a group (single linkage: a chain of close pairs makes one group). Exact copies are near
    duplicates too (distance 0).

    The score of an image is its similarity to its nearest other image, ``1 - d / bits`` (1.0 for
    an identical hash). ``predict`` flags, as :class:`ExactDuplicates` does, every member of a
    group but the first (``"near_duplicate"``), and whole groups whose labels disagree
    (``"label_conflict"``). The threshold is ``max_distance``: on 96-px PBC cells with the
    default 256-bit pHash, JPEG re-encoding, ±8 brightness and a 1-pixel shift moved hashes by at
    most 36 bits, while distinct cells were at least 66 bits apart except a few genuine pairs.

    Args:
        method: ``"phash"`` (default) or ``"dhash"``.
        hash_size: Side of the hash's bit grid (``hash_size**2`` bits).
        max_distance: Largest Hamming distance, in bits, at which two images count as near duplicates.
        keep: ``"first"`` or ``"none"``, as in :class:`ExactDuplicates`.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.load_sample()[:50]
        >>> brighter = np.clip(data.images[:1].astype(int) + 5, 0, 255).astype(np.uint8)
        >>> data = data.concat(bc.datasets.BloodCellDataset(brighter, data.labels[:1]))
        >>> NearDuplicates().fit(data).predict(data).nonzero()[0].tolist()
        [50]
    """

    name = "near_duplicates"
    reasons = ("near_duplicate", "label_conflict")

    def __init__(
        self,
        *,
        method: HashMethod = "phash",
        hash_size: int = 16,
        max_distance: int = 40,
        keep: Keep = "first",
    ) -> None:
        self.method = method
        self.hash_size = hash_size
        self.max_distance = max_distance
        self.keep = keep

    def _check(self) -> None:
        _check_keep(self.keep)
        bits = self.hash_size * self.hash_size if is_integer(self.hash_size) else 1
        check_int(self.max_distance, "max_distance", minimum=0, maximum=max(bits - 1, 0))

    def _fit(self, data: ImageData, verbose: bool) -> None:
        self._check()

    def hashes(self, dataset: object, *, verbose: bool = False) -> np.ndarray:
        """The packed perceptual hash of each image, uint8 (N, hash_size**2 / 8)."""
        from bloodcell.outliers.base import as_image_data

        return perceptual_hash(
            as_image_data(dataset).images, self.method, hash_size=self.hash_size, verbose=verbose
        )

    def _detect(self, data: ImageData, verbose: bool) -> Detection:
        self._check()
        hashes = perceptual_hash(data.images, self.method, hash_size=self.hash_size, verbose=verbose)
        ids, nearest = hash_groups(hashes, int(self.max_distance), verbose=verbose)
        scores = 1.0 - nearest / float(hashes.shape[1] * 8)
        flags, reasons, groups = _group_detection(ids, data.labels, "near", self.keep, "near_duplicate")
        return Detection(scores, flags, reasons, groups)
