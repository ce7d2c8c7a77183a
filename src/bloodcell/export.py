"""Export a trained classifier: ``.keras`` files, TensorFlow SavedModel, TFLite, and the AN2DL submission zip.

Every writer takes a Keras model (or the path of a saved ``.keras`` file), writes atomically (a
failed export leaves nothing half-written at ``path``) and returns the written :class:`~pathlib.Path`.
:func:`export` is the one entry point (``bloodcell export MODEL --format ...`` calls it).

========================  ===============================  ==============================================
Format                    Writer                           Loaded back with
========================  ===============================  ==============================================
``"keras"``               :func:`save`                     :func:`load` (Keras safe mode, bloodcell needed)
``"savedmodel"``          :func:`to_savedmodel`            ``tf.saved_model.load(dir).serve(images)``
``"tflite"``              :func:`to_tflite`                :class:`TFLiteModel` (``tf.lite.Interpreter``)
``"submission"``          :func:`to_submission`            the grader: ``from model import Model``
========================  ===============================  ==============================================

Only the ``.keras`` file needs bloodcell to load; the others hold the computation graph and the
weights and run with TensorFlow (or a TFLite interpreter) alone.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_path, atomic_write_text, read_json_object
from bloodcell._validation import check_choice, check_int
from bloodcell.classes import CLASS_NAMES
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, InvalidDataError, InvalidDtypeError

__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "SERVING_ENDPOINT",
    "UINT8_ENDPOINT",
    "TFLiteModel",
    "CARD_FILE",
    "card_path",
    "export",
    "load",
    "read_card",
    "save",
    "to_savedmodel",
    "to_submission",
    "to_tflite",
]

#: The formats :func:`export` writes.
FORMATS: tuple[str, ...] = ("keras", "savedmodel", "tflite", "submission")

#: The ``quantize`` values :func:`to_tflite` accepts (None: plain float32).
QUANTIZATIONS: tuple[str | None, ...] = (None, "dynamic", "float16")

#: The SavedModel function taking uint8 or float32 images (N, H, W, 3) in 0–255; also the
#: ``"serving_default"`` signature (float32) for TensorFlow Serving.
SERVING_ENDPOINT = "serve"

#: A second SavedModel signature with a uint8 input, for servers that call signatures by name.
UINT8_ENDPOINT = "serve_uint8"

_SAVEDMODEL_DIR = "saved_model"  # inside the submission zip

#: The model card (:func:`bloodcell.models.model_card`: class names, input size, preprocessing,
#: temperature, recipe, metrics) as JSON, written inside a SavedModel folder and beside a ``.tflite``.
CARD_FILE = "card.json"


def card_path(path: str | os.PathLike[str]) -> Path:
    """Where the card of an export lies: ``<SavedModel>/card.json``, or ``model.card.json`` beside ``model.tflite``.

    Example:
        >>> card_path("out/model.tflite").as_posix()
        'out/model.card.json'
    """
    path = Path(path).expanduser()
    return path / CARD_FILE if path.is_dir() or not path.suffix else path.with_suffix(".card.json")


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card written with a SavedModel or TFLite export (JSON only, no TensorFlow needed).

    Raises:
        DataFileNotFoundError: the export has no card (written by an older bloodcell, or moved alone).
    """
    card = card_path(path)
    if not card.is_file():
        raise DataFileNotFoundError(
            f"No model card at {str(card)!r}: export the model again with bloodcell.export to write one."
        )
    return read_json_object(card)


def _card_text(model: Any) -> str:
    from bloodcell.modelcard import model_card

    return json.dumps(model_card(model), indent=2) + "\n"


# -- models in, paths out ------------------------------------------------------------------------
def _image_size(model: Any) -> tuple[int | None, int | None]:
    """(height, width) of a model taking one batch of RGB images; raises for any other model."""
    inputs = model.inputs
    shape = tuple(inputs[0].shape) if inputs and len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ConfigurationError(
            f"Only models with one image input (N, height, width, 3) can be exported; model "
            f"{model.name!r} takes {[tuple(t.shape) for t in inputs or []]}."
        )
    return shape[1], shape[2]


