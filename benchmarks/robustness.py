"""Robustness benchmark: train recipes on pbc96/train, measure accuracy under corruption on pbc96/val.

For each recipe (``bloodcell.experiments.Config.preset(name)``, by default ``cpu`` and ``robust``)
the script trains from scratch on pbc96/train (choosing the best epoch on pbc96/val), then reports
on pbc96/val:

* clean accuracy and macro F1;
* (a) the library's corruption suite (:func:`bloodcell.robustness.evaluate_robustness`, every
  kind at severities 1–5): mean corrupted accuracy and its ratio to the clean accuracy;
* (b) MedMNIST-C's blood corruptions (Di Salvo et al. 2024, the ``medmnistc`` package, its
  ``bloodmnist`` parameters, severities 1–5) as an external yardstick: the same two numbers.

MedMNIST-C is optional and used through an adapter in this script only (it is no dependency of
bloodcell). Install it with::

    pip install --no-deps medmnistc wand        # its corruptions also use opencv, scikit-image, scipy
    apt-get install libmagickwand-dev           # ImageMagick, for its motion blur

Its package imports torchvision for two corruptions that the blood set does not use; without
torchvision the adapter puts a placeholder module in its place that fails if called. Its motion
blur calls numpy's removed binary ``fromstring``; the adapter hands it ``frombuffer`` instead.

Usage (the full run, both recipes, takes about an hour and a half of quiet CPU on 2 cores)::

    python benchmarks/robustness.py --recipes cpu robust --budget-min 25
    python benchmarks/robustness.py --limit 200 --epochs 1 --severities 1 5   # a smoke test
    # the models of an earlier run, evaluated again with test-time augmentation:
    python benchmarks/robustness.py --models runs/robustness --tta d4 --out runs/robustness-tta

Data: ``--data`` points at a folder holding ``pbc96/train`` and ``pbc96/val`` (class folders of
96×96 JPEGs), by default ``<repo>/../shared/data``. Without it, download the PBC dataset (Acevedo
et al. 2020, Mendeley Data, doi:10.17632/snkd93bnjr.1, CC BY 4.0), centre-crop each image to a
square and resize it to 96×96, in class folders.

Output (``--out``): per recipe the trained model, the training log and both robustness reports
(JSON, CSV, markdown, heat map), and ``results.md`` / ``results.json`` with the comparison table,
ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
import types
from pathlib import Path

import _harness as h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(__file__, __doc__, out=h.RUNS / "robustness")
    p.add_argument("--recipes", nargs="+", default=["cpu", "robust"], help="Config presets to train")
    p.add_argument("--epochs", type=int, default=None, help="epochs per recipe (default: the preset's)")
    p.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="training time limit per recipe in minutes: stops at the end of the epoch that would overrun "
        "(the cosine schedule is then cut short; set --epochs to fit the budget)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="use only this many train and val images (quick checks)"
    )
    p.add_argument("--seed", type=int, default=0, help="training and corruption seed")
    p.add_argument("--kinds", default=None, help="comma-separated bloodcell corruption kinds (default: all)")
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--no-suite", action="store_true", help="skip the library's corruption suite")
    p.add_argument("--no-medmnistc", action="store_true", help="skip the MedMNIST-C yardstick")
    p.add_argument(
        "--tta",
        choices=["d4", "flips", "rot90"],
        default=None,
        help="evaluate with test-time augmentation (bloodcell.tta); default: plain predictions",
    )
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="reuse the models a previous run saved (<models>/<recipe>/model.keras) instead of training; "
        "--recipes then names those folders",
    )
    p.add_argument("--batch-size", type=int, default=256, help="prediction batch size")
    p.add_argument("--verbose", type=int, default=2, help="Keras training output")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Data and training
# ---------------------------------------------------------------------------------------------
def train_recipe(name: str, train, val, args: argparse.Namespace, out: Path):
    import keras

    import bloodcell as bc

    config = bc.experiments.Config.preset(name)
    if args.epochs is not None:
        config = config.replace(epochs=args.epochs)
    keras.utils.set_random_seed(args.seed)
    model = config.build_model(num_classes=train.num_classes)
    # The budget counts from here, like the training time reported below.
    callbacks = (
        [bc.training.TimeBudget(args.budget_min * 60.0, start=time.perf_counter())] if args.budget_min else []
    )
    trainer = bc.Trainer(
        model,
        augment=config.build_augmenter(),
        seed=args.seed,
        verbose=args.verbose,
        callbacks=callbacks,
        output_dir=out / "train",
        **config.trainer_kwargs(),
    )
    start = time.perf_counter()
    history = trainer.fit(train, val, epochs=config.epochs).history
    seconds = time.perf_counter() - start
    from bloodcell._io import atomic_path

    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    info = {
        "recipe": name,
        "config": config.to_dict(),
        "epochs_run": len(history.get("loss", [])),
        "stopped_by_budget": bool(callbacks and callbacks[0].stopped),
        "train_seconds": round(seconds, 1),
    }
    return model, info


def reuse_recipe(name: str, folder: Path):
    """The model a previous run of this script trained for ``name``, and that run's training facts."""
    import bloodcell as bc

    path = folder / "model.keras"
    if not path.is_file():
        sys.exit(f"--models: no {path}. Point --models at the --out folder of a run that trained {name!r}.")
    model = bc.export.load(path, compile=False)
    previous = json.loads((folder / "result.json").read_text()) if (folder / "result.json").is_file() else {}
    info = {
        "recipe": name,
        "config": previous.get("config"),
        "epochs_run": previous.get("epochs_run"),
        "stopped_by_budget": previous.get("stopped_by_budget"),
        "train_seconds": previous.get("train_seconds"),
        "model": str(path),
    }
    print(f"== {name}: reusing {path} (trained {info['epochs_run']} epochs)", flush=True)
    return model, info


