"""Jensen–Shannon consistency training: the views, the divergence, and real training steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import bloodcell as bc
from bloodcell.augment import AugMix, MultiView
from bloodcell.errors import ConfigurationError, InvalidDataError
from bloodcell.training.consistency import ConsistencyModel, jensen_shannon


def paper_jsd(p_clean, p_aug1, p_aug2):
    """The paper's code (torch), in NumPy: mean over the batch of (KL(pc‖M) + KL(p1‖M) + KL(p2‖M)) / 3."""
    mixture = np.log(np.clip((p_clean + p_aug1 + p_aug2) / 3.0, 1e-7, 1.0))

    def kl(p):  # F.kl_div(log M, p, reduction="batchmean")
        return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - mixture), 0.0)) / len(p)

    return (kl(p_clean) + kl(p_aug1) + kl(p_aug2)) / 3.0


def test_jensen_shannon_matches_the_papers_formula():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8), size=(5, 3)).astype(np.float32)
    p[0, 1] = np.eye(8)[2]  # a one-hot prediction: 0·log 0 terms
    ours = jensen_shannon(p).numpy()
    assert ours.shape == (5,)
    np.testing.assert_allclose(ours.mean(), paper_jsd(p[:, 0], p[:, 1], p[:, 2]), rtol=1e-5)
    np.testing.assert_allclose(jensen_shannon(p[:, ::-1]).numpy(), ours, rtol=1e-5)  # symmetric in the views
    assert (ours <= np.log(3) + 1e-6).all()
    same = np.repeat(p[:, :1], 3, axis=1)
    np.testing.assert_allclose(jensen_shannon(same).numpy(), 0.0, atol=1e-6)
    logits = np.log(np.clip(p, 1e-12, 1.0))
    np.testing.assert_allclose(jensen_shannon(logits, from_logits=True).numpy(), ours, rtol=1e-4)
    with pytest.raises(InvalidDataError, match="batch, views, classes"):
        jensen_shannon(p[:, 0])


def test_multiview_stacks_the_clean_batch_and_fresh_views(small_sample):
    views = MultiView(AugMix(), num_views=2)
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=8, augment=views, seed=0)
    x, y = next(iter(ds))
    assert tuple(x.shape) == (8, 3, 96, 96, 3) and y.shape == (8,)
    np.testing.assert_array_equal(x[:, 0].numpy(), small_sample.images[:8].astype(np.float32))
    assert np.abs(x[:, 1].numpy() - x[:, 2].numpy()).mean() > 1.0  # two different augmentations
    with pytest.raises(ConfigurationError, match="label-preserving"):
        MultiView(keras.layers.MixUp())


def tiny_classifier(num_classes=8):
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_consistency_model_trains_with_ce_plus_12_jsd(small_sample):
    keras.utils.set_random_seed(0)
    model = tiny_classifier()
    wrapper = ConsistencyModel(model)  # λ = 12, the paper's weight
    wrapper.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    views = MultiView(AugMix(), num_views=2)
    train = bc.pipeline.to_tf_dataset(small_sample, batch_size=8, augment=views, shuffle=True, seed=1)

    # The loss of a step is CE on the clean view plus 12 × the mean JSD of the three views.
    x, y = next(iter(train))
    p = model(tf.reshape(x, (-1, 96, 96, 3))).numpy().reshape(8, 3, 8)
    ce = -np.mean(np.log(p[np.arange(8), 0, y.numpy()]))
    expected = ce + 12.0 * paper_jsd(p[:, 0], p[:, 1], p[:, 2])
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = wrapper.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4)
    assert logs["jsd"] > 0
    assert any(
        np.abs(a - w.numpy()).max() > 0 for a, w in zip(before, model.trainable_weights, strict=True)
    )  # the shared model learned

    history = wrapper.fit(
        train, epochs=2, verbose=0, shuffle=False, validation_data=bc.pipeline.to_tf_dataset(small_sample, 8)
    )
    assert set(history.history) == {"loss", "jsd", "accuracy", "val_loss", "val_accuracy"}
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert wrapper.predict(small_sample.images[:4].astype(np.float32), verbose=0).shape == (4, 8)
    with pytest.raises(InvalidDataError, match="MultiView"):
        wrapper.train_on_batch(small_sample.images[:4].astype(np.float32), small_sample.labels[:4])


def test_consistency_model_rejects_bad_settings():
    with pytest.raises(ConfigurationError, match="keras.Model"):
        ConsistencyModel(lambda x: x)
    with pytest.raises(ConfigurationError, match="weight"):
        ConsistencyModel(tiny_classifier(), weight=-1)
