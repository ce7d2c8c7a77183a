"""Does giving the input pipeline its own, lower-priority thread let AugMix hide behind the model?

On the 2-core VM, MobileNetV3Small's training step keeps about 1.5–1.7 cores busy and AugMix costs
about 0.8–0.9 ms of CPU per image (batch 32), so augmentation either fills the idle part of the cores
or slows the model's steps. This script tries the two levers ``tf.data`` and Linux offer, each as
a variant of the Trainer's pipeline (``to_tf_dataset(..., augment=AugMix())``, batch 32):

* ``default``: the pipeline built as the Trainer builds it (one-hot labels, whole batches);
* ``private``: ``tf.data`` options ``private_threadpool_size=1`` and ``max_intra_op_parallelism=1``
  (the pipeline's functions run on one thread of their own; ``--threads`` shows that part of the
  work still runs on TensorFlow's shared threads);
* ``private-nice``: the same, and that thread lowered to nice 19 (Linux), so the kernel runs it
  only when a core is free of the model's threads.

Each variant trains its own model; ``raw`` is ``model.fit`` on in-memory float tensors without
augmentation, as in ``train_throughput.py``. The variants take turns epoch by epoch (the order
reversed every other epoch), each epoch timed after ``--skip-steps`` batches; a variant's ratio is
the geometric mean over epochs of its speed / raw's speed in the same epoch.

``--threads`` instead iterates each pipeline alone and prints the CPU seconds each thread of the
process spent on it (from ``/proc/self/task``), which shows where AugMix's work runs; it adds
``private-nojit``, the ``private`` pipeline with ``AugMix(jit_compile=False)``.

Usage::

    python benchmarks/pipeline_threads.py --epochs 8
    python benchmarks/pipeline_threads.py --threads
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import _harness as h

VARIANTS = ("default", "private", "private-nice")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(__file__, __doc__, data="pbc96/train (else the bundled sample is used)", out_file=True)
    p.add_argument("--images", type=int, default=2048, help="images per epoch")
    p.add_argument("--epochs", type=int, default=8, help="timed epochs per variant (after one warm-up)")
    p.add_argument("--skip-steps", type=int, default=8)
    p.add_argument("--threads", action="store_true", help="per-thread CPU of each pipeline alone")
    return p.parse_args(argv)


def _lower_this_thread(x):
    # Linux keeps a nice value per thread; the private pool's thread dies with the iterator.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    return x


def pipeline(data, variant: str, batch_size: int = 32, passes: int = 1000):
    import numpy as np
    import tensorflow as tf

    import bloodcell as bc

    indices = np.tile(np.arange(len(data)), passes)  # endless enough; fit takes steps_per_epoch
    ds = bc.pipeline.to_tf_dataset(
        data,
        batch_size,
        augment=bc.augment.AugMix(),
        one_hot=True,
        seed=1,
        drop_remainder=True,
        indices=indices,
    )
    if variant == "default":
        return ds
    if variant == "private-nice":
        # With one private thread every stage runs on it, so lowering it where the batch leaves is enough.
        ds = ds.map(lambda x, y: (tf.numpy_function(_lower_this_thread, [x], tf.float32, stateful=True), y))
        ds = ds.map(lambda x, y: (tf.ensure_shape(x, [None, *data.image_shape]), y))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def thread_cpu() -> dict[int, tuple[str, float, int]]:
    """CPU seconds and nice value of every thread of this process."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks, int(fields[16]))
    return out


def threads_report(data, batches: int = 100) -> list[dict]:
    results = []
    for variant in (*VARIANTS, "private-nojit"):
        it = iter(pipeline(data, variant))
        for _ in range(5):  # compile and fill the buffers
            next(it)
        before = thread_cpu()
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        wall = time.perf_counter() - start
        after = thread_cpu()
        rows = []
        for tid, (name, cpu, nice) in after.items():
            used = cpu - before.get(tid, (name, 0.0, nice))[1]
            if used >= 0.05:
                rows.append({"tid": tid, "name": name, "cpu_s": round(used, 2), "nice": nice})
        main_tid = threading.main_thread().native_id
        row = {
            "variant": variant,
            "images": batches * 32,
            "wall_s": round(wall, 2),
            "cpu_s": round(sum(r["cpu_s"] for r in rows), 2),
            "threads": rows,
            "main_thread": main_tid,
        }
        print(json.dumps(row), flush=True)
        results.append(row)
        del it
    return results


def training(data, epochs: int, skip: int) -> dict:
    import numpy as np
    from train_throughput import compiled_model, plain_model

    batch_size = 32
    steps = len(data) // batch_size
    raw, x, y = plain_model("mobilenetv3small", data)
    sides = {"raw": (raw, dict(x=x, y=y, batch_size=batch_size, shuffle=True))}
    for variant in VARIANTS:
        sides[variant] = (
            compiled_model("mobilenetv3small"),
            dict(x=pipeline(data, variant), steps_per_epoch=steps),
        )
    speeds: dict[str, list[float]] = {name: [] for name in sides}
    for epoch in range(epochs + 1):
        for name in h.alternate(list(sides), epoch):
            model, kwargs = sides[name]
            timer = h.epoch_timer(skip)
            model.fit(**kwargs, initial_epoch=epoch, epochs=epoch + 1, callbacks=[timer], verbose=0)
            if epoch:  # the first epoch builds the graphs
                done, seconds = timer.steady[-1]
                speeds[name].append(round(done * batch_size / seconds, 1))
        if epoch:
            print(f"epoch {epoch}: " + ", ".join(f"{n} {speeds[n][-1]}" for n in sides), flush=True)
    ratios = {
        variant: round(h.geometric_mean([v / r for v, r in zip(speeds[variant], speeds["raw"])]), 3)
        for variant in VARIANTS
    }
    return {
        "images_per_epoch": len(data),
        "timed_epochs": epochs,
        "median_img_s": {n: round(float(np.median(s)), 1) for n, s in speeds.items()},
        "ratio_to_raw": ratios,
        "epoch_img_s": speeds,
    }


def main(argv: list[str] | None = None) -> dict | list:
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("This benchmark reads /proc and sets per-thread nice values: Linux only.")
    from train_throughput import images

    n = args.images - args.images % 32
    if args.epochs < 1 or args.skip_steps < 1 or n // 32 <= args.skip_steps:
        raise SystemExit(
            f"Need --epochs >= 1 and --skip-steps >= 1 with more batches of 32 per epoch than skipped; "
            f"got --epochs {args.epochs}, --skip-steps {args.skip_steps}, {n // 32} batches."
        )
    data, source = images(args.data, n)
    print(f"data: {source}, {n} images", flush=True)
    if args.threads:
        result: dict | list = threads_report(data)
    else:
        result = training(data, args.epochs, args.skip_steps)
        print(json.dumps(result), flush=True)
    if args.out:
        table = None
        if not args.threads:
            table = "\n".join(
                ["| pipeline | median img/s | ratio to raw |", "|---|---:|---:|"]
                + [
                    f"| {name} | {speed} | {result['ratio_to_raw'].get(name, 1.0)} |"
                    for name, speed in result["median_img_s"].items()
                ]
            )
        h.write_results(args.out, result, table, command=args.command)
    return result


if __name__ == "__main__":
    main()
