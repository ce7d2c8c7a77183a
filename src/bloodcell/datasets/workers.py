"""Batches gathered and augmented in separate processes: ``to_tf_dataset(..., workers=N)``.

Why: on a CPU with few cores, augmentation in ``tf.data`` threads competes with the model for the
very cores it computes on, and costs it more than its own CPU time (on the project's 2-core VM,
AugMix's 0.43 ms of CPU per image slowed MobileNetV3Small by about 1 ms per image; see
``benchmarks/RESULTS.md``). A worker process at the lowest scheduling priority (``SCHED_IDLE`` on
Linux, nice 19 elsewhere) runs only when a core would otherwise idle, and the model's threads take
that core back the moment they want it.

How:

* The arrays reach the workers once, as ``.npy`` files they memory-map (``allow_pickle=False``),
  deleted as soon as every worker has opened them. The settings, augmenter included, go pickled
  over a private pipe to the worker this process started.
* Worker k of N, under this process's TensorFlow global seed, builds the very pipeline of
  :func:`~bloodcell.datasets.tfdata.build_pipeline` with ``shard=(N, k)``: batches k, k + N, …
  each with the index list and augmentation seed it has in process. The batches are the ones
  ``workers=0`` gives, bit for bit.
* Each pass over the dataset (each ``iter()``) is one pass of the workers' pipelines, so shuffling
  and augmentation move on per pass exactly as in process. Batches come back in order, round robin,
  as raw bytes over pipes, written by one thread of the worker that keeps normal priority (the
  trainer waits on it). An iterator dropped early stops the workers' pass; a new one starts the
  next.
* The workers start when the dataset is made and stop when it is garbage-collected, when this
  program ends, or when their pipes to it close. A worker's error is raised here as
  :class:`~bloodcell.errors.WorkerError` with the worker's message (TensorFlow wraps an error
  raised inside a pipeline as ``tf.errors.UnknownError``), never as a hang.
* Each worker is a Python process with TensorFlow: a few seconds to start, and here about 1 GB
  resident (the memory-mapped images included).

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> ds = bc.datasets.to_tf_dataset(data, 8, augment=bc.augment.AugMix(), seed=0, workers=1)
    >>> images, labels = next(iter(ds))
    >>> images.shape
    TensorShape([8, 96, 96, 3])
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell.errors import ConfigurationError, WorkerError

__all__ = ["worker_processes"]

_ARRAYS = ("images", "labels", "order")
_LIVE: weakref.WeakSet[_WorkerPool] = weakref.WeakSet()


def worker_processes() -> list[int]:
    """Process ids of the batch workers of every live dataset made with ``workers`` ≥ 1."""
    return [pid for pool in list(_LIVE) for pid in pool.pids]


def worker_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    settings: Any,
    element_spec: Any,
    workers: int,
) -> Any:
    """A ``tf.data.Dataset`` whose batches ``workers`` processes make (see the module docstring).

    ``settings`` is a :class:`~bloodcell.datasets.tfdata.PipelineSettings` and ``element_spec`` that
    pipeline's, so this dataset has the same structure as the in-process one.
    """
    import tensorflow as tf

    if os.name != "posix":
        raise ConfigurationError(
            f"workers={workers} needs a POSIX system (Linux, macOS); on {sys.platform} use workers=0."
        )
    # A seeded tf.data op draws from (TensorFlow's global seed, its own): the worker needs both.
    global_seed = int(tf.compat.v1.get_seed(0)[0])
    try:
        job = pickle.dumps({"settings": settings, "global_seed": global_seed})
    except Exception as exc:  # pickle raises many types: lambdas, locks, local classes…
        raise ConfigurationError(
            f"workers={workers} sends the augmenter to other processes, but "
            f"{type(settings.augment).__name__} cannot be pickled ({exc}). Define it at module level, "
            "or use workers=0."
        ) from exc
    pool = _WorkerPool({"images": images, "labels": labels, "order": order}, job, element_spec, workers)
    # TensorFlow keeps a generator's functions alive for the life of the program, so they get only a
    # weak reference; the dataset holds the strong one: its workers stop when it is collected.
    ds = tf.data.Dataset.from_generator(
        functools.partial(_one_pass, weakref.ref(pool)), output_signature=element_spec
    )
    ds._bloodcell_workers = pool
    return ds


def _one_pass(pool_ref: weakref.ref[_WorkerPool]) -> Any:
    pool = pool_ref()  # held by this generator's frame while its iterator lives
    if pool is None:
        raise WorkerError(
            "The dataset made by to_tf_dataset(workers=...) was garbage-collected, which stopped its "
            "workers; keep a reference to it while datasets derived from it are in use."
        )
    yield from pool.one_pass()


class _WorkerPool:
    """The worker processes behind one dataset, and the protocol of its passes.

    One pass runs at a time: a new iterator stops the pass of an older one that was not finished.
    The lock serialises the pipes between TensorFlow's threads that drive the generators.
    """

    def __init__(self, arrays: dict[str, np.ndarray], job: bytes, element_spec: Any, workers: int) -> None:
        self._spec = element_spec
        self._job = job
        self._lock = threading.Lock()
        self._folder = Path(tempfile.mkdtemp(prefix="bloodcell-workers-"))
        try:
            for name in _ARRAYS:  # a private folder: the workers are only told of it once complete
                np.save(self._folder / f"{name}.npy", np.ascontiguousarray(arrays[name]))
            self._procs, self._ctrl, self._data = _start_workers(workers)
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(
            self, _shut_down, self._procs, self._ctrl, self._data, self._folder
        )
        self._ready = False
        self._active: object | None = None  # the token of the pass in progress
        self._pending: set[int] = set()  # workers that have not finished the current pass
        self._broken: str | None = None
        _LIVE.add(self)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    def one_pass(self) -> Any:
        """Generator of one pass's batches (``tf.data.Dataset.from_generator`` calls it per iterator)."""
        import tensorflow as tf

        token = object()
        with self._lock:
            self._stop_pass()  # an older iterator, dropped but not yet collected
            if self._broken:
                raise WorkerError(self._broken)
            self._start_pass(token)
        n = len(self._procs)
        i = 0
        try:
            while True:
                with self._lock:
                    if self._active is not token:
                        raise WorkerError(
                            "A newer iterator of this dataset took over its workers; a dataset made "
                            "with workers >= 1 serves one iterator at a time."
                        )
                    k = i % n
                    header, arrays = self._receive(k)
                    if header["kind"] == "end":  # the others have made all of theirs: collect their ends
                        self._pending.discard(k)
                        for j in sorted(self._pending):
                            self._expect_end(j)
                        self._active = None
                        return
                    if header["kind"] == "error":
                        self._pending.discard(k)
                        self._stop_pass()
                        raise WorkerError(_error_message(header, k, n))
                    if header["kind"] != "batch":
                        raise self._protocol_error(k, header)
                yield tf.nest.pack_sequence_as(self._spec, arrays)
                i += 1
        finally:
            with self._lock:
                if self._active is token:
                    self._stop_pass()

    # -- under the lock ------------------------------------------------------------------------
    def _start_pass(self, token: object) -> None:
        if not self._ready:
            self._await_ready()
        for ctrl in self._ctrl:
            ctrl.send_bytes(b"pass")
        self._pending = set(range(len(self._procs)))
        self._active = token

    def _await_ready(self) -> None:
        for ctrl in self._ctrl:
            ctrl.send_bytes(str(self._folder).encode())
            ctrl.send_bytes(self._job)
        try:
            for k in range(len(self._procs)):
                header, _ = self._receive(k)
                if header["kind"] == "error":
                    raise WorkerError(_error_message(header, k, len(self._procs)))
                if header["kind"] != "ready":
                    raise self._protocol_error(k, header)
        except WorkerError as exc:
            self._broken = str(exc)
            raise
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)  # opened (memory-mapped) by now, or useless
        self._ready = True

    def _stop_pass(self) -> None:
        """Tell the workers still in the pass to stop, and discard what they had sent meanwhile."""
        if self._active is None:
            return
        pending, self._pending, self._active = sorted(self._pending), set(), None
        try:
            for k in pending:
                self._ctrl[k].send_bytes(b"abort")
            for k in pending:
                while self._receive(k)[0]["kind"] not in ("end", "aborted", "error"):
                    pass
        except (WorkerError, OSError) as exc:
            self._broken = self._broken or f"The dataset's workers failed while stopping a pass: {exc}"

    def _expect_end(self, k: int) -> None:
        header, _ = self._receive(k)
        self._pending.discard(k)  # whatever it sent, this worker has left the pass
        if header["kind"] == "error":
            raise WorkerError(_error_message(header, k, len(self._procs)))
        if header["kind"] != "end":
            raise self._protocol_error(k, header)

    def _receive(self, k: int) -> tuple[dict[str, Any], list[np.ndarray]]:
        fd = self._data[k].fileno()
        try:
            header = json.loads(_read_message(fd).tobytes())
            arrays = [
                _read_message(fd).view(np.dtype(dtype)).reshape(shape)
                for dtype, shape in header.get("arrays", ())
            ]
        except (EOFError, OSError) as exc:
            self._broken = self._broken or _exit_message(self._procs[k], k, len(self._procs))
            self._active, self._pending = None, set()  # no pass can go on without this worker
            raise WorkerError(self._broken) from exc
        return header, arrays

    def _protocol_error(self, k: int, header: dict[str, Any]) -> WorkerError:
        self._broken = f"Worker {k} sent {header.get('kind')!r} out of turn; the dataset cannot go on."
        self._active, self._pending = None, set()  # nothing to drain: the pool is unusable
        return WorkerError(self._broken)


