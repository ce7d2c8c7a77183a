"""bloodcell.Trainer on real sample cells with a tiny Keras classifier."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import bloodcell as bc
from _training_utils import tiny_classifier
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError


@pytest.fixture(scope="module")
def cells():
    """64 real cells (8 per class) for training and 16 others for validation."""
    data = bc.datasets.load_sample(per_class=10)
    val_idx = np.concatenate([np.flatnonzero(data.labels == k)[8:] for k in range(8)])
    return data.drop(val_idx), data.subset(val_idx)


def test_fit_learns_and_logs(cells):
    train, val = cells
    trainer = bc.Trainer(
        tiny_classifier(), learning_rate=1e-2, batch_size=16, verbose=0, early_stopping_patience=None
    )
    history = trainer.fit(train, val, epochs=8)
    h = history.history
    assert set(h) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert len(h["loss"]) == 8 and history.epoch == list(range(8))
    assert h["loss"][-1] < h["loss"][0] - 0.05  # it learns on real cells
    assert max(h["accuracy"]) > 0.2  # above chance (0.125)
    assert trainer.history["loss"] == h["loss"]
    # the model that comes back carries the best epoch's weights (restore_best=True)
    report = trainer.evaluate(val)
    assert report.accuracy == pytest.approx(max(h["val_accuracy"]), abs=1e-6)


def test_accepts_a_compiled_model_and_recompiles(cells):
    train, val = cells
    model = tiny_classifier()
    model.compile(optimizer="sgd", loss="mse")
    trainer = bc.Trainer(model, optimizer="adamw", weight_decay=0.01, verbose=0)
    trainer.fit(train, val, epochs=1)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.weight_decay == pytest.approx(0.01)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def test_output_files_and_best_checkpoint(cells, tmp_path):
    train, val = cells
    model = tiny_classifier()
    trainer = bc.Trainer(model, learning_rate=1e-2, batch_size=16, output_dir=tmp_path, verbose=0)
    history = trainer.fit(train, val, epochs=4)
    phase = tmp_path / "fit"
    rows = (phase / "log.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 5
    saved = json.loads((phase / "history.json").read_text())
    val_acc = history.history["val_accuracy"]
    assert saved["best_epoch"] == int(np.argmax(val_acc)) and saved["best"] == pytest.approx(max(val_acc))
    best = keras.saving.load_model(phase / "best.keras", safe_mode=True)
    x = val.images[:6].astype("float32")
    np.testing.assert_allclose(best.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    state = json.loads((phase / "state.json").read_text())
    assert state["finished"] and state["epoch"] == 4
    assert list(phase.glob("variables-*.npz")) == [phase / state["variables"]]
    assert not list(phase.glob(".*tmp*"))  # no temporary files left behind


def test_finished_phase_is_restored_not_retrained(cells, tmp_path):
    train, val = cells
    first = bc.Trainer(tiny_classifier(), output_dir=tmp_path, verbose=0, batch_size=16)
    h1 = first.fit(train, val, epochs=2)

    class CountBatches(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            CountBatches.batches += 1

    fresh = tiny_classifier(seed=1)  # other initial weights: the saved ones must replace them
    second = bc.Trainer(fresh, output_dir=tmp_path, verbose=0, batch_size=16, callbacks=[CountBatches()])
    h2 = second.fit(train, val, epochs=2)
    assert CountBatches.batches == 0
    assert h2.history == h1.history
    for a, b in zip(first.model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # asking for more epochs continues the same phase
    h3 = second.fit(train, val, epochs=3)
    assert CountBatches.batches == 4 and h3.epoch == [0, 1, 2]
    assert h3.history["loss"][:2] == h1.history["loss"]


def test_other_run_in_same_output_dir_is_refused(cells, tmp_path):
    train, val = cells
    bc.Trainer(tiny_classifier(), output_dir=tmp_path, verbose=0, batch_size=16).fit(train, val, epochs=1)
    with pytest.raises(ConfigurationError, match="different run"):
        bc.Trainer(tiny_classifier(), output_dir=tmp_path, verbose=0, batch_size=8).fit(train, val, epochs=1)
    with pytest.raises(ConfigurationError, match="different"):
        bc.Trainer(
            tiny_classifier(num_classes=8, dropout=0.1),
            output_dir=tmp_path,
            verbose=0,
            batch_size=16,
            early_stopping_patience=None,
        ).fit(train, val, epochs=2)


class StatelessFlip:
    """An augmenter of the bloodcell protocol: stateless random ops driven by the per-batch seed."""

    def augment_batch(self, images, labels, seed):
        return tf.image.stateless_random_flip_left_right(images, seed), labels


def test_same_seed_same_metrics_other_seed_differs(cells):
    train, val = cells

    def run(seed):
        model = tiny_classifier(seed=0, dropout=0.3)
        trainer = bc.Trainer(model, augment=StatelessFlip(), seed=seed, batch_size=16, verbose=0)
        return trainer.fit(train, val, epochs=3).history

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a["loss"] != c["loss"]


def test_steps_per_execution_keeps_every_epoch_to_its_own_batches(cells):
    # 64 cells in batches of 16: 4 steps per epoch, which 3 steps per call would overrun.
    train, val = cells

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.after_epoch = []

        def on_epoch_end(self, epoch, logs=None):
            self.after_epoch.append(int(self.model.optimizer.iterations))

    def run(steps_per_execution):
        steps = Steps()
        trainer = bc.Trainer(
            tiny_classifier(),
            batch_size=16,
            steps_per_execution=steps_per_execution,
            callbacks=[steps],
            early_stopping_patience=None,
            verbose=0,
        )
        return trainer.fit(train, val, epochs=3).history, steps.after_epoch

    (plain, plain_steps), (grouped, grouped_steps) = run(1), run(3)
    assert plain_steps == grouped_steps == [4, 8, 12]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(grouped[key], plain[key], rtol=1e-5, err_msg=key)


def test_augmenter_protocol_gets_a_fresh_seed_per_batch(cells):
    train, val = cells
    seen: list[tuple[int, int]] = []

    class Recorder:
        def augment_batch(self, images, labels, seed):
            def record(s):
                seen.append(tuple(int(v) for v in s))
                return s

            s = tf.numpy_function(record, [seed], tf.int64)
            return images + 0.0 * tf.cast(tf.reduce_sum(s), tf.float32), labels

    trainer = bc.Trainer(tiny_classifier(), augment=Recorder(), batch_size=16, verbose=0)
    trainer.fit(train, val, epochs=2)
    check, *batches = seen  # the pipeline's one check of the augmenter's pixels, then the batches
    assert len(batches) == 2 * 4  # 64 images / 16 = 4 batches per epoch
    assert len(set(batches)) == len(batches)


def test_early_stopping_stops_and_a_rerun_does_not_continue(cells, tmp_path):
    train, val = cells
    kwargs = dict(
        learning_rate=1e-9, early_stopping_patience=1, batch_size=16, verbose=0, output_dir=tmp_path
    )
    h = bc.Trainer(tiny_classifier(batchnorm=False), **kwargs).fit(train, val, epochs=10)
    assert len(h.epoch) == 2  # no improvement at all with lr 1e-9: stops after patience 1
    again = bc.Trainer(tiny_classifier(batchnorm=False), **kwargs).fit(train, val, epochs=10)
    assert again.epoch == h.epoch


def test_reduce_lr_on_plateau_lowers_the_rate(cells):
    train, val = cells
    # no BatchNorm: with lr 1e-8 nothing changes, so validation accuracy never improves after epoch 1
    trainer = bc.Trainer(
        tiny_classifier(batchnorm=False),
        learning_rate=1e-8,
        reduce_lr_patience=0,
        reduce_lr_factor=0.5,
        min_learning_rate=1e-12,
        early_stopping_patience=None,
        batch_size=16,
        verbose=0,
    )
    lrs = trainer.fit(train, val, epochs=4).history["learning_rate"]  # logged before each epoch's reduction
    np.testing.assert_allclose(lrs, [1e-8, 1e-8, 0.5e-8, 0.25e-8], rtol=1e-6)


def test_cosine_schedule_with_warmup_and_ema(cells):
    train, val = cells
    trainer = bc.Trainer(
        tiny_classifier(),
        optimizer="adamw",
        lr_schedule="cosine",
        warmup_epochs=1,
        learning_rate=1e-2,
        min_learning_rate=1e-5,
        ema=True,
        ema_momentum=0.9,
        batch_size=16,
        verbose=0,
        early_stopping_patience=None,
    )
    lrs = trainer.fit(train, val, epochs=5).history["learning_rate"]
    assert lrs[0] == pytest.approx(1e-2, rel=1e-3)  # end of the warm-up epoch: the peak
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # then decays
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-2)
    assert trainer.model.optimizer.use_ema


def test_fine_tune_unfreezes_and_recompiles(cells):
    train, val = cells
    model = tiny_classifier()
    model.get_layer("conv1").trainable = False
    frozen = model.get_layer("conv1").get_weights()[0].copy()
    head = model.get_layer("head").get_weights()[0].copy()
    trainer = bc.Trainer(model, batch_size=16, verbose=0, early_stopping_patience=None, restore_best=False)
    trainer.fit(train, val, epochs=1)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], frozen)
    assert not np.array_equal(model.get_layer("head").get_weights()[0], head)

    h = trainer.fine_tune(train, val, unfreeze="all", learning_rate=1e-3, epochs=2)
    assert model.get_layer("conv1").trainable
    assert not np.array_equal(model.get_layer("conv1").get_weights()[0], frozen)
    assert h.epoch == [1, 2]  # numbering continues after phase one
    assert h.history["learning_rate"][0] == pytest.approx(1e-3)
    assert trainer.history["epoch"] == [0, 1, 2] and len(trainer.history["loss"]) == 3


def test_fine_tune_unfreezes_a_number_of_layers(cells):
    train, val = cells
    model = tiny_classifier()
    model.trainable = False
    trainer = bc.Trainer(model, batch_size=16, verbose=0, early_stopping_patience=None, restore_best=False)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    trainer.fine_tune(train, val, unfreeze={"layers": 2}, learning_rate=1e-2, epochs=1)
    flags = {layer.name: layer.trainable for layer in model.layers}
    assert flags == {
        "rescale": False,
        "conv1": False,
        "bn1": False,
        "relu1": False,
        "conv2": False,
        "gap": True,
        "head": True,
    }
    np.testing.assert_array_equal(model.get_layer("conv2").get_weights()[0], before["conv2"][0])
    assert not np.array_equal(model.get_layer("head").get_weights()[0], before["head"][0])
    with pytest.raises(ConfigurationError, match="unfreeze"):
        trainer.fine_tune(train, val, unfreeze="some", epochs=1)


def test_predict_and_evaluate(cells):
    train, val = cells
    trainer = bc.Trainer(tiny_classifier(), verbose=0)
    prob = trainer.predict(val)
    assert prob.shape == (len(val), 8)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(trainer.predict(val.images[0]), prob[:1], atol=1e-6)
    report = trainer.evaluate(val)
    assert report.n == len(val)
    np.testing.assert_allclose(report.y_prob, prob, atol=1e-5)


def test_batchnorm_recalibration_validates_the_average_with_its_own_statistics(cells):
    train, val = cells
    trainer = bc.Trainer(
        tiny_classifier(),
        learning_rate=1e-2,
        ema=True,
        ema_momentum=0.9,
        batchnorm_recalibration=3,
        batch_size=16,
        restore_best=False,
        early_stopping_patience=None,
        verbose=0,
    )
    history = trainer.fit(train, val, epochs=2).history
    bn = trainer.model.get_layer("bn1")
    after_fit = [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]
    # The final model holds the averaged weights with the statistics computed for them before the
    # last validation: recomputing them now changes nothing (the raw running statistics would).
    bc.training.recalibrate_batchnorm(trainer.model, train, batches=3, batch_size=16, seed=trainer.seed)
    np.testing.assert_allclose(bn.moving_mean.numpy(), after_fit[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), after_fit[1], rtol=1e-5, atol=1e-6)
    # And the logged validation accuracy is that of the model the Trainer hands back.
    assert history["val_accuracy"][-1] == pytest.approx(trainer.evaluate(val).accuracy)


def test_batchnorm_recalibration_skips_models_without_batchnorm(cells):
    train, _ = cells
    callback = bc.training.RecalibrateBatchNorm(
        tiny_classifier(batchnorm=False), train.images, batches=2, batch_size=16
    )
    callback.on_test_begin()
    assert callback.recalibrations == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"balance": "undersample-all"}, "balance"),
        ({"optimizer": "adagrad2"}, "optimizer"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"early_stopping_patience": -1}, "early_stopping_patience"),
        ({"seed": -1}, "seed"),
        ({"augment": "augmix"}, "augment"),
        ({"batchnorm_recalibration": 0}, "batchnorm_recalibration"),
    ],
)
def test_bad_settings_raise_configuration_error(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        bc.Trainer(tiny_classifier(), **kwargs)


def test_bad_data_raises_clear_errors(cells):
    train, val = cells
    trainer = bc.Trainer(tiny_classifier(), verbose=0)
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        trainer.fit(train.images, val, epochs=1)
    small = bc.datasets.BloodCellDataset(bc.datasets.resize_images(train.images[:8], 64), train.labels[:8])
    with pytest.raises(InvalidDataError, match="input_shape"):
        trainer.fit(small, None, epochs=1)
    four = bc.Trainer(tiny_classifier(num_classes=4), verbose=0)
    with pytest.raises(InvalidDataError, match="num_classes=8"):
        four.fit(train, val, epochs=1)
    with pytest.raises(ConfigurationError, match="epochs"):
        trainer.fit(train, val, epochs=0)
    with pytest.raises(InvalidDtypeError):
        bc.Trainer("efficientnetv2s")


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("ema", [pytest.param(False, marks=pytest.mark.slow), True])
def test_interrupted_fit_resumes_exactly_in_process(cells, tmp_path, ema):
    """Interrupted after 2 of 4 epochs, then rerun: same result as 4 epochs in one go.

    Covers what a resume must restore: weights, BatchNorm statistics, dropout seed states, the
    optimizer (and its weight averages with ema=True), ReduceLROnPlateau's reductions, the best
    weights and the data order.
    """
    train, val = cells
    settings = dict(
        learning_rate=3e-3,
        batch_size=16,
        verbose=0,
        ema=ema,
        ema_momentum=0.5,
        reduce_lr_patience=0,
        reduce_lr_factor=0.5,
        early_stopping_patience=None,
    )

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise _Interrupt

    whole = bc.Trainer(tiny_classifier(dropout=0.3), output_dir=tmp_path / "whole", **settings)
    h_whole = whole.fit(train, val, epochs=4)
    with pytest.raises(_Interrupt):
        bc.Trainer(
            tiny_classifier(dropout=0.3), output_dir=tmp_path / "cut", callbacks=[StopAt()], **settings
        ).fit(train, val, epochs=4)
    assert json.loads((tmp_path / "cut" / "fit" / "state.json").read_text())["epoch"] == 2
    resumed = bc.Trainer(tiny_classifier(seed=7, dropout=0.3), output_dir=tmp_path / "cut", **settings)
    h_resumed = resumed.fit(train, val, epochs=4)
    assert h_resumed.history == h_whole.history
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- balancing and consistency
class LabelRecorder:
    """An identity augmenter that records the labels of every training batch.

    The pipeline first runs an augmenter once on its own, to check the pixels it returns; that
    call is not a training batch and is not recorded.
    """

    def __init__(self):
        self.labels: list[np.ndarray] = []
        self.checked = False

    def augment_batch(self, images, labels, seed):
        def record(y):
            if self.checked:
                self.labels.append(np.asarray(y).argmax(1))
            self.checked = True
            return y

        recorded = tf.numpy_function(record, [labels], tf.float32, stateful=True)
        return images, tf.ensure_shape(recorded, labels.shape)


@pytest.fixture(scope="module")
def imbalanced():
    """Real cells, 12 basophils and 3 of each other class."""
    data = bc.datasets.load_sample(per_class=12)
    keep = np.concatenate(
        [np.flatnonzero(data.labels == 0)] + [np.flatnonzero(data.labels == k)[:3] for k in range(1, 8)]
    )
    return data.subset(keep)


def test_oversample_balances_every_epoch_without_copying(imbalanced):
    recorder = LabelRecorder()
    trainer = bc.Trainer(
        tiny_classifier(),
        augment=recorder,
        balance="oversample",
        batch_size=16,
        verbose=0,
        early_stopping_patience=None,
    )
    trainer.fit(imbalanced, None, epochs=2)
    per_epoch = np.concatenate(recorder.labels).reshape(2, -1)  # 96 rows = 8 classes × 12, 6 batches
    for epoch in per_epoch:
        assert np.bincount(epoch, minlength=8).tolist() == [12] * 8
    assert not np.array_equal(per_epoch[0], per_epoch[1])  # a new draw and order each epoch


def test_smote_and_class_weight(imbalanced):
    recorder = LabelRecorder()
    bc.Trainer(tiny_classifier(), augment=recorder, balance="smote", batch_size=16, verbose=0).fit(
        imbalanced, None, epochs=1
    )
    assert np.bincount(np.concatenate(recorder.labels), minlength=8).tolist() == [12] * 8

    def first_loss(balance):
        trainer = bc.Trainer(tiny_classifier(), balance=balance, batch_size=16, verbose=0)
        return trainer.fit(imbalanced, None, epochs=1).history["loss"][0]

    # class weights 12/3 = 4 × heavier for the small classes change the loss being minimised
    assert first_loss("class_weight") != pytest.approx(first_loss(None), rel=1e-3)


def test_augmix_consistency_training(cells, tmp_path):
    train, val = cells
    model = tiny_classifier()
    trainer = bc.Trainer(
        model,
        augment=bc.augment.AugMix(),
        consistency=12.0,
        batch_size=8,
        verbose=0,
        output_dir=tmp_path,
        early_stopping_patience=None,
    )
    h = trainer.fit(train, val, epochs=2).history
    assert "jsd" in h and all(np.isfinite(h["jsd"])) and max(h["jsd"]) > 0
    assert "val_accuracy" in h  # validation runs the plain classifier on plain batches
    best = keras.saving.load_model(tmp_path / "fit" / "best.keras", safe_mode=True)
    assert best.output_shape == (None, 8) and len(best.input_shape) == 4  # the classifier, not the wrapper
    assert trainer.predict(val).shape == (len(val), 8)
    with pytest.raises(ConfigurationError, match="augment"):
        bc.Trainer(tiny_classifier(), consistency=12.0)


def test_fit_warns_when_validation_lacks_classes_that_training_has(cells):
    train, val = cells
    two_classes = val.subset(np.flatnonzero(val.labels < 2))
    with pytest.warns(bc.errors.BloodcellWarning, match=r"no images of 6 class\(es\).*erythroblast"):
        bc.Trainer(tiny_classifier(), batch_size=16, verbose=0).fit(train, two_classes, epochs=1)
