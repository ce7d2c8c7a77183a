"""Benchmark: what the Python-side input checks of bloodcell models cost.

bloodcell models (``ImageModel``) check image shapes and the 0–1 pixel mistake in ``fit``/``predict``/
``evaluate`` before Keras runs, never inside the compiled graph. This script times the check alone on
arrays and on a ``tf.data`` pipeline, and ``predict`` of a bloodcell classifier against the same
layers wrapped in a plain ``keras.Model`` (the baseline, in the same run).

Usage:
    python benchmarks/input_checks.py [--data PATH] [--backbone mobilenetv3small] [--repeat 5]

``--data`` defaults to ``<repo>/../shared/data``; with ``pbc96/val`` there (the PBC dataset of Acevedo
et al. 2020 at 96x96: https://data.mendeley.com/datasets/snkd93bnjr/1) its 1,743 images are used,
otherwise the 800 cells bundled with bloodcell.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--backbone", default="mobilenetv3small")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import keras

    import bloodcell as bc
    from bloodcell.backbones.imagemodel import _CHECKED_DATASETS

    val_dir = Path(args.data) / "pbc96" / "val"
    data = bc.datasets.load_folder(val_dir, image_size=96) if val_dir.is_dir() else bc.datasets.load_sample()
    source = str(val_dir) if val_dir.is_dir() else "bundled sample"
    model = bc.build_classifier(args.backbone, head="seed", weights=None)
    plain = keras.Model(model.inputs, model.outputs)  # the same layers, no bloodcell checks
    floats = data.images.astype("float32")

    def check_dataset() -> None:
        _CHECKED_DATASETS.clear()  # time the first call (the peek), not the cached one
        model.check_inputs(bc.pipeline.to_tf_dataset(data, batch_size=64), "benchmark")

    checks = {
        "check uint8 array": median_seconds(
            lambda: model.check_inputs(data.images, "benchmark"), args.repeat
        ),
        "check float32 array": median_seconds(lambda: model.check_inputs(floats, "benchmark"), args.repeat),
        "check tf.data (first call: one batch peeked)": median_seconds(check_dataset, args.repeat),
    }
    model.predict(data.images[:64], verbose=0)  # warm up both predict functions
    plain.predict(data.images[:64], verbose=0)
    predict = {
        "bloodcell Classifier.predict": median_seconds(
            lambda: model.predict(data.images, batch_size=64, verbose=0), args.repeat
        ),
        "plain keras.Model.predict (baseline)": median_seconds(
            lambda: plain.predict(data.images, batch_size=64, verbose=0), args.repeat
        ),
    }
    print(
        f"{len(data)} images ({source}), {args.backbone} + seed head at 96 px, median of {args.repeat}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| what | milliseconds |")
    print("|---|---|")
    for name, seconds in {**checks, **predict}.items():
        print(f"| {name} | {seconds * 1000:.2f} |")
    print(json.dumps({"images": len(data), "source": source, "checks_s": checks, "predict_s": predict}))


if __name__ == "__main__":
    main()
