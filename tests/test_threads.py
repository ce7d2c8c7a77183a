"""``bloodcell.training.set_cpu_threads``: TensorFlow's thread pools, set first or refused clearly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

import bloodcell as bc
from bloodcell.cli import main
from bloodcell.errors import ConfigurationError


def _started() -> tuple[int, int]:
    """Make sure TensorFlow has run an op in this process; its thread settings (0: its choice)."""
    tf.constant(1.0) + 1.0
    threading = tf.config.threading
    return threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()


def test_set_first_in_a_fresh_process_and_kept_through_training():
    code = textwrap.dedent(
        """
        import numpy as np
        import bloodcell as bc
        print(bc.training.set_cpu_threads(intra_op=1, inter_op=3))
        import keras
        import tensorflow as tf
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
        model.compile("adam", "mse")
        model.fit(np.zeros((4, 8)), np.zeros((4, 2)), verbose=0)
        threading = tf.config.threading
        print(threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        print(bc.training.set_cpu_threads(intra_op=1))  # the value in force: allowed after the start
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["(1, 3)", "1 3", "(1, 3)"]


def test_after_the_start_other_values_are_refused_and_the_same_accepted():
    intra, inter = _started()
    assert bc.training.set_cpu_threads(intra, inter) == (intra, inter)
    assert bc.training.set_cpu_threads() == (intra, inter)
    with pytest.raises(ConfigurationError, match=rf"already started with intra_op={intra}.*fresh process"):
        bc.training.set_cpu_threads(intra_op=intra + 5)
    with pytest.raises(ConfigurationError, match=rf"already started with inter_op={inter}"):
        bc.training.set_cpu_threads(inter_op=inter + 5)
    assert _started() == (intra, inter)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_a_count_that_is_not_one_is_refused(bad):
    with pytest.raises(ConfigurationError, match=rf"intra_op must be .* Received: intra_op={bad!r}"):
        bc.training.set_cpu_threads(intra_op=bad)
    with pytest.raises(ConfigurationError, match=rf"inter_op must be .* Received: inter_op={bad!r}"):
        bc.training.set_cpu_threads(inter_op=bad)


def test_cli_train_sets_the_threads_before_any_work(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--recipe",
                "cpu",
                "--intra-op-threads",
                "1",
                "--inter-op-threads",
                "2",
                "--print-config",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "intra_op_threads = 1\n" in printed and "inter_op_threads = 2\n" in printed
    toml = tmp_path / "run.toml"
    toml.write_text(printed)
    assert main(["train", "--config", str(toml), "--print-config"]) == 0
    assert capsys.readouterr().out == printed  # the file reads back
    intra, _ = _started()  # too late to change them in this process: refused before the run starts
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--data",
            "sample",
            "--recipe",
            "cpu",
            "--intra-op-threads",
            str(intra + 5),
            "--out",
            str(out),
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert f"intra_op={intra + 5}" in err and "fresh process" in err
    assert not out.exists()
