"""The library's own progress line: rewritten in place on a terminal, one final line in a log file."""

from __future__ import annotations

import io

from bloodcell._progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_line_without_carriage_returns():
    log = io.StringIO()
    with Progress(300, "decoding", stream=log) as bar:
        for _ in range(300):
            bar.update()
    assert "\r" not in log.getvalue() and log.getvalue().startswith("decoding: 300/300 (100%)")
    assert log.getvalue().count("\n") == 1


def test_a_terminal_sees_the_line_rewritten():
    screen = Terminal()
    with Progress(3, "decoding", stream=screen) as bar:
        for _ in range(3):
            bar.update()
    assert screen.getvalue().startswith("\rdecoding: 1/3") and screen.getvalue().endswith("\n")
