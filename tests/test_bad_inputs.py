"""Bad inputs and faults, each answered by one clear error: the table of the troubleshooting page.

Every case below is a real call (or ``bloodcell`` command) with a real bad input, and the test
checks the exception class and the part of the message that tells the user what to do. The
documentation's table (``docs/guide/troubleshooting_table.inc``) is this list with the messages
the library gives now; a test checks that the page is current, and ``python
tests/test_bad_inputs.py`` rewrites it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

import bloodcell as bc
from bloodcell import errors

TABLE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "troubleshooting_table.inc"


@dataclass(frozen=True)
class Case:
    """A bad input: the call (run in a folder prepared by :func:`prepare`) and the error it must raise."""

    what: str
    call: str  # shown in the table
    run: Callable[[], Any]
    raises: type[BaseException]
    match: str


@dataclass(frozen=True)
class CommandCase:
    """A bad input to the ``bloodcell`` command: exit code and the one line on stderr."""

    what: str
    argv: tuple[str, ...]
    code: int
    match: str


def _tiny_model(*extra: Any) -> Any:
    import keras

    layers = [
        keras.Input((32, 32, 3)),
        *extra,
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(8, "softmax"),
    ]
    return keras.Sequential(layers, name="plain_model")  # a fixed name: the table shows it


def prepare(work: Path) -> None:
    """The files the cases read, written into ``work`` (the current folder while they run)."""
    import keras
    from PIL import Image

    from _training_utils import tiny_classifier

    model = _tiny_model()
    bc.models.save_model(model, work / "model.keras")
    model.save_weights(work / "model.weights.h5")
    (work / "notes.keras").write_text("not a model")
    data = (work / "model.keras").read_bytes()
    (work / "truncated.keras").write_bytes(data[: len(data) // 2])
    (work / "model.bin").write_bytes(data)
    with (work / "arrays.keras").open("wb") as file:  # a file object: savez adds no .npz suffix
        np.savez(file, images=np.zeros((1, 2, 2, 3), np.uint8))
    (work / "a folder").mkdir()
    bc.export.to_savedmodel(model, work / "served")
    (work / "model.tflite").write_bytes(b"")
    _tiny_model(keras.layers.Lambda(lambda x: x / 255.0)).save(work / "lambda.keras")

    @keras.saving.register_keras_serializable(package="mylab")
    class Doubler(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return 2 * x

    _tiny_model(Doubler()).save(work / "custom.keras")
    # As in a new process that never imported the lab's code: the class is not registered.
    keras.saving.get_custom_objects().pop("mylab>Doubler")

    sample = bc.datasets.load_sample(per_class=2)
    Image.fromarray(sample.images[0]).save(work / "cell.png")
    (work / "cells.npz").write_text("label,file\nbasophil,cell.png\n")
    Image.fromarray(sample.images[0]).save(work / "photo.npz", format="JPEG")
    bc.datasets.write_sample_folder(work / "cells", per_class=1)
    (work / "cells" / "monocyte").mkdir(exist_ok=True)
    for file in (work / "cells" / "monocyte").iterdir():
        file.unlink()
    (work / "bad.toml").write_text('monitor = "val_acc"\n')

    # A finished Trainer run whose resume state is then damaged three ways.
    for name in ("run-json", "run-missing", "run-truncated"):
        bc.Trainer(tiny_classifier(), batch_size=8, output_dir=work / name, verbose=0).fit(sample, epochs=1)
    (work / "run-json" / "fit" / "state.json").write_text('{"epoch": 1, "variabl')
    for file in (work / "run-missing" / "fit").glob("variables-*.npz"):
        file.unlink()
    for file in (work / "run-truncated" / "fit").glob("variables-*.npz"):
        file.write_bytes(file.read_bytes()[:100])


@contextlib.contextmanager
def _pixel_limit(pixels: int) -> Iterator[None]:
    from PIL import Image

    with mock.patch.object(Image, "MAX_IMAGE_PIXELS", pixels):
        yield


def _resume(folder: str) -> Any:
    from _training_utils import tiny_classifier

    trainer = bc.Trainer(tiny_classifier(), batch_size=8, output_dir=folder, verbose=0)
    return trainer.fit(bc.datasets.load_sample(per_class=2), epochs=1)


def _full_disk() -> Any:
    with mock.patch("numpy.savez", side_effect=OSError(errno.ENOSPC, "No space left on device")):
        return bc.datasets.load_sample(per_class=1).save_npz("cells.npz", compress=False)


def _brighter(images: Any) -> Any:
    return images * 2.0


def _to_unit_range(images: Any) -> Any:
    return images / 255.0


def _mobilenet_freeze() -> Any:
    backbone = bc.backbones.create("mobilenetv3small", input_shape=(32, 32, 3), weights=None)
    return bc.backbones.freeze(backbone, first=120)


def _sample() -> Any:
    return bc.datasets.load_sample(per_class=2)


CASES = [
    # -- model files
    Case("a model file that does not exist", "bc.models.load_model('missing.keras')",
         lambda: bc.models.load_model("missing.keras"), errors.DataFileNotFoundError, "no such model file"),
    Case("a text file named .keras", "bc.models.load_model('notes.keras')",
         lambda: bc.models.load_model("notes.keras"), errors.UnreadableFileError, "this is a text file"),
    Case("a truncated .keras file", "bc.models.load_model('truncated.keras')",
         lambda: bc.models.load_model("truncated.keras"), errors.UnreadableFileError, "truncated or damaged"),
    Case("a .keras file under another name", "bc.models.load_model('model.bin')",
         lambda: bc.models.load_model("model.bin"), errors.UnreadableFileError, "rename it to 'model.keras'"),
    Case("a zip archive that is no model (an .npz)", "bc.models.load_model('arrays.keras')",
         lambda: bc.models.load_model("arrays.keras"), errors.UnreadableFileError, "holds no config.json"),
    Case("a folder", "bc.models.load_model('a folder')",
         lambda: bc.models.load_model("a folder"), errors.UnreadableFileError, "is a folder, not a model file"),
    Case("a SavedModel folder", "bc.models.load_model('served')",
         lambda: bc.models.load_model("served"), errors.UnreadableFileError, "tf.saved_model.load(path)"),
    Case("a TFLite file", "bc.export.load('model.tflite')",
         lambda: bc.export.load("model.tflite"), errors.UnreadableFileError, "bloodcell.export.TFLiteModel"),
    Case("a weights-only file", "bc.models.load_model('model.weights.h5')",
         lambda: bc.models.load_model("model.weights.h5"), errors.UnreadableFileError, "model.load_weights(path)"),
    Case("a model with a Lambda layer (Python code)", "bc.models.load_model('lambda.keras')",
         lambda: bc.models.load_model("lambda.keras"), errors.UnreadableFileError, "Replace the Lambda layer"),
    Case("a model with a custom layer not imported", "bc.models.load_model('custom.keras')",
         lambda: bc.models.load_model("custom.keras"), errors.UnreadableFileError, "mylab>Doubler"),
    # -- data files
    Case("a text file named .npz", "bc.datasets.load_npz('cells.npz')",
         lambda: bc.datasets.load_npz("cells.npz"), errors.UnreadableFileError, "not an .npz"),
    Case("a JPEG named .npz", "bc.datasets.load_npz('photo.npz')",
         lambda: bc.datasets.load_npz("photo.npz"), errors.UnreadableFileError, "JPEG"),
    Case("an empty class folder", "bc.datasets.load_folder('cells')",
         lambda: bc.datasets.load_folder("cells"), errors.EmptyDatasetError, "monocyte"),
    Case("an image over Pillow's decompression-bomb limit", "bc.datasets.decode_image('cell.png')",
         lambda: _with(_pixel_limit(1000), lambda: bc.datasets.decode_image("cell.png")),
         errors.UnreadableFileError, "MAX_IMAGE_PIXELS"),
    Case("a full disk while saving", "data.save_npz('cells.npz')", _full_disk, OSError, "cells.npz"),
    # -- seeds and settings
    Case("a seed given as text", "bc.datasets.split(data, seed='0')",
         lambda: bc.datasets.split(_sample(), seed="0"), errors.ConfigurationError, "Received: seed='0'"),
    Case("a negative seed", "bc.datasets.split(data, seed=-1)",
         lambda: bc.datasets.split(_sample(), seed=-1), errors.ConfigurationError, "non-negative integer"),
    Case("a float seed", "bc.Trainer(model, seed=1.5)",
         lambda: bc.Trainer(_tiny_model(), seed=1.5), errors.ConfigurationError, "Received: seed=1.5"),
    Case("a bool seed", "bc.datasets.oversample(data, seed=True)",
         lambda: bc.datasets.oversample(_sample(), seed=True), errors.ConfigurationError, "Received: seed=True"),
    Case("a metric the Trainer does not log", "bc.Trainer(model, monitor='val_acc')",
         lambda: bc.Trainer(_tiny_model(), monitor="val_acc"), errors.ConfigurationError, "Did you mean 'val_accuracy'"),
    Case("the same in a recipe", "Config.preset('cpu', monitor='val_acc')",
         lambda: bc.experiments.Config.preset("cpu", monitor="val_acc"), errors.ConfigurationError, "val_accuracy"),
    Case("a freeze depth counted for another backbone", "bc.backbones.freeze(mobilenetv3small, first=120)",
         _mobilenet_freeze, errors.ConfigurationError, "does not carry over"),
    Case("an augmenter that returns pixels above 255", "to_tf_dataset(data, augment=brighter)",
         lambda: bc.pipeline.to_tf_dataset(_sample(), augment=_brighter), errors.ConfigurationError, "pixels in 0–255"),
    Case("an augmenter that rescales to 0–1", "to_tf_dataset(data, augment=to_unit_range)",
         lambda: bc.pipeline.to_tf_dataset(_sample(), augment=_to_unit_range), errors.ConfigurationError, "scaled to 0–1"),
    Case("a cell crop scale that does not exist", "bc.cells.CellCrop(scale='lab')",
         lambda: bc.cells.CellCrop(scale="lab"), errors.ConfigurationError, "scale must be one of"),
    Case("a lab's scale fitted on images without cells", "CellCrop(scale='dataset').fit(blank)",
         lambda: bc.cells.CellCrop(scale="dataset").fit(np.full((4, 96, 96, 3), 235, np.uint8)),
         errors.ConfigurationError, "shows a cell"),
    Case("a lab's classes the model does not know", "bc.evaluate(model, data_with_other_classes)",
         lambda: bc.evaluate(_tiny_model(), _sample().replace(class_names=tuple("abcdefgh"))),
         errors.InvalidDataError, "not among the model's"),
    Case("a few-shot draw with a cell id short", "bc.adapt.sample_support(data, k=1, groups=ids[:-1])",
         lambda: bc.adapt.sample_support(_sample(), k=1, groups=np.arange(len(_sample()) - 1)),
         errors.InvalidDataError, "one integer id per image"),
    Case("adapting a model without BatchNorm", "bc.adapt.adapt_batchnorm(plain_model, images)",
         lambda: bc.adapt.adapt_batchnorm(_tiny_model(), np.zeros((4, 32, 32, 3), np.uint8)),
         errors.ConfigurationError, "no BatchNormalization layer"),
    # -- resuming a run
    Case("a damaged state.json", "Trainer(..., output_dir='run-json').fit(...)",
         lambda: _resume("run-json"), errors.UnreadableFileError, "Delete that folder"),
    Case("a missing variables file", "Trainer(..., output_dir='run-missing').fit(...)",
         lambda: _resume("run-missing"), errors.UnreadableFileError, "is damaged"),
    Case("a truncated variables file", "Trainer(..., output_dir='run-truncated').fit(...)",
         lambda: _resume("run-truncated"), errors.UnreadableFileError, "is damaged"),
]  # fmt: skip

COMMAND_CASES = [
    CommandCase("a batch size of 0", ("predict", "model.keras", "cell.png", "--batch-size", "0"), 2,
                "must be a positive integer, got '0'"),
    CommandCase("a negative seed", ("train", "--data", "sample", "--seed", "-1"), 2,
                "must be a non-negative integer, got '-1'"),
    CommandCase("a negative split seed", ("train", "--data", "sample", "--split-seed", "-1"), 2,
                "must be a non-negative integer, got '-1'"),
    CommandCase("an unknown monitor in a TOML file", ("train", "--data", "sample", "--config", "bad.toml"), 2,
                "Did you mean 'val_accuracy'"),
    CommandCase("a text file as the model", ("export", "notes.keras", "--format", "tflite", "--out", "m.tflite"), 2,
                "is not a Keras model file"),
    CommandCase("a folder as the model", ("evaluate", "a folder", "sample"), 2, "is a folder"),
    CommandCase("an image over the pixel limit", ("predict", "model.keras", "cell.png"), 2, "MAX_IMAGE_PIXELS"),
    CommandCase("few-shot cells in a folder that does not exist", ("few-shot", "model.keras", "my_lab", "--out", "t.keras"),
                2, "my_lab"),
    CommandCase("a TENT setting with AdaBN", ("adapt", "model.keras", "cell.png", "--out", "a.keras", "--steps", "3"),
                2, "apply to --method tent only"),
]  # fmt: skip


def _with(context: Any, call: Callable[[], Any]) -> Any:
    with context:
        return call()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("bad_inputs")
    previous = os.getcwd()
    os.chdir(folder)
    try:
        prepare(folder)
        yield folder
    finally:
        os.chdir(previous)


def _raised(case: Case) -> BaseException:
    with pytest.raises(case.raises) as caught:
        case.run()
    return caught.value


def _command_line(case: CommandCase) -> tuple[int, str]:
    from bloodcell.cli import main

    err = io.StringIO()
    context = _pixel_limit(1000) if "pixel limit" in case.what else contextlib.nullcontext()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), context:
        code = main(list(case.argv))
    return code, err.getvalue().strip()


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input_raises_one_clear_error(work, case):
    err = _raised(case)
    assert type(err).__module__.startswith(("bloodcell", "builtins")), type(err)
    assert case.match in str(err)
    assert "allow_pickle" not in str(err) and "safe_mode=False" not in str(err)


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c.what for c in COMMAND_CASES])
def test_bad_command_input_exits_with_one_line(work, case):
    code, err = _command_line(case)
    assert code == case.code and len(err.splitlines()) == 1, err
    assert case.match in err and "Traceback" not in err


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def table(work: Path) -> str:
    """The troubleshooting table: each case with the exception and message a user sees now."""
    rows = []
    for case in CASES:
        err = _raised(case)
        rows.append((case.what, f"``{case.call}``", type(err).__name__, str(err)))
    for command in COMMAND_CASES:
        code, err = _command_line(command)
        rows.append((command.what, f"``bloodcell {' '.join(command.argv)}``", f"exit {code}", err))
    lines = [
        ".. Written by `python tests/test_bad_inputs.py` from the cases of that file; do not edit.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 27 12 43",
        "",
        "   * - Input",
        "     - Call",
        "     - Error",
        "     - Message",
    ]
    for what, call, kind, message in rows:
        lines += [
            f"   * - {_cell(what)}",
            f"     - {_cell(call)}",
            f"     - {kind}",
            f"     - {_cell(message)}",
        ]
    return "\n".join(lines) + "\n"


def test_troubleshooting_table_is_current(work):
    assert TABLE.read_text(encoding="utf-8") == table(work), (
        "the troubleshooting table is out of date: run `python tests/test_bad_inputs.py`"
    )


if __name__ == "__main__":  # rewrite the docs' table
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        prepare(Path(folder))
        TABLE.write_text(table(Path(folder)), encoding="utf-8")
    print(f"wrote {TABLE}")
