"""bloodcell.augment.ops against Pillow on real cells.

Tolerances: the colour operations must equal Pillow exactly (0 levels) on uint8 images; the
geometric ones within 1 level (rounding) on every pixel whose 3×3 neighbourhood samples inside
the image (at the edge of the fill, Pillow fills any sample outside while bloodcell blends per
neighbour, like TensorFlow), and within 0.01 of TensorFlow's own resampler everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from bloodcell.augment import ops
from bloodcell.errors import ConfigurationError, InvalidDataError


@pytest.fixture(scope="module")
def cells(small_sample):
    return np.asarray(small_sample.images)  # 16 real cells, 2 per class


def pillow(images, fn):
    return np.stack([np.asarray(fn(Image.fromarray(im), i)) for i, im in enumerate(images)])


def assert_same(ours, ref):
    ours = np.asarray(ours)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{np.count_nonzero(diff)} pixels differ, max by {diff.max()}"


def test_autocontrast_equals_pillow(cells):
    assert_same(ops.autocontrast(cells), pillow(cells, lambda im, i: ImageOps.autocontrast(im)))


def test_equalize_equals_pillow(cells):
    assert_same(ops.equalize(cells), pillow(cells, lambda im, i: ImageOps.equalize(im)))


def test_posterize_equals_pillow_with_bits_per_image(cells):
    bits = np.arange(len(cells)) % 8 + 1
    assert_same(ops.posterize(cells, bits), pillow(cells, lambda im, i: ImageOps.posterize(im, int(bits[i]))))


def test_solarize_equals_pillow_with_threshold_per_image(cells):
    thresholds = np.linspace(0, 256, len(cells)).astype(int)
    assert_same(
        ops.solarize(cells, thresholds),
        pillow(cells, lambda im, i: ImageOps.solarize(im, int(thresholds[i]))),
    )


@pytest.mark.parametrize("name", ["brightness", "contrast", "color", "sharpness"])
def test_enhance_ops_equal_pillow_with_factor_per_image(cells, name):
    factors = np.linspace(0.1, 1.9, len(cells)).astype(np.float32)
    enhancer = {
        "brightness": ImageEnhance.Brightness,
        "contrast": ImageEnhance.Contrast,
        "color": ImageEnhance.Color,
        "sharpness": ImageEnhance.Sharpness,
    }[name]
    ref = pillow(cells, lambda im, i: enhancer(im).enhance(float(factors[i])))
    assert_same(getattr(ops, name)(cells, factors), ref)


def test_table_ops_on_float_input_round_to_levels(cells):
    as_float = cells.astype(np.float32) + 0.3  # rounds back to the same levels
    out = ops.equalize(as_float)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), ops.equalize(cells).numpy().astype(np.float32))


def test_enhance_on_float_blends_without_truncation(cells):
    out = ops.brightness(cells.astype(np.float32), 0.5).numpy()
    np.testing.assert_allclose(out, cells.astype(np.float32) * 0.5, atol=1e-4)


def _inside(pil_fn, value, shape):
    """Pixels whose 3×3 neighbourhood samples inside the image under Pillow's map."""
    white = Image.fromarray(np.full(shape, 255, np.uint8))
    full = np.asarray(pil_fn(white, value))[..., 0] == 255
    padded = np.pad(full, 1, constant_values=False)
    eroded = np.ones_like(full)
    for dy in range(3):
        for dx in range(3):
            eroded &= padded[dy : dy + full.shape[0], dx : dx + full.shape[1]]
    return eroded