# ---------------------------------------------------------------------------------------------
# MedMNIST-C adapter (benchmark only)
# ---------------------------------------------------------------------------------------------
def _placeholder_torchvision() -> None:
    """Stand in for torchvision, which medmnistc imports for corruptions the blood set does not use."""

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is not installed; this MedMNIST-C corruption needs it.")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.__getattr__ = lambda name: unavailable  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    tv.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


class _NumpyWithFromstring(types.ModuleType):
    """numpy, with the binary ``fromstring`` that numpy 2 removed answered by ``frombuffer``."""

    def __init__(self) -> None:
        import numpy

        super().__init__("numpy")
        self._np = numpy

    def __getattr__(self, name):
        return getattr(self._np, name)

    def fromstring(self, data, dtype=float, *args, **kwargs):
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._np.frombuffer(data, dtype=dtype).copy()
        return self._np.fromstring(data, dtype, *args, **kwargs)


def medmnistc_blood_corruptions() -> dict:
    """``{name: corruption}`` of MedMNIST-C's blood set; raises ImportError when it is not installed."""
    if importlib.util.find_spec("medmnistc") is None:
        raise ImportError("medmnistc is not installed (pip install --no-deps medmnistc wand)")
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        _placeholder_torchvision()  # once: a second find_spec would trip over the placeholder
    from medmnistc.corruptions import filter as mc_filter
    from medmnistc.corruptions.registry import CORRUPTIONS_DS

    mc_filter.np = _NumpyWithFromstring()
    return dict(CORRUPTIONS_DS["bloodmnist"])


def medmnistc_corrupt(corruption, images, severity: int, seed: int):
    """Apply one MedMNIST-C corruption at ``severity`` 1..5 to uint8 images; seeded, so repeatable."""
    import numpy as np
    from PIL import Image

    np.random.seed(seed)  # noqa: NPY002 - medmnistc draws from the global NumPy and Python generators
    random.seed(seed)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        result = np.asarray(corruption.apply(Image.fromarray(img, "RGB"), severity=severity - 1))
        out[i] = result[..., :3].astype(np.uint8)
    return out


