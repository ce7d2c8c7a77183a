"""User journeys across processes: train today, predict, evaluate, export and reload tomorrow.

Each step runs as its own process, the way a user runs it from a shell: the ``bloodcell`` command,
or a fresh Python interpreter that imports only what a user's script would. Nothing the library
wrote is read back in the process that wrote it, so a model that reloads only because the
training code happens to be imported (which in-process tests cannot see) fails here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import SUBMISSION_GRADER

# The bundled real cells, 2 per class, one epoch: each recipe's own model, optimizer and schedule.
SMALL = [
    "--data",
    "sample",
    "--limit",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--val",
    "0.25",
    "--test",
    "0.25",
]
RECIPES = {"cpu": [], "robust": [], "seed": ["--weights", "none"]}
# What TensorFlow writes on start-up, and Keras's progress bar, which a command must keep off.
NOISE = ("absl::InitializeLog", "oneDNN", "cuda drivers", "cuInit", "\x08", "\r", "\x1b[")


def _command() -> list[str]:
    script = shutil.which("bloodcell", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "bloodcell"]


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the command's own
    return {**env, **extra}


def bloodcell(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``bloodcell ARGS`` in a new process; fail with its output unless it exits 0 quietly."""
    done = subprocess.run(
        [*_command(), *args], capture_output=True, text=True, cwd=cwd, env=_environment(), timeout=600
    )
    assert done.returncode == 0, f"bloodcell {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for noise in NOISE:
        assert noise not in done.stdout + done.stderr, (args, noise, done.stderr[-2000:])
    return done


