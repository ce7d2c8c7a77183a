"""Adapting a model to another lab: AdaBN, TENT, the lab's cell scale, few-shot fine-tuning, and
evaluation on a lab's subset of the classes. Real cells of the bundled sample throughout."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bloodcell as bc
from _training_utils import tiny_classifier
from bloodcell.adapt import adapt, adapt_batchnorm, few_shot, fit_cell_scale, sample_support, tent
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError

WHITE = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


@pytest.fixture(scope="module")
def data():
    return bc.datasets.load_sample(per_class=6)


@pytest.fixture(scope="module")
def lab(data):
    """Another lab, as this test can have one: the sample's white cells, darker and bluer, five classes."""
    keep = np.isin(np.asarray(data.class_names)[data.labels], WHITE)
    images = np.clip(data.images[keep].astype(np.float32) * [0.8, 0.85, 1.0], 0, 255).astype(np.uint8)
    labels = [WHITE.index(data.class_names[k]) for k in data.labels[keep]]
    return bc.datasets.BloodCellDataset(images, labels, WHITE)


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _batchnorm(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def test_adabn_sets_every_batchnorm_layers_statistics_to_the_labs_and_leaves_the_model(lab):
    model = tiny_classifier()
    model.get_layer("bn1").trainable = False  # a frozen layer is adapted too, and stays frozen
    before = _weights(model)
    adapted = adapt_batchnorm(model, lab, batches=1, batch_size=len(lab))
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)
    bn = adapted.get_layer("bn1")
    assert not bn.trainable
    features = keras.Model(adapted.inputs, adapted.get_layer("conv1").output).predict(lab.images, verbose=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    assert not np.allclose(bn.moving_mean.numpy(), model.get_layer("bn1").moving_mean.numpy())


def test_tent_moves_only_batchnorm_scales_and_shifts_and_makes_predictions_confident(lab):
    model = tiny_classifier(dropout=0.5)
    adapted = tent(model, lab, steps=15, learning_rate=1e-2, batch_size=16, classes=WHITE)
    names = [v.path for v in model.weights]
    changed = {n for n, a, b in zip(names, _weights(model), _weights(adapted)) if not np.array_equal(a, b)}
    assert changed and all("bn1" in n for n in changed), changed
    assert {n.rsplit("/", 1)[-1] for n in changed} <= {"gamma", "beta", "moving_mean", "moving_variance"}
    assert adapted.get_layer("dropout").rate == 0.5  # switched off while adapting only

    def entropy(m):
        p = bc.metrics.restrict_to_classes(m.predict(lab.images, verbose=0), m, WHITE)
        return float(-(p * np.log(p + 1e-12)).sum(axis=1).mean())

    assert entropy(adapted) < entropy(adapt_batchnorm(model, lab, batches=1, batch_size=len(lab)))


def test_tent_and_adabn_refuse_what_they_cannot_adapt(lab):
    plain = keras.Sequential(
        [keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8, "softmax")]
    )
    with pytest.raises(ConfigurationError, match="no BatchNormalization layer"):
        adapt_batchnorm(plain, lab)
    with pytest.raises(ConfigurationError, match="classes must name at least two"):
        tent(tiny_classifier(), lab, classes=["lymphocyte", "macrophage"])
    with pytest.raises(EmptyDatasetError):
        tent(tiny_classifier(), lab.images[:0])
    with pytest.raises(ConfigurationError, match="method must be one of"):
        adapt(tiny_classifier(), lab, method="shot")


def test_the_labs_cell_scale_is_fitted_into_a_copy(lab):
    model = bc.build_classifier("mobilenetv3small", head="linear", weights=None, cell_crop="dataset")
    magnified = np.round(bc.augment.scale.zoom(lab.images, 1.8, fill="background", jit_compile=False).numpy())
    adapted = adapt(model, magnified.astype(np.uint8), batches=1, batch_size=16)  # scale first, then AdaBN
    assert model.get_layer("cell_crop").reference_fraction is None
    assert adapted.get_layer("cell_crop").reference_fraction == pytest.approx(
        1.8 * bc.cells.PBC_CELL_FRACTION, rel=0.2
    )
    with pytest.raises(ConfigurationError, match="CellCrop\\(scale='dataset'\\)"):
        fit_cell_scale(tiny_classifier(), lab)


