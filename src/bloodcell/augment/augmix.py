"""AugMix (Hendrycks et al. 2020), batched and in-graph, with fresh random ops for every image.

For each image, ``width`` chains of 1–3 operations (``depth=-1``) are drawn from autocontrast,
equalize, posterize, rotate, solarize, shear x/y and translate x/y (plus color, contrast,
brightness and sharpness with ``all_ops=True``), each with a magnitude drawn from
U(0.1, severity) on the paper's scale. The chains are mixed with Dirichlet(alpha) weights, and the
result with the original image by a Beta(alpha, alpha) weight m: ``(1 - m)·x + m·mix``. Ops,
magnitudes, signs, depths and both mixing weights are drawn per image, per batch, from the
stateless per-batch seed, so a traced ``tf.data`` pipeline gets new ones for every batch.

How it is fast. Per image, a chain's colour operations are per-channel lookup tables on the 8-bit
levels and its geometric operations are affine maps. A chain is therefore computed as *one*
composed table and *one* resampling: the tables are built on 256-bin histograms (equalize and
autocontrast read the histogram the earlier operations left, computed by pushing the histogram
through the earlier tables, never touching the pixels), and the affine maps multiply into one.
The pixels are touched three times per chain (table, resampling, mix) whatever the depth, in a
few small XLA programs. The table writes each pixel packed into one 32-bit word beside its right
neighbour's, so the resampling gathers a 2×2 neighbourhood as two 64-bit words; and the
histogram-based tables are computed only for the chains whose step needs one. Together these
cut AugMix's CPU time in a ``tf.data`` pipeline by about a quarter against byte-by-byte gathers
and tables for every chain (``benchmarks/RESULTS.md``).

The price of that speed, stated plainly: inside a chain the colour operations are applied before
the geometric ones, each kind in its drawn order, and consecutive geometric operations are
resampled once instead of once each (less blur). Where the paper's chain puts a colour operation
after a geometric one, the two results differ near edges (interpolated values pass through the
table in one order, not the other) and where the fill enters the histogram. With ``all_ops``,
colour (saturation) and sharpness act after the tables, and repeated ones multiply their factors.
Chains made only of colour operations, or only of geometric ones, are exactly those of the
paper's sequential code (tests compare with Pillow).

Magnitudes follow the paper's reference code (``augmentations.py``): level ~ U(0.1, severity);
posterize keeps ``4 - int(level·4/10)`` bits; solarize threshold ``256 - int(level·256/10)``;
rotation ``int(level·30/10)`` degrees; shear ``level·0.3/10``; translation
``int(level·size/3/10)`` pixels; the ImageEnhance factors ``level·1.8/10 + 0.1``; rotation, shear
and translation take a random sign. Shears act about the image centre (the paper's Pillow code
shears about the top-left corner, which also shifts the cell), and the default fill reflects the
slide background rather than painting black corners.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from bloodcell._validation import check_int, check_number, check_positive, is_integer, received
from bloodcell.augment import ops as _ops
from bloodcell.augment.base import Augmenter, _as_seed_tensor, _check_batch, _restore_dtype, split_seed
from bloodcell.errors import ConfigurationError

__all__ = ["AugMix", "AugMixPlan", "AUGMIX_OPS", "AUGMIX_ALL_OPS"]

#: The paper's default operations (those that do not overlap ImageNet-C corruptions).
AUGMIX_OPS = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
#: ``all_ops=True`` adds the ImageEnhance operations.
AUGMIX_ALL_OPS = AUGMIX_OPS + ("color", "contrast", "brightness", "sharpness")

_KERNELS: dict[tuple[Any, ...], dict[str, Any]] = {}


_GAMMA_TRIES = 8


def _dirichlet(shape: Any, alpha: float, seed: Any, gamma: Any) -> Any:
    g = gamma(shape, alpha, seed)
    return g / tf.maximum(tf.reduce_sum(g, -1, keepdims=True), 1e-12)


def _gamma(shape: Any, alpha: float, seed: Any) -> Any:
    """Gamma(alpha, 1) draws with TensorFlow's stateless kernel."""
    return tf.random.stateless_gamma(shape, seed, alpha=alpha)


