"""Training throughput: the Trainer with AugMix against raw ``model.fit`` on in-memory tensors.

For each backbone, the same classifier (random weights, 96×96 inputs, the seed head) is trained:

* **baseline**: ``model.fit(x, y)`` on a float32 tensor already in memory, no augmentation;
* **Trainer**: :class:`bloodcell.Trainer` with ``augment=bloodcell.augment.AugMix()``, i.e. the
  uint8 images gathered, augmented in ``tf.data`` and fed batch by batch.

Both run in this process on the same real images, in rounds: each round builds both models afresh
and trains them one after the other, the baseline first in rounds 1, 3, … and the Trainer first in
rounds 2, 4, …. Images per second are measured over whole epochs after a warm-up epoch (the first epoch
builds the graph), as the median over the timed epochs, and the ratio Trainer / baseline is taken
per round. The figure of merit (goal ≥ 0.95: augmentation must hide behind the model) is the
order-balanced ratio: the geometric mean of the per-round ratios within each order, then of the
two, which cancels any effect of running first or second that scales speeds (one interrupted run
here favoured the side that ran second; a full one showed none). The per-round ratios and each
order's mean are printed with it: on this 2-core VM single rounds spread by ±10 %.

With ``--interleave`` the two sides alternate epoch by epoch within a round instead of running one
fit after the other: the baseline's epochs run from a callback at the Trainer's epoch boundaries
(before each Trainer epoch in rounds 1, 3, …, after it in rounds 2, 4, …), so the two speeds compared
are measured seconds apart rather than minutes, and the machine's drift (the baseline alone moved
between 175 and 229 img/s from round to round here) falls mostly on both sides alike. An epoch's
speed is then taken in the steady state, from the end of its ``--skip-steps``-th batch to its end,
since the Trainer's pipeline keeps filling its prefetch buffer while the baseline's epoch runs.

Usage::

    python benchmarks/train_throughput.py                       # both backbones, 4 rounds
    python benchmarks/train_throughput.py --backbones mobilenetv3small --images 512 --epochs 2 --rounds 2
    python benchmarks/train_throughput.py --backbones mobilenetv3small --interleave --epochs 8 --rounds 4
    python benchmarks/train_throughput.py --backbones mobilenetv3small --interleave --steps-per-execution 8
    python benchmarks/train_throughput.py --backbones mobilenetv3small --interleave --intra-op-threads 1

Data: ``--data`` holds ``pbc96/train`` (default ``<repo>/../shared/data``); without it the bundled
800-image sample is used.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

import _harness as h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(__file__, __doc__, data="pbc96/train (else the bundled sample is used)", out_file=True)
    p.add_argument("--backbones", nargs="+", default=["efficientnetv2s", "mobilenetv3small"])
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help="images per epoch (default: 640 for EfficientNetV2S, 2048 otherwise)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument(
        "--rounds", type=int, default=4, help="rounds of both sides, alternating which goes first (even, ≥ 2)"
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="alternate single epochs of the two sides within each round (see the module docstring)",
    )
    p.add_argument(
        "--skip-steps",
        type=int,
        default=8,
        help="with --interleave, time each epoch from the end of this batch on (default: %(default)s)",
    )
    p.add_argument(
        "--augment",
        choices=("augmix", "none"),
        default="augmix",
        help="the Trainer's augmentation; none measures the Trainer's own pipeline (default: %(default)s)",
    )
    p.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="the Trainer's steps_per_execution (default: %(default)s, the Trainer's default)",
    )
    p.add_argument(
        "--baseline-steps-per-execution",
        type=int,
        default=1,
        help="the baseline's steps_per_execution (default: %(default)s, Keras's default)",
    )
    p.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="TensorFlow's threads within one op, for both sides (default: 0, TensorFlow's choice)",
    )
    p.add_argument(
        "--inter-op-threads",
        type=int,
        default=0,
        help="TensorFlow's ops run at once, for both sides (default: 0, TensorFlow's choice)",
    )
    return p.parse_args(argv)


def images(data_dir: Path, n: int):
    """``n`` images drawn from pbc96/train (or the bundled sample), in file order, and their source."""
    import numpy as np

    data, source = h.load_split_or_sample(data_dir, "train")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(data), size=n, replace=n > len(data))
    return data.subset(np.sort(pick)), source


def build(backbone: str, seed: int = 0):
    import keras

    import bloodcell as bc

    keras.utils.set_random_seed(seed)
    return bc.build_classifier(backbone, head="seed", weights=None, input_shape=(96, 96, 3))


def compiled_model(backbone: str, steps_per_execution: int = 1):
    """The classifier compiled as the baseline trains it (Adam 1e-3, cross-entropy, accuracy)."""
    import keras

    model = build(backbone)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


def plain_model(backbone: str, data, steps_per_execution: int = 1):
    """The baseline side: a compiled model and the images as float32 tensors already in memory."""
    import numpy as np
    import tensorflow as tf

    model = compiled_model(backbone, steps_per_execution)
    x = tf.constant(data.images.astype(np.float32))  # in memory, already float
    y = tf.constant(np.eye(data.num_classes, dtype=np.float32)[data.labels])
    return model, x, y


def timed_trainer(
    backbone: str, batch_size: int, callbacks: list, augment: str = "augmix", steps_per_execution: int = 1
):
    """The Trainer side: AugMix in the pipeline, no early stopping, LR reduction or best-weight restore.

    ``augment="none"`` leaves AugMix out: the Trainer's own pipeline against raw ``fit``.
    """
    import bloodcell as bc

    return bc.Trainer(
        build(backbone),
        augment=bc.augment.AugMix() if augment == "augmix" else None,
        batch_size=batch_size,
        callbacks=callbacks,
        early_stopping_patience=None,
        reduce_lr_patience=None,
        restore_best=False,
        steps_per_execution=steps_per_execution,
        verbose=0,
    )


def baseline(backbone: str, data, batch_size: int, epochs: int, steps_per_execution: int = 1) -> float:
    import numpy as np

    model, x, y = plain_model(backbone, data, steps_per_execution)
    timer = h.epoch_timer()
    model.fit(x, y, batch_size=batch_size, epochs=epochs + 1, shuffle=True, callbacks=[timer], verbose=0)
    return len(data) / float(np.median(timer.seconds[1:]))  # whole batches only (see main)


def with_trainer(
    backbone: str, data, batch_size: int, epochs: int, augment: str = "augmix", steps_per_execution: int = 1
) -> float:
    import numpy as np

    timer = h.epoch_timer()
    trainer = timed_trainer(backbone, batch_size, [timer], augment, steps_per_execution)
    trainer.fit(data, None, epochs=epochs + 1)
    return len(data) / float(np.median(timer.seconds[1:]))


def interleaved(
    backbone: str,
    data,
    batch_size: int,
    epochs: int,
    baseline_first: bool,
    skip: int,
    augment: str = "augmix",
    steps_per_execution: int = 1,
    baseline_steps_per_execution: int = 1,
) -> tuple[float, float]:
    """Both sides in one round, alternating single epochs: (baseline img/s, Trainer img/s).

    The baseline's epochs run inside the Trainer's fit, from a callback at its epoch boundaries,
    each a one-epoch ``model.fit`` continuing the last (Keras keeps the compiled step between calls).
    """
    import keras
    import numpy as np

    plain, x, y = plain_model(backbone, data, baseline_steps_per_execution)
    plain_timer, trainer_timer = h.epoch_timer(skip), h.epoch_timer(skip)
    done = []

    def baseline_epoch() -> None:
        plain.fit(
            x,
            y,
            batch_size=batch_size,
            initial_epoch=len(done),
            epochs=len(done) + 1,
            shuffle=True,
            callbacks=[plain_timer],
            verbose=0,
        )
        done.append(True)

    class Alternate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if baseline_first:
                baseline_epoch()

        def on_epoch_end(self, epoch, logs=None):
            if not baseline_first:
                baseline_epoch()

    # The timer sits inside Alternate's boundaries: the Trainer's epochs are timed without the baseline's.
    callbacks = [Alternate(), trainer_timer] if baseline_first else [trainer_timer, Alternate()]
    trainer = timed_trainer(backbone, batch_size, callbacks, augment, steps_per_execution)
    trainer.fit(data, None, epochs=epochs + 1)

    def speed(timer) -> float:  # median over the timed epochs (the first builds the graph)
        return float(np.median([steps * batch_size / seconds for steps, seconds in timer.steady[1:]]))

    return speed(plain_timer), speed(trainer_timer)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.rounds < 2 or args.rounds % 2 or args.epochs < 1:
        raise SystemExit(
            f"--rounds must be even and at least 2 (each order equally often), --epochs at least 1; "
            f"got {args.rounds} and {args.epochs}."
        )
    if args.skip_steps < 1:
        raise SystemExit(f"--skip-steps must be at least 1, got {args.skip_steps}.")
    if min(args.steps_per_execution, args.baseline_steps_per_execution) < 1:
        raise SystemExit(
            "--steps-per-execution and --baseline-steps-per-execution must be at least 1, got "
            f"{args.steps_per_execution} and {args.baseline_steps_per_execution}."
        )
    if min(args.intra_op_threads, args.inter_op_threads) < 0:
        raise SystemExit(
            "--intra-op-threads and --inter-op-threads must be 0 (TensorFlow's choice) or more, got "
            f"{args.intra_op_threads} and {args.inter_op_threads}."
        )
    import keras
    import numpy as np
    import tensorflow as tf

    import bloodcell as bc

    # Process-wide, and only before TensorFlow runs its first op: so both sides share them. TensorFlow's
    # own calls rather than bc.training.set_cpu_threads, so that benchmarks/revisions.py can run this
    # script against library revisions that predate it.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    results = []
    for backbone in args.backbones:
        n = args.images or (640 if "v2s" in backbone.lower() else 2048)
        n -= n % args.batch_size  # whole batches: both sides see the same work
        data, source = images(args.data, n)
        speeds: dict[str, list[float]] = {"baseline": [], "trainer": []}
        ratios = []
        steps = n // args.batch_size
        if args.interleave and steps <= args.skip_steps:
            raise SystemExit(
                f"--interleave times each epoch after batch {args.skip_steps}, but an epoch has only "
                f"{steps} batches; raise --images or lower --skip-steps."
            )
        for round_ in range(args.rounds):
            speed = {}
            if args.interleave:
                keras.backend.clear_session()
                speed["baseline"], speed["trainer"] = interleaved(
                    backbone,
                    data,
                    args.batch_size,
                    args.epochs,
                    round_ % 2 == 0,
                    args.skip_steps,
                    args.augment,
                    args.steps_per_execution,
                    args.baseline_steps_per_execution,
                )
            else:
                runs = [
                    (
                        "baseline",
                        functools.partial(baseline, steps_per_execution=args.baseline_steps_per_execution),
                    ),
                    (
                        "trainer",
                        functools.partial(
                            with_trainer, augment=args.augment, steps_per_execution=args.steps_per_execution
                        ),
                    ),
                ]
                for label, fn in (runs[i] for i in h.alternate([0, 1], round_)):
                    keras.backend.clear_session()
                    speed[label] = fn(backbone, data, args.batch_size, args.epochs)
            for label in ("baseline", "trainer"):
                speeds[label].append(round(speed[label], 1))
            ratios.append(round(speed["trainer"] / speed["baseline"], 3))
            print(
                f"{backbone} round {round_ + 1}/{args.rounds}: baseline {speed['baseline']:.1f} img/s, "
                f"Trainer + {args.augment} {speed['trainer']:.1f} img/s, ratio {ratios[-1]:.3f}",
                flush=True,
            )
        row = {
            "backbone": backbone,
            "images_per_epoch": n,
            "batch_size": args.batch_size,
            "timed_epochs": args.epochs,
            "rounds": args.rounds,
            "interleaved": args.interleave,
            "augment": args.augment,
            "steps_per_execution": args.steps_per_execution,
            "baseline_steps_per_execution": args.baseline_steps_per_execution,
            "skip_steps": args.skip_steps if args.interleave else None,
            "intra_op_threads": args.intra_op_threads,
            "inter_op_threads": args.inter_op_threads,
            "baseline_img_s": round(float(np.median(speeds["baseline"])), 1),
            "trainer_img_s": round(float(np.median(speeds["trainer"])), 1),
            "ratio": round(h.order_balanced(ratios), 3),
            "ratio_baseline_first": round(h.geometric_mean(ratios[0::2]), 3),
            "ratio_trainer_first": round(h.geometric_mean(ratios[1::2]), 3),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "round_ratios": ratios,  # baseline first in rounds 1, 3, ...
            "round_baseline_img_s": speeds["baseline"],
            "round_trainer_img_s": speeds["trainer"],
            "data": source,
            "library": str(Path(bc.__file__).parent),
            "load_1min": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.out:
        h.write_results(args.out, results, markdown(results), command=args.command)
    return results


def markdown(results: list[dict]) -> str:
    """One row per backbone: the medians, the order-balanced ratio and the ratio of each round."""
    lines = [
        "| backbone | images/epoch | baseline img/s | Trainer img/s | ratio (order-balanced) | rounds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['backbone']} | {r['images_per_epoch']} | {r['baseline_img_s']} | {r['trainer_img_s']} | "
            f"{r['ratio']} | {', '.join(map(str, r['round_ratios']))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
