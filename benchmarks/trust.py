"""Trust at prediction time, measured on real PBC cells: calibration, abstention, label checks.

On a model trained with the ``"cpu"`` recipe on pbc96/train (``bloodcell train --recipe cpu``),
pbc96/val is cut into two stratified halves: the first fits the temperature and the rejector, the
second measures them.

- calibration: ECE (15 bins), Brier score and accuracy before and after temperature scaling, plain
  and with the recipe's d4 test-time augmentation;
- abstention: accuracy of the accepted cells at 95 % coverage; planted non-cells (the outlier
  benchmark's kinds: photographs, generated patterns, blanks, dark and blurred real cells) rejected
  as "not a cell"; real cells rejected as "not a cell"; the cost of ``bc.predict`` with the
  rejection checks against without, interleaved rounds;
- label checks: 2 % of pbc96/train labels flipped with a seed, ``bc.check_labels`` with a cheap
  recipe, recall of the flipped labels among the top-ranked suspects at precision ≥ 0.5, and time.

Usage:
    python benchmarks/trust.py --model runs/trust/cpu/seed0/model.keras [--data ../shared/data]
        [--parts calibration,rejection,labels] [--folds 4] [--label-epochs 8] [--out runs/trust-bench]
"""

from __future__ import annotations

import time
from pathlib import Path

import _harness as h
import numpy as np
from outliers import NON_BLOOD_SOURCES, blur, generated_non_cells, random_crop, to_rgb

import bloodcell as bc


def halves(val: bc.datasets.BloodCellDataset, seed: int) -> tuple[bc.datasets.BloodCellDataset, ...]:
    """Two stratified halves of pbc96/val: (fit, measure)."""
    fit, measure = bc.datasets.split(val, val=0.5, test=0, seed=seed)
    return fit, measure


def planted_non_cells(val: bc.datasets.BloodCellDataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-cell images of the outlier benchmark's kinds, and the kind of each."""
    import skimage.data as skd

    rng = np.random.default_rng(seed)
    parts = []
    sources = [to_rgb(getattr(skd, name)()) for name in NON_BLOOD_SOURCES]
    parts.append((np.stack([random_crop(src, rng) for src in sources for _ in range(10)]), "photograph"))
    parts.append((generated_non_cells(60, rng), "generated"))
    colours = rng.integers(0, 256, (100, 1, 1, 3))
    blanks = np.broadcast_to(colours, (100, 96, 96, 3)).astype(np.int16)
    blanks = blanks + rng.normal(0, 1.5, blanks.shape) * (np.arange(100) % 2 == 0)[:, None, None, None]
    parts.append((np.clip(blanks, 0, 255).astype(np.uint8), "blank"))
    pick = rng.choice(len(val), 200, replace=False)
    parts.append(((val.images[pick[:100]] * rng.uniform(0.1, 0.45, (100, 1, 1, 1))).astype(np.uint8), "dark"))
    sigmas = rng.uniform(1.5, 3.0, 100)
    parts.append((np.stack([blur(i, s) for i, s in zip(val.images[pick[100:]], sigmas)]), "blurred"))
    images = np.concatenate([p[0] for p in parts])
    kinds = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    return images, kinds


def part_calibration(model, fit, measure, tta: str | None, out: Path) -> dict:
    rows = {}
    calibrated = bc.calibrate(model, fit)
    bc.models.save_model(calibrated, out / "calibrated.keras")
    for name, m in (("before", model), ("after", calibrated)):
        for mode in (None, tta):
            report = bc.evaluate(m, measure, tta=mode)
            if mode == tta:
                title = f"{name} calibration ({mode or 'plain'}): ECE {report.ece:.2%}"
                bc.plots.reliability_diagram(report, out / f"reliability_{name}.png", title=title)
                if name == "after":
                    bc.plots.coverage_accuracy(report, out / "coverage_accuracy.png")
            rows[f"{name} ({mode or 'plain'})"] = {
                "accuracy": report.accuracy,
                "ece": report.ece,
                "brier": report.brier,
            }
    rows["temperature"] = float(bc.calibration.temperature_of(calibrated))
    return rows, calibrated


def part_rejection(model, train, fit, measure, val, tta: str | None, seed: int, rounds: int) -> dict:
    start = time.perf_counter()
    rejector = bc.fit_rejector(model, fit, coverage=0.95, reference=train, tta=tta)
    fit_seconds = time.perf_counter() - start
    out = bc.predict(model, measure, reject=rejector, tta=tta)
    status = np.asarray(out.status)
    accepted = out.accepted
    result = {
        "threshold": float(rejector.threshold),
        "fit_seconds": fit_seconds,
        "coverage_on_measure": float(accepted.mean()),
        "accuracy_all": float((out.label_indices == measure.labels).mean()),
        "accuracy_accepted": float((out.label_indices[accepted] == measure.labels[accepted]).mean()),
        "real_not_a_cell": float((status == bc.rejection.NOT_A_CELL).mean()),
        "real_not_a_cell_reasons": {
            str(r): int(n)
            for r, n in zip(*np.unique(np.asarray(out.reason)[status == "not a cell"], return_counts=True))
        },
    }
    images, kinds = planted_non_cells(val, seed)
    planted = bc.predict(model, images, reject=rejector, tta=tta)
    rejected = np.asarray(planted.status) == bc.rejection.NOT_A_CELL
    result["planted_rejected"] = float(rejected.mean())
    result["planted_rejected_by_kind"] = {
        str(k): float(rejected[kinds == k].mean()) for k in dict.fromkeys(kinds)
    }

    def plain() -> None:  # None: interleave measures the call's wall time
        bc.predict(model, measure.images, tta=tta)

    def checked() -> None:
        bc.predict(model, measure.images, reject=rejector, tta=tta)

    plain()  # warm-up: the first call traces the prediction function
    timing = h.interleave({"without rejection": plain, "with rejection": checked}, rounds)
    result["ms_per_cell"] = {
        name: {
            "rounds": [1000 * s / len(measure) for s in times],
            **h.summary([1000 * s / len(measure) for s in times]),
        }
        for name, times in timing.items()
    }
    return result


def precision_recall_at(ranked: np.ndarray, truth: np.ndarray) -> dict:
    """Recall of the true suspects among the top-k ranked, at the largest k with precision ≥ 0.5."""
    hits = np.cumsum(truth[ranked]) if len(ranked) else np.zeros(0)
    k = np.arange(1, len(ranked) + 1)
    precision = hits / k if len(ranked) else hits
    ok = np.flatnonzero(precision >= 0.5)
    best = int(ok.max()) if len(ok) else -1
    return {
        "flagged": int(len(ranked)),
        "recall_all_flagged": float(hits[-1] / truth.sum()) if len(ranked) else 0.0,
        "precision_all_flagged": float(precision[-1]) if len(ranked) else 0.0,
        "top_k_at_precision_0.5": best + 1,
        "recall_at_precision_0.5": float(hits[best] / truth.sum()) if best >= 0 else 0.0,
        "precision_there": float(precision[best]) if best >= 0 else 0.0,
    }


def part_labels(train, seed: int, folds: int, epochs: int, out: Path) -> dict:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(train), int(round(0.02 * len(train))), replace=False)
    labels = train.labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, train.num_classes, len(flipped))) % train.num_classes
    noisy = train.replace(labels=labels)
    truth = np.zeros(len(train), bool)
    truth[flipped] = True
    config = bc.experiments.Config.preset("cpu", epochs=epochs, tta=None)
    start = time.perf_counter()
    check = bc.check_labels(
        noisy, config=config, folds=folds, seed=seed, directory=out / "label_folds", verbose=2
    )
    seconds = time.perf_counter() - start
    check.gallery(noisy, out / "suspect_labels.png", top=32)
    return {"flipped": int(len(flipped)), "folds": folds, "epochs": epochs, "seconds": seconds,
            **precision_recall_at(check.ranked, truth)}  # fmt: skip


