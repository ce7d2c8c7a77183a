"""Lab-shift augmentations on real cells: each changes the images the way its physics says, per image.

Stain and colour, optics and capture, smear artefacts, zoom, and the RobustAugment pipeline that
draws a few of them per image. Resampling tests use the portable path (``jit_compile=False``) so
the suite needs no XLA compilation.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bloodcell as bc
from bloodcell.augment import (
    ROBUST_OPS,
    RandomBubbles,
    RandomColor,
    RandomDefocus,
    RandomDeposits,
    RandomGeometric,
    RandomIllumination,
    RandomJPEG,
    RandomMotionBlur,
    RandomNoise,
    RandomResample,
    RandomStain,
    RandomZoom,
    RobustAugment,
    hed_to_rgb,
    ops,
    rgb_to_hed,
)
from bloodcell.augment.base import split_seed
from bloodcell.augment.optics import disc_kernels, jpeg_round_trip, line_kernels
from bloodcell.augment.presets import _OPS, _compose
from bloodcell.augment.scale import border_colour, zoom, zoom_transforms
from bloodcell.errors import ConfigurationError, UnknownNameError

SEED = tf.constant([4, 2], tf.int64)


@pytest.fixture(scope="module")
def cells(small_sample):
    return np.asarray(small_sample.images)  # 16 real cells, 2 per class


def run(aug, images, seed=SEED):
    return aug.augment_batch(images, None, seed)[0].numpy()


def laplacian_variance(images):
    x = np.asarray(images, np.float64).mean(-1)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return lap.var(axis=(1, 2))


# ---------------------------------------------------------------------- stain and colour
def test_hed_round_trip_recovers_real_cells(cells):
    hed = rgb_to_hed(cells)
    np.testing.assert_allclose(hed_to_rgb(hed).numpy(), cells, atol=0.02)
    # Nuclei hold far more haematoxylin than the slide background.
    h = hed.numpy()[..., 0]
    assert np.percentile(h, 99) > 0.3 and abs(np.median(h[:, :4, :4])) < 0.1


def test_stain_jitter_at_zero_strength_is_the_identity(cells):
    out = run(RandomStain(severity=0), cells.astype(np.float32))
    assert np.abs(out - cells).max() < 0.01


def test_stain_jitter_scales_and_shifts_each_stain_per_image(cells):
    aug = RandomStain(severity=5, max_scale=0.4, max_shift=0.05)
    out = run(aug, cells.astype(np.float32))
    before, after = rgb_to_hed(cells).numpy(), rgb_to_hed(out).numpy()
    inside = (out > 1) & (out < 254)  # unclipped pixels
    slopes = []
    for i in range(len(cells)):
        keep = inside[i].all(-1)
        a, b = np.polyfit(before[i][keep][:, 0], after[i][keep][:, 0], 1)  # haematoxylin: α·d + β
        assert 0.6 - 1e-3 <= a <= 1.4 + 1e-3 and abs(b) <= 0.05 + 1e-3
        slopes.append(a)
    assert np.std(slopes) > 0.05  # each image its own α


def test_color_brightness_is_a_gain_per_image(cells):
    aug = RandomColor(
        severity=5, max_channel_gain=0, max_gamma=0, max_contrast=0, max_saturation=0, max_hue=0
    )
    out = run(aug, cells.astype(np.float32))
    x = cells.astype(np.float32)
    unclipped = (out < 254.5) & (x > 20)
    gains = np.array([np.median(out[i][unclipped[i]] / x[i][unclipped[i]]) for i in range(len(x))])
    assert (gains > 0.5 - 1e-3).all() and (gains < 1.5 + 1e-3).all() and gains.std() > 0.05  # default ±50 %
    for i in range(len(x)):
        np.testing.assert_allclose(out[i][unclipped[i]], gains[i] * x[i][unclipped[i]], rtol=1e-4, atol=1e-3)


def test_color_saturation_alone_keeps_the_grey_level(cells):
    aug = RandomColor(
        severity=5, max_channel_gain=0, max_brightness=0, max_gamma=0, max_contrast=0, max_hue=0
    )
    out = run(aug, cells.astype(np.float32))
    grey = lambda v: v @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    unclipped = ((out > 0.5) & (out < 254.5)).all(-1)
    np.testing.assert_allclose(grey(out)[unclipped], grey(cells.astype(np.float32))[unclipped], atol=1e-3)
    assert np.abs(out - cells).mean() > 1.0


def test_color_white_balance_is_a_gain_per_channel_and_image(cells):
    aug = RandomColor(severity=5, max_brightness=0, max_gamma=0, max_contrast=0, max_saturation=0, max_hue=0)
    out = run(aug, cells.astype(np.float32))
    x = cells.astype(np.float32)
    gains = np.empty((len(x), 3))
    for i in range(len(x)):
        for c in range(3):
            unclipped = (out[i, ..., c] < 254.5) & (x[i, ..., c] > 20)
            gains[i, c] = np.median(out[i, ..., c][unclipped] / x[i, ..., c][unclipped])
            np.testing.assert_allclose(
                out[i, ..., c][unclipped], gains[i, c] * x[i, ..., c][unclipped], rtol=1e-4, atol=1e-3
            )
    assert (gains > 0.6 - 1e-3).all() and (gains < 1.4 + 1e-3).all()  # default ±40 % at severity 5
    assert np.abs(gains[:, 0] - gains[:, 2]).max() > 0.1  # the channels move apart: a colour cast


# ---------------------------------------------------------------------- optics and capture
def test_blur_kernels_are_normalised_and_zero_is_the_identity():
    discs = disc_kernels(tf.constant([0.0, 1.0, 3.0]), 7).numpy()
    lines = line_kernels(tf.constant([0.0, 5.0, 0.0]), tf.constant([0.0, 0.0, 0.3]), 7).numpy()
    np.testing.assert_allclose(discs.sum((1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lines.sum((1, 2)), 1.0, rtol=1e-5)
    assert discs[0, 3, 3] == pytest.approx(1.0) and lines[0, 3, 3] == pytest.approx(1.0)
    assert lines[2, 3, 3] > 0.95  # length 0 at any angle: nearly the identity
    assert (discs[2] > 0).sum() > (discs[1] > 0).sum() > 1  # a wider disc
    assert np.count_nonzero(lines[1][3]) == 5 and np.count_nonzero(lines[1][:3]) == 0  # a horizontal line


@pytest.mark.parametrize(
    "aug", [RandomDefocus(severity=5), RandomMotionBlur(severity=5)], ids=["defocus", "motion"]
)
def test_blur_lowers_the_laplacian_variance(cells, aug):
    x = cells.astype(np.float32)
    ratio = laplacian_variance(run(aug, x)) / laplacian_variance(x)
    assert (ratio <= 1.0 + 1e-6).all() and np.median(ratio) < 0.6
    assert ratio.std() > 0.02  # a blur of its own per image


def test_noise_grows_with_the_light_as_shot_noise_does(cells):
    x = cells.astype(np.float32)
    residual = run(RandomNoise(severity=5, max_sigma=0.0, max_gain=2.0), x) - x
    dark, bright = (x > 40) & (x < 110), (x > 170) & (x < 230)
    assert residual[bright].std() > 1.3 * residual[dark].std()
    assert abs(residual[x < 200].mean()) < 0.5  # zero-mean noise (where 255 does not clip it)


def test_jpeg_matches_tensorflow_and_pillow_per_image(cells):
    quality = np.array([90, 60, 30, 10] * 4, np.int32)
    out = jpeg_round_trip(cells, quality).numpy()
    for i in (0, 3, 6, 11):
        ref = tf.image.adjust_jpeg_quality(cells[i], int(quality[i]), dct_method="INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(out[i], ref)
        buffer = io.BytesIO()
        Image.fromarray(cells[i]).save(buffer, format="JPEG", quality=int(quality[i]))
        pillow = np.asarray(Image.open(buffer)).astype(np.float32)
        assert np.abs(out[i] - pillow).mean() < 1.5
    error = np.abs(out - cells).mean(axis=(1, 2, 3))
    assert error[2::4].mean() > error[0::4].mean()  # lower quality, larger error


def test_random_jpeg_draws_the_quality_from_its_range():
    assert RandomJPEG(severity=5, min_quality=10).quality_range() == (10, 95)
    assert RandomJPEG(severity=0).quality_range() == (95, 95)


def test_resampling_removes_fine_detail(cells):
    x = cells.astype(np.float32)
    out = run(RandomResample(severity=5, min_scale=0.35), x)
    ratio = laplacian_variance(out) / laplacian_variance(x)
    assert np.median(ratio) < 0.7 and ratio.std() > 0.02


# ---------------------------------------------------------------------- smear artefacts
def test_deposits_darken_specks_and_clumps(cells):
    x = cells.astype(np.float32)
    out = run(RandomDeposits(severity=5), x)
    assert (out <= x + 1e-3).all()  # deposits only absorb
    share = ((x - out) > 10).any(-1).mean(axis=(1, 2))
    assert (share > 0).all() and (share < 0.25).all()  # every image some deposit, never a cover
    assert share.min() < 0.005 and share.max() > 0.05  # fine specks in some images, clumps in others
    assert ((x - out) > 60).any(axis=(1, 2, 3)).mean() > 0.5  # most of them dark
    assert len(np.unique(np.round(share, 5))) > 8  # a count and size per image


def test_bubbles_add_a_dark_rim_and_whiten_inside(cells):
    x = cells.astype(np.float32)
    out = run(RandomBubbles(severity=5), x)
    changed = np.abs(out - x).max(-1) > 3
    assert changed.mean() > 0.01
    assert ((x - out) > 20).any(axis=(1, 2, 3)).mean() > 0.8  # dark rims
    assert ((out - x) > 10).any(axis=(1, 2, 3)).mean() > 0.8  # brighter inside


def test_illumination_is_a_smooth_field(cells):
    aug = RandomIllumination(severity=5)
    x = tf.constant(cells, tf.float32)
    field = aug.field(x, tf.constant([1, 1], tf.int64)).numpy()[..., 0]
    assert (field.max((1, 2)) - field.min((1, 2)) > 0.05).all()  # it varies...
    assert (
        np.abs(np.diff(field, axis=1)).max() < 0.03 and np.abs(np.diff(field, axis=2)).max() < 0.03
    )  # smoothly
    out = aug.transform(x, tf.constant([1, 1], tf.int64)).numpy()
    np.testing.assert_allclose(out, cells * field[..., None], rtol=1e-5)


# ---------------------------------------------------------------------- scale
def test_zoom_in_keeps_the_centre_and_equals_a_centre_crop(cells):
    out = zoom(cells.astype(np.float32), 2.0, jit_compile=False).numpy()
    crop = tf.image.resize(cells[:, 24:72, 24:72].astype(np.float32), (96, 96), "bilinear").numpy()
    # Equal but on the outermost pixels, which read beyond the crop (TensorFlow repeats its edge).
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], crop[:, 1:-1, 1:-1], atol=1e-3)


def test_zoom_out_fills_the_margin_with_the_background(cells):
    out = zoom(cells, 0.5, fill="background", jit_compile=False).numpy()
    np.testing.assert_allclose(
        out[:, :20, :20],
        np.broadcast_to(border_colour(cells).numpy()[:, None, None], (16, 20, 20, 3)),
        atol=1e-3,
    )
    small = tf.image.resize(cells.astype(np.float32), (48, 48), "bilinear", antialias=False).numpy()
    assert np.abs(out[:, 24:72, 24:72] - small).mean() < 8  # the whole cell, half size, in the middle


def test_random_zoom_draws_a_factor_per_image_within_range():
    f = RandomZoom(severity=5, max_zoom=0.3).factors(2000, SEED).numpy()
    assert f.min() >= 1 / 1.3 - 1e-5 and f.max() <= 1.3 + 1e-5
    assert f.min() < 0.8 and f.max() > 1.25


# ---------------------------------------------------------------------- common behaviour
class _EveryOp:
    """Runs every lab-shift augmentation on the batch, side by side: (N, H, W · ops, 3)."""

    def __init__(self):
        self.ops = [
            _OPS[name](severity=5, **({"jit_compile": False} if name == "zoom" else {}))
            for name in ROBUST_OPS
        ]

    def augment_batch(self, images, labels, seed):
        outs = [op.augment_batch(images, None, split_seed(seed, i))[0] for i, op in enumerate(self.ops)]
        return tf.concat(outs, axis=2), labels


def test_every_op_draws_per_image_and_per_batch_in_a_pipeline(small_sample):
    idx = np.zeros(16, np.int64)  # the same basophil, 16 times
    ds = bc.pipeline.to_tf_dataset(small_sample, 8, augment=_EveryOp(), seed=0, indices=idx)
    first, second = (x.numpy().reshape(8, 96, len(ROBUST_OPS), 96, 3) for x, _ in ds)
    for k, name in enumerate(ROBUST_OPS):
        distinct = len({im.tobytes() for im in first[:, :, k]})
        # JPEG qualities and resampled sizes are integers, and a disc under one pixel wide is no
        # blur: repeats are possible there.
        assert distinct >= (6 if name in ("jpeg", "defocus", "resample") else 8), name
        assert not np.array_equal(first[:, :, k], second[:, :, k]), name  # new draws for the next batch


@pytest.mark.parametrize("name", ROBUST_OPS)
def test_each_op_keeps_the_dtype_and_its_config(cells, name):
    extra = {"jit_compile": False} if name == "zoom" else {}
    aug = _OPS[name](severity=2, p=0.9, **extra)
    a, f = run(aug, cells), run(aug, cells.astype(np.float32))
    assert a.dtype == np.uint8 and f.dtype == np.float32 and a.shape == cells.shape
    assert f.min() >= 0 and f.max() <= 255
    assert np.abs(np.rint(f) - a).max() <= 1
    clone = type(aug).from_config(aug.get_config())
    assert clone.get_config() == aug.get_config()
    np.testing.assert_array_equal(run(clone, cells), a)


def test_probability_leaves_other_images_untouched(cells):
    out = run(RandomNoise(severity=5, p=0.5), cells)
    untouched = np.array([np.array_equal(o, x) for o, x in zip(out, cells, strict=True)])
    assert 0 < untouched.sum() < len(cells)
    assert np.array_equal(run(RandomNoise(severity=5, p=0.0), cells), cells)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RandomStain(severity=6), "severity"),
        (lambda: RandomNoise(p=1.5), "p must"),
        (lambda: RandomDeposits(max_count=0), "max_count"),
        (lambda: RandomJPEG(min_quality=0), "min_quality"),
        (lambda: RandomZoom(fill="black"), "fill"),
        (lambda: RobustAugment(ops=["stain", "sparkles"]), "sparkles"),
        (lambda: RobustAugment(num_ops=3, ops=["stain", "noise"]), "num_ops"),
        (lambda: RobustAugment(ops="stain"), "list"),
        (lambda: RobustAugment(probability=1.5), "probability"),
        (lambda: RobustAugment(probability=-0.1), "probability"),
    ],
)
def test_bad_settings_raise_clear_errors(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_unknown_preset_names_the_presets():
    with pytest.raises(UnknownNameError, match="robust"):
        bc.augment.preset("sturdy")


# ---------------------------------------------------------------------- RobustAugment
def test_robust_gives_each_image_num_ops_augmentations():
    aug = RobustAugment(num_ops=3)
    chosen = aug.choices(4000, SEED).numpy()
    assert (chosen.sum(1) == 3).all()
    share = chosen.mean(0)
    assert np.allclose(share, 3 / len(ROBUST_OPS), atol=0.03)  # uniform over the ops


def test_robust_probability_leaves_the_other_images_clean(cells):
    some = RobustAugment(num_ops=2, probability=0.25).choices(4000, SEED).numpy()
    augmented = some.any(1)
    assert abs(augmented.mean() - 0.25) < 0.03
    assert (some[augmented].sum(1) == 2).all()
    # probability=1 keeps the draws of the default, so earlier seeds give the same images.
    np.testing.assert_array_equal(
        RobustAugment(probability=1.0).choices(64, SEED).numpy(), RobustAugment().choices(64, SEED).numpy()
    )
    # Without the geometric step, the images left out come back untouched.
    none = RobustAugment(probability=0.0, geometric=False, jit_compile=False)
    np.testing.assert_array_equal(run(none, cells), cells)
    assert RobustAugment.from_config(RobustAugment(probability=0.75).get_config()).probability == 0.75


def test_robust_always_applies_the_ops_named_and_draws_the_others(cells):
    aug = RobustAugment(num_ops=1, always=["color", "stain"], probability=0.5)
    chosen = aug.choices(4000, SEED).numpy()
    augmented = chosen.any(1)
    assert abs(augmented.mean() - 0.5) < 0.03 and (chosen[augmented].sum(1) == 3).all()
    columns = [aug.ops.index("stain"), aug.ops.index("color")]
    assert chosen[augmented][:, columns].all() and not chosen[~augmented].any()
    others = np.delete(chosen[augmented], columns, axis=1)
    assert np.allclose(others.mean(0), 1 / (len(ROBUST_OPS) - 2), atol=0.03)
    assert RobustAugment.from_config(aug.get_config()).always == ("stain", "color")
    only_always = RobustAugment(num_ops=0, always=["stain"], ops=["stain", "noise"])
    assert (only_always.choices(100, SEED).numpy().sum(1) == 1).all()
    for kwargs in ({"always": ["sparkles"]}, {"always": "stain"}, {"num_ops": 0}):
        with pytest.raises(ConfigurationError):
            RobustAugment(**kwargs)


def test_robust_applies_only_the_ops_given(cells):
    only_deposits = RobustAugment(num_ops=1, ops=["deposits"], geometric=False, severity=5, jit_compile=False)
    out = run(only_deposits, cells.astype(np.float32))
    assert (out <= cells + 1e-3).all() and ((cells - out) > 30).any(axis=(1, 2, 3)).all()
    assert only_deposits.ops == ("deposits",)
    # Names are applied in the physical order whatever order they are given in.
    assert RobustAugment(ops=["jpeg", "stain"]).ops == ("stain", "jpeg")


def test_robust_in_a_pipeline_and_a_saved_model(small_sample, tmp_path):
    aug = RobustAugment(severity=3, jit_compile=False)
    idx = np.zeros(16, np.int64)
    ds = bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=1, indices=idx)
    a = [x.numpy() for x, _ in ds]
    b = [x.numpy() for x, _ in ds]  # the next epoch draws anew
    assert np.abs(a[0] - b[0]).mean() > 1.0
    np.testing.assert_array_equal(run(aug, a[0]), run(aug, a[0]))  # the same seed, the same result
    assert len({im.tobytes() for im in a[0]}) == 8 and not np.array_equal(a[0], a[1])
    inputs = keras.Input((96, 96, 3))
    model = keras.Model(
        inputs, keras.layers.GlobalAveragePooling2D()(RobustAugment(severity=2, num_ops=1, seed=0)(inputs))
    )
    x = small_sample.images[:4].astype(np.float32)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), x.mean(axis=(1, 2)), rtol=1e-5
    )  # off in inference
    model.save(tmp_path / "robust.keras")
    loaded = keras.models.load_model(tmp_path / "robust.keras", safe_mode=True)
    layer = next(layer for layer in loaded.layers if isinstance(layer, RobustAugment))
    assert (layer.severity, layer.num_ops, layer.ops) == (2.0, 1, ROBUST_OPS)


def test_robust_experiment_preset_uses_the_robust_augmentation():
    cfg = bc.experiments.Config.preset("robust")
    cpu = bc.experiments.Config.preset("cpu")
    # The "cpu" recipe with RobustAugment and cell crops, over a longer schedule for the harder task.
    assert cfg.augment == "robust" and cfg.epochs > cpu.epochs
    assert cfg.replace(augment="geometric", augment_options={}, epochs=cpu.epochs, cell_crop=None) == cpu
    assert isinstance(cfg.build_augmenter(), RobustAugment)
    assert isinstance(bc.augment.preset("robust"), RobustAugment)


def test_robust_folds_the_zoom_into_the_rotation_exactly(cells):
    flips = RandomGeometric(rotation=0, translation=0, flip="both", jit_compile=False)
    x = tf.constant(cells, tf.float32)
    g = flips.transforms(16, 96, 96, SEED)
    one_pass = ops.affine_transform(
        x, _compose(g, zoom_transforms(tf.fill([16], 1.6), 96, 96)), fill_mode="reflect", jit_compile=False
    )
    two_passes = zoom(
        ops.affine_transform(x, g, fill_mode="reflect", jit_compile=False), 1.6, jit_compile=False
    )
    np.testing.assert_allclose(one_pass.numpy(), two_passes.numpy(), atol=1e-3)  # flips move whole pixels


def test_zoom_with_probability_keeps_the_other_images_exactly(cells):
    out = run(RandomZoom(severity=5, p=0.5, jit_compile=False), cells)
    untouched = np.array([np.array_equal(o, x) for o, x in zip(out, cells, strict=True)])
    assert 0 < untouched.sum() < len(cells)
