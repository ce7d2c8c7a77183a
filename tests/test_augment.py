"""AugMix, Compose and RandomGeometric on real cells: the paper's chains, per-image draws, Keras use.

Tests of what AugMix computes use its portable path (``jit_compile=False``: no XLA compilation,
so the suite stays fast); ``test_portable_path_equals_xla_path`` ties that path to the XLA one.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

import bloodcell as bc
from bloodcell.augment import AugMix, AugMixPlan, Compose, RandomGeometric, ops
from bloodcell.errors import ConfigurationError, InvalidDataError


@pytest.fixture(scope="module")
def cells(small_sample):
    return np.asarray(small_sample.images)  # 16 real cells, 2 per class


def one_chain(aug, names, levels, signs=None):
    """A plan applying the same single chain to every image, fully mixed in (m = 1)."""
    n = 16
    ops_ = [[[aug.op_names.index(name) for name in names]]] * n
    levels_ = [[list(levels)]] * n
    signs_ = [[list(signs or [1.0] * len(names))]] * n
    return AugMixPlan(ops=ops_, levels=levels_, signs=signs_, chain_weights=[[1.0]] * n, mix_weight=[1.0] * n)


def test_colour_chain_equals_the_paper_sequence_in_pillow(cells):
    # solarize then autocontrast then equalize: each op must see what the previous one made.
    aug = AugMix(width=1, depth=3, jit_compile=False)
    levels = (2.9, 1.0, 2.0)
    out = aug.apply_plan(cells, one_chain(aug, ["solarize", "autocontrast", "equalize"], levels))
    threshold = 256 - int(levels[0] * 256 / 10)

    def paper(im):
        return ImageOps.equalize(ImageOps.autocontrast(ImageOps.solarize(im, threshold)))

    ref = np.stack([np.asarray(paper(Image.fromarray(im))) for im in cells])
    np.testing.assert_array_equal(out.numpy(), ref)


def test_posterize_chain_uses_the_papers_bits(cells):
    aug = AugMix(width=1, depth=2, jit_compile=False)
    out = aug.apply_plan(cells, one_chain(aug, ["posterize", "posterize"], (2.6, 0.5)))
    bits = (4 - int(2.6 * 4 / 10), 4 - int(0.5 * 4 / 10))  # 3 then 4 bits
    ref = np.stack(
        [
            np.asarray(ImageOps.posterize(ImageOps.posterize(Image.fromarray(im), bits[0]), bits[1]))
            for im in cells
        ]
    )
    np.testing.assert_array_equal(out.numpy(), ref)


def test_whole_pixel_translations_compose_exactly(cells):
    # With the image tiled (wrap), moving by whole pixels three times is one move: no blur, no loss.
    aug = AugMix(width=1, depth=3, fill_mode="wrap", jit_compile=False)
    # level 2.6 on the paper's scale: int(2.6 * 96/3 / 10) = 8 pixels; level 1.0: 3 pixels.
    out = aug.apply_plan(
        cells,
        one_chain(aug, ["translate_x", "translate_y", "translate_x"], (2.6, 2.6, 1.0), (1.0, -1.0, -1.0)),
    )
    np.testing.assert_array_equal(out.numpy(), np.roll(np.roll(cells, 5, axis=2), -8, axis=1))


def test_colour_then_geometry_equals_the_sequence_of_ops(cells):
    aug = AugMix(width=1, depth=2, fill_mode="constant", jit_compile=False)
    out = aug.apply_plan(
        tf.constant(cells, tf.float32), one_chain(aug, ["equalize", "rotate"], (1.0, 2.5), (1.0, -1.0))
    )
    ref = ops.rotate(
        tf.constant(ops.equalize(cells).numpy(), tf.float32), -float(int(2.5 * 3)), fill_mode="constant"
    )
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=0.01)


def test_geometric_chain_is_one_resampling_close_to_the_sequence(cells):
    # The chain rotate → shear_y → translate_x is resampled once; the paper resamples three times.
    aug = AugMix(width=1, depth=3, fill_mode="reflect", jit_compile=False)
    x = tf.constant(cells, tf.float32)
    out = aug.apply_plan(x, one_chain(aug, ["rotate", "shear_y", "translate_x"], (2.9, 2.0, 2.0))).numpy()
    seq = ops.translate_x(
        ops.shear_y(ops.rotate(x, 8.0, fill_mode="reflect"), 0.06, fill_mode="reflect"),
        6.0,
        fill_mode="reflect",
    ).numpy()
    inner = np.abs(out - seq)[:, 12:-12, 12:-12]
    assert inner.mean() < 2.0  # extra blur of the sequence only
    assert np.abs(out - x.numpy()).mean() > 10 * inner.mean()  # while the image really moved


def test_mixing_follows_the_paper_formula(cells):
    aug = AugMix(width=2, depth=1, fill_mode="reflect", jit_compile=False)
    x = tf.constant(cells, tf.float32)
    tx = aug.op_names.index("translate_x")
    plan = AugMixPlan(
        ops=[[[tx], [tx]]] * 16,
        levels=[[[1.0], [2.5]]] * 16,
        signs=[[[1.0], [-1.0]]] * 16,
        chain_weights=[[0.25, 0.75]] * 16,
        mix_weight=np.linspace(0, 1, 16),
    )
    out = aug.apply_plan(x, plan).numpy()
    c1 = ops.translate_x(x, 3.0, fill_mode="reflect").numpy()
    c2 = ops.translate_x(x, -8.0, fill_mode="reflect").numpy()
    m = np.linspace(0, 1, 16)[:, None, None, None]
    np.testing.assert_allclose(out, (1 - m) * cells + m * (0.25 * c1 + 0.75 * c2), atol=1e-3)


def test_dtype_is_kept_and_seeds_decide(cells):
    aug = AugMix()
    seed = tf.constant([5, 6], tf.int64)
    a, _ = aug.augment_batch(cells, None, seed)
    b, _ = aug.augment_batch(cells, None, seed)
    c, _ = aug.augment_batch(cells, None, tf.constant([5, 7], tf.int64))
    assert a.dtype == tf.uint8 and a.shape == cells.shape
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy().astype(int) - c.numpy()).mean() > 1.0
    f, _ = aug.augment_batch(tf.constant(cells, tf.float32), None, seed)
    assert f.dtype == tf.float32
    np.testing.assert_array_equal(np.rint(f.numpy()).astype(np.uint8), a.numpy())


def test_portable_path_equals_xla_path(cells):
    x = tf.constant(cells, tf.float32)
    plan = AugMix().sample_plan(16, tf.constant([1, 2], tf.int64))
    a = AugMix(jit_compile=True).apply_plan(x, plan)
    b = AugMix(jit_compile=False).apply_plan(x, plan)
    diff = np.abs(a.numpy() - b.numpy())
    assert diff.mean() < 0.01 and diff.max() < 1.0  # float rounding (XLA fuses multiply-adds)


def test_histogram_tables_are_the_same_inside_xla(cells):
    # Outside XLA only the rows whose step reads a histogram compute it; inside, every row does.
    aug = AugMix(all_ops=True, jit_compile=False)
    plan = aug.sample_plan(16, tf.constant([3, 4], tf.int64))
    reads = [aug.op_names.index(name) for name in ("autocontrast", "equalize", "contrast")]
    assert np.isin(plan.ops.numpy()[..., 1:], reads).sum() >= 5  # later steps read pushed histograms
    hist = ops._histograms(ops._levels(tf.constant(cells)))
    compact = tf.function(aug._tables, autograph=False)(hist, plan.ops, plan.levels).numpy()
    static = tf.function(aug._tables, jit_compile=True, autograph=False)(hist, plan.ops, plan.levels).numpy()
    # XLA fuses autocontrast's float64 multiply-add, so a level can land one below or above.
    assert np.abs(compact.astype(int) - static.astype(int)).max() <= 1
    assert np.mean(compact != static) < 0.001


def test_augmix_runs_whole_inside_an_xla_program(cells):
    # Inside XLA (a train step compiled with jit_compile=True, Keras's default on a GPU) shapes
    # cannot depend on the data and TensorFlow's Gamma draws have no kernel: AugMix draws its
    # mixing weights with a sampler of its own there.
    aug = AugMix(all_ops=True)
    x = tf.constant(cells, tf.float32)
    seed = tf.constant([5, 6], tf.int64)
    inside = tf.function(aug.augment_images, jit_compile=True, autograph=False)
    ours = inside(x, seed).numpy()
    np.testing.assert_array_equal(ours, inside(x, seed).numpy())
    assert np.abs(ours - inside(x, tf.constant([5, 7], tf.int64)).numpy()).mean() > 1.0
    plan = tf.function(aug.sample_plan, jit_compile=True, autograph=False)(16, seed)
    np.testing.assert_allclose(plan.chain_weights.numpy().sum(-1), 1.0, rtol=1e-5)
    assert 0.0 <= plan.mix_weight.numpy().min() and plan.mix_weight.numpy().max() <= 1.0
    assert plan.mix_weight.numpy().std() > 0.05  # drawn per image
    ref = aug.apply_plan(x, plan).numpy()  # the same plan, applied outside XLA
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.01 and diff.max() < 1.0  # float rounding (XLA fuses multiply-adds)
    assert np.abs(ref - cells).mean() > 1.0  # it did augment


def _augmenters_built_with_defaults() -> list[str]:
    import inspect

    from bloodcell.augment.base import Augmenter
    from bloodcell.augment.domain import DomainAugmenter

    names = []
    for name in bc.augment.__all__:
        obj = getattr(bc.augment, name)
        if not inspect.isclass(obj) or not issubclass(obj, Augmenter) or obj in (Augmenter, DomainAugmenter):
            continue
        try:
            obj()
        except TypeError:  # needs arguments: Compose, MultiView, ImgaugAugmenter
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("name", _augmenters_built_with_defaults())
def test_augmenters_that_claim_xla_run_inside_xla(cells, name):
    # Keras compiles a model with XLA (jit_compile="auto", on a GPU) only when every layer's
    # supports_jit is true; an augmenter that claims it must run inside an XLA program.
    aug = getattr(bc.augment, name)(seed=3)
    model = keras.Sequential([keras.Input((96, 96, 3)), aug])
    supported = all(layer.supports_jit for layer in model._flatten_layers())
    x = tf.constant(cells[:4], tf.float32)
    inside = tf.function(aug.augment_images, jit_compile=True, autograph=False)
    if supported:
        out = inside(x, tf.constant([1, 2], tf.int64)).numpy()
        assert out.shape == x.shape and np.isfinite(out).all()
    else:
        with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)):
            inside(x, tf.constant([1, 2], tf.int64))


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
def test_mixing_weights_follow_the_gamma_distribution(alpha):
    from scipy import stats

    from bloodcell.augment.augmix import _gamma_for_xla

    # A million draws: Kolmogorov-Smirnov then sees a CDF off by about 0.002.
    draws = _gamma_for_xla(tf.constant([1_000_000]), alpha, tf.constant([1, 2], tf.int64)).numpy()
    assert draws.min() > 0
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 0.001
    assert np.mean(draws) == pytest.approx(alpha, rel=0.01)
    assert np.var(draws) == pytest.approx(alpha, rel=0.02)


def test_all_ops_adds_the_enhance_ops(cells):
    aug = AugMix(all_ops=True, width=1, depth=1, jit_compile=False)
    assert aug.op_names[-4:] == ("color", "contrast", "brightness", "sharpness")
    out = aug.apply_plan(cells, one_chain(aug, ["brightness"], (3.0,)))
    factor = 3.0 * 1.8 / 10 + 0.1
    np.testing.assert_array_equal(out.numpy(), ops.brightness(cells, factor).numpy())
    out = aug.apply_plan(cells, one_chain(aug, ["color"], (2.0,))).numpy().astype(int)
    ref = ops.color(cells, 2.0 * 1.8 / 10 + 0.1).numpy().astype(int)
    assert np.abs(out - ref).max() <= 1  # float blend, rounded once
    out = aug.apply_plan(cells, one_chain(aug, ["sharpness"], (2.0,))).numpy().astype(int)
    ref = ops.sharpness(tf.constant(cells, tf.float32), 2.0 * 1.8 / 10 + 0.1).numpy()
    assert np.abs(out - ref).max() <= 1
    random_out = AugMix(all_ops=True, jit_compile=False)(cells)
    assert random_out.shape == cells.shape


class _PlanProbe(AugMix):
    """Writes the draws it makes into the images, so a pipeline's output shows them."""

    def augment_images(self, images, seed):
        plan = self.sample_plan(tf.shape(images)[0], seed)
        n = tf.shape(images)[0]
        code = tf.concat(
            [
                tf.cast(tf.reshape(plan.ops, [n, -1]) + 1, tf.float32),  # ops from -1 (none): pixels ≥ 0
                plan.chain_weights,
                plan.mix_weight[:, None],
            ],
            axis=1,
        )
        return tf.reshape(tf.pad(code, [[0, 0], [0, 96 * 96 * 3 - 13]]), tf.shape(images))


