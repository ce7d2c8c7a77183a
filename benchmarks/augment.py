"""Benchmark: AugMix throughput in a ``tf.data`` pipeline, bloodcell against Keras and imgaug.

Every method runs in the same ``bc.pipeline.to_tf_dataset`` pipeline over the same real 96×96
PBC images in batches of ``--batch-size`` (64; repeat, no shuffle), in the same process, interleaved
round by round (the order reversed every other round) so that a change of machine load hits all of
them alike. Each measurement times
``--batches`` batches after ``--warmup`` batches (which include XLA compilation and graph tracing):
images per second, and the process's CPU time per image (all threads: what augmentation takes
from a model training on the same cores).

Methods:
  none                 the pipeline without augmentation (its own cost)
  bloodcell            bc.augment.AugMix()                  (paper defaults, all_ops=False)
  keras                keras.layers.AugMix(all_ops=False)   (same op list; Keras defaults otherwise)
  bloodcell-all        bc.augment.AugMix(all_ops=True)
  keras-all            keras.layers.AugMix()                (Keras's default all_ops=True)
  imgaug               AugMix written with imgaug: 3 chains of 1–3 imgaug ops per image, mixed
                       with per-image Dirichlet/Beta weights in NumPy (tf.numpy_function)
  geometric            bc.augment.RandomGeometric()         (the "cpu" recipe's augmentation)
  robust               bc.augment.RobustAugment()           (the "robust" recipe's: geometric, then
                       2 of the 11 lab-shift augmentations per image, severity 3)
  op:NAME              one lab-shift augmentation on every image, severity 3 (NAME from
                       bc.augment.ROBUST_OPS, e.g. op:jpeg)

Usage:
    python benchmarks/augment.py [--data PATH] [--split val] [--batches 20] [--rounds 3] [--stages]
                                 [--batch-size 64] [--out results.json]

``--data`` defaults to ``<repo>/../shared/data``; it must hold ``pbc96/<split>`` (the PBC dataset
of Acevedo et al. 2020 at 96×96: https://data.mendeley.com/datasets/snkd93bnjr/1, prepared as
described in the README of that folder).
"""

from __future__ import annotations

import math
import os
import statistics

import _harness as h


def imgaug_augmix(severity: int = 3, width: int = 3, alpha: float = 1.0):  # noqa: ANN201
    """AugMix built from imgaug ops (``tf.numpy_function``): the pipeline people write by hand."""
    import numpy as np
    import tensorflow as tf

    from bloodcell._compat.imgaug import import_imgaug

    iaa = import_imgaug()
    s = severity / 10.0
    shear = math.degrees(math.atan(0.3 * s))  # the paper's largest shear factor, 0.3·severity/10, in degrees
    ops = [
        iaa.pillike.Equalize(),
        iaa.pillike.Posterize(nb_bits=(4 - int(4 * s), 4)),
        iaa.Affine(rotate=(-30 * s, 30 * s), mode="reflect"),
        iaa.pillike.Solarize(threshold=(256 - int(256 * s), 256)),
        iaa.ShearX((-shear, shear), mode="reflect"),
        iaa.ShearY((-shear, shear), mode="reflect"),
        iaa.TranslateX(percent=(-s / 3, s / 3), mode="reflect"),
        iaa.TranslateY(percent=(-s / 3, s / 3), mode="reflect"),
        iaa.pillike.EnhanceContrast((1.0, 1.0 + s)),  # pillike.Autocontrast fails on NumPy 2
    ]
    chain = iaa.SomeOf((1, 3), ops)
    rng = np.random.default_rng(0)

    def run(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.uint8)
        n = len(x)
        weights = rng.dirichlet([alpha] * width, size=n).astype(np.float32)
        m = rng.beta(alpha, alpha, size=n).astype(np.float32)[:, None, None, None]
        mix = np.zeros(x.shape, np.float32)
        for i in range(width):
            mix += weights[:, i, None, None, None] * np.asarray(chain(images=x), np.float32)
        return ((1 - m) * x + m * mix).astype(np.float32)

    def augment(images):  # noqa: ANN001, ANN202
        out = tf.numpy_function(run, [images], tf.float32, stateful=True)
        return tf.ensure_shape(out, images.shape)

    return augment


def make(method: str):  # noqa: ANN201
    import keras

    import bloodcell as bc

    if method == "none":
        return None
    if method == "bloodcell":
        return bc.augment.AugMix()
    if method == "bloodcell-all":
        return bc.augment.AugMix(all_ops=True)
    if method == "keras":
        return keras.layers.AugMix(value_range=(0, 255), all_ops=False, seed=0)
    if method == "keras-all":
        return keras.layers.AugMix(value_range=(0, 255), seed=0)
    if method == "imgaug":
        return imgaug_augmix()
    if method == "geometric":
        return bc.augment.RandomGeometric()
    if method == "robust":
        return bc.augment.RobustAugment()
    if method.startswith("op:"):
        return bc.augment.RobustAugment(num_ops=1, ops=[method[3:]], geometric=False)
    raise ValueError(method)


def measure(data, augment, batch_size: int, warmup: int, batches: int) -> tuple[float, float]:  # noqa: ANN001
    """Images per second and CPU milliseconds per image over ``batches`` batches after ``warmup``."""
    import bloodcell as bc

    ds = bc.pipeline.to_tf_dataset(
        data, batch_size, augment=augment, seed=0, repeat=True, drop_remainder=True
    )
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    with h.Stopwatch() as watch:
        for _ in range(batches):
            next(it)
    images = batches * batch_size
    return images / watch.wall, watch.cpu * 1000 / images


