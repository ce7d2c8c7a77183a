"""What a model file is, checked before Keras reads it, and Keras's loading errors said plainly.

Keras answers most wrong files with a generic error ("File not found" for a file that exists but
is not a zip archive, a page of config for an unregistered class, the advice to turn safe mode
off for a Lambda layer). The checks here look at the file first and name what it is and what to
do instead, so :func:`bloodcell.models.load_model` raises one clear error for each kind of file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bloodcell.errors import DataFileNotFoundError, UnreadableFileError

__all__ = ["check_model_file", "loading_error"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GIVE = "Give a .keras file written by bloodcell (such as a run's model.keras) or by keras.Model.save()."


def _describe(head: bytes) -> str:
    """What the first bytes of a file look like, for messages."""
    if not head:
        return "an empty file"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(_HDF5_MAGIC):
        return "an HDF5 file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "not a zip archive"


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """The path of a file Keras can try to load as a model; a clear error for anything else.

    Raises:
        DataFileNotFoundError: no such file.
        UnreadableFileError: a folder (a SavedModel or other), a TFLite file, a weights-only file,
            a file that is not a Keras archive, a truncated or damaged one, one that holds Python
            code (a ``Lambda`` layer) or custom classes not registered in this process.
    """
    path = Path(path).expanduser()
    shown = repr(os.fspath(path))
    if not path.exists():
        raise DataFileNotFoundError(f"no such model file: {shown}.")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise UnreadableFileError(
                f"{shown} is a TensorFlow SavedModel folder, not a .keras file: load it with "
                "tf.saved_model.load(path) and predict with .serve(images), or give the .keras file it "
                "was exported from."
            )
        raise UnreadableFileError(f"{shown} is a folder, not a model file. {_GIVE}")
    if path.suffix.lower() == ".tflite":
        raise UnreadableFileError(
            f"{shown} is a TFLite model, not a .keras file: run it with bloodcell.export.TFLiteModel(path)."
        )
    with path.open("rb") as file:
        head = file.read(8)
    if path.name.lower().endswith(".weights.h5"):
        raise UnreadableFileError(
            f"{shown} holds weights only, not a model: build the same model (e.g. with "
            "bloodcell.build_classifier(...)) and call model.load_weights(path)."
        )
    if path.suffix.lower() == ".h5" and head.startswith(_HDF5_MAGIC):
        return path  # a legacy Keras H5 model: Keras reads it, and its errors are translated after
    if not head.startswith(_ZIP_MAGIC):
        raise UnreadableFileError(
            f"{shown} is not a Keras model file: a .keras file is a zip archive, and this is "
            f"{_describe(head)}. {_GIVE}"
        )
    config = _read_config(path, shown)
    if path.suffix.lower() != ".keras":
        raise UnreadableFileError(
            f"{shown} is a Keras model archive, but Keras reads one only under a name ending in "
            f"'.keras': rename it to {path.with_suffix('.keras').name!r}."
        )
    _check_objects(config, shown)
    return path


def _read_config(path: Path, shown: str) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise UnreadableFileError(
                    f"{shown} is a zip archive but not a Keras model (it holds no config.json). {_GIVE}"
                )
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnreadableFileError(
            f"{shown} is truncated or damaged ({err}): copy or save the model again."
        ) from err


def _serialized_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every serialised Keras object (a dict with ``class_name`` and ``module``) in a saved config."""
    if isinstance(node, dict):
        if "class_name" in node and "module" in node:
            yield node
        for value in node.values():
            yield from _serialized_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _serialized_objects(value)


def _check_objects(config: Any, shown: str) -> None:
    import keras

    objects = list(_serialized_objects(config))
    if any(obj["class_name"] == "Lambda" for obj in objects):
        raise UnreadableFileError(
            f"{shown} holds a Lambda layer: Python code that would run on loading. bloodcell loads models "
            "in Keras's safe mode, which refuses such code. Replace the Lambda layer by a layer class "
            "registered with keras.saving.register_keras_serializable and save the model again."
        )
    missing = sorted(
        {
            obj["registered_name"]
            for obj in objects
            if obj.get("registered_name")
            and not str(obj.get("module") or "").startswith("keras")
            and keras.saving.get_registered_object(obj["registered_name"]) is None
        }
    )
    if missing:
        raise UnreadableFileError(
            f"{shown} uses custom Keras classes that this process does not know: {', '.join(missing)}. "
            "Import the code that defines and registers them (keras.saving.register_keras_serializable) "
            "before loading."
        )


def loading_error(path: Path, err: BaseException) -> UnreadableFileError:
    """One clear error for a failure inside Keras's loader, naming the file and what to do."""
    shown = repr(os.fspath(path))
    text = " ".join(str(err).split())
    if isinstance(err, OSError):
        return UnreadableFileError(
            f"{shown} is damaged: its weights cannot be read ({text}). Save the model again."
        )
    if "No model config found" in text:
        return UnreadableFileError(
            f"{shown} holds weights only, not a model: build the same model (e.g. with "
            "bloodcell.build_classifier(...)) and call model.load_weights(path)."
        )
    if len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return UnreadableFileError(f"cannot load {shown} as a Keras model ({text}). {_GIVE}")