def test_pipeline_draws_fresh_ops_and_weights_per_image_and_per_batch(small_sample):
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=8, augment=_PlanProbe(), seed=3)
    batches = [x.numpy().reshape(len(x), -1)[:, :13] for x, _ in ds]
    assert len(batches) == 2
    for codes in batches:
        ops_ = codes[:, :9]
        assert len({tuple(row) for row in ops_}) == len(ops_)  # every image its own chains
        assert len(set(codes[:, 12])) == len(codes)  # and its own Beta weight
        assert len({tuple(np.round(row, 6)) for row in codes[:, 9:12]}) == len(codes)  # and Dirichlet weights
    assert not np.array_equal(batches[0][:, :9], batches[1][:, :9])  # new draws for the next batch
    again = [
        x.numpy().reshape(len(x), -1)[:, :13]
        for x, _ in bc.pipeline.to_tf_dataset(small_sample, 8, augment=_PlanProbe(), seed=3)
    ]
    np.testing.assert_array_equal(batches[0], again[0])  # and the same for the same seed


def test_pipeline_augments_one_real_cell_differently_each_time(small_sample):
    idx = np.zeros(32, np.int64)  # the same basophil, 32 times
    ds = bc.pipeline.to_tf_dataset(small_sample, batch_size=16, augment=AugMix(), seed=0, indices=idx)
    first, second = (x.numpy() for x, _ in ds)
    flat = first.reshape(16, -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(-1)[~np.eye(16, dtype=bool)]
    assert (distances > 0).all() and np.median(distances) > 3.0  # no two alike
    assert np.abs(first - second).mean() > 2.0


def test_augmix_is_a_keras_layer_active_only_in_training(cells, tmp_path):
    inputs = keras.Input((96, 96, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(AugMix(seed=1)(inputs))
    model = keras.Model(inputs, outputs)
    x = cells.astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x.mean(axis=(1, 2)), rtol=1e-5)
    assert np.abs(model(x, training=True).numpy() - x.mean(axis=(1, 2))).max() > 1.0
    path = tmp_path / "with_augmix.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    layer = next(layer for layer in loaded.layers if isinstance(layer, AugMix))
    assert (layer.severity, layer.width, layer.depth, layer.fill_mode) == (3.0, 3, -1, "reflect")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"severity": 0}, "severity"),
        ({"width": 0}, "width"),
        ({"depth": 0}, "depth"),
        ({"alpha": 0}, "alpha"),
        ({"fill_mode": "black"}, "fill_mode"),
    ],
)
def test_augmix_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        AugMix(**kwargs)