# -- .keras ----------------------------------------------------------------------------------------
def save(model: Any, path: str | os.PathLike[str], *, include_optimizer: bool = False) -> Path:
    """Save a model to a ``.keras`` file, atomically (see :func:`bloodcell.models.save_model`).

    The file holds bloodcell's own layer classes, so reading it back needs bloodcell (:func:`load`).
    Without ``include_optimizer`` it holds the inference model only (no optimizer state).

    Args:
        model: The Keras model, or the path of a ``.keras`` file.
        path: The file to write; its name must end in ``.keras``.
        include_optimizer: Also save the optimizer and compile settings.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib, keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> path = save(model, pathlib.Path(tempfile.mkdtemp()) / "model.keras")
        >>> images = np.full((2, 8, 8, 3), 200, dtype="uint8")
        >>> bool(np.allclose(load(path)(images), model(images)))
        True
    """
    from bloodcell.models import as_model, save_model

    return save_model(as_model(model), path, include_optimizer=include_optimizer)


def load(path: str | os.PathLike[str], *, compile: bool = True) -> Any:
    """Load a ``.keras`` model in Keras's safe mode: :func:`bloodcell.models.load_model`.

    Args:
        path: A ``.keras`` file written by :func:`save` (or by ``model.save``).
        compile: Restore the optimizer, loss and metrics it was saved with, if any.

    Returns:
        The Keras model.

    Example:
        >>> load("no/such/model.keras")
        Traceback (most recent call last):
        ...
        bloodcell.errors.DataFileNotFoundError: no such model file: 'no/such/model.keras'.
    """
    from bloodcell.models import load_model

    return load_model(path, compile=compile)


# -- SavedModel --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_directory(directory: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``directory``; on success it takes ``directory``'s place.

    An existing ``directory`` is replaced only if it is empty or a SavedModel, so a mistyped path
    never deletes someone's other files.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(
            f"{str(directory)!r} is a file; a SavedModel is a directory: choose another path."
        )
    if directory.is_dir() and any(directory.iterdir()) and not (directory / "saved_model.pb").is_file():
        raise ConfigurationError(
            f"{str(directory)!r} is a directory holding other files, not a SavedModel; export to a new "
            "or empty directory."
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    umask = os.umask(0)  # mkdtemp makes a private (0700) folder; give it what mkdir would
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    old = None
    try:
        yield tmp
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.replace(directory, old)
        os.replace(tmp, directory)
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def _write_savedmodel(model: Any, directory: Path) -> None:
    import keras
    import tensorflow as tf

    height, width = _image_size(model)

    # One tf.function traced for both dtypes: the restored `serve` accepts uint8 or float32 images.
    @tf.function(autograph=False)
    def serve(images: Any) -> Any:
        return model(tf.cast(images, tf.float32), training=False)

    float_spec = tf.TensorSpec((None, height, width, 3), tf.float32, name="images")
    uint8_spec = tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")
    serve.get_concrete_function(float_spec)  # first trace: the "serving_default" signature
    serve.get_concrete_function(uint8_spec)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_ENDPOINT, serve)
    archive.add_endpoint(UINT8_ENDPOINT, lambda images: serve(images), input_signature=[uint8_spec])
    archive.write_out(str(directory), verbose=False)


def to_savedmodel(model: Any, directory: str | os.PathLike[str]) -> Path:
    """Export a model as a TensorFlow SavedModel for serving (TensorFlow Serving, ``tf.saved_model.load``).

    The SavedModel needs neither bloodcell nor the model's Python code. Its function ``serve``
    (:data:`SERVING_ENDPOINT`) takes a batch of images (N, H, W, 3) with pixels in 0–255, as uint8
    or float32, and returns class probabilities (N, num_classes), exactly as ``model.predict``
    does. For TensorFlow Serving it has two signatures, ``"serving_default"`` (float32 input) and
    ``"serve_uint8"``; both take the input ``images`` and return ``output_0``.

    Args:
        model: A Keras model taking (N, H, W, 3) images, or the path of a ``.keras`` file.
        directory: The folder to write. An existing SavedModel (or empty folder) there is replaced
            once the new one is complete; a folder holding anything else is refused.

    Returns:
        The directory written.

    Example:
        >>> import tempfile, pathlib, keras, numpy as np, tensorflow as tf
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> directory = to_savedmodel(model, pathlib.Path(tempfile.mkdtemp()) / "served")
        >>> served = tf.saved_model.load(str(directory))
        >>> images = np.full((2, 8, 8, 3), 200, dtype="uint8")
        >>> bool(np.allclose(served.serve(images), model.predict(images, verbose=0)))
        True
    """
    from bloodcell.models import as_model

    model = as_model(model)
    directory = Path(directory).expanduser()
    _image_size(model)  # check before touching the disk
    with _atomic_directory(directory) as tmp:
        _write_savedmodel(model, tmp)
        (tmp / CARD_FILE).write_text(_card_text(model), encoding="utf-8")
    return directory


