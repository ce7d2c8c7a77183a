"""CPU accuracy track: train from scratch on pbc96/train within a time budget, choose on pbc96/val.

No pretrained weights: the backbone starts from random weights. The schedule is fitted to the
budget: a calibration runs two short epochs of the real training loop (validation pass, EMA swap,
checkpoints and resume state included) and measures the graph-building time, the time per step and
what an epoch costs besides its steps; the number of whole epochs that fit in what is left (less
5 % for the machine's drift) is computed, and a cosine learning-rate schedule (with warm-up) runs
over exactly those epochs. Validation accuracy is measured on the exponential moving
average of the weights (Keras ``use_ema`` + ``SwapEMAWeights``) after every epoch, and the best
epoch's weights are kept. A guard stops training if an epoch would overrun the budget. Last, the
BatchNorm statistics are recomputed for those weights over 100 training batches
(:func:`bloodcell.training.recalibrate_batchnorm`; its time is measured in the calibration too and
counted in the budget): the moving statistics of momentum 0.9 cover only the last ~10 batches, and
they were gathered for the raw weights, not for the EMA weights that are validated.

The budget counts everything after the data is decoded: model building, calibration, training and
the per-epoch validation passes. After it, the chosen model is also evaluated with test-time
augmentation (the mean over the 8 flips and right-angle rotations, ``tta="d4"``); that number is
reported separately, since it costs 8 predictions per image at inference.

Usage (the full run is 30 minutes on 2 cores)::

    python benchmarks/accuracy_cpu.py --budget-min 30 --seed 0
    python benchmarks/accuracy_cpu.py --budget-min 3 --seed 0          # a short check
    # precise BatchNorm applied afterwards to finished runs (their best model), before/after:
    python benchmarks/accuracy_cpu.py --recalibrate runs/accuracy_cpu/mobilenetv3small-seed*-30min

Data: ``--data`` points at a folder holding ``pbc96/train`` and ``pbc96/val`` (class folders of
96×96 JPEGs), by default ``<repo>/../shared/data``. Without it, download the PBC dataset (Acevedo
et al. 2020, Mendeley Data, doi:10.17632/snkd93bnjr.1, CC BY 4.0), centre-crop each image to a
square and resize it to 96×96, in class folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import _harness as h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(__file__, __doc__, out=h.RUNS / "accuracy_cpu")
    p.add_argument(
        "--backbone", default="mobilenetv3small", help="registered backbone (default: %(default)s)"
    )
    p.add_argument("--budget-min", type=float, default=30.0, help="training time budget in minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="default: the cpu preset's")
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: preset's)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--ema-momentum", type=float, default=None)
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument(
        "--augment",
        choices=["geometric", "augmix", "none"],
        default=None,
        help="augmentation (default: the cpu preset's, geometric)",
    )
    p.add_argument("--no-ema", action="store_true", help="no weight averaging")
    p.add_argument(
        "--calibration-steps",
        type=int,
        default=25,
        help="training steps per calibration epoch (two are timed)",
    )
    p.add_argument(
        "--bn-batches",
        type=int,
        default=100,
        help="batches for precise BatchNorm after training, inside the budget (0: off; default %(default)s)",
    )
    p.add_argument(
        "--recalibrate",
        type=Path,
        nargs="+",
        default=None,
        metavar="RUN_DIR",
        help="no training: apply precise BatchNorm to the best model of finished runs and report before/after",
    )
    p.add_argument("--verbose", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import keras
    import numpy as np

    import bloodcell as bc
    from bloodcell._io import atomic_path

    train, val = h.load_pbc96(args.data)
    if args.recalibrate:
        return recalibrate_runs(args.recalibrate, train, val, args.bn_batches or 100, args.command)
    changes = {"backbone": args.backbone}
    for flag, key in (
        ("batch_size", "batch_size"),
        ("learning_rate", "learning_rate"),
        ("weight_decay", "weight_decay"),
        ("ema_momentum", "ema_momentum"),
        ("label_smoothing", "label_smoothing"),
    ):
        if getattr(args, flag) is not None:
            changes[key] = getattr(args, flag)
    if args.no_ema:
        changes["ema"] = False
    if args.augment is not None:
        changes["augment"] = None if args.augment == "none" else args.augment
    config = bc.experiments.Config.preset("cpu", **changes)
    budget = args.budget_min * 60.0
    start = time.perf_counter()  # the budget starts here: data decoded, nothing built yet

    # 1. Calibration: two short epochs of the real training loop (same callbacks, checkpoints, EMA swap and
    # a full validation pass), so the per-epoch cost that is not training steps is measured, not guessed.
    keras.utils.set_random_seed(args.seed)
    probe = config.build_model(num_classes=train.num_classes)
    steps = max(1, -(-len(train) // config.batch_size))
    calib = train.subset(np.arange(min(len(train), args.calibration_steps * config.batch_size)))
    timer = h.epoch_timer(skip=0)
    with tempfile.TemporaryDirectory() as scratch:
        probe_trainer = bc.Trainer(
            probe,
            augment=config.build_augmenter(),
            seed=args.seed,
            verbose=0,
            callbacks=[timer],
            output_dir=scratch,
            **config.trainer_kwargs(),
        )
        probe_trainer.fit(calib, val, epochs=2)
    # One whole epoch = the measured second calibration epoch plus the steps it did not have.
    epoch_seconds = timer.last_epoch_seconds + (steps - timer.last_epoch_steps) * timer.seconds_per_step
    # Precise BatchNorm at the end: graph tracing plus a cost per batch, from two timed short runs.
    bn_seconds = 0.0
    if args.bn_batches:
        short, long = [
            h.timed(bc.training.recalibrate_batchnorm, probe, train, batches=n, batch_size=config.batch_size)
            for n in (4, 12)
        ]
        per_batch = max(0.0, (long - short) / 8)
        bn_seconds = max(0.0, short - 4 * per_batch) + args.bn_batches * per_batch
    del probe, probe_trainer
    keras.backend.clear_session()

    # 2. Plan: as many whole epochs as fit in the rest of the budget, after building the training graph
    # again (measured above), with 5 % kept for the machine's drift.
    keras.utils.set_random_seed(args.seed)
    model = config.build_model(num_classes=train.num_classes)
    elapsed = time.perf_counter() - start
    usable = budget - elapsed - timer.build_seconds - bn_seconds
    epochs = max(1, int(0.95 * usable // epoch_seconds))
    print(
        f"calibration: graph {timer.build_seconds:.0f} s, {timer.seconds_per_step * 1000:.0f} ms/step, "
        f"≈ {epoch_seconds:.0f} s/epoch with validation and checkpoints, precise BatchNorm ≈ {bn_seconds:.0f} s; "
        f"{elapsed:.0f} s used; planning {epochs} epochs",
        flush=True,
    )

    # 3. Train with a cosine schedule over exactly those epochs; stop early if the budget runs out.
    guard = bc.training.TimeBudget(budget - bn_seconds, start=start)
    out = args.out / f"{args.backbone}-seed{args.seed}-{args.budget_min:g}min"
    trainer = bc.Trainer(
        model,
        augment=config.build_augmenter(),
        seed=args.seed,
        verbose=args.verbose,
        callbacks=[guard],
        output_dir=out / "train",
        **config.trainer_kwargs(),
    )
    history = trainer.fit(train, val, epochs=epochs).history  # ends on the best epoch's weights
    fit_seconds = time.perf_counter() - start

    # 4. Precise BatchNorm: statistics recomputed for the chosen (EMA) weights, inside the budget.
    before = bc.evaluate(model, val, batch_size=256)  # only reports, so not counted
    bn_used = 0.0
    if args.bn_batches:
        bn_used = h.timed(
            bc.training.recalibrate_batchnorm,
            model,
            train,
            batches=args.bn_batches,
            batch_size=config.batch_size,
            seed=args.seed,
        )
    train_seconds = fit_seconds + bn_used

    report = bc.evaluate(model, val, batch_size=256)
    report_tta = bc.evaluate(model, val, batch_size=256, tta="d4")
    val_acc = history["val_accuracy"]
    best = int(np.argmax(val_acc))
    result = {
        "backbone": args.backbone,
        "seed": args.seed,
        "budget_min": args.budget_min,
        "planned_epochs": epochs,
        "epochs_run": len(val_acc),
        "stopped_by_budget": guard.stopped,
        "seconds": round(train_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "plan_seconds": round(elapsed, 1),
        "best_epoch": best + 1,
        "best_val_accuracy": val_acc[best],
        "last_val_accuracy": val_acc[-1],
        "selected_val_accuracy": report.accuracy,
        "selected_val_f1_macro": report.f1_macro,
        "before_bn_val_accuracy": before.accuracy,
        "bn_batches": args.bn_batches,
        "bn_seconds": round(bn_used, 1),
        "selected_val_accuracy_tta_d4": report_tta.accuracy,
        "selected_val_f1_macro_tta_d4": report_tta.f1_macro,
        "calibration": {
            "graph_seconds": round(timer.build_seconds, 1),
            "ms_per_step": round(1000 * timer.seconds_per_step, 1),
            "epoch_seconds": round(epoch_seconds, 1),
            "bn_seconds": round(bn_seconds, 1),
        },
        "epoch_seconds": [round(t, 1) for t in guard.epoch_seconds],
        "epoch_ends": [round(t, 1) for t in guard.epoch_ends],  # since the budget's start
        "config": config.to_dict(),
    }
    summary = (
        f"{args.backbone}, seed {args.seed}, budget {args.budget_min:g} min: {len(val_acc)} of {epochs} planned "
        f"epochs, best epoch {best + 1}; pbc96/val accuracy {report.accuracy:.4f} "
        f"(macro F1 {report.f1_macro:.4f}), with d4 test-time augmentation {report_tta.accuracy:.4f}"
    )
    h.write_results(out / "result.json", result, summary, command=args.command)
    report.to_json(out / "report.json", include_predictions=True)
    bc.plots.training_curves(
        trainer.history, out / "training_curves.png", title=f"{args.backbone}, seed {args.seed}"
    )
    bc.plots.confusion_matrix(report, out / "confusion_matrix.png")
    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    print(report)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=1))
    return result


def recalibrate_runs(run_dirs: list[Path], train, val, batches: int, command: str) -> list[dict]:
    """Precise BatchNorm on the best model of finished runs: val accuracy before and after, and its time."""
    import bloodcell as bc

    rows = []
    for run in run_dirs:
        result_path, model_path = run / "result.json", run / "train" / "fit" / "best.keras"
        if not result_path.is_file() or not model_path.is_file():
            sys.exit(f"--recalibrate: {run} is not a finished run (no result.json or train/fit/best.keras).")
        result = json.loads(result_path.read_text())
        model = bc.export.load(model_path, compile=False)
        before = bc.evaluate(model, val, batch_size=256)
        seconds = h.timed(
            bc.training.recalibrate_batchnorm,
            model,
            train,
            batches=batches,
            batch_size=result["config"]["batch_size"],
            seed=result["seed"],
        )
        after = bc.evaluate(model, val, batch_size=256)
        after_tta = bc.evaluate(model, val, batch_size=256, tta="d4")
        row = {
            "run": str(run),
            "seed": result["seed"],
            "run_seconds": result["seconds"],
            "budget_seconds": 60 * result["budget_min"],
            "val_accuracy_before": before.accuracy,
            "bn_batches": batches,
            "bn_seconds": round(seconds, 1),
            "val_accuracy_after": after.accuracy,
            "val_f1_macro_after": after.f1_macro,
            "val_accuracy_after_tta_d4": after_tta.accuracy,
        }
        summary = (
            f"{run}: pbc96/val accuracy {before.accuracy:.4f} → {after.accuracy:.4f} with precise BatchNorm "
            f"over {batches} batches ({seconds:.0f} s); with d4 test-time augmentation {after_tta.accuracy:.4f}"
        )
        h.write_results(run / "recalibrated.json", row, summary, command=command)
        print(json.dumps(row, indent=1), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