def test_augmenters_reject_non_rgb_batches():
    with pytest.raises(InvalidDataError, match="RGB"):
        AugMix()(np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(InvalidDataError, match="batch"):
        RandomGeometric()(np.zeros((8, 8, 3), np.uint8))


def test_random_geometric_flips_are_exact_pixel_moves(cells):
    aug = RandomGeometric(rotation=0, translation=0, flip="both")
    out = aug.augment_batch(cells, None, tf.constant([0, 1], tf.int64))[0].numpy()
    kinds = set()
    for o, x in zip(out, cells, strict=True):
        for name, ref in (("same", x), ("lr", x[:, ::-1]), ("ud", x[::-1]), ("both", x[::-1, ::-1])):
            if np.array_equal(o, ref):
                kinds.add(name)
                break
        else:
            raise AssertionError("an output is not a flip of its input")
    assert len(kinds) >= 3  # 16 images: the four outcomes are drawn per image


def test_random_geometric_rotates_by_any_angle_within_the_limit(cells):
    aug = RandomGeometric(rotation=180, translation=0.1, flip="none")
    t = aug.transforms(2000, 96, 96, tf.constant([3, 4], tf.int64)).numpy()
    angles = np.degrees(np.arctan2(t[:, 3], t[:, 0]))
    assert angles.min() < -170 and angles.max() > 170
    assert np.allclose(t[:, 0], t[:, 4], atol=1e-5)  # a rotation, no shear
    centre = np.array([47.5, 47.5])
    sampled = np.stack([t[:, 0:2] @ centre + t[:, 2], t[:, 3:5] @ centre + t[:, 5]], 1)
    shift = np.linalg.norm(sampled - centre, axis=1)  # how far the centre moved: the translation
    assert shift.max() <= 0.1 * 96 * np.sqrt(2) + 1e-3 and shift.max() > 0.1 * 96 * 0.9
    assert (
        RandomGeometric(rotation=10)
        .transforms(500, 96, 96, tf.constant([0, 0], tf.int64))
        .numpy()[:, 3]
        .max()
        <= np.sin(np.radians(10)) + 1e-6
    )


def test_compose_chains_our_and_keras_layers_reproducibly(small_sample):
    aug = Compose([RandomGeometric(), keras.layers.RandomContrast(0.3), lambda x: x * 0.5])
    a = [x.numpy() for x, _ in bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=2)]
    b = [x.numpy() for x, _ in bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=2)]
    c = [x.numpy() for x, _ in bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=3)]
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a[0] - c[0]).mean() > 1.0
    assert a[0].max() <= 255 * 0.5 + 1e-3  # the callable ran last


