"""bloodcell.metrics: Report against scikit-learn, evaluate() on real cells, summaries, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

import bloodcell as bc
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError, InvalidDtypeError
from bloodcell.metrics import Report, Summary, summarize


def _predictions(seed: int = 0, n_per_class: int = 25, signal: float = 1.5, num_classes: int = 8):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), n_per_class)
    rng.shuffle(y)
    logits = rng.normal(size=(len(y), num_classes))
    logits[np.arange(len(y)), y] += signal
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, prob.astype(np.float32)


def test_report_matches_sklearn():
    y, prob = _predictions()
    r = Report.from_predictions(y, prob)
    pred = prob.argmax(1)
    assert r.n == len(y)
    assert r.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    assert r.balanced_accuracy == pytest.approx(r.recall_macro)  # both: mean recall over present classes
    assert r.f1_macro == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert r.precision_weighted == pytest.approx(skm.precision_score(y, pred, average="weighted"))
    assert r.recall_macro == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert r.roc_auc_ovr == pytest.approx(
        skm.roc_auc_score(y, prob, multi_class="ovr", average="macro"), abs=1e-6
    )
    assert r.log_loss == pytest.approx(skm.log_loss(y, prob), rel=1e-4)
    np.testing.assert_array_equal(r.confusion_matrix, skm.confusion_matrix(y, pred))
    np.testing.assert_allclose(r.confusion_matrix_normalized.sum(1), 1.0)
    f1s = skm.f1_score(y, pred, average=None)
    for k, name in enumerate(bc.classes.CLASS_NAMES):
        assert r.per_class[name]["f1"] == pytest.approx(f1s[k])
        assert r.per_class[name]["support"] == 25
    np.testing.assert_array_equal(r.y_pred, pred)


def test_report_one_hot_labels_equal_indices():
    y, prob = _predictions(1)
    a = Report.from_predictions(y, prob)
    b = Report.from_predictions(np.eye(8)[y], prob)
    assert a.to_dict() == b.to_dict()


def test_absent_class_gives_nan_auc_for_that_class_only():
    y, prob = _predictions(2)
    keep = y != 3
    r = Report.from_predictions(y[keep], prob[keep])
    assert math.isnan(r.per_class["ig"]["roc_auc"])
    assert r.per_class["ig"]["support"] == 0
    others = [r.per_class[c]["roc_auc"] for c in r.class_names if c != "ig"]
    assert r.roc_auc_ovr == pytest.approx(np.mean(others))
    # JSON has no NaN: it becomes null and comes back as NaN
    again = Report.from_json(r.to_json())
    assert math.isnan(again.per_class["ig"]["roc_auc"])


def test_logits_are_rejected_with_a_hint():
    y, prob = _predictions(3)
    with pytest.raises(InvalidDataError, match="softmax"):
        Report.from_predictions(y, np.log(prob) * 3)


@pytest.mark.parametrize(
    ("labels", "prob", "error"),
    [
        (np.array([0, 1]), np.full((3, 8), 1 / 8), InvalidDataError),  # length mismatch
        (np.array([0, 9]), np.full((2, 8), 1 / 8), InvalidDataError),  # label out of range
        (np.array([0, 1]), np.full((2, 5), 1 / 5), InvalidDataError),  # wrong number of classes
        (np.array([0.5, 1.0]), np.full((2, 8), 1 / 8), InvalidDtypeError),  # fractional labels
        (np.array([], np.int64), np.zeros((0, 8)), EmptyDatasetError),
        (np.array([0, 1]), np.full((2, 8), np.nan), InvalidDataError),
    ],
)
def test_bad_predictions_raise_one_clear_error(labels, prob, error):
    with pytest.raises(error):
        Report.from_predictions(labels, prob)


def test_json_round_trip_with_predictions(tmp_path):
    y, prob = _predictions(4)
    r = Report.from_predictions(y, prob)
    path = tmp_path / "report.json"
    r.to_json(path, include_predictions=True)
    data = json.loads(path.read_text())
    assert data["accuracy"] == pytest.approx(r.accuracy)
    assert len(data["y_prob"]) == len(y)
    again = Report.from_json(path)
    assert again.to_dict() == r.to_dict()
    np.testing.assert_array_equal(again.y_true, y)
    np.testing.assert_allclose(again.y_prob, r.y_prob, atol=1e-6)
    with pytest.raises(InvalidDataError):
        Report.from_dict({"accuracy": 1.0})


def test_str_is_readable():
    y, prob = _predictions(5)
    text = str(Report.from_predictions(y, prob))
    assert "accuracy" in text and "balanced accuracy" in text and "ROC-AUC" in text
    for name in bc.classes.CLASS_NAMES:
        assert name in text
    assert "confusion matrix" in text


def test_metric_lookup():
    y, prob = _predictions(6)
    r = Report.from_predictions(y, prob)
    assert r.metric("f1_macro") == r.f1_macro
    assert r.metric("recall:platelet") == r.per_class["platelet"]["recall"]
    with pytest.raises(ConfigurationError):
        r.metric("kappa")
    with pytest.raises(ConfigurationError):
        r.metric("f1:macrophage")


def test_summarize_mean_and_sample_std():
    reports = [Report.from_predictions(*_predictions(s, signal=1.0 + s)) for s in range(3)]
    table = summarize({"A": reports, "B": reports[:1]})
    acc = np.array([r.accuracy for r in reports])
    mean, std = table["A"]["accuracy"]
    assert mean == pytest.approx(acc.mean())
    assert std == pytest.approx(acc.std(ddof=1))
    assert table["B"]["accuracy"] == (pytest.approx(reports[0].accuracy), 0.0)
    md = table.to_markdown()
    assert md.splitlines()[0] == "| Method | n | Accuracy (%) | Precision (%) | Recall (%) | F1 (%) |"
    assert f"{acc.mean() * 100:.2f} ± {acc.std(ddof=1) * 100:.2f}" in md
    csv_text = table.to_csv()
    header, row_a, row_b = csv_text.strip().splitlines()
    assert header.startswith("name,n,accuracy_mean,accuracy_std")
    assert float(row_a.split(",")[2]) == pytest.approx(acc.mean())
    assert row_b.split(",")[1] == "1"
    assert isinstance(table, Summary)
    assert table.to_dict()["rows"][0]["accuracy"]["mean"] == pytest.approx(acc.mean())


def test_summarize_list_and_errors(tmp_path):
    r = Report.from_predictions(*_predictions(7))
    table = summarize([r, r], metrics=["log_loss", "f1:basophil"])
    assert table.rows[0]["name"] == "runs"
    assert "Log-loss" in table.to_markdown() and "F1 (basophil) (%)" in table.to_markdown()
    assert f"{r.log_loss:.2f} ± 0.00" in table.to_markdown()  # log-loss is not a percentage
    table.to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().startswith("name,n,log_loss_mean")
    with pytest.raises(ConfigurationError):
        summarize({"A": []})
    with pytest.raises(InvalidDtypeError):
        summarize({"A": [0.9]})


def _assert_same(a: Report, b: Report) -> None:
    # Predictions in batches of different sizes differ in the last float bits.
    np.testing.assert_allclose(a.y_prob, b.y_prob, atol=1e-5)
    np.testing.assert_array_equal(a.y_true, b.y_true)
    np.testing.assert_array_equal(a.confusion_matrix, b.confusion_matrix)
    assert a.accuracy == b.accuracy and a.f1_macro == b.f1_macro
    assert a.log_loss == pytest.approx(b.log_loss, rel=1e-5)


def test_evaluate_real_cells_with_keras_model(small_sample):
    import keras

    from _training_utils import tiny_classifier

    model = tiny_classifier()
    report = bc.evaluate(model, small_sample, batch_size=5)
    expected = model.predict(small_sample.images.astype("float32"), verbose=0)
    direct = Report.from_predictions(small_sample.labels, expected)
    _assert_same(report, direct)
    assert report.n == len(small_sample) == report.confusion_matrix.sum()
    # the same through a tf.data pipeline with one-hot labels
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=4, one_hot=True)
    _assert_same(bc.metrics.evaluate(model, ds), direct)
    with pytest.raises(InvalidDtypeError):
        bc.evaluate(model, small_sample.images)
    assert isinstance(model, keras.Model)


def test_confusion_matrix_plot(tmp_path, small_sample):
    from PIL import Image

    y, prob = _predictions(8)
    r = Report.from_predictions(y, prob)
    path = bc.plots.confusion_matrix(r, tmp_path / "cm.png")
    assert path == tmp_path / "cm.png"
    img = np.asarray(Image.open(path).convert("L"), np.float32)
    assert img.shape[0] > 400 and img.shape[1] > 400 and img.std() > 20
    # a different matrix draws a different picture
    other = bc.plots.confusion_matrix(
        np.eye(8, dtype=int) * 5, tmp_path / "eye.png", class_names=r.class_names
    )
    assert np.asarray(Image.open(other).convert("L")).tobytes() != Image.open(path).convert("L").tobytes()
    with pytest.raises(InvalidDataError):
        bc.plots.confusion_matrix(np.ones((3, 4)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_per_class_f1_plot(tmp_path):
    from PIL import Image

    a = Report.from_predictions(*_predictions(9))
    b = Report.from_predictions(*_predictions(10, signal=3.0))
    path = bc.plots.per_class_f1({"weak": a, "strong": b}, tmp_path / "f1.png")
    assert Image.open(path).format == "PNG"
    with pytest.raises(ConfigurationError):
        bc.plots.per_class_f1(a, tmp_path / "x.png", metric="kappa")


# ---------------------------------------------------------------------- classes absent from the labels
def test_perfect_predictions_on_two_of_eight_classes_score_one():
    names = bc.classes.CLASS_NAMES
    y = np.array([0, 0, 0, 5, 5])
    r = Report.from_predictions(y, np.eye(8)[y])
    assert (r.precision_macro, r.recall_macro, r.f1_macro) == (1.0, 1.0, 1.0)
    assert (r.precision_weighted, r.recall_weighted, r.f1_weighted) == (1.0, 1.0, 1.0)
    assert r.balanced_accuracy == 1.0 and r.accuracy == 1.0
    assert r.absent_classes == ("eosinophil", "erythroblast", "ig", "lymphocyte", "neutrophil", "platelet")
    # every class stays in the per-class table and the confusion matrix
    assert list(r.per_class) == list(names)
    assert r.per_class[names[1]] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "roc_auc": pytest.approx(math.nan, nan_ok=True),
        "support": 0,
    }
    assert r.confusion_matrix.shape == (8, 8) and r.confusion_matrix.sum() == 5


def test_mixed_case_matches_sklearn_over_present_classes():
    y, prob = _predictions(11, signal=0.8)
    keep = ~np.isin(y, [2, 6, 7])
    y, prob = y[keep], prob[keep]
    pred = prob.argmax(1)
    present = np.unique(y)
    # the case must hold predictions of absent classes, or it would not test their handling
    assert np.isin(pred, [2, 6, 7]).sum() > 5
    r = Report.from_predictions(y, prob)
    for average in ("macro", "weighted"):
        p, rc, f, _ = skm.precision_recall_fscore_support(
            y, pred, labels=present, average=average, zero_division=0.0
        )
        assert getattr(r, f"precision_{average}") == pytest.approx(p)
        assert getattr(r, f"recall_{average}") == pytest.approx(rc)
        assert getattr(r, f"f1_{average}") == pytest.approx(f)
    # not the average over all eight classes, nor sklearn's default (the classes of y and pred)
    f_all = skm.f1_score(y, pred, labels=np.arange(8), average="macro", zero_division=0.0)
    assert r.f1_macro == pytest.approx(f_all * 8 / len(present))
    assert r.f1_macro != pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0.0))
    # a prediction of an absent class is still an error
    assert r.accuracy == pytest.approx(np.mean(pred == y)) and r.accuracy < 1
    assert r.balanced_accuracy == pytest.approx(r.recall_macro)  # both: mean recall over present classes
    assert r.absent_classes == ("erythroblast", "neutrophil", "platelet")
    for name in r.absent_classes:
        assert r.per_class[name]["support"] == 0 and r.per_class[name]["precision"] == 0.0
    assert r.confusion_matrix[:, [2, 6, 7]].sum() == np.isin(pred, [2, 6, 7]).sum()


def test_absent_classes_survive_a_json_round_trip(tmp_path):
    y, prob = _predictions(12)
    keep = y >= 3
    r = Report.from_predictions(y[keep], prob[keep])
    path = tmp_path / "report.json"
    r.to_json(path)
    assert json.loads(path.read_text())["absent_classes"] == ["basophil", "eosinophil", "erythroblast"]
    again = Report.from_json(path)
    assert again.absent_classes == ("basophil", "eosinophil", "erythroblast")
    assert again.to_dict() == r.to_dict()
    full = Report.from_predictions(*_predictions(12))
    assert Report.from_json(full.to_json()).absent_classes == ()


def test_report_saved_without_absent_classes_still_loads():
    y, prob = _predictions(13)
    keep = ~np.isin(y, [3, 7])
    data = Report.from_predictions(y[keep], prob[keep]).to_dict()
    del data["absent_classes"]  # the format saved before reports named them
    old = Report.from_dict(data)
    assert old.absent_classes == ("ig", "platelet")
    assert old.f1_macro == data["f1_macro"]


def test_saved_absent_classes_must_be_known_classes():
    y, prob = _predictions(14)
    data = Report.from_predictions(y, prob).to_dict()
    data["absent_classes"] = ["macrophage"]
    with pytest.raises(InvalidDataError, match="macrophage"):
        Report.from_dict(data)


def test_str_names_absent_classes_only_when_there_are_some():
    line = "absent from the labels (not in the macro averages)"
    y, prob = _predictions(15)
    assert line not in str(Report.from_predictions(y, prob))
    keep = ~np.isin(y, [2, 3, 7])
    text = str(Report.from_predictions(y[keep], prob[keep]))
    assert f"  {line}: erythroblast, ig, platelet" in text.splitlines()
