"""Predict the class of each image, and say which predictions to trust (``bc.predict``).

:func:`predict` returns, per image, the predicted class, the class probabilities, the
confidence (the top probability) and, with a rejector (see :mod:`bloodcell.rejection`), a status
(``"accepted"``, ``"uncertain"``, ``"not a cell"``) and the reason for it.

Example:
    >>> import bloodcell as bc, keras
    >>> data = bc.datasets.load_sample(per_class=1)
    >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(8, activation="softmax")])
    >>> out = predict(model, data, reject=0.0)
    >>> len(out), out.status[0], out.reason[0]
    (8, 'accepted', None)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bloodcell.errors import BloodcellWarning, InvalidDtypeError

__all__ = ["Predictions", "predict"]


@dataclass(frozen=True)
class Predictions:
    """The predictions for a batch of images, one entry per image in input order.

    Attributes:
        class_names: The model's classes, in output order.
        probabilities: float32 (N, C) class probabilities.
        status: ``"accepted"``, ``"uncertain"`` or ``"not a cell"`` per image (all ``"accepted"``
            when predicted without a rejector).
        reason: Why an image is not accepted (``"low_confidence"``, or the image check that fired:
            ``"low_information"``, ``"dark"``, ``"overexposed"``, ``"blurry"``, ``"grayscale"``,
            ``"not_blood_smear"``, ``"duplicate"``); None for an accepted image.
    """

    class_names: tuple[str, ...]
    probabilities: np.ndarray
    status: tuple[str, ...]
    reason: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.probabilities)

    @property
    def label_indices(self) -> np.ndarray:
        """The predicted class index of each image (N,)."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        """The predicted class name of each image."""
        return [self.class_names[k] for k in self.label_indices]

    @property
    def confidence(self) -> np.ndarray:
        """The top class probability of each image (N,)."""
        return self.probabilities.max(axis=1)

    @property
    def accepted(self) -> np.ndarray:
        """Boolean mask (N,) of the accepted images."""
        return np.array([s == "accepted" for s in self.status], bool)

    def counts(self) -> dict[str, int]:
        """How many images got each status."""
        from bloodcell.rejection import STATUSES

        return {s: sum(1 for x in self.status if x == s) for s in STATUSES}

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per image: label, confidence, status, reason and every probability."""
        return [
            {
                "label": self.class_names[int(np.argmax(p))],
                "confidence": float(np.max(p)),
                "status": status,
                "reason": reason,
                "probabilities": {c: float(v) for c, v in zip(self.class_names, p)},
            }
            for p, status, reason in zip(self.probabilities, self.status, self.reason)
        ]


def predict(
    model: Any,
    images: Any,
    *,
    reject: Any = None,
    tta: str | Sequence[str] | None = None,
    batch_size: int = 64,
    seen: set[bytes] | None = None,
) -> Predictions:
    """Class probabilities of every image and, with ``reject``, whether to trust each prediction.

    Args:
        model: A Keras classifier mapping 0–255 images to class probabilities.
        images: A :class:`~bloodcell.datasets.BloodCellDataset`, uint8 images (N, H, W, 3) or one
            image (H, W, 3), at the model's input size.
        reject: A :class:`~bloodcell.rejection.Rejector` (see
            :func:`~bloodcell.rejection.fit_rejector`), the path of a saved one, a bare confidence
            threshold in [0, 1] (no image checks), or None (every image ``"accepted"``).
        tta: Test-time augmentation (see :mod:`bloodcell.tta`); use the one the rejector was
            fitted with, since confidences shift with it.
        batch_size: Images per prediction batch.
        seen: Digests of images predicted in earlier calls (updated in place), so that duplicates
            are found across the batches of one run.

    Returns:
        :class:`Predictions`.

    Raises:
        ConfigurationError: a bad ``reject``, ``tta`` or ``batch_size``, or a rejector fitted for a
            model with other classes.
    """
    from bloodcell import tta as tta_module
    from bloodcell._validation import check_int
    from bloodcell.classes import model_class_names
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.datasets.core import as_images
    from bloodcell.rejection import ACCEPTED, as_rejector

    check_int(batch_size, "batch_size", minimum=1)
    rejector = as_rejector(reject)
    if isinstance(images, BloodCellDataset):
        arr = images.images
    elif hasattr(images, "shape") or isinstance(images, (list, tuple)):
        arr = np.asarray(images)
        arr = as_images(arr[None] if arr.ndim == 3 else arr)
    else:
        raise InvalidDtypeError(
            "predict() takes a BloodCellDataset or uint8 images (N, H, W, 3). "
            f"Received: images of type {type(images).__name__}."
        )
    prob = tta_module.predict(model, arr, tta, batch_size=batch_size)
    names = model_class_names(model)
    if rejector is None:
        return Predictions(names, prob, (ACCEPTED,) * len(prob), (None,) * len(prob))
    if rejector.coverage is not None and _names(rejector.tta) != _names(tta):
        warnings.warn(
            f"The rejector's threshold was fitted with tta={rejector.tta!r} but this prediction uses "
            f"tta={tta!r}; confidences shift with TTA, so the coverage will differ. Pass tta={rejector.tta!r}.",
            BloodcellWarning,
            stacklevel=2,
        )
    status, reason = rejector.decide(prob, rejector.check_images(arr, seen=seen))
    return Predictions(names, prob, tuple(status), tuple(reason))


def _names(tta: Any) -> list[str]:
    from bloodcell.tta import resolve

    return [name for name, _ in resolve(tta)]