def _read_message(fd: int) -> np.ndarray:
    """One message of ``Connection.send_bytes`` read straight into a fresh array (bytes, uint8).

    ``Connection.recv_bytes`` grows a ``BytesIO`` and copies it out again; for a batch of 32 float
    images that took the trainer's process several times the CPU of reading each byte once.
    """
    (size,) = struct.unpack("!i", _read_exactly(fd, 4))
    if size == -1:  # the frame of a message of 2 GiB or more
        (size,) = struct.unpack("!Q", _read_exactly(fd, 8))
    out = np.empty(size, np.uint8)
    view, done = memoryview(out), 0
    while done < size:
        n = os.readv(fd, [view[done:]])
        if n == 0:
            raise EOFError
        done += n
    return out


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _start_workers(workers: int) -> tuple[list[subprocess.Popen], list[Connection], list[Connection]]:
    env = dict(os.environ)
    # The worker imports what this process can: bloodcell itself and the augmenter's module.
    env["PYTHONPATH"] = os.pathsep.join(os.getcwd() if p == "" else p for p in sys.path)
    env["CUDA_VISIBLE_DEVICES"] = "-1"  # augmentation runs on the CPU; accelerators stay the model's
    procs, ctrls, datas = [], [], []
    try:
        for k in range(workers):
            ctrl_r, ctrl_w = os.pipe()
            data_r, data_w = os.pipe()
            _widen(data_w)
            try:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", "from bloodcell.datasets.workers import serve; serve()"]
                        + [str(ctrl_r), str(data_w), str(k), str(workers)],
                        pass_fds=(ctrl_r, data_w),
                        env=env,
                        stdin=subprocess.DEVNULL,
                    )
                )
            finally:
                os.close(ctrl_r)  # the worker's ends: only it holds them now, so its exit reads as EOF
                os.close(data_w)
            ctrls.append(Connection(ctrl_w, readable=False))
            datas.append(Connection(data_r, writable=False))
    except BaseException:
        _shut_down(procs, ctrls, datas, None)
        raise
    return procs, ctrls, datas