# -- TFLite ------------------------------------------------------------------------------------------
def to_tflite(
    model: Any,
    path: str | os.PathLike[str],
    quantize: str | None = None,
) -> Path:
    """Convert a model to a TFLite flatbuffer (``tf.lite.TFLiteConverter``), written atomically.

    The TFLite model takes float32 images (N, H, W, 3) in 0–255 (any N: the batch axis is dynamic)
    and returns class probabilities; :class:`TFLiteModel` runs it and accepts uint8 images too.
    It is converted from the SavedModel that :func:`to_savedmodel` writes, the route TensorFlow
    supports for Keras 3 models.

    Args:
        model: A Keras model taking (N, H, W, 3) images, or the path of a ``.keras`` file.
        path: The ``.tflite`` file to write.
        quantize: None (float32 weights, same outputs as Keras up to rounding), ``"dynamic"``
            (dynamic-range quantisation: int8 weights, about 4× smaller) or ``"float16"`` (float16
            weights, about 2× smaller). Quantised outputs differ slightly from the Keras model's.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib, keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> path = to_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
        >>> images = np.full((5, 8, 8, 3), 200, dtype="uint8")
        >>> probabilities = TFLiteModel(path).predict(images)
        >>> probabilities.shape, bool(np.allclose(probabilities, model.predict(images, verbose=0), atol=1e-5))
        ((5, 8), True)
    """
    import tensorflow as tf

    from bloodcell.models import as_model

    check_choice(quantize, "quantize", QUANTIZATIONS)
    model = as_model(model)
    path = Path(path).expanduser()
    _image_size(model)
    with tempfile.TemporaryDirectory(prefix="bloodcell-tflite-") as work:
        saved = Path(work) / "saved_model"
        _write_savedmodel(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SERVING_ENDPOINT])
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    atomic_write_text(card_path(path), _card_text(model))
    return path


