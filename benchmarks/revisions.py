"""Run one benchmark script against two revisions of the library, in alternating processes.

The working tree's copy of the script runs ``--runs`` times against each library: the baseline
revision (checked out into a temporary git worktree) and the working tree, taking turns (the
baseline first in runs 1, 3, …, second in runs 2, 4, …) so that a drift of the machine's speed
falls on both alike. The library is chosen by ``PYTHONPATH`` (checked before the runs: the script
must not put its own ``src`` on ``sys.path``). Each run is given ``--out FILE`` and must write
JSON there; every list of numbers in it is pooled per revision over the runs, and the medians are
printed with the ratio working tree / baseline.

Usage::

    python benchmarks/revisions.py --baseline a395b5f --runs 3 --out runs/revisions/augment.json -- \\
        benchmarks/augment.py --methods none,bloodcell --batch-size 32 --rounds 3 --batches 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

REPO = h.REPO


def numeric_lists(tree: object, prefix: str = "") -> dict[str, list[float]]:
    """Every list of numbers in a JSON tree, keyed by its path (``methods/bloodcell/img_per_s``)."""
    found: dict[str, list[float]] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            found.update(numeric_lists(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(tree, list) and tree and all(isinstance(v, (int, float)) for v in tree):
        found[prefix] = [float(v) for v in tree]
    elif isinstance(tree, list):  # e.g. one result per backbone
        for i, value in enumerate(tree):
            found.update(numeric_lists(value, f"{prefix}/{i}" if prefix else str(i)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool) and prefix:
        found[prefix] = [float(tree)]
    return found


def library_file(src: Path) -> str:
    """The ``bloodcell`` that Python imports with ``src`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", "import bloodcell; print(bloodcell.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__file__, __doc__, data=None, out_file=True)
    parser.add_argument("--baseline", required=True, help="git revision to compare against (e.g. a commit)")
    parser.add_argument("--runs", type=int, default=3, help="processes per revision")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- the script and its arguments")
    args = parser.parse_args(argv)
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("give the benchmark to run after --, e.g. -- benchmarks/augment.py --rounds 3")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    baseline = git("rev-parse", "--short", args.baseline)
    current = git("rev-parse", "--short", "HEAD") + (
        "+changes" if git("status", "--porcelain", "src") else ""
    )
    with tempfile.TemporaryDirectory(prefix="bloodcell-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), baseline)
        try:
            sources = {f"baseline {baseline}": tree / "src", f"working tree {current}": REPO / "src"}
            for label, src in sources.items():
                imported = library_file(src)
                if not imported.startswith(str(src)):
                    sys.exit(f"{label}: Python imports bloodcell from {imported}, not from {src}.")
            print(f"{time.strftime('%Y-%m-%d %H:%M')}: {' '.join(script)}")
            runs: dict[str, list[dict]] = {label: [] for label in sources}
            labels = list(sources)
            for run in range(args.runs):
                for label in h.alternate(labels, run):
                    out = Path(tmp) / f"run{run}-{len(runs[label])}-{label.split()[0]}.json"
                    env = {**os.environ, "PYTHONPATH": str(sources[label])}
                    print(f"run {run + 1}, {label} (load {os.getloadavg()[0]:.2f})", flush=True)
                    subprocess.run([sys.executable, *script, "--out", str(out)], env=env, check=True)
                    runs[label].append(json.loads(out.read_text()))
        finally:
            git("worktree", "remove", "--force", str(tree))
    pooled = {label: {} for label in runs}
    for label, results in runs.items():
        for result in results:
            for key, values in numeric_lists(result).items():
                pooled[label].setdefault(key, []).extend(values)
    base_label, new_label = labels
    lines = [f"medians over {args.runs} runs per revision ({base_label} → {new_label}):"]
    medians = {}
    for key in pooled[base_label]:
        if key not in pooled[new_label]:
            continue
        before, after = statistics.median(pooled[base_label][key]), statistics.median(pooled[new_label][key])
        ratio = after / before if before else float("nan")
        medians[key] = {"baseline": before, "working_tree": after, "ratio": ratio}
        lines.append(f"  {key:<50} {before:10.3f} → {after:10.3f}  ({ratio:.3f}×)")
    print("\n" + "\n".join(lines))
    if args.out is not None:
        body = "```\n" + "\n".join(lines) + "\n```"
        h.write_results(
            args.out, {"script": script, "runs": runs, "medians": medians}, body, command=args.command
        )


if __name__ == "__main__":
    main()