def evaluate_medmnistc(model, val, args: argparse.Namespace, out: Path):
    """A RobustnessReport over MedMNIST-C's blood corruptions, plus the names that failed."""
    import numpy as np

    import bloodcell as bc
    from bloodcell.robustness import RobustnessReport

    corruptions = medmnistc_blood_corruptions()
    clean = bc.evaluate(model, val, batch_size=args.batch_size, tta=args.tta)
    kinds, acc, f1, failed = [], [], [], {}
    for name, corruption in corruptions.items():
        t0 = time.perf_counter()
        try:
            rows = []
            for s in args.severities:
                data = val.replace(images=medmnistc_corrupt(corruption, val.images, s, args.seed))
                rows.append(bc.evaluate(model, data, batch_size=args.batch_size, tta=args.tta))
        except Exception as err:  # noqa: BLE001 - report which external corruption fails, keep going
            failed[name] = f"{type(err).__name__}: {err}"
            print(f"  MedMNIST-C {name}: FAILED ({failed[name]})", flush=True)
            continue
        kinds.append(name)
        acc.append([r.accuracy for r in rows])
        f1.append([r.f1_macro for r in rows])
        print(
            f"  MedMNIST-C {name:<18} "
            + " ".join(f"{100 * r.accuracy:5.1f}" for r in rows)
            + f"  ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    report = RobustnessReport(
        kinds=tuple(kinds),
        severities=tuple(args.severities),
        n=len(val),
        clean_accuracy=clean.accuracy,
        clean_f1_macro=clean.f1_macro,
        accuracy=np.array(acc).reshape(len(kinds), len(args.severities)),
        f1_macro=np.array(f1).reshape(len(kinds), len(args.severities)),
        seed=args.seed,
        model="medmnistc-bloodmnist",
        tta=args.tta,
    )
    report.to_json(out / "medmnistc.json")
    report.to_csv(out / "medmnistc.csv")
    from bloodcell._io import atomic_write_text

    atomic_write_text(out / "medmnistc.md", report.to_markdown() + "\n")
    if kinds:
        report.plot(out / "medmnistc.png", title=f"MedMNIST-C blood corruptions · ratio {report.ratio:.2f}")
    return report, failed


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def results_markdown(results: list[dict], args: argparse.Namespace, n_train: int, n_val: int) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    def num(v):
        return "–" if v is None else f"{v:.3f}"

    def num_or_dash(v, fmt):
        return "–" if v is None else fmt.format(v)

    lines = [
        f"### Robustness under corruption: recipes {', '.join(args.recipes)} (pbc96/val)",
        "",
        f"- Data: {n_train} training images, {n_val} validation images; corruption seed {args.seed}; "
        f"severities {', '.join(map(str, args.severities))}",
        f"- Predictions: {f'test-time augmentation {args.tta!r}' if args.tta else 'plain (no TTA)'}"
        + (f"; models reused from `{args.models}`" if args.models else ""),
        "",
        "| Recipe | Epochs | Train (min) | Clean acc. (%) | Clean F1 (%) | bloodcell suite acc. (%) | ratio "
        "| MedMNIST-C acc. (%) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['recipe']} | {num_or_dash(r['epochs_run'], '{}')} | "
            f"{num_or_dash(r['train_seconds'] and r['train_seconds'] / 60, '{:.1f}')} | {pct(r['clean_accuracy'])} | "
            f"{pct(r['clean_f1_macro'])} | {pct(r.get('suite_accuracy'))} | {num(r.get('suite_ratio'))} | "
            f"{pct(r.get('medmnistc_accuracy'))} | {num(r.get('medmnistc_ratio'))} |"
        )
    for suite, key in (("bloodcell suite", "suite_kind_ratio"), ("MedMNIST-C", "medmnistc_kind_ratio")):
        kinds = [k for k in (results[0].get(key) or {})]
        if not kinds:
            continue
        lines += [
            "",
            f"Ratio to clean accuracy per corruption, {suite} (mean over severities):",
            "",
            "| Corruption | " + " | ".join(r["recipe"] for r in results) + " |",
            "|---|" + "---:|" * len(results),
        ]
        for k in kinds:
            lines.append(f"| {k} | " + " | ".join(num((r.get(key) or {}).get(k)) for r in results) + " |")
    failed = sorted({k for r in results for k in (r.get("medmnistc_failed") or {})})
    if failed:
        lines += ["", f"MedMNIST-C corruptions that failed here: {', '.join(failed)}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import bloodcell as bc
    from bloodcell._io import atomic_write_text

    for name in args.recipes if args.models is None else ():  # fail before loading data
        bc.experiments.Config.preset(name)
    train, val = h.load_pbc96(args.data, limit=args.limit, seed=args.seed)
    print(f"train {len(train)} images, val {len(val)} images", flush=True)
    results = []
    for name in args.recipes:
        out = args.out / name
        if args.models is not None:
            model, info = reuse_recipe(name, args.models / name)
        else:
            print(f"== {name}: training", flush=True)
            model, info = train_recipe(name, train, val, args, out)
        clean = bc.evaluate(model, val, batch_size=args.batch_size, tta=args.tta)
        clean.to_json(out / "report.json", include_predictions=True)
        info.update(clean_accuracy=clean.accuracy, clean_f1_macro=clean.f1_macro, tta=args.tta)
        print(f"== {name}: clean accuracy {clean.accuracy:.2%}", flush=True)
        if not args.no_suite:
            print(f"== {name}: bloodcell suite", flush=True)
            suite = bc.robustness.evaluate_robustness(
                model,
                val,
                kinds=args.kinds,
                severities=args.severities,
                batch_size=args.batch_size,
                seed=args.seed,
                tta=args.tta,
                output_dir=out,
            )
            info.update(
                suite_accuracy=suite.mean_corrupted_accuracy,
                suite_ratio=suite.ratio,
                suite_kind_ratio=suite.kind_ratio,
            )
        if not args.no_medmnistc:
            print(f"== {name}: MedMNIST-C blood corruptions", flush=True)
            try:
                mc, failed = evaluate_medmnistc(model, val, args, out)
                info.update(
                    medmnistc_accuracy=mc.mean_corrupted_accuracy if mc.kinds else None,
                    medmnistc_ratio=mc.ratio if mc.kinds else None,
                    medmnistc_kind_ratio=mc.kind_ratio,
                    medmnistc_failed=failed,
                )
            except ImportError as err:
                print(f"  skipped: {err}", flush=True)
        results.append(info)
        atomic_write_text(out / "result.json", json.dumps(info, indent=1) + "\n")
    table = results_markdown(results, args, len(train), len(val))
    summary = [{k: v for k, v in r.items() if k != "config"} for r in results]
    h.write_results(args.out, summary, table, command=args.command)
    print(table)
    return results


if __name__ == "__main__":
    main()
