"""Starting TensorFlow quietly for the commands that use it.

TensorFlow writes its start-up lines (``All log messages before absl::InitializeLog()...``, the
oneDNN note, ``Could not find cuda drivers``, ``failed call to cuInit``) straight to the process's
standard error, below Python, and some of them before its own log level is read. A command line
should start with its own output, so the commands import TensorFlow with file descriptor 2 sent
to a temporary file, and C++ messages below errors' level off. ``--debug`` skips this and shows
everything.
"""

from __future__ import annotations

import os
import sys
import tempfile

__all__ = ["import_quietly"]


def import_quietly() -> None:
    """Import TensorFlow, keeping its start-up lines off the terminal (replayed if the import fails)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # drops "failed call to cuInit" later on too
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