def markdown(results: dict) -> str:
    """The tables RESULTS.md quotes."""
    lines = ["# Trust at prediction time", ""]
    if "calibration" in results:
        lines += ["| model | accuracy | ECE | Brier |", "|---|---|---|---|"]
        for name, row in results["calibration"].items():
            if isinstance(row, dict):
                lines.append(f"| {name} | {row['accuracy']:.2%} | {row['ece']:.2%} | {row['brier']:.4f} |")
        lines += ["", f"Temperature: {results['calibration']['temperature']:.3f}", ""]
    if "rejection" in results:
        r = results["rejection"]
        lines += [
            f"- threshold {r['threshold']:.4f}; coverage on the measuring half {r['coverage_on_measure']:.2%}",
            f"- accuracy: all {r['accuracy_all']:.2%}, accepted {r['accuracy_accepted']:.2%}",
            f"- real cells rejected as not a cell: {r['real_not_a_cell']:.2%} {r['real_not_a_cell_reasons']}",
            f"- planted non-cells rejected: {r['planted_rejected']:.2%} {r['planted_rejected_by_kind']}",
            f"- ms per cell: {r['ms_per_cell']}",
            "",
        ]
    if "labels" in results:
        lines += ["- label checks: " + ", ".join(f"{k} {v}" for k, v in results["labels"].items())]
    return "\n".join(lines)


def main() -> None:
    parser = h.parser(__file__, __doc__, out="runs/trust-bench")
    parser.add_argument("--model", required=True, help="a model trained with the cpu recipe on pbc96/train")
    parser.add_argument("--parts", default="calibration,rejection,labels")
    parser.add_argument("--tta", default="d4", help="the recipe's test-time augmentation ('none': plain)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--label-epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="a random subset of each split (a smoke run)")
    args = parser.parse_args()
    tta = None if args.tta == "none" else args.tta
    parts = args.parts.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = h.load_pbc96(args.data, "train", "val", limit=args.limit)
    model = bc.models.load_model(args.model)
    fit, measure = halves(val, args.seed)
    results: dict = {"model": str(args.model), "fit_images": len(fit), "measure_images": len(measure)}
    if "calibration" in parts:
        results["calibration"], model = part_calibration(
            model, fit, measure, tta, out
        )  # then trust the calibrated
        print(results["calibration"], flush=True)
    if "rejection" in parts:
        results["rejection"] = part_rejection(model, train, fit, measure, val, tta, args.seed, args.rounds)
        print(results["rejection"], flush=True)
    if "labels" in parts:
        results["labels"] = part_labels(train, args.seed, args.folds, args.label_epochs, out)
        print(results["labels"], flush=True)
    h.write_results(out, results, markdown(results), command=args.command)


if __name__ == "__main__":
    main()
