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

import json
import os
import statistics

import _harness as h

import bloodcell as bc


def main(argv: list[str] | None = None) -> dict:
    parser = h.parser(__file__, __doc__, data="pbc96/val (else the bundled sample is used)")
    parser.add_argument("--backbone", default="mobilenetv3small")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import keras

    from bloodcell.backbones.imagemodel import _CHECKED_DATASETS

    data, source = h.load_split_or_sample(args.data, "val")
    model = bc.build_classifier(args.backbone, head="seed", weights=None)
    plain = keras.Model(model.inputs, model.outputs)  # the same layers, no bloodcell checks
    floats = data.images.astype("float32")

    def check_dataset() -> None:
        _CHECKED_DATASETS.clear()  # time the first call (the peek), not the cached one
        model.check_inputs(bc.pipeline.to_tf_dataset(data, batch_size=64), "benchmark")

    def median_seconds(fn) -> float:
        return statistics.median(h.repeat(fn, args.repeat))

    checks = {
        "check uint8 array": median_seconds(lambda: model.check_inputs(data.images, "benchmark")),
        "check float32 array": median_seconds(lambda: model.check_inputs(floats, "benchmark")),
        "check tf.data (first call: one batch peeked)": median_seconds(check_dataset),
    }
    model.predict(data.images[:64], verbose=0)  # warm up both predict functions
    plain.predict(data.images[:64], verbose=0)
    predict = {
        "bloodcell Classifier.predict": median_seconds(
            lambda: model.predict(data.images, batch_size=64, verbose=0)
        ),
        "plain keras.Model.predict (baseline)": median_seconds(
            lambda: plain.predict(data.images, batch_size=64, verbose=0)
        ),
    }
    lines = [
        f"{len(data)} images ({source}), {args.backbone} + seed head at 96 px, median of {args.repeat}, "
        f"load average {os.getloadavg()[0]:.1f}",
        "",
        "| what | milliseconds |",
        "|---|---|",
        *(f"| {name} | {seconds * 1000:.2f} |" for name, seconds in {**checks, **predict}.items()),
    ]
    print("\n".join(lines))
    results = {"images": len(data), "source": source, "checks_s": checks, "predict_s": predict}
    print(json.dumps(results))
    if args.out is not None:
        h.write_results(args.out, results, "\n".join(lines), command=args.command)
    return results


if __name__ == "__main__":
    main()