def _widen(pipe_fd: int) -> None:
    """Grow a pipe's buffer (Linux: 64 KiB by default) to 1 MiB: fewer round trips per batch."""
    import fcntl

    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux
        try:
            fcntl.fcntl(pipe_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
            pass


def _shut_down(
    procs: list[subprocess.Popen], ctrls: list[Connection], datas: list[Connection], folder: Path | None
) -> None:
    # Closing the data pipes first frees a worker blocked writing a batch (it gets EPIPE and exits).
    for conn in datas:
        conn.close()
    for ctrl in ctrls:
        try:
            ctrl.send_bytes(b"quit")
        except OSError:
            pass
        ctrl.close()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _exit_message(proc: subprocess.Popen, k: int, n: int) -> str:
    try:
        code = proc.wait(timeout=5)
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        if code == -9:
            how += "; out of memory?"
    except subprocess.TimeoutExpired:
        how = "its pipe closed"
    return (
        f"Batch worker {k} of {n} (pid {proc.pid}) stopped unexpectedly ({how}). Rerun with "
        "workers=0 to see the failure in this process."
    )


def _error_message(header: dict[str, Any], k: int, n: int) -> str:
    where = f"\n--- the worker's traceback ---\n{header['traceback']}" if header["traceback"] else "\n"
    return (
        f"Batch worker {k} of {n} raised {header['type']}: {header['message']}{where}"
        "Rerun with workers=0 to debug it in this process."
    )


# ---------------------------------------------------------------------------- the worker's side
def lower_priority(keep: tuple[int, ...] = ()) -> str:
    """Put this process's threads but ``keep`` (native ids) at the lowest CPU priority; its name.

    On Linux the policy is per thread, and threads started later inherit their starter's.
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE") and os.path.isdir("/proc/self/task"):
        try:
            for tid in map(int, os.listdir("/proc/self/task")):
                if tid not in keep:
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    try:
        os.nice(19 - os.nice(0))
        return "nice 19"
    except OSError:
        return "unchanged"


def serve() -> None:
    """Entry point of a worker process: ``serve()`` with argv ``ctrl_fd data_fd k n``."""
    ctrl_fd, data_fd, k, n = (int(a) for a in sys.argv[1:5])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the trainer, which stops us
    ctrl = Connection(ctrl_fd, writable=False)
    data = _Sender(Connection(data_fd, readable=False))
    # Everything but the sender at idle priority, before TensorFlow starts its thread pools (they
    # inherit it). The sender keeps normal priority: the trainer waits on its writes, and at idle
    # priority they would wait for a free core (priority inversion).
    lower_priority(keep=(data.native_id,))
    try:
        _serve(ctrl, data, (n, k))
        data.close()
    except (EOFError, OSError):
        pass  # the parent is gone or dropped the dataset


class _Sender:
    """Writes messages to the parent from a thread of its own, in order, two at most queued."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=2)
        self._error: OSError | None = None
        started = threading.Event()

        def run() -> None:
            self.native_id = threading.get_native_id()
            started.set()
            while (parts := self._queue.get()) is not None:
                try:
                    for part in parts:
                        self._conn.send_bytes(part)
                except OSError as exc:  # the parent closed its end
                    self._error = exc
                    return

        self._thread = threading.Thread(target=run, name="bloodcell-batch-sender", daemon=True)
        self._thread.start()
        started.wait()

    def send_bytes(self, *parts: Any) -> None:
        """Queue one message (its parts are written back to back)."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(parts, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()


def _serve(ctrl: Connection, data: _Sender, shard: tuple[int, int]) -> None:
    folder = Path(ctrl.recv_bytes().decode())
    job = ctrl.recv_bytes()
    try:
        job = pickle.loads(job)  # sent by the process that started this one
        pipeline = _pipeline(job["settings"], job["global_seed"], folder, shard)
    except Exception as exc:
        _send_error(data, exc)
        return
    _send(data, {"kind": "ready"})
    while True:
        command = ctrl.recv_bytes()
        if command == b"quit":
            return
        if command == b"pass" and not _serve_pass(pipeline, ctrl, data):
            return
        # anything else: an "abort" that arrived after the pass had ended


def _pipeline(settings: Any, global_seed: int, folder: Path, shard: tuple[int, int]) -> Any:
    import tensorflow as tf

    from bloodcell.datasets.tfdata import build_pipeline

    tf.random.set_seed(global_seed)
    images, labels, order = (
        np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS
    )
    return build_pipeline(images, labels, order, settings, shard=shard).prefetch(tf.data.AUTOTUNE)


def _serve_pass(pipeline: Any, ctrl: Connection, data: _Sender) -> bool:
    """Send one pass's batches; False when told to quit."""
    import tensorflow as tf

    batches = iter(pipeline)
    while True:
        if ctrl.poll():
            command = ctrl.recv_bytes()
            if command == b"abort":
                _send(data, {"kind": "aborted"})
                return True
            return command != b"quit"
        try:
            element = next(batches)
        except StopIteration:
            break
        except Exception as exc:  # the pipeline's (the augmenter's) error, for the parent to raise
            _send_error(data, exc)
            return True
        arrays = [np.ascontiguousarray(t.numpy()) for t in tf.nest.flatten(element)]
        header = {"kind": "batch", "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
        data.send_bytes(json.dumps(header).encode(), *(a.data for a in arrays))
    _send(data, {"kind": "end"})
    return True


def _send(data: _Sender, header: dict[str, Any]) -> None:
    data.send_bytes(json.dumps(header).encode())


def _send_error(data: _Sender, exc: BaseException) -> None:
    # A TensorFlow error names the failing op itself; its Python traceback shows only the iterator.
    from_tensorflow = type(exc).__module__.startswith("tensorflow")
    _send(
        data,
        {
            "kind": "error",
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "" if from_tensorflow else "".join(traceback.format_exception(exc)),
        },
    )