def test_sample_support_draws_k_per_class_and_leaves_the_rest(lab):
    support, rest = sample_support(lab, k=2, seed=1)
    assert np.bincount(support.labels).tolist() == [2] * 5 and len(support) + len(rest) == len(lab)
    assert not set(map(bytes, support.images.reshape(len(support), -1))) & set(
        map(bytes, rest.images.reshape(len(rest), -1))
    )
    again, _ = sample_support(lab, k=2, seed=1)
    np.testing.assert_array_equal(again.images, support.images)
    assert not np.array_equal(sample_support(lab, k=2, seed=2)[0].images, support.images)
    with pytest.raises(EmptyDatasetError, match="k=6 would leave none"):
        sample_support(lab, k=6)


def test_sample_support_keeps_each_cells_copies_out_of_the_rest(lab):
    """Every image twice (as LISC holds copies of each cell): a drawn cell's copy is never scored."""
    twice = lab.concat(lab)
    cells = np.tile(np.arange(len(lab)), 2)
    support, rest = sample_support(twice, k=2, seed=3, groups=cells)
    assert np.bincount(support.labels).tolist() == [2] * 5
    assert len(rest) == len(twice) - 2 * len(support)
    assert not set(map(bytes, support.images.reshape(len(support), -1))) & set(
        map(bytes, rest.images.reshape(len(rest), -1))
    )
    # By default identical images are one cell: the same draw as with explicit groups.
    default_support, default_rest = sample_support(twice, k=2, seed=3)
    np.testing.assert_array_equal(default_support.images, support.images)
    assert len(default_rest) == len(rest)
    # Without copies the draw is the one of images, so seeds keep their supports.
    np.testing.assert_array_equal(
        sample_support(lab, k=2, seed=3, groups=np.arange(len(lab)))[0].images,
        sample_support(lab, k=2, seed=3)[0].images,
    )
    with pytest.raises(EmptyDatasetError, match="cells"):
        sample_support(twice, k=6, groups=cells)
    with pytest.raises(InvalidDataError, match="one integer id per image"):
        sample_support(twice, k=1, groups=cells[:-1])
    with pytest.raises(InvalidDataError, match="one integer id per image"):
        sample_support(twice, k=1, groups=cells.astype(float))


def test_few_shot_learns_the_head_and_batchnorm_from_the_labs_five_classes(lab, data):
    model = bc.build_classifier("mobilenetv3small", head="linear", weights=None)
    support, _ = sample_support(lab, k=2)
    adapted = few_shot(
        model, support, source=data, train="batchnorm_head", epochs=2, learning_rate=1e-3, augment=None
    )
    batchnorm = {id(v) for layer in _batchnorm(model) for v in layer.weights}
    moved = {
        v.path: not np.array_equal(a, b) for v, a, b in zip(model.weights, _weights(model), _weights(adapted))
    }
    others = [v.path for v in model.weights if id(v) not in batchnorm and not v.path.startswith("head/")]
    assert others and not any(moved[path] for path in others)  # the convolutions keep their weights
    assert moved["head/predictions/kernel"]
    with pytest.raises(InvalidDataError, match="not among the model's"):
        few_shot(model, support.replace(class_names=("a", "b", "c", "d", "e")), epochs=1)
    with pytest.raises(ConfigurationError, match="train must be one of"):
        few_shot(model, support, train="backbone")


def test_evaluation_on_a_labs_five_classes_restricts_the_prediction_to_them(lab):
    model = tiny_classifier()
    prob = model.predict(lab.images, verbose=0)
    columns = [bc.classes.CLASS_NAMES.index(c) for c in WHITE]
    report = bc.evaluate(model, lab)
    assert report.class_names == WHITE and report.confusion_matrix.shape == (5, 5)
    np.testing.assert_array_equal(report.y_pred, prob[:, columns].argmax(axis=1))
    with pytest.raises(InvalidDataError, match="not among the model's"):
        bc.evaluate(model, lab.replace(class_names=("a", "b", "c", "d", "e")))


def test_a_folder_with_some_class_folders_is_scored_on_them(tmp_path):
    import shutil

    root = bc.datasets.write_sample_folder(tmp_path / "cells", per_class=2)
    for name in ("erythroblast", "ig", "platelet"):
        shutil.rmtree(root / name)
    data = bc.datasets.load_folder(root).drop_absent_classes()
    assert data.class_names == WHITE
    assert bc.evaluate(tiny_classifier(), data).confusion_matrix.shape == (5, 5)


def test_few_shot_by_default_trains_the_whole_network_and_keeps_the_original(lab, data):
    model = bc.build_classifier("mobilenetv3small", head="linear", weights=None)
    before = _weights(model)
    support, _ = sample_support(lab, k=1)
    adapted = few_shot(model, support, source=data, epochs=1, augment=None)
    conv = [i for i, v in enumerate(model.weights) if "conv" in v.path and v.path.endswith("kernel")]
    assert any(not np.array_equal(before[i], adapted.get_weights()[i]) for i in conv)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)
