"""Prediction with rejection: the coverage threshold, the image checks on real and planted images,
the rejector saved as JSON, ``bloodcell predict --reject`` and the coverage-accuracy curve."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter

import bloodcell as bc
from _training_utils import run_python, tiny_classifier
from bloodcell.errors import ConfigurationError, DataFileNotFoundError, InvalidDataError
from bloodcell.rejection import Rejector, as_rejector, confidence_threshold, fit_rejector

CLI = "import sys; from bloodcell.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def split(sample):
    """Half the real sample to train (and fit the image checks on), the other half as validation."""
    return sample[::2], sample[1::2]


@pytest.fixture(scope="module")
def model(split):
    """A tiny real CNN trained for a few steps on real cells (its confidences spread out)."""
    import keras

    train, _ = split
    net = tiny_classifier(seed=0, batchnorm=False)
    net.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    net.fit(train.images.astype("float32"), train.labels, batch_size=32, epochs=5, verbose=0)
    return net


def _blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def _planted(cells: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Real cells, then a blank frame, a dark frame of a real cell, a blurred real cell and an
    exact copy of the first cell; the reason each should get."""
    blank = np.full((96, 96, 3), 228, np.uint8)
    dark = (cells[1].astype(np.float32) * 0.25).astype(np.uint8)
    images = np.concatenate([cells, blank[None], dark[None], _blur(cells[2])[None], cells[:1]])
    return images, [None] * len(cells) + ["low_information", "dark", "blurry", "duplicate"]


def test_threshold_meets_the_coverage_on_its_fit_data(model, split):
    _, val = split
    confidence = bc.tta.predict(model, val, tta=None).max(axis=1)
    assert confidence.std() > 0.05  # the trained model's confidences differ from cell to cell
    for coverage in (0.5, 0.8, 0.95):
        rejector = fit_rejector(model, val, coverage=coverage, image_checks=False)
        accepted = confidence >= rejector.threshold
        assert accepted.mean() >= coverage
        assert (confidence > rejector.threshold).mean() < coverage  # no higher threshold would do
        out = bc.predict(model, val, reject=rejector)
        assert out.accepted.mean() == pytest.approx(accepted.mean())
    assert confidence_threshold([0.3, 0.9, 0.6], coverage=1.0) == 0.3


def test_status_and_reason_per_image_on_a_mixed_batch(model, split):
    train, val = split
    rejector = fit_rejector(model, val, coverage=0.9, reference=train)
    images, expected = _planted(val.images[:40])
    out = bc.predict(model, images, reject=rejector)
    assert len(out) == len(images) == len(out.status) == len(out.reason)
    assert list(out.reason[40:]) == expected[40:]
    assert set(out.status[40:]) == {"not a cell"}
    real_status = np.array(out.status[:40])
    assert (real_status == "not a cell").sum() <= 1  # real cells pass the image checks
    for status, reason, conf in zip(real_status, out.reason[:40], out.confidence[:40]):
        if status == "uncertain":
            assert reason == "low_confidence" and conf < rejector.threshold
        elif status == "accepted":
            assert reason is None and conf >= rejector.threshold
    assert out.counts()["not a cell"] == 4 + (real_status == "not a cell").sum()
    record = out.records()[40]
    assert record["status"] == "not a cell" and record["reason"] == "low_information"
    assert record["label"] in bc.classes.CLASS_NAMES and sum(
        record["probabilities"].values()
    ) == pytest.approx(1)

    # the same images in two calls sharing `seen`: the copy is found across the calls
    seen: set[bytes] = set()
    bc.predict(model, images[:1], reject=rejector, seen=seen)
    again = bc.predict(model, images[:1], reject=rejector, seen=seen)
    assert again.reason == ("duplicate",)


def test_photographs_are_not_cells(model, split):
    skd = pytest.importorskip("skimage.data")
    train, val = split
    rejector = fit_rejector(model, val, reference=train)

    def photo(image: np.ndarray) -> np.ndarray:
        rgb = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        return np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize((96, 96), Image.Resampling.BICUBIC))

    photos = np.stack(
        [photo(getattr(skd, n)()) for n in ("astronaut", "chelsea", "coffee", "camera", "rocket")]
    )
    out = bc.predict(model, photos, reject=rejector)
    assert out.status == ("not a cell",) * len(photos), out.reason


