"""Error analysis: top losses, most-confused pairs, Grad-CAM, the gallery figures and `evaluate --gallery`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import bloodcell as bc
from _training_utils import run_python, tiny_classifier
from bloodcell.analysis import (
    backbone_view,
    feature_map_layer,
    grad_cam,
    most_confused,
    top_losses,
    write_confused_pairs,
)
from bloodcell.errors import ConfigurationError, InvalidDataError


@pytest.fixture(scope="module")
def tiny():
    """A tiny CNN, trained for a few epochs on real cells so that its predictions differ."""
    model = tiny_classifier(seed=1)
    data = bc.datasets.load_sample(per_class=8)
    bc.Trainer(model, batch_size=16, verbose=0, seed=1).fit(data, epochs=3)
    return model


def _assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        image.verify()


def test_top_losses_are_the_highest_cross_entropies_in_order(tiny, small_sample) -> None:
    top = top_losses(tiny, small_sample, k=5)
    prob = tiny.predict(small_sample.images, verbose=0).astype(np.float64)
    loss = -np.log(np.clip(prob[np.arange(len(prob)), small_sample.labels], 1e-7, 1.0))
    assert len(top) == 5 and np.all(np.diff(top.losses) <= 0)
    np.testing.assert_allclose(top.losses, np.sort(loss)[::-1][:5], rtol=1e-5)
    np.testing.assert_allclose(loss[top.indices], top.losses, rtol=1e-5)
    np.testing.assert_array_equal(top.y_true, small_sample.labels[top.indices])
    np.testing.assert_array_equal(top.y_pred, prob[top.indices].argmax(axis=1))
    np.testing.assert_allclose(top.prob_pred, prob[top.indices].max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(top.prob_true, np.exp(-top.losses), rtol=1e-5)
    np.testing.assert_array_equal(top.images, small_sample.images[top.indices])
    assert top.rows()[0]["id"] == small_sample.ids[top.indices[0]]
    # a Report's probabilities give the same answer without predicting again
    report = bc.evaluate(tiny, small_sample)
    np.testing.assert_array_equal(top_losses(None, small_sample, k=5, report=report).indices, top.indices)
    assert len(top_losses(tiny, small_sample, k=1000)) == len(small_sample)


def test_most_confused_counts_are_the_confusion_matrix(tiny, small_sample, tmp_path) -> None:
    report = bc.evaluate(tiny, small_sample)
    pairs = most_confused(report)
    cm = report.confusion_matrix
    names = report.class_names
    assert sum(p.count for p in pairs) == cm.sum() - np.trace(cm)
    for p in pairs:
        i, j = names.index(p.true), names.index(p.predicted)
        assert i != j and p.count == cm[i, j] and p.share == pytest.approx(cm[i, j] / cm[i].sum())
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    assert most_confused(tiny, small_sample, k=2) == pairs[:2]
    assert all(p.count >= 2 for p in most_confused(report, min_count=2))
    lines = write_confused_pairs(pairs, tmp_path / "pairs.csv").read_text().splitlines()
    assert lines[0] == "true,predicted,count,share" and len(lines) == len(pairs) + 1
    with pytest.raises(ConfigurationError, match="needs the labelled data"):
        most_confused(tiny)


def test_grad_cam_is_the_logit_weighted_feature_map(tiny, small_sample) -> None:
    """On the tiny CNN Grad-CAM has a closed form: ReLU(A · w_c) of the last conv map A, w_c the logit weights."""
    import keras
    import tensorflow as tf

    images = small_sample.images[::4]
    assert feature_map_layer(tiny).name == "gap"
    maps = keras.Model(tiny.inputs[0], tiny.get_layer("conv2").output)(images.astype("float32")).numpy()
    kernel = tiny.get_layer("head").kernel.numpy()
    heat = []
    for c in range(8):
        cam = np.maximum(maps @ kernel[:, c], 0.0)
        cam = cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-30)
        want = tf.image.resize(cam[..., None], (96, 96), method="bilinear").numpy()[..., 0]
        heat.append(grad_cam(tiny, images, class_index=c))
        assert heat[c].shape == (len(images), 96, 96) and heat[c].dtype == np.float32
        assert heat[c].min() >= 0.0 and heat[c].max() <= 1.0
        np.testing.assert_allclose(heat[c], want, atol=1e-4)
    # classes look at different places; None explains each image's predicted class
    lit = [c for c in range(8) if heat[c].max() > 0.5]
    assert len(lit) >= 2 and np.abs(heat[lit[0]] - heat[lit[1]]).max() > 0.1
    pred = tiny.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(grad_cam(tiny, images), grad_cam(tiny, images, pred), atol=1e-6)
    assert grad_cam(tiny, images[0]).shape == (1, 96, 96)
    # a calibration temperature after the softmax changes no heatmap
    calibrated = bc.calibrate(tiny, small_sample)
    np.testing.assert_allclose(grad_cam(calibrated, images), grad_cam(tiny, images), atol=1e-5)


def test_grad_cam_finds_the_backbone_map_behind_a_cell_crop(small_sample, tmp_path) -> None:
    model = bc.build_classifier(
        "mobilenetv3small", head="seed", weights=None, cell_crop="image", freeze="all"
    )
    assert feature_map_layer(model).name == "pooled"
    images = small_sample.images[:3]
    heat = grad_cam(model, images, class_index=[0, 1, 2])
    assert heat.shape == (3, 96, 96) and 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.5
    assert not np.array_equal(heat, grad_cam(model, images, class_index=7))
    # the same heatmaps from the model saved and loaded back (its graph is rebuilt)
    model.save(tmp_path / "crop.keras")
    np.testing.assert_array_equal(
        grad_cam(bc.models.load_model(tmp_path / "crop.keras"), images, [0, 1, 2]), heat
    )
    view = backbone_view(model, images)
    assert view.shape == images.shape and view.dtype == np.uint8 and not np.array_equal(view, images)
    pooled_inside = bc.models.Classifier(
        bc.backbones.create("mobilenetv3small", weights=None, pooling="avg"), "linear", cell_crop="image"
    )
    with pytest.raises(ConfigurationError, match="needs a feature map"):
        grad_cam(pooled_inside, images)
    with pytest.raises(InvalidDataError, match=r"\(N, 96, 96, 3\)"):
        grad_cam(model, images[:, :32, :32])
    with pytest.raises(ConfigurationError, match="class_index"):
        grad_cam(model, images, class_index=8)


def test_gallery_figures_are_pngs(tiny, small_sample, tmp_path) -> None:
    top = top_losses(tiny, small_sample, k=6)
    _assert_png(bc.plots.top_losses_gallery(top, tmp_path / "top.png", columns=3))
    path = bc.plots.grad_cam_overlays(tiny, top.images[:3], tmp_path / "cam.png", labels=top.y_true[:3])
    _assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.png", "top.png"]  # no temporary left


def test_evaluate_gallery_in_a_fresh_process(tiny, tmp_path) -> None:
    model = bc.models.save_model(tiny, tmp_path / "tiny.keras")
    gallery = tmp_path / "gallery"
    code = (
        "from bloodcell.cli import main; raise SystemExit(main(['evaluate', "
        f"{str(model)!r}, 'sample', '--limit', '2', '--gallery', {str(gallery)!r}, '--gallery-size', '6']))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "error analysis:" in result.stdout
    assert sorted(p.name for p in gallery.iterdir()) == [
        "confused_pairs.csv",
        "gradcam.png",
        "index.md",
        "top_losses.png",
    ]
    _assert_png(gallery / "top_losses.png")
    _assert_png(gallery / "gradcam.png")
    index = (gallery / "index.md").read_text()
    assert "16 images" in index and "(top_losses.png)" in index
    # the table matches the model reloaded here
    data = bc.datasets.load_sample(per_class=2)
    pairs = most_confused(bc.models.load_model(model), data)
    csv_rows = (gallery / "confused_pairs.csv").read_text().splitlines()[1:]
    assert csv_rows == [f"{p.true},{p.predicted},{p.count},{p.share:.4f}" for p in pairs]