def stage_times(data, batch_size: int, repeats: int = 5) -> dict[str, tuple[float, float]]:  # noqa: ANN001
    """(wall, CPU) milliseconds per batch for each compiled stage of bloodcell's AugMix, called directly.

    Wall: best of ``repeats`` calls; CPU: the mean over them.
    """
    import tensorflow as tf

    import bloodcell as bc
    from bloodcell.augment import ops

    aug = bc.augment.AugMix()
    x = tf.constant(data.images[:batch_size], tf.float32)
    plan = aug.sample_plan(batch_size, tf.constant([1, 2], tf.int64))
    k = aug._kernels()
    steps = {}
    padded, hist = k["levels"](x)
    tables, transforms = k["maps"](hist, plan.ops, plan.levels, plan.signs, 96, 96)
    toned = k["tone"](padded, tables)
    windows = ops._window_bytes(k["windows"](toned, transforms))
    steps["levels + histograms"] = lambda: k["levels"](x)
    steps["tables + affine maps"] = lambda: k["maps"](hist, plan.ops, plan.levels, plan.signs, 96, 96)
    steps["tables applied"] = lambda: k["tone"](padded, tables)
    steps["2x2 window gather"] = lambda: k["windows"](toned, transforms)
    steps["interpolate + mix"] = lambda: k["mix"](x, windows, transforms, plan.chain_weights, plan.mix_weight)
    whole = tf.function(lambda images, seed: aug.augment_images(images, seed), autograph=False)
    seed = tf.constant([1, 2], tf.int64)
    steps["whole AugMix (one graph)"] = lambda: whole(x, seed)
    out = {}
    for name, fn in steps.items():
        fn()
        with h.Stopwatch() as watch:
            walls = h.repeat(lambda fn=fn: tf.nest.map_structure(lambda t: t.numpy(), fn()), repeats)
        out[name] = (min(walls) * 1000, watch.cpu * 1000 / repeats)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = h.parser(__file__, __doc__, data="pbc96/<split>", out_file=True)
    parser.add_argument(
        "--split", default="val", help="pbc96 split to read (val: 1,743 images; train: 11,919)"
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of all methods, the order reversed every other"
    )
    parser.add_argument(
        "--methods", default="none,bloodcell,keras,bloodcell-all,keras-all,imgaug", help="comma-separated"
    )
    parser.add_argument("--stages", action="store_true", help="also time each stage of bloodcell's AugMix")
    args = parser.parse_args(argv)
    (data,) = h.load_pbc96(args.data, args.split)
    print(h.markdown_header(h.environment(args.command)), flush=True)
    batch = args.batch_size
    results: dict = {"batch_size": batch, "stages": {}, "methods": {}}
    lines: list[str] = []
    if args.stages:
        lines.append(
            f"AugMix stages, one batch of {batch} (load {os.getloadavg()[0]:.2f}): wall (best of 5), CPU (mean)"
        )
        for name, (wall, cpu_ms) in stage_times(data, batch).items():
            lines.append(f"  {name:<26} {wall:7.1f} ms  {cpu_ms:7.1f} ms CPU")
            results["stages"][name] = {"wall_ms": wall, "cpu_ms": cpu_ms}
        print("\n".join(lines), flush=True)
    methods = args.methods.split(",")
    augmenters = {m: make(m) for m in methods}
    print(f"data: pbc96/{args.split} ({len(data)} images, batches of {batch})")
    cpu: dict[str, list[float]] = {m: [] for m in methods}

    def side(method: str):
        def run() -> float:
            rate, cpu_ms = measure(data, augmenters[method], batch, args.warmup, args.batches)
            cpu[method].append(cpu_ms)
            return rate

        return run

    def report(round_: int, rates: dict[str, list[float]]) -> None:
        print(
            f"round {round_ + 1} (load {os.getloadavg()[0]:.2f}): "
            + ", ".join(f"{m} {rates[m][-1]:.0f} img/s ({cpu[m][-1]:.2f} ms CPU/img)" for m in methods),
            flush=True,
        )

    rates = h.interleave({m: side(m) for m in methods}, args.rounds, on_round=report)
    table = ["method          best img/s  median img/s  ms/image (median)  CPU ms/image (median)"]
    for m in methods:
        med = statistics.median(rates[m])
        table.append(
            f"{m:<15} {max(rates[m]):>10.0f} {med:>13.0f} {1000 / med:>18.3f} {statistics.median(cpu[m]):>22.3f}"
        )
        results["methods"][m] = {"img_per_s": rates[m], "cpu_ms_per_image": cpu[m]}
    for ours, theirs in (("bloodcell", "keras"), ("bloodcell-all", "keras-all"), ("bloodcell", "imgaug")):
        if ours in rates and theirs in rates:
            per_round = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
            table.append(
                f"{ours} / {theirs}: median ratio {statistics.median(per_round):.1f}x "
                f"(per round: {', '.join(f'{x:.1f}' for x in per_round)})"
            )
    print("\n" + "\n".join(table))
    if args.out is not None:
        body = "\n".join(lines + ([""] if lines else []) + ["```", *table, "```"])
        h.write_results(args.out, results, body, command=args.command)
    return results


if __name__ == "__main__":
    main()
