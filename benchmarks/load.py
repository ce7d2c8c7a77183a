"""Benchmark: load PBC train + val (13,662 JPEGs) with ``load_folder``; wall time and peak memory.

Each loader runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own. The
baseline, measured in the same run, is the obvious hand-written loader: decode the files one by one
with Pillow into a list, then ``np.stack`` them (which holds two copies of the images at once).

Usage:
    python benchmarks/load.py [--data PATH] [--repeat 3] [--out DIR]

``--data`` defaults to ``<repo>/../shared/data``; it must hold ``pbc96/train`` and ``pbc96/val``
(the PBC dataset of Acevedo et al. 2020 at 96×96: https://data.mendeley.com/datasets/snkd93bnjr/1,
prepared as described in the README of that folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import _harness as h

_CHILD = r"""
import json, resource, sys, time
import numpy as np
roots, method = sys.argv[1:-1], sys.argv[-1]
if method == "bloodcell":
    from bloodcell.datasets import load_folder
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    data = load_folder(roots, image_size=96)
    images = data.images
else:
    from pathlib import Path
    from PIL import Image
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    files = sorted(p for r in roots for p in Path(r).glob("*/*.jpg"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "n": len(images), "raw_bytes": int(images.nbytes),
                  "peak_rss_bytes": peak * 1024, "rss_before_bytes": base * 1024}))
"""


def run_child(roots: list[str], method: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *roots, method],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = h.parser(__file__, __doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    h.require(args.data, "pbc96/train", "pbc96/val")
    roots = [str(args.data / "pbc96" / "train"), str(args.data / "pbc96" / "val")]
    print(h.markdown_header(h.environment(args.command)))
    results, lines = {}, []
    for method in ("bloodcell", "naive"):
        runs = [run_child(roots, method) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        raw = best["raw_bytes"]
        lines.append(
            f"{method:>9}: {best['n']} images, best of {args.repeat}: {best['seconds']:.2f} s "
            f"({best['n'] / best['seconds']:.0f} img/s), raw {raw / 2**20:.0f} MiB, "
            f"peak RSS {best['peak_rss_bytes'] / 2**20:.0f} MiB = {best['peak_rss_bytes'] / raw:.2f}× raw "
            f"(process before loading: {best['rss_before_bytes'] / 2**20:.0f} MiB; "
            f"growth {(best['peak_rss_bytes'] - best['rss_before_bytes']) / raw:.2f}× raw); "
            f"all times: {', '.join(format(r['seconds'], '.2f') for r in runs)} s"
        )
        print(lines[-1], flush=True)
        results[method] = {"runs": runs, "seconds": h.summary([r["seconds"] for r in runs])}
    if args.out is not None:
        h.write_results(args.out, {"methods": results}, "\n".join(lines), command=args.command)
    return results


if __name__ == "__main__":
    main()