def _gamma_for_xla(shape: Any, alpha: float, seed: Any) -> Any:
    """Gamma(alpha, 1) draws by Marsaglia and Tsang's method (2000), from stateless draws.

    ``tf.random.stateless_gamma`` has no XLA kernel, so inside an XLA program (AugMix as a layer
    of a model compiled with ``jit_compile=True``, Keras's default on a GPU) AugMix draws its
    mixing weights with this. Outside, TensorFlow's kernel stays: drawing every plan with these
    few dozen small ops cost AugMix measurably more CPU in a ``tf.data`` pipeline
    (``benchmarks/RESULTS.md``).

    Each sample keeps the first accepted of ``_GAMMA_TRIES`` proposals; each is accepted with
    probability at least 0.95, so all of them fail less than once in 10¹⁰ samples, and then the
    sample is ``d = alpha - 1/3``, close to the mean. For ``alpha < 1`` it draws
    Gamma(alpha + 1)·U^(1/alpha), their boost.
    """
    boost = alpha < 1
    d = (alpha + 1.0 if boost else alpha) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    proposals = tf.concat([[_GAMMA_TRIES], tf.cast(shape, tf.int32)], 0)
    z = tf.random.stateless_normal(proposals, split_seed(seed, 0))
    u = tf.random.stateless_uniform(proposals, split_seed(seed, 1), minval=1e-30)  # log(0) stays out
    v = (1.0 + c * z) ** 3
    log_v = tf.math.log(tf.maximum(v, 1e-30))
    accepted = (v > 0) & (tf.math.log(u) < 0.5 * z * z + d - d * v + d * log_v)
    first = accepted & (tf.cumsum(tf.cast(accepted, tf.int32), axis=0) == 1)
    sample = tf.reduce_sum(tf.where(first, d * v, 0.0), axis=0)
    sample = tf.where(tf.reduce_any(accepted, axis=0), sample, d)
    if boost:
        sample *= tf.random.stateless_uniform(tf.shape(sample), split_seed(seed, 2)) ** (1.0 / alpha)
    return sample


class AugMixPlan(NamedTuple):
    """The random draws of one batch (see :meth:`AugMix.sample_plan`).

    Shapes: N images, ``width`` chains, ``steps`` operations per chain.
    """

    #: Index into ``AugMix.op_names`` of each step, -1 where the chain is shorter (int32, N × width × steps).
    ops: Any
    #: Magnitudes, U(0.1, severity) on the paper's 0–10 scale (float32, N × width × steps).
    levels: Any
    #: The direction, ±1, of each rotation, shear and translation (float32, N × width × steps).
    signs: Any
    #: The Dirichlet(alpha) weights of the chains (float32, N × width).
    chain_weights: Any
    #: The Beta(alpha, alpha) weight m of the mixed chains against the original (float32, N).
    mix_weight: Any


def _select(op_ids: Any, candidates: dict[int, Any], default: Any) -> Any:
    """Pick, per entry, the candidate whose op index matches (``default`` where none does)."""
    out = default
    for index, value in candidates.items():
        out = tf.where(tf.equal(op_ids, index), value, out)
    return out