def python(code: str, *args: str, cwd: Path, isolated: bool = False) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (``isolated``: without this environment's site packages path tricks)."""
    command = [sys.executable, *(["-I"] if isolated else []), "-c", code, *args]
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"} if isolated else _environment()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


# Steps after training. Every recipe's model must reload in a new process; the default suite runs
# all steps on the "cpu" recipe and the reloading ones on the others (exporting EfficientNetV2S to
# SavedModel and TFLite takes minutes on two cores); `-m slow` runs every step for every recipe.
ALL_STEPS = ("predict", "evaluate", "robustness", "adapt", "trust", "export", "reload")
DEFAULT_STEPS = {
    "seed": ("predict", "reload"),
    "cpu": ALL_STEPS,
    "robust": ("predict", "evaluate", "adapt", "reload"),  # its model holds the lab-scale cell crop
}

# A user's script of the next day: every artefact loaded in a process that trained nothing.
RELOAD = """
import json, sys
from pathlib import Path
import numpy as np
import keras
import bloodcell.models  # registers bloodcell's Keras objects: plain Keras loading works too
import bloodcell as bc

model_path, exported, images_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
images = np.load(images_path)
model = bc.models.load_model(model_path)
out = {
    "compiled": bool(model.compiled),
    "model": model.predict(images, verbose=0).tolist(),
    "keras_plain": keras.saving.load_model(model_path).predict(images, verbose=0).tolist(),
}
if exported.is_dir():
    import tensorflow as tf

    served = tf.saved_model.load(str(exported / "savedmodel"))  # kept: it owns the variables
    out["exported_keras"] = bc.models.load_model(exported / "model.keras").predict(images, verbose=0).tolist()
    out["savedmodel"] = served.serve(images).numpy().tolist()
    out["tflite"] = bc.export.TFLiteModel(exported / "model.tflite").predict(images).tolist()
print(json.dumps(out))
"""


# The next day's script: the calibrated model and the rejector, read back by a process that made neither.
TRUST = """
import json, sys
import numpy as np
import bloodcell as bc

model = bc.models.load_model(sys.argv[1])
assert 0 < bc.calibration.temperature_of(model) < 100
out = bc.predict(model, np.load(sys.argv[3]), reject=bc.rejection.Rejector.from_json(sys.argv[2]))
print(json.dumps({"statuses": list(out.status)}))
"""


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> tuple[Path, Path]:
    """One real cell per class as image files, and the same cells as an array (uint8, 96 px)."""
    root = tmp_path_factory.mktemp("cells")
    folder = bc.datasets.write_sample_folder(root / "folder", per_class=1)
    data = bc.datasets.load_folder(folder)
    np.save(root / "cells.npy", data.images)
    return folder, root / "cells.npy"


def _predictions_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _cell_crop_settings(path: Path) -> list[dict]:
    """The settings of each CellCrop layer as a ``.keras`` file stores them."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found, stack = [], [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "CellCrop":
                found.append(item["config"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def train_and_use(recipe: str, steps: tuple[str, ...], cells: tuple[Path, Path], work: Path) -> None:
    """``bloodcell train`` with a recipe, then each step in a process of its own."""
    folder, array = cells
    trained = bloodcell("train", "--recipe", recipe, *RECIPES[recipe], *SMALL, "--name", recipe, cwd=work)
    model = work / "runs" / recipe / "seed0" / "model.keras"
    # Keras's one line per epoch (output to a pipe), and where the model is.
    assert "1/1 - " in trained.stdout and "val_accuracy" in trained.stdout
    assert str(Path("runs") / recipe / "seed0" / "model.keras") in trained.stdout

    predicted = None
    if "predict" in steps:  # on image files, as CSV: one row per file, the classes by name
        predicted = _predictions_csv(bloodcell("predict", str(model), str(folder), cwd=work).stdout)
        assert len(predicted) == 8 and {row["class_1"] for row in predicted} <= set(bc.classes.CLASS_NAMES)
    if "evaluate" in steps:  # its report read back here
        bloodcell("evaluate", str(model), "sample", "--limit", "1", "--json", "report.json", cwd=work)
        assert bc.metrics.Report.from_json(work / "report.json").n == 8
    if "robustness" in steps:
        bloodcell(
            "robustness", str(model), "sample", "--limit", "1", "--kinds", "jpeg", "--severities", "2",
            "--out", "robustness", cwd=work,
        )  # fmt: skip
        assert bc.robustness.RobustnessReport.from_json(work / "robustness" / "robustness.json").n == 8
    if "adapt" in steps:  # to another lab's unlabelled cells (here: the folder), then used as any model
        bloodcell("adapt", str(model), str(folder), "--out", "adapted.keras", "--batch-size", "4", cwd=work)
        # The robust recipe's crop learns the lab's cell scale, and the adapted file keeps it.
        crops = [_cell_crop_settings(path) for path in (model, work / "adapted.keras")]
        assert len(crops[0]) == len(crops[1]) == (1 if recipe == "robust" else 0)
        for before, after in zip(*crops):
            assert before["reference_fraction"] is None and 0.1 < after["reference_fraction"] < 0.6
        adapted = _predictions_csv(bloodcell("predict", "adapted.keras", str(folder), cwd=work).stdout)
        assert len(adapted) == 8
        white = work / "white"  # a lab with five of the eight classes, scored on those five
        for name in ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"):
            shutil.copytree(folder / name, white / name)
        scored = bloodcell(
            "evaluate", "adapted.keras", str(white), "--classes", "present", "--json", "white.json", cwd=work
        )
        assert bc.metrics.Report.from_json(work / "white.json").class_names == tuple(
            sorted(p.name for p in white.iterdir())
        )
        assert "5 classes" in scored.stdout
        # A few labelled cells of that lab (a subset of the classes), the original cells replayed.
        tuned = bloodcell(
            "few-shot", str(model), str(white), "--replay", str(folder), "--epochs", "1", "--batch-size", "4",
            "--out", "tuned.keras", cwd=work,
        )  # fmt: skip
        assert "Fine-tuned on 5 cells" in tuned.stdout
        bloodcell(
            "evaluate", "tuned.keras", str(white), "--classes", "present", "--json", "tuned.json", cwd=work
        )
        assert bc.metrics.Report.from_json(work / "tuned.json").n == 5
    if (
        "trust" in steps
    ):  # calibrate, fit a rejector, predict with it, look at the errors: each its own process
        bloodcell("calibrate", str(model), "sample", "--limit", "2", "--out", "calibrated.keras", cwd=work)
        card = bloodcell("info", "calibrated.keras", cwd=work).stdout
        assert "temperature" in card and all(name in card for name in bc.classes.CLASS_NAMES)
        bloodcell(
            "reject", "calibrated.keras", "sample", "--limit", "2", "--coverage", "0.5", "--output", "rejector.json",
            cwd=work,
        )  # fmt: skip
        checked = _predictions_csv(
            bloodcell(
                "predict", "calibrated.keras", str(folder), "--reject", "rejector.json", cwd=work
            ).stdout
        )
        assert len(checked) == 8 and {row["status"] for row in checked} <= {
            "accepted",
            "uncertain",
            "not a cell",
        }
        bloodcell("evaluate", "calibrated.keras", "sample", "--limit", "1", "--gallery", "gallery", cwd=work)
        assert {p.name for p in (work / "gallery").iterdir()} >= {"top_losses.png", "gradcam.png", "index.md"}
        reused = python(TRUST, "calibrated.keras", "rejector.json", str(array), cwd=work).stdout.splitlines()[
            -1
        ]
        assert json.loads(reused)["statuses"] == [row["status"] for row in checked]
    exported = work / "exported"
    if "export" in steps:  # every format, each from the saved file
        for fmt, name in (("keras", "model.keras"), ("savedmodel", "savedmodel"), ("tflite", "model.tflite"),
                          ("submission", "submission.zip")):  # fmt: skip
            bloodcell("export", str(model), "--format", fmt, "--out", str(exported / name), cwd=work)
    if "reload" not in steps:
        return

    # A new interpreter loads the model and every export, and they all agree.
    out = json.loads(python(RELOAD, str(model), str(exported), str(array), cwd=work).stdout.splitlines()[-1])
    reference = np.asarray(out["model"])
    assert reference.shape == (8, 8) and not out["compiled"]  # the delivered model holds no optimizer
    np.testing.assert_allclose(out["keras_plain"], reference, atol=1e-6)
    if predicted is not None:  # the folder's files are sorted by class, as are the array's rows
        assert [row["class_1"] for row in predicted] == [
            bc.classes.CLASS_NAMES[k] for k in reference.argmax(1)
        ]
    if "export" in steps:
        for key in ("exported_keras", "savedmodel"):
            np.testing.assert_allclose(out[key], reference, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(out["tflite"], reference, atol=1e-4)
        # The submission runs where bloodcell cannot be imported.
        with zipfile.ZipFile(exported / "submission.zip") as archive:
            archive.extractall(work / "grader")
        graded = python(SUBMISSION_GRADER, str(work / "grader"), str(array), cwd=work, isolated=True)
        assert json.loads(graded.stdout)["labels"] == reference.argmax(axis=1).tolist()


def demo_then_predict(cells: tuple[Path, Path], work: Path) -> None:
    """``bloodcell demo``, then ``bloodcell predict`` with the model it wrote."""
    folder, _ = cells
    demo = bloodcell("demo", "--out", "demo", "--limit", "4", "--epochs", "1", cwd=work)
    (model,) = (work / "demo").glob("*/seed0/model.keras")
    assert str(model.relative_to(work)) in demo.stdout
    predicted = bloodcell("predict", str(model), str(folder), "--top-k", "1", cwd=work).stdout
    assert [row["path"] for row in _predictions_csv(predicted)] == sorted(
        str(p) for p in folder.rglob("*.jpg")
    )


@pytest.fixture(scope="module")
def journeys(cells, tmp_path_factory):
    """The default journeys, two at a time: each step is a process that keeps about one core busy."""
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        recipe: pool.submit(train_and_use, recipe, steps, cells, tmp_path_factory.mktemp(recipe))
        for recipe, steps in DEFAULT_STEPS.items()
    }
    futures["demo"] = pool.submit(demo_then_predict, cells, tmp_path_factory.mktemp("demo"))
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("journey", [*DEFAULT_STEPS, "demo"])
def test_what_a_run_writes_works_in_new_processes(journeys, journey):
    journeys[journey].result()  # re-raises the journey's failure, with its message


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r, steps in DEFAULT_STEPS.items() if steps != ALL_STEPS])
def test_every_step_for_every_recipe(recipe, cells, tmp_path):
    train_and_use(recipe, ALL_STEPS, cells, tmp_path)
