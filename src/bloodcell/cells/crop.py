"""Cell-centred, scale-normalised crops: the white cell in the middle, as large as in PBC images.

Another lab's microscope frames a white cell differently: in PBC the nucleus spans about 30 % of
the 96-px crop, elsewhere it fills the frame or a third of it. :class:`CellCrop` finds the cell
(:func:`~bloodcell.cells.find_cells`), moves it to the centre and zooms so that its nucleus spans
``cell_fraction`` of the frame:

* ``scale="image"``: each image by its own measurement, so any single crop from any microscope is
  brought to one scale (the cell's own size, a cue between lymphocytes and monocytes, goes too);
* ``scale="dataset"``: every image by one factor, ``cell_fraction`` over a lab's median nucleus
  span measured on its images (:meth:`CellCrop.fit`, or :func:`bloodcell.adapt.fit_cell_scale` on a
  trained model), so a lab's magnification is corrected and the sizes within it are kept;
* ``scale="none"``: centred only.

A margin uncovered by zooming out takes the slide's background colour (reflecting the image would
repeat a large cell in the margin). Where no cell stands out, the image is left as it is (a centre
crop) and ``found`` says so.

As a Keras layer in the model (``build_classifier(..., cell_crop=CellCrop())``), the crop is saved
with the ``.keras`` file and applied the same way in training, evaluation and prediction;
:func:`crop_cells` applies the same ops to arrays and datasets.

Example:
    >>> from bloodcell.datasets import load_sample
    >>> images, cells = crop_cells(load_sample(per_class=1).images)
    >>> images.shape, images.dtype.name, bool(cells.found.all())
    ((8, 96, 96, 3), 'uint8', True)
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bloodcell._validation import check_choice, check_number
from bloodcell.augment.scale import FILLS, resample
from bloodcell.cells.finder import CellMeasurements, find_cells, measure_cells
from bloodcell.errors import ConfigurationError

__all__ = ["CellCrop", "PBC_CELL_FRACTION", "SCALES", "crop_cells"]

#: The median span of a white cell's nucleus in pbc96/train, as a fraction of the 96-px frame
#: (benchmarks/cells.py measures it): what every crop is scaled to.
PBC_CELL_FRACTION = 0.319

#: What :class:`CellCrop` scales by: each image's cell, one factor per dataset, or nothing.
SCALES = ("image", "dataset", "none")


def _check_fraction(name: str, value: Any, low: float, high: float) -> float:
    return check_number(value, name, low=low, high=high, low_open=True)  # type: ignore[return-value]


@keras.saving.register_keras_serializable(package="bloodcell")
class CellCrop(keras.layers.Layer):
    """Centre each image on its white cell and zoom it to PBC's cell size; float32 pixels 0–255 out.

    Args:
        scale: ``"image"`` (default: zoom each image by its own cell), ``"dataset"`` (one factor
            for all: ``cell_fraction`` over ``reference_fraction``) or ``"none"`` (centre only).
        cell_fraction: The nucleus span to reach, as a fraction of the frame (default
            :data:`PBC_CELL_FRACTION`, PBC's median).
        reference_fraction: For ``scale="dataset"``: the median nucleus span of the images to
            come (fitted with :meth:`fit`); None: ``cell_fraction`` (no zoom).
        max_zoom: Zoom factors are kept within ``[1 / max_zoom, max_zoom]``, so a tiny platelet
            or a mismeasured crop is not blown up.
        fill: What fills a margin uncovered by zooming out: ``"background"`` (default: each image's
            border median, the slide's colour), ``"reflect"`` (the image mirrored: a cell that
            filled the frame would come back as four), ``"nearest"`` or ``"constant"`` (black).
        max_fraction, min_contrast: The finder's settings (see :func:`~bloodcell.cells.find_cells`).
        **kwargs: Keras layer arguments (``name``...).

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images
        >>> CellCrop(scale="none")(images).shape
        TensorShape([8, 96, 96, 3])
    """

    def __init__(
        self,
        scale: str = "image",
        *,
        cell_fraction: float = PBC_CELL_FRACTION,
        reference_fraction: float | None = None,
        max_zoom: float = 2.5,
        fill: str = "background",
        max_fraction: float = 0.25,
        min_contrast: float = 0.1,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        check_choice(scale, "scale", SCALES)
        check_choice(fill, "fill", FILLS)
        self.scale = scale
        self.cell_fraction = _check_fraction("cell_fraction", cell_fraction, 0.0, 1.0)
        self.reference_fraction = (
            None
            if reference_fraction is None
            else _check_fraction("reference_fraction", reference_fraction, 0.0, 2.0)
        )
        self.max_zoom = _check_fraction("max_zoom", max_zoom, 1.0 - 1e-9, 10.0)
        self.fill = fill
        self.max_fraction = _check_fraction("max_fraction", max_fraction, 0.0, 1.0)
        self.min_contrast = _check_fraction("min_contrast", min_contrast, 0.0, 5.0)

    # -------------------------------------------------------------- the transform
    def crop(self, images: Any) -> tuple[Any, tuple[Any, Any, Any, Any, Any]]:
        """The cropped batch (float32) and the finder's tensors ``(centre_y, centre_x, size, found, contrast)``."""
        x = tf.cast(images, tf.float32)
        measured = measure_cells(x, max_fraction=self.max_fraction, min_contrast=self.min_contrast)
        cy, cx, size, found, _ = measured
        side = tf.cast(tf.minimum(tf.shape(x)[1], tf.shape(x)[2]), tf.float32)
        if self.scale == "image":
            factor = tf.where(found, self.cell_fraction * side / tf.maximum(size, 1e-6), 1.0)
        elif self.scale == "dataset":
            factor = tf.fill(
                tf.shape(size), self.cell_fraction / (self.reference_fraction or self.cell_fraction)
            )
        else:
            factor = tf.ones_like(size)
        inverse = 1.0 / tf.clip_by_value(factor, 1.0 / self.max_zoom, self.max_zoom)
        out_cy = (tf.cast(tf.shape(x)[1], tf.float32) - 1.0) / 2.0
        out_cx = (tf.cast(tf.shape(x)[2], tf.float32) - 1.0) / 2.0
        zero = tf.zeros_like(inverse)
        # Output pixel p samples the input at the cell's centre + (p − the output's centre) / factor.
        transforms = tf.stack(
            [inverse, zero, cx - inverse * out_cx, zero, inverse, cy - inverse * out_cy], axis=-1
        )
        out = resample(x, transforms, fill=self.fill, jit_compile=False)
        return tf.clip_by_value(out, 0.0, 255.0), measured

    def call(self, images: Any) -> Any:
        return self.crop(images)[0]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    # -------------------------------------------------------------- a lab's scale
    def fit(self, images: Any) -> CellCrop:
        """Measure ``images`` (a lab's, unlabelled) and set ``reference_fraction`` to their median span.

        Used with ``scale="dataset"``; returns self. Images where no cell stands out are left out.

        Raises:
            ConfigurationError: no image of ``images`` shows a cell.
        """
        measured = find_cells(images, max_fraction=self.max_fraction, min_contrast=self.min_contrast)
        if not measured.found.any():
            raise ConfigurationError(
                f"CellCrop.fit(): none of the {len(measured)} images shows a cell to measure; give "
                "images of white cells from the lab."
            )
        side = min(np.asarray(images.images if hasattr(images, "images") else images).shape[-3:-1])
        self.reference_fraction = float(np.median(measured.size[measured.found]) / side)
        return self

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            scale=self.scale,
            cell_fraction=self.cell_fraction,
            reference_fraction=self.reference_fraction,
            max_zoom=self.max_zoom,
            fill=self.fill,
            max_fraction=self.max_fraction,
            min_contrast=self.min_contrast,
        )
        return config


