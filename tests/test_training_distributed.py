"""Training under tf.distribute: MirroredStrategy over two logical CPUs, and two local workers.

Logical devices and cluster membership must be set before TensorFlow initialises, so each case
runs in a fresh Python process.
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _training_utils import popen_python, run_python

TESTS_DIR = str(Path(__file__).parent)

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import bloodcell as bc
    devices = bc.training.logical_cpus(2)          # before TensorFlow initialises
    import keras, numpy as np, tensorflow as tf
    sys.path.insert(0, sys.argv[1])
    from _training_utils import tiny_classifier

    data = bc.datasets.load_sample(per_class=4)    # 32 real cells
    settings = dict(learning_rate=1e-2, verbose=0, early_stopping_patience=None, restore_best=False)
    strategy = tf.distribute.MirroredStrategy(devices)

    # 1. a model function: built inside the strategy's scope
    mirrored = bc.Trainer(lambda: tiny_classifier(seed=0, batchnorm=False), strategy=strategy, batch_size=4,
                          **settings)
    h_mirrored = mirrored.fit(data, data, epochs=2).history
    # 2. a model built outside the scope: copied in, trained weights copied back
    outside = tiny_classifier(seed=0, batchnorm=False)
    copied = bc.Trainer(outside, strategy=strategy, batch_size=4, **settings)
    copied.fit(data, data, epochs=2)
    # 3. the same global batch on one device
    single = bc.Trainer(tiny_classifier(seed=0, batchnorm=False), batch_size=8, **settings)
    h_single = single.fit(data, data, epochs=2).history
    print("RESULT " + json.dumps({
        "replicas": mirrored.num_replicas,
        "global_batch": mirrored.global_batch_size,
        "variable_type": type(mirrored.model.weights[0].value).__name__,
        "copied_is_new": copied.model is not outside,
        "loss_mirrored": h_mirrored["loss"], "loss_single": h_single["loss"],
        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in
                               zip(mirrored.model.get_weights(), single.model.get_weights())),
        "outside_diff": max(float(np.abs(a - b).max()) for a, b in
                            zip(outside.get_weights(), mirrored.model.get_weights())),
    }))
    """
)


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    proc = run_python(str(script), TESTS_DIR, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["replicas"] == 2 and result["global_batch"] == 8
    assert "Mirrored" in result["variable_type"]
    assert result["copied_is_new"]
    # Gradients of 2 × 4 images summed across replicas = gradient of 8 images on one device.
    np.testing.assert_allclose(result["loss_mirrored"], result["loss_single"], rtol=1e-4)
    assert result["max_weight_diff"] < 1e-4
    assert result["outside_diff"] < 1e-4  # the user's own model object got the trained weights


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import bloodcell as bc
    strategy = bc.training.multi_worker_strategy()   # reads TF_CONFIG; before any other TF work
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from _training_utils import tiny_classifier

    out = sys.argv[2]
    data = bc.datasets.load_sample(per_class=4)
    trainer = bc.Trainer(lambda: tiny_classifier(seed=0, batchnorm=False), strategy=strategy, batch_size=4,
                         learning_rate=1e-2, output_dir=out, verbose=0, early_stopping_patience=None)
    history = trainer.fit(data, data, epochs=2)
    name = bc.training.worker_id(strategy)
    np.savez(os.path.join(out, "..", name + ".npz"), *trainer.model.get_weights())
    print("RESULT " + json.dumps({"worker": name, "chief": bc.training.is_chief(strategy),
                                  "replicas": trainer.num_replicas, "loss": history.history["loss"]}))
    """
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_local_workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(popen_python(str(script), TESTS_DIR, str(out), env={"TF_CONFIG": tf_config}))
    outputs = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=500)
        outputs.append(stdout)
        assert proc.returncode == 0, stdout[-4000:]
    results = [json.loads(next(x for x in o.splitlines() if x.startswith("RESULT "))[7:]) for o in outputs]
    assert [r["worker"] for r in results] == ["worker-0", "worker-1"]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["replicas"] == 2 for r in results)
    assert results[0]["loss"] == results[1]["loss"]  # one synchronous run seen by both
    w0, w1 = np.load(tmp_path / "worker-0.npz"), np.load(tmp_path / "worker-1.npz")
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    # only the chief writes the run's files
    assert sorted(p.name for p in (out / "fit").iterdir()) == sorted(
        [
            "best.keras",
            "history.json",
            "log.csv",
            "state.json",
            json.loads((out / "fit" / "state.json").read_text())["variables"],
        ]
    )
