"""What every benchmark script shares: arguments, data, timers, interleaved rounds and the result files.

Each script in ``benchmarks/`` imports this module as a sibling (``import _harness as h``; Python
puts the script's folder first on ``sys.path``) and the library as installed (``pip install -e .``
in the repository), so that ``benchmarks/revisions.py`` can choose the library with ``PYTHONPATH``.

* :func:`parser` builds the command line with the common ``--data`` (the folder holding ``pbc96``
  and ``other_labs``, by default ``<repo>/../shared/data``) and ``--out``, and records the command.
* :func:`load_pbc96`, :func:`load_lisc` and :func:`load_split_or_sample` read the real data, or
  stop with one message saying what is missing and where to get it.
* :func:`timed`, :func:`repeat`, :class:`Stopwatch` and :func:`epoch_timer` time calls, code
  blocks and Keras epochs; :func:`summary` gives a median and a spread.
* :func:`interleave` measures a baseline and its candidates by turns, the order reversed every
  other round, so that a drift of the machine's speed falls on all of them alike.
* :func:`write_results` writes ``results.json`` and ``results.md`` atomically, each with the date,
  machine, command and versions.

Importing this module imports neither TensorFlow nor the library's heavy parts.

>>> summary([2.0, 1.0, 4.0])
{'median': 2.0, 'min': 1.0, 'max': 4.0, 'spread': 1.5, 'n': 3}
>>> [alternate(["baseline", "candidate"], r) for r in range(3)]
[['baseline', 'candidate'], ['candidate', 'baseline'], ['baseline', 'candidate']]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The repository that holds this folder.
REPO = Path(__file__).resolve().parents[1]
#: Where ``--data`` points unless told otherwise: the project's shared data beside the repository.
DEFAULT_DATA = REPO.parent / "shared" / "data"
#: Where scripts that write folders of results put them by default.
RUNS = REPO / "runs"
#: Where to get the data, for messages about missing folders.
DATA_SOURCE = (
    "the PBC dataset (Acevedo et al. 2020, CC BY 4.0, https://data.mendeley.com/datasets/snkd93bnjr/1), "
    "each image centre-cropped to a square and resized to 96x96, in class folders pbc96/train and "
    "pbc96/val (see shared/data/README.md); the LISC set as other_labs/lisc.npz"
)

# TensorFlow reads this when it is first imported, which every script does after this module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if importlib.util.find_spec("bloodcell") is None:
    sys.exit(
        "bloodcell is not importable: install it from the repository first (`pip install -e .`); "
        "the benchmarks measure the library as installed."
    )


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
class BenchmarkParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose parsed namespace also holds ``command``: the line that was run."""

    def __init__(self, script: str, **kwargs: Any) -> None:
        path = Path(script).resolve()
        self.script = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        super().__init__(prog=self.script, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        parsed = super().parse_args(argv, namespace)
        parsed.command = "python " + shlex.join([self.script, *argv])
        return parsed


def parser(
    script: str,
    doc: str | None,
    *,
    data: str | None = "pbc96/train and pbc96/val",
    out: Path | str | None = None,
    out_file: bool = False,
    full_doc: bool = False,
) -> BenchmarkParser:
    """A parser with the common ``--data`` and ``--out`` arguments.

    Args:
        script: The script's ``__file__``; its path in the repository names it in the command.
        doc: The script's docstring; its first paragraph describes the command (all of it with
            ``full_doc``).
        data: What ``--data`` must hold, for its help; None leaves ``--data`` out.
        out: ``--out``'s default: a folder for ``results.json`` and ``results.md``, or None (write
            nothing unless asked).
        out_file: ``--out`` names the JSON file itself (``.md`` beside it) rather than a folder.
        full_doc: Show the whole docstring in ``--help``.

    >>> p = parser("benchmarks/x.py", "Measures x.\\n\\nMore.", out=None)
    >>> args = p.parse_args(["--data", "/d", "--out", "/o"])
    >>> args.data, args.out, args.command
    (PosixPath('/d'), PosixPath('/o'), 'python benchmarks/x.py --data /d --out /o')
    """
    text = (doc or "").strip()
    kwargs: dict[str, Any] = {"description": text if full_doc else " ".join(text.split("\n\n")[0].split())}
    if full_doc:
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
    p = BenchmarkParser(script, **kwargs)
    if data is not None:
        p.add_argument(
            "--data",
            type=Path,
            default=DEFAULT_DATA,
            help=f"folder holding {data} (default: %(default)s)",
        )
    if out_file:
        help_ = "write the results here as JSON, and as Markdown beside it (.md)"
    else:
        help_ = "folder for results.json and results.md"
    p.add_argument(
        "--out",
        type=Path,
        default=None if out is None else Path(out),
        help=help_ + (" (default: %(default)s)" if out is not None else " (default: print only)"),
    )
    return p


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def require(data: Path, *relative: str) -> None:
    """Stop with one message if any of ``relative`` (paths under ``data``) is missing."""
    missing = [r for r in relative if not (Path(data) / r).exists()]
    if missing:
        sys.exit(
            f"No {', '.join(missing)} under {data}. Pass --data pointing at a folder that holds them: "
            f"{DATA_SOURCE}."
        )


def load_pbc96(data: Path, *splits: str, limit: int | None = None, seed: int = 0, **kwargs: Any) -> tuple:
    """The pbc96 ``splits`` (default train and val) as datasets, each cut to ``limit`` images if given.

    The cut is a random subset (one generator seeded with ``seed``, drawn split by split in order),
    kept in file order. ``kwargs`` go to :func:`bloodcell.datasets.load_folder`.
    """
    import numpy as np

    import bloodcell as bc

    splits = splits or ("train", "val")
    require(data, *(f"pbc96/{s}" for s in splits))
    sets = [bc.datasets.load_folder(Path(data) / "pbc96" / s, **kwargs) for s in splits]
    if limit:
        rng = np.random.default_rng(seed)
        sets = [d.subset(np.sort(rng.permutation(len(d))[:limit])) for d in sets]
    return tuple(sets)


def load_lisc(data: Path, *, required: bool = True):
    """The LISC white cells of another lab (``other_labs/lisc.npz``), or None if absent and not required."""
    import bloodcell as bc

    path = Path(data) / "other_labs" / "lisc.npz"
    if not path.is_file():
        if required:
            require(data, "other_labs/lisc.npz")
        return None
    return bc.datasets.load_npz(path)


def load_split_or_sample(data: Path, split: str = "train"):
    """``(dataset, source)``: pbc96/``split`` under ``data`` if there, else the sample bundled with bloodcell."""
    import bloodcell as bc

    folder = Path(data) / "pbc96" / split
    if folder.is_dir():
        return bc.datasets.load_folder(folder), str(folder)
    return bc.datasets.load_sample(), f"bundled sample (pbc96/{split} not found)"


# ---------------------------------------------------------------------------------------------
# Timers
# ---------------------------------------------------------------------------------------------
def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds one call of ``fn(*args, **kwargs)`` takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


class Stopwatch:
    """Wall and process CPU seconds (all threads) of a ``with`` block.

    >>> with Stopwatch() as watch:
    ...     _ = sum(range(1000))
    >>> watch.wall >= 0 and watch.cpu >= 0
    True
    """

    wall: float
    cpu: float

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def repeat(fn: Callable[[], Any], times: int, *, warmup: int = 0) -> list[float]:
    """Seconds of each of ``times`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [timed(fn) for _ in range(times)]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum, maximum and spread (the range over the median) of measurements."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summary() needs at least one measurement, got none.")
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if median else float("nan")
    return {"median": median, "min": min(values), "max": max(values), "spread": spread, "n": len(values)}


def epoch_timer(skip: int | None = None):  # noqa: ANN201 - a keras.callbacks.Callback
    """A Keras callback timing each epoch, and with ``skip`` each step too.

    It records ``seconds`` (each whole epoch). With ``skip`` (0 or more) it also records when each
    training batch ends, and from them ``steady`` (``(steps, seconds)`` of each epoch from the end
    of batch ``skip`` on: the steady state after the input pipeline filled up),
    ``seconds_per_step`` (the median step of the last epoch), ``build_seconds`` (from the start of
    ``fit`` to the end of its first step, less one step: building the graph), and
    ``last_epoch_seconds`` / ``last_epoch_steps``. The batch hook is only set with ``skip``: it
    makes Keras call back into Python after every step.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.begin = self.end = 0.0

        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._epoch_start)

    class StepTimer(EpochTimer):
        def __init__(self) -> None:
            super().__init__()
            self.epoch_begins: list[float] = []
            self.batch_ends: list[list[tuple[int, float]]] = []
            self.steady: list[tuple[int, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            self.epoch_begins.append(self._epoch_start)
            self.batch_ends.append([])

        def on_train_batch_end(self, batch, logs=None):
            # With steps_per_execution k, Keras calls this after every k-th batch, with its index.
            self.batch_ends[-1].append((batch, time.perf_counter()))

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            ends = [(b, t) for b, t in self.batch_ends[-1] if b >= skip - 1]
            if len(ends) > 1:
                (first, start), (last, stop) = ends[0], ends[-1]
                self.steady.append((last - first, stop - start))

        @property
        def seconds_per_step(self) -> float:
            # The first step of an epoch waits on the input pipeline.
            return statistics.median(
                b - a for (_, a), (_, b) in zip(self.batch_ends[-1], self.batch_ends[-1][1:])
            )

        @property
        def build_seconds(self) -> float:
            return self.batch_ends[0][0][1] - self.begin - self.seconds_per_step

        @property
        def last_epoch_seconds(self) -> float:
            return self.end - self.epoch_begins[-1]

        @property
        def last_epoch_steps(self) -> int:
            return len(self.batch_ends[-1])

    return EpochTimer() if skip is None else StepTimer()


# ---------------------------------------------------------------------------------------------
# Interleaved rounds
# ---------------------------------------------------------------------------------------------
def alternate(names: Sequence[str], round_: int) -> list[str]:
    """The order of ``names`` in round ``round_`` (from 0): as given in even rounds, reversed in odd ones."""
    return list(names) if round_ % 2 == 0 else list(names)[::-1]


def interleave(
    sides: Mapping[str, Callable[[], float | None]],
    rounds: int,
    *,
    on_round: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Measure every side once per round, by turns (:func:`alternate`); each side's values by round.

    A side returns its measurement (e.g. images per second); one that returns None is measured by
    its own wall time in seconds. ``on_round(round, values)`` is called after each round (to print).
    Put the baseline first: it then runs first in rounds 1, 3, … and last in rounds 2, 4, ….

    >>> calls = []
    >>> values = interleave({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3)
    >>> calls, values
    (['a', 'b', 'b', 'a', 'a', 'b'], {'a': [1.0, 1.0, 1.0], 'b': [2.0, 2.0, 2.0]})
    """
    if rounds < 1:
        raise ValueError(f"interleave() needs rounds >= 1, got {rounds}.")
    values: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(rounds):
        for name in alternate(list(sides), round_):
            start = time.perf_counter()
            measured = sides[name]()
            values[name].append(time.perf_counter() - start if measured is None else float(measured))
        if on_round is not None:
            on_round(round_, values)
    return values


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean: the mean of ratios that treats ×2 and ×½ alike."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def order_balanced(ratios: Sequence[float]) -> float:
    """Geometric mean of the two orders' geometric means (baseline first at list positions 0, 2, …).

    If running second makes a side faster by a factor f, baseline-first rounds read r·f and
    candidate-first rounds r/f; the balanced ratio gives r back.

    >>> round(order_balanced([1.2, 0.8, 1.2, 0.8]), 3)
    0.98
    """
    return math.sqrt(geometric_mean(ratios[0::2]) * geometric_mean(ratios[1::2]))


def compare(values: Mapping[str, Sequence[float]], baseline: str) -> dict[str, dict[str, Any]]:
    """Each side's :func:`summary`, and for the others their per-round ratio to ``baseline``.

    >>> c = compare({"base": [10.0, 12.0], "new": [11.0, 12.0]}, "base")
    >>> c["new"]["ratios"], round(c["new"]["ratio"], 3)
    ([1.1, 1.0], 1.049)
    """
    out: dict[str, dict[str, Any]] = {}
    for name, vals in values.items():
        out[name] = {**summary(vals), "values": list(vals)}
        if name != baseline:
            ratios = [a / b for a, b in zip(vals, values[baseline], strict=True)]
            out[name].update(ratios=ratios, ratio=order_balanced(ratios) if len(ratios) > 1 else ratios[0])
    return out


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
def _version(module: str, *distributions: str) -> str | None:
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    for dist in distributions or (module,):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return None


def _git_revision(folder: Path) -> str | None:
    """The git commit holding ``folder`` (``+changes`` if it has uncommitted changes), or None."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", ".") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(command: str | None = None) -> dict[str, Any]:
    """Date, machine, load, command, versions, and which library ran (its folder and git revision)."""
    import bloodcell

    library = Path(bloodcell.__file__).parent
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load_1min": round(os.getloadavg()[0], 2),
        "command": command or "python " + shlex.join(sys.argv),
        "versions": {
            "python": platform.python_version(),
            "bloodcell": bloodcell.__version__,
            "numpy": _version("numpy"),
            "tensorflow": _version("tensorflow", "tensorflow", "tensorflow-cpu"),
            "keras": _version("keras"),
        },
        "library": str(library),
        "revision": _git_revision(library),
    }


def markdown_header(env: Mapping[str, Any]) -> str:
    """The conditions of a run as Markdown list items, for RESULTS.md."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return "\n".join(
        [
            f"- Date: {env['date']}",
            f"- Machine: {env['machine']}; load {env['load_1min']:.2f} at the end",
            f"- Command: `{env['command']}`",
            f"- Versions: {versions}; library {env['library']}"
            + (f" (revision {env['revision']})" if env.get("revision") else ""),
        ]
    )


def result_paths(out: Path) -> tuple[Path, Path]:
    """``(json, markdown)`` for ``--out``: ``out/results.{json,md}``, or ``out`` and its ``.md`` for a ``.json`` file."""
    out = Path(out)
    if out.suffix == ".json":
        return out, out.with_suffix(".md")
    return out / "results.json", out / "results.md"


def write_results(
    out: Path, results: Any, markdown: str | None = None, *, command: str | None = None
) -> tuple[Path, Path]:
    """Write ``results`` as JSON and ``markdown`` below the run's conditions, atomically.

    The JSON holds :func:`environment` and then the results: a dict's keys at the top level (they
    must not clash with the environment's), anything else under ``"results"``. Returns the paths.
    """
    from bloodcell._io import atomic_write_text

    env = environment(command)
    if isinstance(results, Mapping):
        clash = sorted(set(env) & set(results))
        if clash:
            raise ValueError(f"results use the environment's keys {clash}; rename them.")
        payload = {**env, **results}
    else:
        payload = {**env, "results": results}
    json_path, md_path = result_paths(out)
    atomic_write_text(json_path, json.dumps(payload, indent=1, default=str) + "\n")
    body = markdown if markdown is not None else f"Results: `{json_path.name}`."
    atomic_write_text(md_path, markdown_header(env) + "\n\n" + body.rstrip("\n") + "\n")
    return json_path, md_path