def crop_cells(
    data: Any, crop: CellCrop | None = None, *, batch_size: int = 256
) -> tuple[Any, CellMeasurements]:
    """Cell-centred, scale-normalised crops of arrays or a dataset, with what the finder measured.

    Args:
        data: uint8 images (N, H, W, 3) of any square size, or a
            :class:`~bloodcell.datasets.BloodCellDataset` (labels and ids are kept).
        crop: The :class:`CellCrop` to apply (default: ``CellCrop()``, each image by its own cell).
        batch_size: Images cropped at a time.

    Returns:
        ``(images or dataset, measurements)``: uint8 crops of the same size (or a dataset of
        them), and the :class:`~bloodcell.cells.CellMeasurements` of the original images
        (``found`` False: the image was left as it was).
    """
    from bloodcell._validation import check_int
    from bloodcell.datasets import BloodCellDataset, as_images

    crop = CellCrop() if crop is None else crop
    if not isinstance(crop, CellCrop):
        raise ConfigurationError(f"crop must be a CellCrop. Received: crop={type(crop).__name__}.")
    check_int(batch_size, "batch_size", minimum=1)
    images = as_images(data.images if isinstance(data, BloodCellDataset) else data)
    out = np.empty_like(images)
    columns: list[list[np.ndarray]] = [[] for _ in range(5)]
    for start in range(0, len(images), batch_size):
        cropped, measured = crop.crop(images[start : start + batch_size])
        out[start : start + batch_size] = np.round(cropped.numpy()).astype(np.uint8)
        for column, tensor in zip(columns, measured):
            column.append(tensor.numpy())
    cy, cx, size, found, contrast = (np.concatenate(c) for c in columns)
    measurements = CellMeasurements(cy, cx, size, found.astype(bool), contrast)
    if isinstance(data, BloodCellDataset):
        return data.replace(images=out), measurements
    return out, measurements
