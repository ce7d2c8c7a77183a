"""Calibration and model cards on real sample cells: temperature scaling, ECE/Brier, reliability
diagrams, the card saved with a model, printed by ``bloodcell info MODEL`` and kept by the exports."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

import bloodcell as bc
from _training_utils import run_python, tiny_classifier
from bloodcell.calibration import (
    TemperatureScaling,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    temperature_of,
)
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError
from bloodcell.metrics import Report

# -- scores on a hand-computed example -----------------------------------------------------------
# Four predictions, 15 bins of width 1/15:
#   conf 0.90 right (bin 13), conf 0.92 wrong (bin 13), conf 0.60 right (bin 8), conf 0.50 wrong (bin 7)
#   bin 13: accuracy 1/2, confidence 0.91 -> gap 0.41, weight 2/4
#   bin 8:  accuracy 1,   confidence 0.60 -> gap 0.40, weight 1/4
#   bin 7:  accuracy 0,   confidence 0.50 -> gap 0.50, weight 1/4
#   ECE = 0.5 * 0.41 + 0.25 * 0.40 + 0.25 * 0.50 = 0.43
# Brier: (0.1^2 + 0.1^2) + (0.92^2 + 0.92^2) + (0.4^2 + 0.4^2) + (0.5^2 + 0.5^2), over 4
#   = (0.02 + 1.6928 + 0.32 + 0.5) / 4 = 0.6332
HAND_TRUE = np.array([0, 1, 1, 1])
HAND_PROB = np.array([[0.90, 0.10], [0.92, 0.08], [0.40, 0.60], [0.50, 0.50]])


def test_ece_and_brier_match_a_hand_computed_example():
    assert expected_calibration_error(HAND_TRUE, HAND_PROB) == pytest.approx(0.43)
    assert brier_score(HAND_TRUE, HAND_PROB) == pytest.approx(0.6332)
    table = reliability_bins(HAND_TRUE, HAND_PROB)
    assert table.count.sum() == 4 and table.count[[7, 8, 13]].tolist() == [1, 1, 2]
    assert table.accuracy[13] == pytest.approx(0.5) and table.confidence[13] == pytest.approx(0.91)
    assert np.isnan(table.accuracy[0])  # an empty bin


def test_report_carries_ece_and_brier_through_json_and_text(tmp_path):
    report = Report.from_predictions(HAND_TRUE, HAND_PROB, class_names=("a", "b"))
    assert report.ece == pytest.approx(0.43) and report.brier == pytest.approx(0.6332)
    back = Report.from_json(report.to_json(tmp_path / "report.json"))
    assert back.ece == pytest.approx(0.43) and back.brier == pytest.approx(0.6332)
    assert "ECE  43.00%" in str(report) and "Brier score 0.6332" in str(report)
    old = report.to_dict()
    del old["ece"], old["brier"]  # a report saved before these existed
    assert math.isnan(Report.from_dict(old).ece)
    assert bc.metrics.summarize([report], metrics=["ece", "brier"]).rows[0]["brier"][0] == pytest.approx(
        0.6332
    )


def test_scores_refuse_mismatched_input():
    with pytest.raises(InvalidDataError, match="Received"):
        expected_calibration_error([0, 1, 2], HAND_PROB)
    with pytest.raises(InvalidDataError, match="0..1"):
        brier_score([0, 0, 2, 1], HAND_PROB)
    with pytest.raises(ConfigurationError):
        reliability_bins(HAND_TRUE, HAND_PROB, bins=0)


def test_temperature_layer_keeps_the_argmax_and_round_trips_its_config():
    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], np.float32)
    for t in (0.5, 1.0, 3.0):
        out = np.asarray(TemperatureScaling(t)(probs))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
        assert (out.argmax(axis=1) == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(TemperatureScaling(1.0)(probs), probs, rtol=1e-5)
    layer = TemperatureScaling.from_config(TemperatureScaling(2.5, name="t").get_config())
    assert layer.temperature == 2.5
    with pytest.raises(ConfigurationError, match="temperature"):
        TemperatureScaling(0.0)


def test_fit_temperature_softens_over_confident_predictions():
    over = np.array([[0.99, 0.01]] * 7 + [[0.01, 0.99]] * 3)  # claims 99 %, right 7 times in 10
    t = fit_temperature(np.zeros(10, np.int64), over)
    assert t > 1
    # the optimum: the softened confidence equals the accuracy
    softened = np.asarray(TemperatureScaling(t)(over.astype(np.float32)))
    assert softened[0, 0] == pytest.approx(0.7, abs=1e-3)


# -- calibrate() on a model trained on real cells -------------------------------------------------
@pytest.fixture(scope="module")
def splits(sample):
    train = sample.subset(np.concatenate([np.flatnonzero(sample.labels == k)[:12] for k in range(8)]))
    val = sample.subset(np.concatenate([np.flatnonzero(sample.labels == k)[40:52] for k in range(8)]))
    return train, val


@pytest.fixture(scope="module")
def trained(splits):
    """A small CNN over-fitted on 96 real cells: confident, and wrong often enough to need calibration."""
    import keras

    train, _ = splits
    model = tiny_classifier(seed=0, batchnorm=False)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(train.images, train.labels, batch_size=16, epochs=15, verbose=0)
    return model


@pytest.fixture(scope="module")
def calibrated(trained, splits):
    return bc.calibrate(trained, splits[1])


def test_calibrate_lowers_nll_on_its_data_and_keeps_every_label(trained, calibrated, splits):
    val = splits[1]
    before, after = bc.evaluate(trained, val), bc.evaluate(calibrated, val)
    assert len(set(before.y_pred)) >= 3, "the test model should tell some cells apart"
    assert after.log_loss < before.log_loss
    assert (after.y_pred == before.y_pred).all() and after.accuracy == before.accuracy
    assert temperature_of(calibrated) == pytest.approx(calibrated.card["calibration"]["temperature"])
    assert calibrated.card["calibration"]["nll_after"] == pytest.approx(after.log_loss, rel=1e-4)
    assert calibrated.class_names == val.class_names  # taken from the data: the model had none


def test_calibrate_leaves_the_original_untouched(trained, calibrated, splits):
    images = splits[1].images[:8]
    assert temperature_of(trained) is None and not isinstance(trained.layers[-1], TemperatureScaling)
    assert calibrated is not trained and calibrated.layers[-1].name == "temperature"
    raw = trained.predict(images, verbose=0)
    assert not np.allclose(calibrated.predict(images, verbose=0), raw)
    conv = calibrated.get_layer("conv1")
    conv.set_weights([w * 0 for w in conv.get_weights()])
    np.testing.assert_array_equal(trained.predict(images, verbose=0), raw)  # weights are not shared


def test_calibrating_twice_replaces_the_temperature(trained, splits):
    val = splits[1]
    once = bc.calibrate(trained, val)
    twice = bc.calibrate(once, val)
    assert sum(isinstance(layer, TemperatureScaling) for layer in twice.layers) == 1
    assert temperature_of(twice) == pytest.approx(temperature_of(once), rel=1e-3)
    np.testing.assert_allclose(
        twice.predict(val.images, verbose=0), once.predict(val.images, verbose=0), atol=1e-4
    )


def test_calibrate_refuses_bad_input(trained, splits):
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        bc.calibrate(trained, splits[1].images)
    other = splits[1].replace(class_names=[f"x{i}" for i in range(8)])
    with pytest.raises(InvalidDataError, match="not among the model's"):
        bc.calibrate(trained, other)
    small = bc.datasets.BloodCellDataset(bc.datasets.resize_images(splits[1].images, 48), splits[1].labels)
    with pytest.raises(InvalidDataError, match="48"):
        bc.calibrate(trained, small)


def test_calibrated_model_loads_in_a_fresh_process_with_the_same_probabilities(calibrated, splits, tmp_path):
    images = splits[1].images[:16]
    path = bc.models.save_model(calibrated, tmp_path / "calibrated.keras")
    np.save(tmp_path / "images.npy", images)
    code = (
        "import sys, json, numpy as np, bloodcell as bc\n"
        "model = bc.models.load_model(sys.argv[1])\n"
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))\n"
        "print(json.dumps(bc.calibration.temperature_of(model)))\n"
    )
    result = run_python(code, str(path), str(tmp_path / "images.npy"), str(tmp_path / "out.npy"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == temperature_of(calibrated)
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), calibrated.predict(images, verbose=0), atol=1e-6
    )


def test_reliability_diagram_is_written_from_a_report_or_probabilities(calibrated, splits, tmp_path):
    report = bc.evaluate(calibrated, splits[1])
    for path in (
        bc.plots.reliability_diagram(report, tmp_path / "from_report.png"),
        bc.plots.reliability_diagram(
            report.y_prob, tmp_path / "from_probs.png", y_true=report.y_true, bins=10
        ),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ConfigurationError, match="y_true"):
        bc.plots.reliability_diagram(report.y_prob, tmp_path / "x.png")
    saved = Report.from_json(report.to_json())  # without its predictions
    with pytest.raises(InvalidDataError, match="include_predictions"):
        bc.plots.reliability_diagram(saved, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# -- the model card -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def carded(splits):
    """A bloodcell Classifier with a card: recipe, data summary and validation metrics."""
    train, val = splits
    model = bc.build_classifier("mobilenetv3small", head="linear", input_shape=(96, 96, 3), weights=None)
    return bc.models.set_model_card(
        model,
        class_names=list(train.class_names),
        recipe={"name": "card test", "preset": None},
        data={"train": train, "path": "pbc96_sample"},
        metrics={"validation": Report.from_predictions(HAND_TRUE, HAND_PROB, class_names=("a", "b"))},
    )


def test_model_card_survives_save_load_and_copy(carded, tmp_path):
    card = bc.models.model_card(carded)
    assert card["input_shape"] == [96, 96, 3] and card["temperature"] is None
    assert card["preprocessing"]["backbone"] == "mobilenetv3small"
    assert card["data"]["train"]["class_counts"]["ig"] == 12 and card["data"]["train"]["sources"]
    assert card["metrics"]["validation"]["ece"] == pytest.approx(0.43)
    loaded = bc.models.load_model(bc.models.save_model(carded, tmp_path / "carded.keras"))
    assert bc.models.model_card(loaded) == card
    assert bc.models.model_card(bc.models.copy_model(carded)) == card
    assert bc.classes.model_class_names(loaded) == tuple(card["class_names"])


def test_set_model_card_checks_its_fields(carded):
    copy = bc.models.copy_model(carded)
    with pytest.raises(ConfigurationError, match="class_names"):
        bc.models.set_model_card(copy, class_names=["a", "b"])
    with pytest.raises(InvalidDtypeError, match="plain values"):
        bc.models.set_model_card(copy, notes=object())
    bc.models.set_model_card(copy, recipe=None, notes="for the lab")
    assert "recipe" not in copy.card and copy.card["notes"] == "for the lab"
    assert carded.card["recipe"]["name"] == "card test"  # the original keeps its own card


def test_info_prints_the_card_of_a_model_file(calibrated, tmp_path):
    path = bc.models.save_model(calibrated, tmp_path / "calibrated.keras")
    result = run_python("from bloodcell.cli import main; raise SystemExit(main())", "info", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "basophil, eosinophil, erythroblast, ig, lymphocyte" in out
    assert f"temperature    {temperature_of(calibrated):.4g}" in out and "nll_after" in out


def test_exports_keep_the_class_names_in_a_fresh_process(calibrated, tmp_path):
    named = bc.models.copy_model(calibrated)
    names = ["baso", "eo", "ery", "ig", "lym", "mono", "neut", "plt"]
    bc.models.set_model_card(named, class_names=names)
    served = bc.export.to_savedmodel(named, tmp_path / "served")
    lite = bc.export.to_tflite(named, tmp_path / "model.tflite")
    zipped = bc.export.to_submission(named, tmp_path / "submission.zip")
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(tmp_path / "unzipped")
    code = (
        "import sys, json, runpy\n"
        "from bloodcell.export import TFLiteModel, read_card\n"
        "names = {'savedmodel': read_card(sys.argv[1])['class_names'],\n"
        "         'tflite': list(TFLiteModel(sys.argv[2]).class_names),\n"
        "         'submission': list(runpy.run_path(sys.argv[3])['CLASS_NAMES'])}\n"
        "print(json.dumps(names))\n"
    )
    result = run_python(code, str(served), str(lite), str(tmp_path / "unzipped" / "model.py"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"savedmodel": names, "tflite": names, "submission": names}
    assert bc.export.read_card(served)["temperature"] == pytest.approx(temperature_of(calibrated))