def test_compose_with_mixup_needs_and_mixes_one_hot_labels(small_sample):
    aug = Compose([RandomGeometric(), keras.layers.MixUp(alpha=0.4)])
    assert aug.requires_one_hot
    with pytest.raises(ConfigurationError, match="one_hot=True"):
        bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=0)
    _, labels = next(iter(bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=0, one_hot=True)))
    labels = labels.numpy()
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-5)
    assert (labels.max(1) < 0.999).any()  # mixed rows


def test_compose_rejects_a_non_list():
    with pytest.raises(ConfigurationError, match="list"):
        Compose(AugMix())


def test_compose_runs_randaugment_rotation_and_cutmix_unwrapped(small_sample):
    aug = Compose(
        [
            keras.layers.RandAugment(value_range=(0, 255), seed=0),
            keras.layers.RandomRotation(0.5),
            keras.layers.CutMix(),
        ]
    )
    assert aug.requires_one_hot
    images, labels = next(iter(bc.pipeline.to_tf_dataset(small_sample, 8, augment=aug, seed=0, one_hot=True)))
    assert images.shape == (8, 96, 96, 3) and images.dtype == tf.float32
    assert (labels.numpy().max(1) < 0.999).any()  # CutMix mixed the labels with the patches
    # RandomRotation draws from the pipeline's seed: reproducible without a seed of its own.
    rotate = Compose([keras.layers.RandomRotation(0.5)])
    a = rotate.augment_batch(small_sample.images[:4], None, tf.constant([1, 1], tf.int64))[0]
    b = rotate.augment_batch(small_sample.images[:4], None, tf.constant([1, 1], tf.int64))[0]
    c = rotate.augment_batch(small_sample.images[:4], None, tf.constant([1, 2], tf.int64))[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy().astype(int) - c.numpy()).mean() > 1.0