GEOMETRY = {
    # name: (our call, the same map in Pillow)
    "rotate": (lambda x, v, **k: ops.rotate(x, v, **k), lambda im, v: im.rotate(v, resample=Image.BILINEAR)),
    "shear_x": (
        lambda x, v, **k: ops.shear_x(x, v, **k),
        lambda im, v: im.transform(
            im.size, Image.AFFINE, (1, v, -v * im.size[1] / 2, 0, 1, 0), resample=Image.BILINEAR
        ),
    ),
    "shear_y": (
        lambda x, v, **k: ops.shear_y(x, v, **k),
        lambda im, v: im.transform(
            im.size, Image.AFFINE, (1, 0, 0, v, 1, -v * im.size[0] / 2), resample=Image.BILINEAR
        ),
    ),
    "translate_x": (
        lambda x, v, **k: ops.translate_x(x, v, **k),
        lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, -v, 0, 1, 0), resample=Image.BILINEAR),
    ),
    "translate_y": (
        lambda x, v, **k: ops.translate_y(x, v, **k),
        lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -v), resample=Image.BILINEAR),
    ),
}
MAGNITUDES = {
    "rotate": (-25.0, 40.0),
    "shear_x": (-0.3, 0.3),
    "shear_y": (-0.3, 0.3),
    "translate_x": (-9.0, 9.0),
    "translate_y": (-9.0, 9.0),
}


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_geometric_ops_match_pillow_inside_the_border(cells, name, jit_compile):
    ours_fn, pil_fn = GEOMETRY[name]
    lo, hi = MAGNITUDES[name]
    values = np.linspace(lo, hi, len(cells)).astype(np.float32)
    if name.startswith("translate"):
        values = np.round(values)
    ours = np.asarray(ours_fn(cells, values, fill_mode="constant", jit_compile=jit_compile)).astype(int)
    ref = pillow(cells, lambda im, i: pil_fn(im, float(values[i]))).astype(int)
    for i, v in enumerate(values):
        inside = _inside(pil_fn, float(v), cells.shape[1:])
        assert inside.mean() > 0.5
        diff = np.abs(ours[i][inside] - ref[i][inside])
        assert diff.max() <= 1, f"image {i}, {name}={v}"
        assert diff.mean() < 0.6


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "nearest"])
def test_affine_transform_matches_tensorflow_everywhere(cells, fill_mode):
    rng = np.random.default_rng(0)
    angle = rng.uniform(-0.6, 0.6, len(cells))
    c, s = np.cos(angle), np.sin(angle)
    t = np.stack([c, -s, rng.uniform(-20, 20, len(cells)), s, c, rng.uniform(-20, 20, len(cells))], 1).astype(
        np.float32
    )
    images = tf.constant(cells, tf.float32)
    ref = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=np.concatenate([t, np.zeros((len(t), 2), np.float32)], 1),
        output_shape=[96, 96],
        fill_value=7.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    )
    ours = ops.affine_transform(images, t, fill_mode=fill_mode, fill_value=7.0)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=0.01)


def test_wrap_and_nearest_move_whole_pixels_exactly(cells):
    shifted = ops.translate_x(cells, 10.0, fill_mode="wrap", interpolation="nearest")
    np.testing.assert_array_equal(shifted.numpy(), np.roll(cells, 10, axis=2))
    up = ops.translate_y(cells, -5.0, fill_mode="wrap")  # bilinear at whole pixels is a pure move
    np.testing.assert_array_equal(up.numpy(), np.roll(cells, -5, axis=1))


def test_xla_and_portable_resamplers_agree(cells):
    t = np.tile(np.array([[0.95, -0.3, 12.5, 0.3, 0.95, -14.2]], np.float32), (len(cells), 1))
    a = ops.affine_transform(tf.constant(cells, tf.float32), t, fill_mode="reflect", jit_compile=True)
    b = ops.affine_transform(tf.constant(cells, tf.float32), t, fill_mode="reflect", jit_compile=False)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=0.01)  # float rounding only


@pytest.mark.parametrize("jit_compile", [True, False])
def test_packed_windows_hold_the_bytes_of_the_plain_windows(cells, jit_compile):
    # AugMix reads each 2×2 neighbourhood as two 64-bit words of packed RGB pixels; they must hold
    # exactly the bytes that the general resampler gathers, under any map and fill.
    rng = np.random.default_rng(0)
    t = np.tile(np.array([1, 0, 0, 0, 1, 0], np.float32), (len(cells), 1))
    t += rng.normal(0, [0.3, 0.3, 20, 0.3, 0.3, 20], t.shape).astype(np.float32)
    run = lambda f: tf.function(f, jit_compile=jit_compile, autograph=False)  # noqa: E731
    for fill_mode in ("reflect", "constant"):
        padded = ops._pad_for_fill(tf.constant(cells), fill_mode, 7)
        pairs = run(lambda p: ops._pixel_pairs(ops._pack_pixels(p)))(padded)
        packed = run(lambda q, t, f=fill_mode: ops._pair_windows(q, t, "bilinear", f, jit_compile))(pairs, t)
        plain = run(lambda p, t, f=fill_mode: ops._windows(p, t, "bilinear", f, jit_compile))(padded, t)
        as_bytes = ops._window_bytes(packed).numpy()
        np.testing.assert_array_equal(as_bytes[..., [0, 1, 2, 4, 5, 6]], plain.numpy())
        assert not as_bytes[..., [3, 7]].any()  # the spare byte of each pixel's word stays empty


def test_ops_run_inside_a_traced_function(cells):
    @tf.function
    def chain(x):
        return ops.rotate(ops.solarize(x, 200), 10.0)

    out = chain(tf.constant(cells))
    assert out.shape == cells.shape and out.dtype == tf.uint8


def test_bad_inputs_raise_one_clear_error(cells):
    with pytest.raises(InvalidDataError, match="batch of shape"):
        ops.equalize(cells[0])
    with pytest.raises(InvalidDataError, match="one value per image|values for a batch"):
        ops.rotate(cells, np.ones(3, np.float32))
    with pytest.raises(ConfigurationError, match="bits must lie"):
        ops.posterize(cells, 9)
    with pytest.raises(ConfigurationError, match="fill_mode"):
        ops.rotate(cells, 5.0, fill_mode="mirror")
    with pytest.raises(InvalidDataError, match="3 colour channels"):
        ops.contrast(np.zeros((1, 8, 8, 1), np.uint8), 0.5)
