"""Atomic file writing: write beside the target, then rename, so nothing is left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps the target's suffix (``suffix`` overrides it) because several writers
    (numpy's ``savez``, Keras's ``save``) choose the format from it. On error the temporary file is
    removed and ``path`` is left as it was; an ``OSError`` about the temporary file (a full disk,
    permissions) is raised again naming ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the mode a plain open() would (0666 - umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        raise _naming_target(err, tmp, target) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def _naming_target(err: OSError, tmp: Path, target: Path) -> OSError:
    """The same error about ``target``: a full disk names no file, and the user never saw ``tmp``."""
    if err.filename not in (None, str(tmp), tmp):
        return err  # about another file (e.g. one being read): its name is the useful one
    if err.errno is not None:
        return type(err)(err.errno, err.strerror or str(err), os.fspath(target))
    return type(err)(f"cannot write {os.fspath(target)!r}: {str(err).replace(str(tmp), os.fspath(target))}")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(data: Any, path: str | os.PathLike[str] | None = None, *, sort_keys: bool = False) -> str:
    """The JSON text of a report's plain data (indented by 2); also written atomically to ``path``,
    with a final newline, when given. Every ``to_json`` of the library writes through here.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "report.json"
        >>> print(write_json({"accuracy": 0.9}, path))
        {
          "accuracy": 0.9
        }
        >>> read_json_object(path)
        {'accuracy': 0.9}
    """
    text = json.dumps(data, indent=2, sort_keys=sort_keys)
    if path is not None:
        atomic_write_text(path, text + "\n")
    return text


def read_json_object(path_or_text: str | os.PathLike[str]) -> Any:
    """Parse a JSON object given as text (starting with ``{``) or as the path of a file holding one."""
    text = str(path_or_text)
    if not text.lstrip().startswith("{"):
        text = Path(path_or_text).read_text(encoding="utf-8")
    return json.loads(text)