def _in_xla_context() -> bool:
    """Whether the graph being traced will be compiled by XLA (which needs static shapes)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a TensorFlow without these internals: assume XLA, the safe choice
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def _matrix(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any) -> Any:
    zero, one = tf.zeros_like(a), tf.ones_like(a)
    return tf.stack([tf.stack([a, b, c], -1), tf.stack([d, e, f], -1), tf.stack([zero, zero, one], -1)], -2)


@keras.saving.register_keras_serializable(package="bloodcell")
class AugMix(Augmenter):
    """AugMix with per-image random operations, magnitudes and mixing weights, in one XLA program.

    Args:
        severity: Strength of every operation, 1–10 (the paper's default 3). Each magnitude is drawn
            from U(0.1, severity) on the paper's 0–10 scale.
        width: Number of augmentation chains mixed per image (paper: 3).
        depth: Operations per chain; -1 draws 1, 2 or 3 per chain and image (paper: -1).
        alpha: Concentration of the Dirichlet chain weights and of the Beta weight mixing the
            result with the original (paper: 1.0).
        all_ops: Add color, contrast, brightness and sharpness (which overlap ImageNet-C
            corruptions, hence off in the paper).
        interpolation: ``"bilinear"`` (paper) or ``"nearest"`` for the geometric operations.
        fill_mode: Outside the image after rotation, shear or translation: ``"reflect"`` (default:
            the slide background continues), ``"constant"`` (the paper's black), ``"nearest"``, ``"wrap"``.
        fill_value: Value for ``fill_mode="constant"``.
        jit_compile: Run the pixel work as an XLA program (several times faster on a CPU). Set
            False on a platform without XLA.
        seed: Seed for use as a layer or function (``to_tf_dataset`` passes per-batch seeds).
        name: Layer name.

    Example:
        >>> import numpy as np
        >>> from bloodcell.datasets import load_sample
        >>> images = load_sample(per_class=1).images
        >>> aug = AugMix(seed=0)
        >>> out = aug(images)
        >>> out.shape, out.dtype.name
        (TensorShape([8, 96, 96, 3]), 'uint8')
    """

    def __init__(
        self,
        severity: float = 3,
        width: int = 3,
        depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = False,
        *,
        interpolation: str = "bilinear",
        fill_mode: str = "reflect",
        fill_value: float = 0.0,
        jit_compile: bool = True,
        seed: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, name=name, **kwargs)
        severity = check_number(severity, "severity", low=1, high=10)
        width = check_int(width, "width", minimum=1)
        if not is_integer(depth) or depth == 0 or depth < -1:
            raise ConfigurationError(
                f"depth must be -1 (1–3 ops per chain) or a positive integer. {received('depth', depth)}"
            )
        alpha = check_positive(alpha, "alpha")
        _ops._check_geometry(interpolation, fill_mode)
        self.severity = severity
        self.width = width
        self.depth = int(depth)
        self.alpha = alpha
        self.all_ops = bool(all_ops)
        self.interpolation = interpolation
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.jit_compile = bool(jit_compile)
        self.op_names = AUGMIX_ALL_OPS if self.all_ops else AUGMIX_OPS

    # -- random draws --------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """The largest number of operations in a chain."""
        return 3 if self.depth == -1 else self.depth

    def sample_plan(self, batch_size: Any, seed: Any) -> AugMixPlan:
        """Draw the ops, magnitudes and weights for a batch (stateless: the same seed gives the same plan)."""
        seeds = [split_seed(seed, i) for i in range(7)]
        shape = tf.stack([batch_size, self.width, self.steps])
        if self.depth == -1:
            depth = tf.random.stateless_uniform(
                tf.stack([batch_size, self.width, 1]), seeds[0], 1, 4, tf.int32
            )
        else:
            depth = tf.fill(tf.stack([batch_size, self.width, 1]), self.depth)
        ops = tf.random.stateless_uniform(shape, seeds[1], 0, len(self.op_names), tf.int32)
        ops = tf.where(tf.range(self.steps)[None, None, :] < depth, ops, -1)
        levels = tf.random.stateless_uniform(shape, seeds[2], 0.1, self.severity)
        signs = tf.where(tf.random.stateless_uniform(shape, seeds[3]) < 0.5, -1.0, 1.0)
        # XLA draws other numbers from the same seed anyway (its generator and float conversion
        # differ from TensorFlow's kernels), so a plan drawn inside XLA differs from one drawn outside.
        gamma = _gamma_for_xla if _in_xla_context() else _gamma
        chain_weights = _dirichlet(tf.stack([batch_size, self.width]), self.alpha, seeds[4], gamma)
        g1 = gamma(tf.stack([batch_size]), self.alpha, seeds[5])
        g2 = gamma(tf.stack([batch_size]), self.alpha, seeds[6])
        mix_weight = g1 / tf.maximum(g1 + g2, 1e-12)
        return AugMixPlan(ops, levels, signs, chain_weights, mix_weight)

    # -- the chains as tables and affine maps --------------------------------------------------
    def _op(self, name: str) -> int:
        return self.op_names.index(name) if name in self.op_names else -2

    def _tables(self, hist: Any, ops: Any, levels: Any) -> Any:
        """Compose each chain's colour operations into one table per channel: (N, width, 3, 256).

        ``hist`` (N, 3, 256) holds the images' histograms. The work runs on flat (rows, 256)
        tables, one row per image, chain and channel, starting from the identity. Posterize,
        solarize and brightness depend on the level alone, so they act on the table's entries
        directly. Equalize, autocontrast and contrast read the histogram that the earlier steps
        of their chain left (the image's, pushed through the table so far); that histogram and
        its table are computed only for the rows whose step needs one (about one in five),
        except inside an XLA program, which needs static shapes, where every row computes them.
        """
        n, k = tf.shape(ops)[0], self.width
        n_rows = n * k * 3
        image_hist = tf.reshape(hist, [-1, 256])  # row: image·3 + channel
        source = tf.reshape(
            tf.broadcast_to(tf.reshape(tf.range(n * 3), [-1, 1, 3]), tf.stack([n, k, 3])), [-1]
        )
        per_row = lambda v: tf.reshape(tf.repeat(tf.reshape(v, [-1]), 3), [-1, 1])  # noqa: E731 - (N, width) → rows
        reads_histogram = [
            self._op(name) for name in ("autocontrast", "equalize", "contrast") if name in self.op_names
        ]
        compact = not _in_xla_context()
        table = tf.broadcast_to(tf.range(256, dtype=tf.int32)[None, :], tf.stack([n_rows, 256]))
        for step in range(ops.shape[-1]):
            op = per_row(ops[:, :, step])
            level = per_row(levels[:, :, step])
            candidates = {
                self._op("posterize"): _ops._posterize_lut(4 - tf.cast(level * 4.0 / 10.0, tf.int32), table),
                self._op("solarize"): _ops._solarize_lut(
                    256 - tf.cast(level * 256.0 / 10.0, tf.int32), table
                ),
            }
            if self.all_ops:
                candidates[self._op("brightness")] = _ops._blend_lut(0.0, level * 1.8 / 10.0 + 0.1, table)
            stepped = _select(op, candidates, table)
            reads = tf.reduce_any(tf.equal(op, reads_histogram), -1)
            if compact:
                # Rows in order, so a chain's three channel rows stay together (contrast reads all three).
                rows = tf.where(reads)[:, 0]
                r_op, r_level, r_source, before = (tf.gather(v, rows) for v in (op, level, source, table))
            else:
                r_op, r_level, r_source, before = op, level, source, table
            counts = tf.gather(image_hist, r_source)
            m = tf.shape(counts)[0]
            flat_before = before + tf.range(m)[:, None] * 256  # each row's entries in a flat array
            if step > 0:
                # Every level's count moves to the level the chain's table so far sends it to.
                moved = tf.math.unsorted_segment_sum(
                    tf.reshape(counts, [-1]), tf.reshape(flat_before, [-1]), m * 256
                )
                counts = tf.reshape(moved, [-1, 256])
            luts = self._histogram_tables(counts, r_op, r_level)
            read = tf.gather(tf.reshape(luts, [-1]), flat_before)
            if compact:
                table = tf.tensor_scatter_nd_update(stepped, rows[:, None], read)
            else:
                table = tf.where(reads[:, None], read, stepped)
        return tf.reshape(table, tf.stack([n, k, 3, 256]))

    def _histogram_tables(self, counts: Any, op: Any, level: Any) -> Any:
        """The tables (rows, 256) of the steps that read their histogram ``counts``; identity elsewhere."""
        candidates = {
            self._op("autocontrast"): _ops._autocontrast_lut(counts),
            self._op("equalize"): _ops._equalize_lut(counts),
        }
        if self.all_ops:
            # ImageEnhance.Contrast blends with the mean of the chain's grey image: its three rows.
            counts3 = tf.cast(tf.reshape(counts, [-1, 3, 256]), tf.float32)
            channel_mean = tf.reduce_sum(counts3 * tf.range(256, dtype=tf.float32), -1) / tf.maximum(
                tf.reduce_sum(counts3, -1), 1.0
            )
            luma = tf.constant(_ops._LUMA, tf.float32) / 65536.0
            grey_mean = tf.floor(tf.reduce_sum(channel_mean * luma, -1, keepdims=True) + 0.5)
            candidates[self._op("contrast")] = _ops._blend_lut(
                tf.reshape(tf.repeat(grey_mean, 3), [-1, 1]), level * 1.8 / 10.0 + 0.1
            )
        return _select(op, candidates, tf.range(256, dtype=tf.int32)[None, :])

    def _affine(self, ops: Any, levels: Any, signs: Any, height: Any, width: Any) -> Any:
        """Compose each chain's geometric operations into one output→input map: (N, width, 6)."""
        h = tf.cast(height, tf.float32)
        w = tf.cast(width, tf.float32)
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        total = tf.eye(3, batch_shape=tf.shape(ops)[:2])
        for step in range(ops.shape[-1]):
            op = ops[:, :, step]
            level = levels[:, :, step]
            sign = signs[:, :, step]
            zero, one = tf.zeros_like(level), tf.ones_like(level)
            degrees = tf.floor(level * 30.0 / 10.0) * sign
            shear = level * 0.3 / 10.0 * sign
            shift_x = tf.floor(level * (w / 3.0) / 10.0) * sign
            shift_y = tf.floor(level * (h / 3.0) / 10.0) * sign
            radians = degrees * (math.pi / 180.0)
            c, s = tf.cos(radians), tf.sin(radians)
            candidates = {
                self._op("rotate"): _matrix(c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy),
                self._op("shear_x"): _matrix(one, shear, -shear * cy, zero, one, zero),
                self._op("shear_y"): _matrix(one, zero, zero, shear, one, -shear * cx),
                self._op("translate_x"): _matrix(one, zero, -shift_x, zero, one, zero),
                self._op("translate_y"): _matrix(one, zero, zero, zero, one, -shift_y),
            }
            step_matrix = _select(op[:, :, None, None], candidates, tf.eye(3, batch_shape=tf.shape(op)))
            # out = step(previous(x)): an output pixel p samples previous at M_step·p, which samples x there.
            total = tf.matmul(total, step_matrix)
        return tf.reshape(total[..., :2, :], tf.concat([tf.shape(ops)[:2], [6]], 0))

    def _enhance_factors(self, ops: Any, levels: Any, name: str) -> Any:
        """Product of a chain's factors for one ImageEnhance op (1 where it does not occur): (N, width)."""
        factor = levels * 1.8 / 10.0 + 0.1
        return tf.reduce_prod(tf.where(tf.equal(ops, self._op(name)), factor, 1.0), axis=-1)

    # -- the pixel work -------------------------------------------------------------------------
    # Several small XLA programs rather than one: XLA fuses gathers into their consumers and then
    # recomputes them per neighbour and channel, so a single program does the gathers many times
    # over on a CPU. Each stage below is one tight loop over its output.
    def _levels_and_histograms(self, images: Any) -> tuple[Any, Any]:
        """8-bit levels padded for the fill (int32, (N, H+3, W+3, 3)) and histograms (N, 3, 256)."""
        levels = _ops._levels(images)
        hist = _ops._histograms(levels)
        if self.all_ops:
            return levels, hist  # colour and sharpness act before the padding (see _sharpen)
        if self.fill_mode == "constant":
            # Level 256 marks the fill: every chain's table maps it to fill_value.
            padded = tf.pad(levels, [[0, 0], [1, 2], [1, 2], [0, 0]], constant_values=256)
        else:
            padded = _ops._pad_for_fill(levels, self.fill_mode, 0)
        return padded, hist

    def _chain_maps(
        self, hist: Any, ops: Any, levels: Any, signs: Any, height: int, width: int
    ) -> tuple[Any, Any]:
        """Each chain's table (N, width, 3, 257; entry 256 is the fill) and affine map (N·width, 6)."""
        tables = self._tables(hist, ops, levels)
        fill = tf.cast(tf.round(tf.clip_by_value(self.fill_value, 0.0, 255.0)), tf.int32)
        tables = tf.concat([tables, tf.fill(tf.concat([tf.shape(tables)[:-1], [1]], 0), fill)], axis=-1)
        transforms = self._affine(ops, levels, signs, height, width)
        return tf.cast(tables, tf.uint8), tf.reshape(transforms, [-1, 6])

    def _tone(self, padded_levels: Any, tables: Any) -> Any:
        """Every chain's table applied to its image's padded levels, as pixel pairs (see
        :func:`~bloodcell.augment.ops._pixel_pairs`): int64 (N·width, H+3, W+2).

        Each channel's table holds its level already shifted into place in the pixel's word, so
        the three lookups add up to the packed pixel.
        """
        n, k = tf.shape(tables)[0], self.width
        shifted = tf.bitwise.left_shift(tf.cast(tables, tf.int32), tf.constant([[0], [8], [16]]))
        rows = tf.reshape(tf.range(n * k * 3) * 257, tf.stack([n, k, 1, 1, 3]))
        words = tf.reduce_sum(tf.gather(tf.reshape(shifted, [-1]), padded_levels[:, None] + rows), -1)
        shape = tf.shape(padded_levels)
        return _ops._pixel_pairs(tf.reshape(words, tf.stack([n * k, shape[1], shape[2]])))

    # all_ops: colour (saturation) and sharpness act after the tables, before the resampling.
    # Three programs (tables, colour, sharpness): fused into one, XLA recomputes the tables' gathers
    # inside the colour and sharpness loops.
    def _tone_unpadded(self, levels: Any, tables: Any) -> Any:
        """Every chain's table applied to its image's levels: uint8 (N·width, H, W, 3)."""
        n, h, w, k = tf.shape(levels)[0], levels.shape[1], levels.shape[2], self.width
        rows = tf.reshape(tf.range(n * k * 3) * 257, tf.stack([n, k, 1, 1, 3]))
        toned = tf.gather(tf.reshape(tables, [-1]), levels[:, None] + rows)
        return tf.reshape(toned, tf.stack([n * k, h, w, 3]))

    def _colour(self, toned: Any, ops: Any, op_levels: Any) -> Any:
        """ImageEnhance.Color per chain (repeated color ops multiply): float32 (N·width, H·W, 3)."""
        h, w = toned.shape[1], toned.shape[2]
        pixels = tf.cast(tf.reshape(toned, tf.stack([-1, h * w, 3])), tf.float32)
        saturation = tf.reshape(self._enhance_factors(ops, op_levels, "color"), [-1, 1, 1])
        luma = [c / 65536.0 for c in _ops._LUMA]
        grey = pixels[:, :, 0:1] * luma[0] + pixels[:, :, 1:2] * luma[1] + pixels[:, :, 2:3] * luma[2]
        return grey + saturation * (pixels - grey)

    def _sharpen(self, pixels: Any, ops: Any, op_levels: Any, height: int, width: int) -> Any:
        """ImageEnhance.Sharpness per chain, then the fill padding, as pixel pairs: int64 (N·width, H+3, W+2)."""
        sharp = tf.reshape(self._enhance_factors(ops, op_levels, "sharpness"), [-1, 1, 1])
        plane = tf.reshape(pixels, tf.stack([-1, height, width * 3]))
        smooth = _ops._smooth_plane(plane, 3)
        inner = plane[:, 1 : height - 1, 3 : (width - 1) * 3]
        blended = tf.pad(smooth + sharp * (inner - smooth), [[0, 0], [1, 1], [3, 3]])
        border = tf.pad(tf.zeros([height - 2, (width - 2) * 3]), [[1, 1], [3, 3]], constant_values=1.0)
        plane = tf.round(tf.clip_by_value(border * plane + (1.0 - border) * blended, 0.0, 255.0))
        toned = tf.cast(tf.reshape(plane, tf.stack([-1, height, width, 3])), tf.uint8)
        padded = _ops._pad_for_fill(toned, self.fill_mode, self.fill_value)
        return _ops._pixel_pairs(_ops._pack_pixels(padded))

    def _interpolate_and_mix(
        self, images: Any, windows: Any, transforms: Any, chain_weights: Any, mix_weight: Any
    ) -> Any:
        """Blend each chain's 2×2 neighbourhoods, mix the chains, then mix with the original: float32.

        Shapes are flattened to (N, width, H·W, ...) because XLA's CPU code runs the same
        arithmetic much slower on (N, width, H, W, 2, 2, 3) arrays, with their many short axes.
        """
        n = tf.shape(images)[0]
        h, w, k = images.shape[1], images.shape[2], self.width
        chains = _ops._interpolate(windows, transforms, h, w, self.interpolation, self.fill_mode, packed=True)
        chains = tf.reshape(chains, tf.stack([n, k, h * w, 3]))
        m = mix_weight[:, None, None]
        out = (1.0 - m) * tf.reshape(tf.cast(images, tf.float32), tf.stack([n, h * w, 3]))
        for i in range(k):
            out += (mix_weight * chain_weights[:, i])[:, None, None] * chains[:, i]
        return tf.reshape(out, tf.stack([n, h, w, 3]))

    def _kernels(self) -> dict[str, Any]:
        # The compiled programs depend only on these settings; instances that share them share the
        # programs (and XLA's compilation cache), e.g. the views of MultiView or a model's copies.
        key = (
            self.width,
            self.all_ops,
            self.interpolation,
            self.fill_mode,
            self.fill_value,
            self.jit_compile,
        )
        if key not in _KERNELS:
            jit = lambda f: tf.function(f, jit_compile=self.jit_compile, autograph=False)  # noqa: E731
            interpolation, fill_mode, xla_gather = self.interpolation, self.fill_mode, self.jit_compile
            _KERNELS[key] = {
                "levels": jit(self._levels_and_histograms),
                # Small tables (N·width·3 rows of 256): TensorFlow's own kernels beat XLA's CPU gathers here.
                "maps": tf.function(self._chain_maps, autograph=False),
                "tone": jit(self._tone_unpadded if self.all_ops else self._tone),
                "colour": jit(self._colour),
                "sharpen": jit(self._sharpen),
                "windows": jit(
                    lambda pairs, t: _ops._pair_windows(pairs, t, interpolation, fill_mode, xla_gather)
                ),
                "mix": jit(self._interpolate_and_mix),
            }
        return _KERNELS[key]

    def augment_images(self, images: Any, seed: Any) -> Any:
        x = _check_batch(images)
        return self.apply_plan(x, self.sample_plan(tf.shape(x)[0], _as_seed_tensor(seed)))

    def apply_plan(self, images: Any, plan: AugMixPlan) -> Any:
        """Augment a batch with given draws (from :meth:`sample_plan`, or chosen by hand to inspect an op).

        Example:
            >>> import numpy as np
            >>> aug = AugMix(width=1, depth=1)
            >>> images = np.full((1, 16, 16, 3), 100, np.uint8)
            >>> solarize = AugMixPlan(ops=[[[aug.op_names.index("solarize")]]], levels=[[[9.9]]],
            ...                       signs=[[[1.0]]], chain_weights=[[1.0]], mix_weight=[1.0])
            >>> int(aug.apply_plan(images, solarize)[0, 0, 0, 0])   # 256 - int(9.9·25.6) = 3 ≤ 100: inverted
            155
        """
        x = _check_batch(images)
        if x.shape[1] is None or x.shape[2] is None:
            raise ConfigurationError(
                f"AugMix needs a known image size, got a batch of shape {tuple(x.shape)}."
            )
        h, w = int(x.shape[1]), int(x.shape[2])
        ops = tf.cast(plan.ops, tf.int32)
        levels = tf.cast(plan.levels, tf.float32)
        signs = tf.cast(plan.signs, tf.float32)
        chain_weights = tf.cast(plan.chain_weights, tf.float32)
        mix_weight = tf.cast(plan.mix_weight, tf.float32)
        k = self._kernels()
        padded, hist = k["levels"](x)
        tables, transforms = k["maps"](hist, ops, levels, signs, h, w)
        toned = k["tone"](padded, tables)
        if self.all_ops:
            toned = k["sharpen"](k["colour"](toned, ops, levels), ops, levels, h, w)
        windows = _ops._window_bytes(k["windows"](toned, transforms))
        out = k["mix"](x, windows, transforms, chain_weights, mix_weight)
        return _restore_dtype(out, x.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            severity=self.severity,
            width=self.width,
            depth=self.depth,
            alpha=self.alpha,
            all_ops=self.all_ops,
            interpolation=self.interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            jit_compile=self.jit_compile,
        )
        return config
