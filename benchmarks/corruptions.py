"""Benchmark: the cost of each corruption of ``bloodcell.robustness`` and how far it moves the pixels.

For every kind, all five severities are applied to 200 real cells of the bundled sample; the script
prints milliseconds per image (mean over the severities) and the mean absolute pixel change at each
severity (grey levels), which should grow with the severity.

Usage::

    python benchmarks/corruptions.py [--images 200] [--out runs/corruptions]
"""

from __future__ import annotations

import _harness as h
import numpy as np

import bloodcell as bc


def main(argv: list[str] | None = None) -> list[dict]:
    parser = h.parser(__file__, __doc__, data=None)
    parser.add_argument("--images", type=int, default=200, help="cells from the bundled sample (200)")
    args = parser.parse_args(argv)
    from bloodcell.robustness import CORRUPTIONS, SEVERITIES, corrupt

    data = bc.datasets.load_sample()
    images = data.images[:: max(1, len(data) // args.images)][: args.images]
    print(h.markdown_header(h.environment(args.command)))
    print(f"\n{len(images)} real cells, 96 px\n")
    lines = ["| kind | group | ms/image | mean abs. change at severity 1..5 |", "|---|---|---:|---|"]
    print("\n".join(lines))
    rows = []
    for kind, spec in CORRUPTIONS.items():
        with h.Stopwatch() as watch:
            outputs = [corrupt(images, kind, s) for s in SEVERITIES]
        ms = watch.wall / len(SEVERITIES) / len(images) * 1000
        change = [float(np.abs(o.astype(np.float64) - images).mean()) for o in outputs]
        rows.append({"kind": kind, "group": spec.group, "ms_per_image": ms, "mean_abs_change": change})
        lines.append(f"| {kind} | {spec.group} | {ms:.2f} | " + ", ".join(f"{c:.1f}" for c in change) + " |")
        print(lines[-1], flush=True)
    if args.out is not None:
        h.write_results(
            args.out, {"images": len(images), "kinds": rows}, "\n".join(lines), command=args.command
        )
    return rows


if __name__ == "__main__":
    main()