def _interpreter_class() -> Any:
    """LiteRT's interpreter where installed, else TensorFlow's own (deprecated there, still working)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter


class TFLiteModel:
    """A ``.tflite`` classifier with a ``predict`` like Keras's: images in 0–255, probabilities out.

    Runs the file with LiteRT's interpreter (``ai_edge_litert``) if installed, else with
    ``tf.lite.Interpreter``. The input tensor is resized to the batch, so any N works.

    Args:
        path: A ``.tflite`` file written by :func:`to_tflite`.
        batch_size: Images per interpreter call (bounds the memory of large inputs).
        num_threads: CPU threads for the interpreter (None: its default).

    Example:
        >>> TFLiteModel("no/such/model.tflite")
        Traceback (most recent call last):
        ...
        bloodcell.errors.DataFileNotFoundError: TFLite file 'no/such/model.tflite' does not exist.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, batch_size: int = 64, num_threads: int | None = None
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataFileNotFoundError(f"TFLite file {str(self.path)!r} does not exist.")
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        with warnings.catch_warnings():  # TensorFlow's interpreter warns that it moved to LiteRT
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            try:
                self._interpreter = _interpreter_class()(model_path=str(self.path), num_threads=num_threads)
            except ValueError as err:
                raise InvalidDataError(f"{str(self.path)!r} is not a readable TFLite model: {err}") from err
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InvalidDataError(
                f"{str(self.path)!r} has {len(inputs)} inputs and {len(outputs)} outputs; expected one of each."
            )
        self._input, self._output = inputs[0], outputs[0]
        self._batch: int | None = None

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The model's input shape, None for the dynamic batch axis: ``(None, H, W, 3)``."""
        signature = self._input.get("shape_signature", self._input["shape"])
        return tuple(None if int(d) < 0 else int(d) for d in signature)

    @property
    def num_classes(self) -> int:
        """Number of classes (the output's last axis)."""
        return int(self._output["shape"][-1])

    @property
    def card(self) -> dict[str, Any] | None:
        """The model card written beside the file by :func:`to_tflite` (None if there is none)."""
        return read_card(self.path) if card_path(self.path).is_file() else None

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class of each output, from the model card beside the file (None if there is none)."""
        card = self.card
        return tuple(card["class_names"]) if card and card.get("class_names") else None

    def _run(self, images: np.ndarray) -> np.ndarray:
        if self._batch != len(images):
            self._interpreter.resize_tensor_input(self._input["index"], [len(images), *images.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = len(images)
        self._interpreter.set_tensor(self._input["index"], images.astype(self._input["dtype"], copy=False))
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output["index"]), dtype=np.float32)

    def predict(self, images: Any) -> np.ndarray:
        """Class probabilities (N, num_classes) for images (N, H, W, 3) in 0–255, uint8 or float.

        Float images that look scaled to 0–1 get a :class:`~bloodcell.errors.PixelRangeWarning`.

        Args:
            images: A batch of images (a NumPy array or anything ``np.asarray`` takes).

        Returns:
            float32 probabilities, one row per image.
        """
        from bloodcell.backbones.imagemodel import check_image_shape
        from bloodcell.backbones.preprocessing import warn_if_unit_range

        images = np.asarray(images)
        if images.dtype.kind not in "uif":
            raise InvalidDtypeError(f"Images must be integers or floats in 0-255, got dtype {images.dtype}.")
        check_image_shape(images.shape, self.input_shape, "TFLiteModel.predict()")
        warn_if_unit_range(images)  # the classic silent mistake: pixels scaled to 0-1
        if len(images) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        chunks = [self._run(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(chunks)

    def __repr__(self) -> str:
        return (
            f"TFLiteModel({str(self.path)!r}, input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


# -- AN2DL submission --------------------------------------------------------------------------------
_SUBMISSION_MODEL_PY = '''"""Blood cell classifier for the AN2DL submission, exported by bloodcell {version}.

