"""Benchmark: the cost of each corruption of ``bloodcell.robustness`` and how far it moves the pixels.

For every kind, all five severities are applied to 200 real cells of the bundled sample; the script
prints milliseconds per image (mean over the severities) and the mean absolute pixel change at each
severity (grey levels), which should grow with the severity.

Usage::

    python benchmarks/corruptions.py [--images 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bloodcell as bc  # noqa: E402
from bloodcell.robustness import CORRUPTIONS, SEVERITIES, corrupt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="cells from the bundled sample (200)")
    args = parser.parse_args()
    data = bc.datasets.load_sample()
    images = data.images[:: max(1, len(data) // args.images)][: args.images]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}")
    print(f"{len(images)} real cells, 96 px\n")
    print("| kind | group | ms/image | mean abs. change at severity 1..5 |")
    print("|---|---|---:|---|")
    for kind, spec in CORRUPTIONS.items():
        start = time.perf_counter()
        outputs = [corrupt(images, kind, s) for s in SEVERITIES]
        ms = (time.perf_counter() - start) / len(SEVERITIES) / len(images) * 1000
        change = [float(np.abs(o.astype(np.float64) - images).mean()) for o in outputs]
        print(f"| {kind} | {spec.group} | {ms:.2f} | " + ", ".join(f"{c:.1f}" for c in change) + " |")


if __name__ == "__main__":
    main()
