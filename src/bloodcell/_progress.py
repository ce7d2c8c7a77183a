"""A minimal text progress line for long loops (decoding, scanning), without importing Keras."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``label: done/total (pct) elapsed`` on one line, at most a few times a second.

    On a terminal the line is rewritten in place; to a file or pipe only the final line is written.

    Example:
        >>> with Progress(3, "decoding", enabled=False) as bar:
        ...     for _ in range(3):
        ...         bar.update()
    """

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = int(total)
        self.label = label
        self.enabled = enabled and self.total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.done < self.total and (not self._live or now - self._last < 0.25):
            return  # a log file gets the final line only: "\r" would pile every update into it
        self._last = now
        pct = 100.0 * self.done / self.total
        start = "\r" if self._live else ""
        self.stream.write(
            f"{start}{self.label}: {self.done}/{self.total} ({pct:.0f}%) {now - self._start:.1f} s"
        )
        self.stream.flush()

    @property
    def _live(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
