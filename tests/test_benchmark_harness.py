"""The benchmark scripts' shared harness (benchmarks/_harness.py), and that every script uses it."""

from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def _load_harness():
    spec = importlib.util.spec_from_file_location("_harness", BENCHMARKS / "_harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_harness", module)
    spec.loader.exec_module(module)
    return module


h = _load_harness()


def _env() -> dict[str, str]:
    """The environment for a child Python: this process's import path, so it finds this bloodcell."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def test_harness_doctests_pass():
    # benchmarks/ is outside pytest's testpaths, so its doctests run here.
    result = doctest.testmod(h, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


def test_parser_common_arguments_and_the_command():
    p = h.parser(str(BENCHMARKS / "x.py"), "Measures x.\n\nDetails.", out=h.RUNS / "x")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(["--rounds", "2", "--out", "/tmp/a b"])
    assert args.data == h.DEFAULT_DATA == h.REPO.parent / "shared" / "data"
    assert args.out == Path("/tmp/a b") and args.rounds == 2
    assert args.command == "python benchmarks/x.py --rounds 2 --out '/tmp/a b'"
    assert p.parse_args([]).out == h.RUNS / "x"
    assert p.description == "Measures x."


def test_parser_without_data_and_with_an_out_file():
    p = h.parser(str(BENCHMARKS / "y.py"), None, data=None, out_file=True)
    args = p.parse_args([])
    assert not hasattr(args, "data") and args.out is None
    with pytest.raises(SystemExit):
        p.parse_args(["--data", "somewhere"])
    assert "JSON" in p.format_help() and "Markdown" in p.format_help()


def test_write_results_reloaded_in_a_fresh_process(tmp_path):
    body = "| a | b |\n|---|---|\n| 1 | 2 |"
    json_path, md_path = h.write_results(
        tmp_path / "run",
        {"rates": [1.5, 2.5], "where": tmp_path},
        body,
        command="python benchmarks/x.py --a 1",
    )
    assert (json_path, md_path) == (tmp_path / "run" / "results.json", tmp_path / "run" / "results.md")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "results.md"]  # no temp
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))",
            json_path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    saved = json.loads(child.stdout)
    assert saved["rates"] == [1.5, 2.5] and saved["where"] == str(tmp_path)
    assert saved["command"] == "python benchmarks/x.py --a 1"
    assert saved["versions"]["python"] and saved["versions"]["bloodcell"]
    assert saved["machine"] and saved["date"].startswith("20") and isinstance(saved["load_1min"], float)
    markdown = md_path.read_text()
    assert "- Command: `python benchmarks/x.py --a 1`" in markdown and "- Machine: " in markdown
    assert "- Versions: python " in markdown and markdown.endswith(body + "\n")


def test_write_results_to_a_json_file_and_non_dict_results(tmp_path):
    json_path, md_path = h.write_results(tmp_path / "rounds.json", [{"ratio": 0.9}])
    assert md_path == tmp_path / "rounds.md" and md_path.is_file()
    assert json.loads(json_path.read_text())["results"] == [{"ratio": 0.9}]


def test_write_results_refuses_keys_of_the_environment(tmp_path):
    with pytest.raises(ValueError, match=r"\['command'\]"):
        h.write_results(tmp_path, {"command": "mine"})
    assert not any(tmp_path.iterdir())


def test_interleave_alternates_the_order_round_by_round():
    calls: list[str] = []

    def side(name: str, value: float | None):
        return lambda: calls.append(name) or value

    values = h.interleave({"base": side("base", 10.0), "new": side("new", 12.0), "t": side("t", None)}, 4)
    assert calls == ["base", "new", "t", "t", "new", "base"] * 2
    assert values["base"] == [10.0] * 4 and values["new"] == [12.0] * 4
    assert len(values["t"]) == 4 and all(0 <= v < 5 for v in values["t"])  # its own wall time
    with pytest.raises(ValueError, match="rounds >= 1"):
        h.interleave({"a": lambda: 1.0}, 0)


def test_interleave_reports_each_round():
    seen = []
    h.interleave({"a": lambda: 1.0, "b": lambda: 2.0}, 2, on_round=lambda r, v: seen.append((r, len(v["b"]))))
    assert seen == [(0, 1), (1, 2)]


def test_compare_gives_medians_spreads_and_order_balanced_ratios():
    # Running second makes a side 10 % faster: the balanced ratio gives the true 1.0 back.
    values = {"base": [100.0, 110.0, 100.0, 110.0], "new": [110.0, 100.0, 110.0, 100.0]}
    result = h.compare(values, "base")
    assert result["base"]["median"] == 105.0 and result["base"]["spread"] == pytest.approx(10 / 105)
    assert result["new"]["ratios"] == pytest.approx([1.1, 1 / 1.1, 1.1, 1 / 1.1])
    assert result["new"]["ratio"] == pytest.approx(1.0)
    assert "ratio" not in result["base"]
    with pytest.raises(ValueError, match="at least one"):
        h.summary([])


def test_repeat_and_the_stopwatch_time_what_they_run():
    calls = []
    seconds = h.repeat(lambda: calls.append(1), 3, warmup=2)
    assert len(seconds) == 3 and len(calls) == 5 and all(s >= 0 for s in seconds)
    with h.Stopwatch() as watch:
        np.linalg.svd(np.ones((200, 200)))
    assert watch.wall > 0 and watch.cpu > 0


def test_require_names_what_is_missing_and_the_flag(tmp_path):
    (tmp_path / "pbc96" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"No pbc96/val under .*--data.*PBC dataset"):
        h.require(tmp_path, "pbc96/train", "pbc96/val")
    h.require(tmp_path, "pbc96/train")


def test_loaders_read_real_class_folders_and_fall_back_to_the_sample(tmp_path):
    from PIL import Image

    import bloodcell as bc

    sample = bc.datasets.load_sample()
    for split in ("train", "val"):
        for k, name in enumerate(sample.class_names):
            folder = tmp_path / "pbc96" / split / name
            folder.mkdir(parents=True)
            for i in np.flatnonzero(sample.labels == k)[:3]:
                Image.fromarray(sample.images[i]).save(folder / f"{split}_{i}.png")
    train, val = h.load_pbc96(tmp_path)
    assert len(train) == len(val) == 24 and train.images.shape[1:] == (96, 96, 3)
    assert np.bincount(val.labels).tolist() == [3] * 8
    (small,) = h.load_pbc96(tmp_path, "val", limit=5, seed=1)
    assert len(small) == 5
    data, source = h.load_split_or_sample(tmp_path, "val")
    assert len(data) == 24 and source == str(tmp_path / "pbc96" / "val")
    data, source = h.load_split_or_sample(tmp_path / "nowhere", "train")
    assert len(data) == len(sample) and source.startswith("bundled sample")
    assert h.load_lisc(tmp_path, required=False) is None
    with pytest.raises(SystemExit, match="other_labs/lisc.npz"):
        h.load_lisc(tmp_path)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_uses_the_harness(script):
    tree = ast.parse(script.read_text())
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "_harness" in imports
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert "shared" not in strings, "the data default is the harness's"
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    flags = [
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("add_argument") and n.args
        if isinstance(n.args[0], ast.Constant)
    ]
    assert not {"--data", "--out"} & set(flags), "the harness adds --data and --out"
    assert not [c for c in calls if c.startswith("sys.path.")], "import bloodcell as installed"
    assert "argparse.ArgumentParser" not in calls
    guards = [n for n in tree.body if isinstance(n, ast.If) and "__name__" in ast.unparse(n.test)]
    assert guards, "running the script's main only as a script keeps it import-safe"


def test_every_script_shows_help_and_imports_without_running():
    driver = textwrap.dedent(
        """
        import contextlib, io, runpy, sys
        sys.path.insert(0, sys.argv[1])
        for script in sys.argv[2:]:
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet):
                runpy.run_path(script, run_name="imported")
            assert not quiet.getvalue(), (script, quiet.getvalue())
            sys.argv = [script, "--help"]
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    runpy.run_path(script, run_name="__main__")
            except SystemExit as stop:
                assert stop.code in (0, None), (script, stop.code)
            name = script.rsplit("/", 1)[-1]
            assert f"usage: benchmarks/{name}" in out.getvalue(), (script, out.getvalue()[:200])
            print("ok", name)
        print("tensorflow", "tensorflow" in sys.modules)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", driver, str(BENCHMARKS), *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    expected = [w for s in SCRIPTS for w in ("ok", s.name)]
    assert run.stdout.split() == [*expected, "tensorflow", "False"]  # nor TensorFlow, so it is quick
