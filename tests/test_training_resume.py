"""Resume: a training process killed mid-run continues from its last finished epoch when rerun."""

from __future__ import annotations

import json
import signal
import textwrap
import time

import numpy as np
import pytest

from _training_utils import popen_python, run_python

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import keras, numpy as np
    import bloodcell as bc
    sys.path.insert(0, sys.argv[4])
    from _training_utils import tiny_classifier

    out, epochs, pause, ema = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[5] == "ema"
    data = bc.datasets.load_sample(per_class=4)
    model = tiny_classifier(seed=0, dropout=0.2)
    # A pause at the start of each epoch leaves time to kill the process mid-run.
    slow = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: time.sleep(pause))
    # With ema, the "cpu" recipe's settings: AdamW, cosine schedule, weight averaging.
    settings = (dict(optimizer="adamw", lr_schedule="cosine", warmup_epochs=1.0, ema=True, ema_momentum=0.9)
                if ema else dict(reduce_lr_patience=1, reduce_lr_factor=0.5))
    trainer = bc.Trainer(model, learning_rate=3e-3, batch_size=8, output_dir=out, callbacks=[slow],
                         early_stopping_patience=None, verbose=2, **settings)
    history = trainer.fit(data, data, epochs=epochs)
    np.savez(out + "/final.npz", *model.get_weights())
    print("EPOCHS", history.epoch)
    """
)


def _state(path):
    try:
        return json.loads((path / "fit" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _weights(path):
    with np.load(path) as npz:
        return [npz[key] for key in npz.files]


def _assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("ema", ["plain", "ema"])
def test_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path, ema):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    epochs = 6

    plain = run_python(str(script), str(tmp_path / "plain"), str(epochs), "0", tests_dir, ema)
    assert plain.returncode == 0, plain.stdout + plain.stderr

    killed_dir = tmp_path / "killed"
    proc = popen_python(str(script), str(killed_dir), str(epochs), "1.0", tests_dir, ema)
    deadline = time.time() + 240
    while time.time() < deadline:
        state = _state(killed_dir)
        if state is not None and state["epoch"] >= 2:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _state(killed_dir)["epoch"]
    assert 2 <= done < epochs
    assert not (killed_dir / "final.npz").exists()

    resumed = run_python(str(script), str(killed_dir), str(epochs), "0", tests_dir, ema)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {killed_dir / 'fit'} after epoch {done} of {epochs}" in resumed.stdout
    assert f"Epoch {done + 1}/{epochs}" in resumed.stdout and f"Epoch {done}/{epochs}" not in resumed.stdout
    assert "EPOCHS [0, 1, 2, 3, 4, 5]" in resumed.stdout

    # Same weights (and their averages), optimizer moments, learning-rate reductions, dropout seeds
    # and data order: the resumed run ends exactly where the uninterrupted one does.
    final = _weights(tmp_path / "plain" / "final.npz")
    _assert_same_weights(final, _weights(killed_dir / "final.npz"))
    ha = json.loads((tmp_path / "plain" / "fit" / "history.json").read_text())
    hb = json.loads((killed_dir / "fit" / "history.json").read_text())
    assert ha == hb
    assert len((killed_dir / "fit" / "log.csv").read_text().strip().splitlines()) == epochs + 1

    # The final weights are the best epoch's, as best.keras holds them, in a fresh process too.
    best = run_python(
        "import sys, numpy as np, bloodcell as bc; "
        "np.savez(sys.argv[2], *bc.models.load_model(sys.argv[1]).get_weights())",
        str(tmp_path / "plain" / "fit" / "best.keras"),
        str(tmp_path / "best.npz"),
    )
    assert best.returncode == 0, best.stderr
    _assert_same_weights(final, _weights(tmp_path / "best.npz"))

    # Called again once finished, the run restores those weights without training.
    again = run_python(str(script), str(tmp_path / "plain"), str(epochs), "0", tests_dir, ema)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already finished" in again.stdout and "Epoch 1/" not in again.stdout
    _assert_same_weights(final, _weights(tmp_path / "plain" / "final.npz"))
