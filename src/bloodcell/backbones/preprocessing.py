"""`PixelPreprocessing`: the first layer of every backbone, turning pixels in 0–255 into what it expects.

Users feed uint8 or float images in 0–255 to every bloodcell model; each backbone entry names the
mode that takes those pixels to its own input range (see
:data:`~bloodcell.backbones.registry.PREPROCESSING_MODES`). The layer is plain tensor arithmetic, so
it compiles with XLA, exports to SavedModel/TFLite and saves to ``.keras`` like any Keras layer.

Where the 0–1 check lives, and why: scaling images to 0–1 before a model that expects 0–255 is the
classic silent mistake (training runs but stalls). A check inside the compiled graph would need a
Python callback (``tf.py_function``), which XLA cannot compile, so Keras would turn ``jit_compile``
off for the whole model on a GPU. The check therefore runs on the Python side only:

- here, when the layer runs eagerly (``model(images)`` outside ``tf.function``): one max over the
  batch, only in eager mode, which is already the slow path;
- in :class:`~bloodcell.backbones.ImageModel`'s ``fit``/``predict``/``evaluate``, on the data before
  Keras builds its pipeline: a max over at most 64 images (or one peeked batch of a float
  ``tf.data.Dataset``), once per call.

The compiled training and inference graphs contain no check at all.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

from bloodcell._validation import check_choice
from bloodcell.backbones.registry import PREPROCESSING_MODES
from bloodcell.errors import PixelRangeWarning

__all__ = ["PixelPreprocessing", "UNIT_RANGE_MESSAGE", "looks_unit_range", "warn_if_unit_range"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

#: The warning text (constant, so Python's default filter shows it once per place it is raised from).
UNIT_RANGE_MESSAGE = (
    "Float images with every value in [-1, 1] reached a bloodcell model, which expects pixels in "
    "0-255 (uint8 or float): images scaled to 0-1 make training stall near chance. Pass the uint8 "
    "images as they are (the model does its own preprocessing), or multiply by 255. To silence: "
    "warnings.filterwarnings('ignore', category=bloodcell.errors.PixelRangeWarning)."
)


def looks_unit_range(max_abs: float) -> bool:
    """True for a largest absolute pixel value that says "scaled to 0–1 (or −1..1)", not 0–255.

    All-zero images (max 0) say nothing either way and do not count.

    Example:
        >>> looks_unit_range(1.0), looks_unit_range(254.0), looks_unit_range(0.0)
        (True, False, False)
    """
    return 0.0 < float(max_abs) <= 1.0 + 1e-6


def warn_if_unit_range(images: Any, *, max_images: int = 64, stacklevel: int = 3) -> bool:
    """Warn (:class:`~bloodcell.errors.PixelRangeWarning`) if float images look scaled to 0–1.

    Integer arrays are never warned about. Only the first ``max_images`` images are looked at,
    so the check costs microseconds even on a whole dataset.

    Returns:
        Whether the warning was issued.
    """
    head = np.asarray(images[:max_images] if len(getattr(images, "shape", ())) >= 4 else images)
    if not np.issubdtype(head.dtype, np.floating) or head.size == 0:
        return False
    if looks_unit_range(np.max(np.abs(head))):
        warnings.warn(UNIT_RANGE_MESSAGE, PixelRangeWarning, stacklevel=stacklevel)
        return True
    return False


def _is_eager(x: Any) -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and hasattr(x, "numpy")
    return isinstance(x, np.ndarray)


@keras.saving.register_keras_serializable(package="bloodcell")
class PixelPreprocessing(keras.layers.Layer):
    """Cast pixels in 0–255 (uint8 or float) to float and apply a backbone's preprocessing.

    Modes (what comes out): ``"none"`` 0..255 unchanged (the network preprocesses itself, as the
    EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt applications do), ``"unit"`` 0..1,
    ``"tf"`` −1..1, ``"torch"`` ImageNet mean/std standardised, ``"caffe"`` BGR with the ImageNet
    mean subtracted.

    Args:
        mode: One of the modes above.
        check_range: Warn when called eagerly on float images that look scaled to 0–1 (costs nothing
            inside compiled graphs: the check runs only in eager mode).
        **kwargs: Keras layer arguments (``name``, ``dtype``...).

    Example:
        >>> import numpy as np
        >>> layer = PixelPreprocessing("tf")
        >>> np.asarray(layer(np.array([[[[0, 255, 127.5]]]], dtype="float32"))).round(3).tolist()
        [[[[-1.0, 1.0, 0.0]]]]
    """

    def __init__(self, mode: str = "none", check_range: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice(mode, "mode", sorted(PREPROCESSING_MODES))
        self.mode = mode
        self.check_range = bool(check_range)
        self.built = True  # no weights

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.check_range and _is_eager(x):
            warn_if_unit_range(np.asarray(x), stacklevel=2)
        if self.mode == "none":
            return x
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(np.multiply(_IMAGENET_MEAN, 255.0), self.compute_dtype)
            std = keras.ops.convert_to_tensor(np.multiply(_IMAGENET_STD, 255.0), self.compute_dtype)
            return (x - mean) / std
        # caffe: RGB -> BGR, then zero-centre each channel on the ImageNet mean
        mean = keras.ops.convert_to_tensor(np.asarray(_CAFFE_MEAN_BGR), self.compute_dtype)
        return keras.ops.flip(x, axis=-1) - mean

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"mode": self.mode, "check_range": self.check_range})
        return config