def test_rejector_json_round_trip_in_a_fresh_process(model, split, tmp_path):
    train, val = split
    rejector = fit_rejector(model, val, coverage=0.95, reference=train)
    path = rejector.to_json(tmp_path / "rejector.json") and tmp_path / "rejector.json"
    images, _ = _planted(val.images[:12])
    np.save(tmp_path / "images.npy", images, allow_pickle=False)
    expected = rejector.check_images(images)
    code = (
        "import json, sys, numpy as np\n"
        "from bloodcell.rejection import Rejector\n"
        "r = Rejector.from_json(sys.argv[1])\n"
        "images = np.load(sys.argv[2], allow_pickle=False)\n"
        "print(json.dumps({'reasons': r.check_images(images), 'dict': r.to_dict()}))\n"
    )
    done = run_python(code, str(path), str(tmp_path / "images.npy"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reasons"] == expected
    assert result["dict"] == json.loads(rejector.to_json())
    assert result["dict"]["threshold"] == rejector.threshold and result["dict"]["coverage"] == 0.95


def test_bad_rejectors_are_refused(model, split, tmp_path):
    _, val = split
    with pytest.raises(ConfigurationError, match="coverage"):
        fit_rejector(model, val, coverage=0)
    with pytest.raises(ConfigurationError, match="threshold"):
        as_rejector(1.5)
    with pytest.raises(DataFileNotFoundError, match="neither a threshold nor a rejector file"):
        as_rejector(str(tmp_path / "missing.json"))
    report = tmp_path / "report.json"
    report.write_text('{"accuracy": 0.9}')
    with pytest.raises(InvalidDataError, match="Not a saved bloodcell rejector"):
        Rejector.from_json(report)
    with pytest.raises(ConfigurationError, match="8 classes"):
        fit_rejector(model, val[:20], image_checks=False).decide(np.full((1, 3), 1 / 3), [None])
    with pytest.warns(UserWarning, match="tta"):
        bc.predict(model, val[:2], reject=fit_rejector(model, val[:20], image_checks=False), tta="flips")


def test_cli_fits_a_rejector_and_predict_reject_reads_it_in_fresh_processes(model, tmp_path):
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    folder = bc.datasets.write_sample_folder(tmp_path / "cells", per_class=3)
    cells = sorted(folder.rglob("*.jpg"))
    planted = tmp_path / "cells" / "planted"
    planted.mkdir()
    Image.fromarray(np.full((96, 96, 3), 228, np.uint8)).save(planted / "blank.jpg")
    Image.fromarray(np.zeros((96, 96, 3), np.uint8) + 6).save(planted / "dark.jpg")
    cell = np.asarray(Image.open(cells[0]).convert("RGB"))
    Image.fromarray(_blur(cell, 2.5)).save(planted / "blurred.jpg")
    shutil.copy(cells[1], planted / "zz_copy.jpg")  # sorted after its original

    rejector_path = tmp_path / "rejector.json"
    fit = run_python(CLI, "reject", str(model_path), "sample", "--limit", "30", "--coverage", "0.9",
                     "--output", str(rejector_path))  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert "threshold:" in fit.stdout and "accepted:" in fit.stdout
    threshold = Rejector.from_json(rejector_path).threshold

    done = run_python(CLI, "predict", str(model_path), str(folder), "--reject", str(rejector_path),
                      "--format", "json", "--top-k", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(done.stdout)}
    assert len(rows) == 24 + 4
    assert rows["blank.jpg"]["status"] == "not a cell" and rows["blank.jpg"]["reason"] == "low_information"
    assert rows["dark.jpg"]["status"] == "not a cell"
    assert rows["blurred.jpg"]["reason"] == "blurry"
    assert rows["zz_copy.jpg"]["reason"] == "duplicate"
    real = [
        r for name, r in rows.items() if name not in ("blank.jpg", "dark.jpg", "blurred.jpg", "zz_copy.jpg")
    ]
    assert sum(r["status"] == "not a cell" for r in real) <= 1
    for r in real:
        if r["status"] != "not a cell":
            assert (r["status"] == "accepted") == (r["top"][0]["probability"] >= threshold)
    assert "not a cell" in done.stderr  # the counts

    # a bare threshold, as CSV: the status and reason columns come last
    done = run_python(CLI, "predict", str(model_path), str(folder / "planted"), "--reject", "0.5")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(table[0])[-2:] == ["status", "reason"] and len(table) == 4
    assert {r["status"] for r in table} <= {"accepted", "uncertain"}  # no image checks with a bare threshold


def test_report_has_the_coverage_accuracy_curve_saved_and_plotted(model, split, tmp_path):
    _, val = split
    report = bc.evaluate(model, val)
    curve = report.coverage_accuracy
    assert curve["coverage"][-1] == 1.0 and curve["accuracy"][-1] == pytest.approx(report.accuracy)
    confidence = report.y_prob.max(axis=1)
    k = curve["coverage"].index(0.5)
    kept = confidence >= curve["threshold"][k]
    assert curve["accuracy"][k] == pytest.approx(
        (report.y_pred[kept] == report.y_true[kept]).mean(), abs=1e-6
    )
    assert all(c >= t - 1e-9 for c, t in zip(curve["coverage"], bc.rejection.COVERAGES))
    loaded = bc.metrics.Report.from_json(report.to_json(tmp_path / "r.json") and tmp_path / "r.json")
    assert loaded.coverage_accuracy == curve
    assert bc.plots.coverage_accuracy({"tiny": loaded}, tmp_path / "c.png").stat().st_size > 0
