import errno
import os
import stat

import pytest

from bloodcell._io import atomic_path, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["report.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.txt"]


def test_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_temporary_name_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "weights.weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5")
        tmp.write_bytes(b"")


def test_errors_name_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(OSError) as caught, atomic_path(target):  # a full disk names no file at all
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    with pytest.raises(PermissionError) as caught, atomic_path(target) as tmp:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    assert caught.value.filename == str(target) and ".tmp" not in str(caught.value)
    with pytest.raises(FileNotFoundError) as caught, atomic_path(target):  # about another file: kept
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "source.npz")
    assert caught.value.filename == "source.npz"
    assert list(tmp_path.iterdir()) == []