Standalone: needs TensorFlow and NumPy only. The network and its weights are the TensorFlow
SavedModel in the folder {folder!r} beside this file.
"""

import os

import numpy as np
import tensorflow as tf

#: Label i of predict() is CLASS_NAMES[i].
CLASS_NAMES = {class_names!r}

BATCH_SIZE = {batch_size}


class Model:
    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.network = tf.saved_model.load(os.path.join(here, {folder!r}))

    def predict(self, X):
        """Integer labels (N,) for uint8 images X of shape (N, {height}, {width}, 3), pixels 0-255."""
        X = np.asarray(X)
        if X.ndim == 3:
            X = X[None]
        if X.dtype != np.uint8:
            X = X.astype(np.float32)
        labels = [
            np.argmax(self.network.serve(tf.constant(X[i : i + BATCH_SIZE])).numpy(), axis=-1)
            for i in range(0, len(X), BATCH_SIZE)
        ]
        return np.concatenate(labels).astype(np.int64) if labels else np.zeros((0,), np.int64)
'''


def to_submission(
    model: Any,
    path: str | os.PathLike[str],
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    batch_size: int = 256,
) -> Path:
    """Write the AN2DL Codabench submission zip: ``model.py`` and the model as a SavedModel.

    The zip holds, at its root, ``model.py`` with ``class Model``: ``Model()`` loads the network
    from the folder ``saved_model/`` beside ``model.py`` (found through ``__file__``, whatever the
    grader's working directory), and ``Model().predict(X)`` takes uint8 images (N, 96, 96, 3) and
    returns integer labels (N,) in the class order of :data:`bloodcell.classes.CLASS_NAMES`.

    Why a SavedModel: the grader has TensorFlow, Keras and NumPy but not bloodcell. A ``.keras``
    file names bloodcell's layer classes (its pixel preprocessing, ``Classifier``...), which the
    grader cannot import, and weights alone would need the architecture rebuilt in ``model.py``.
    A SavedModel holds the traced graph with its weights, loads with ``tf.saved_model.load``, and
    needs neither bloodcell nor Keras to run. The tests unzip the file and run ``model.py`` in a
    fresh Python process in which ``import bloodcell`` fails, and compare its labels with the
    Keras model's on real sample images.

    Args:
        model: A Keras model taking 96×96 RGB images (or any size: None), or a ``.keras`` path.
        path: The ``.zip`` file to write.
        class_names: The class names written into ``model.py`` (``CLASS_NAMES``), for whoever reads
            it; None: the class names of the model's card, else :data:`bloodcell.classes.CLASS_NAMES`.
        batch_size: Images per forward pass inside ``predict`` (bounds the grader's memory use).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib, zipfile, keras
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> path = to_submission(model, pathlib.Path(tempfile.mkdtemp()) / "submission.zip")
        >>> sorted(name for name in zipfile.ZipFile(path).namelist() if "/variables/" not in name)
        ['model.py', 'saved_model/fingerprint.pb', 'saved_model/saved_model.pb']
    """
    import bloodcell
    from bloodcell.models import as_model

    model = as_model(model)
    path = Path(path).expanduser()
    height, width = _image_size(model)
    if class_names is None:  # the AN2DL task's eight classes unless the model's card names its own
        class_names = getattr(model, "class_names", None) or CLASS_NAMES
    if (height, width) not in {(96, 96), (None, None), (96, None), (None, 96)}:
        raise ConfigurationError(
            f"The AN2DL grader sends 96x96 images but model {model.name!r} takes {height}x{width}; "
            "build it with input_shape=(96, 96, 3)."
        )
    if int(model.outputs[0].shape[-1]) != len(class_names):
        raise ConfigurationError(
            f"The model predicts {model.outputs[0].shape[-1]} classes but class_names has {len(class_names)}."
        )
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    source = _SUBMISSION_MODEL_PY.format(
        version=bloodcell.__version__,
        folder=_SAVEDMODEL_DIR,
        class_names=tuple(str(name) for name in class_names),
        batch_size=batch_size,
        height=height or "H",
        width=width or "W",
    )
    with tempfile.TemporaryDirectory(prefix="bloodcell-submission-") as work:
        saved = Path(work) / _SAVEDMODEL_DIR
        _write_savedmodel(model, saved)
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("model.py", source)
            for file in sorted(saved.rglob("*")):
                if file.is_file():
                    archive.write(file, f"{_SAVEDMODEL_DIR}/{file.relative_to(saved).as_posix()}")
    return path


# -- one entry point ---------------------------------------------------------------------------------
_WRITERS = {"keras": save, "savedmodel": to_savedmodel, "tflite": to_tflite, "submission": to_submission}


def export(model: Any, path: str | os.PathLike[str], format: str = "keras", **options: Any) -> Path:
    """Export a model (or a ``.keras`` file) to one of :data:`FORMATS`; return the written path.

    Args:
        model: A Keras model, or the path of a ``.keras`` file.
        path: Where to write: a ``.keras`` file, a SavedModel folder, a ``.tflite`` file or a ``.zip``.
        format: ``"keras"`` (:func:`save`), ``"savedmodel"`` (:func:`to_savedmodel`), ``"tflite"``
            (:func:`to_tflite`) or ``"submission"`` (:func:`to_submission`). Case, ``_`` and ``-``
            are ignored (``"saved_model"`` works).
        **options: The chosen writer's keyword arguments (``quantize=`` for TFLite...).

    Returns:
        The path written.

    Example:
        >>> export("model.keras", "model.onnx", format="onnx")
        Traceback (most recent call last):
        ...
        bloodcell.errors.ConfigurationError: Unknown export format 'onnx'; choose one of keras, savedmodel, tflite, submission.
    """
    key = str(format).lower().replace("_", "").replace("-", "")
    if key not in _WRITERS:
        raise ConfigurationError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    writer = _WRITERS[key]
    try:
        inspect.signature(writer).bind(model, path, **options)
    except TypeError:
        accepted = [p.name for p in inspect.signature(writer).parameters.values()][2:]
        raise ConfigurationError(
            f"format={key!r} takes the options {accepted or 'none'}. Received: options={sorted(options)}."
        ) from None
    return writer(model, path, **options)
