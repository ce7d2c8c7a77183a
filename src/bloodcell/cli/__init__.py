"""The ``bloodcell`` command: clean, train, evaluate, predict and export from a shell.

Each subcommand lives in its own module of this package, which adds its parser with
``add_parser(subparsers)`` and runs with ``run(args) -> exit code``; adding a command is one
module and one line in :data:`COMMANDS`. Heavy imports (TensorFlow) happen inside the commands, so
``bloodcell --help`` answers at once.

Exit codes: 0 success, 2 bad input or usage (an error from :mod:`bloodcell.errors`, or a wrong
argument), 1 a failure of the system (an ``OSError``: permissions, disk) or an unexpected one.
Errors are printed as one line on stderr; ``--debug`` shows the traceback instead, and
TensorFlow's start-up lines, which the commands otherwise keep off the terminal.

Example:
    >>> from bloodcell.cli import main
    >>> main(["train", "--recipe", "no-such-recipe"])
    2
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import bloodcell
from bloodcell.cli._tensorflow import import_quietly
from bloodcell.errors import BloodcellError

__all__ = ["main", "build_parser", "COMMANDS"]

#: Subcommand modules of this package, in the order ``bloodcell --help`` lists them.
COMMANDS = (
    "demo", "info", "clean", "check-labels", "train", "evaluate", "calibrate", "reject", "predict", "adapt",
    "few-shot", "export", "robustness",
)  # fmt: skip

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_DEBUG_HELP = "on an error, show the full traceback instead of one line"


class _UsageError(Exception):
    """A command-line argument argparse rejected; carries its one-line message."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that names the command's ``--help``.

    argparse prints the usage block and exits; here the error is raised instead, so that
    :func:`main` prints it in the same one-line form as every other error and returns 2.
    """

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``bloodcell`` argument parser with every subcommand."""
    parser = OneLineArgumentParser(
        prog="bloodcell",
        description="Blood cell classification from the shell: clean data, train, evaluate, predict "
        "and export. Each command has its own --help.",
        epilog="Start with 'bloodcell demo': it cleans, splits, trains and evaluates on the 800 real "
        "cells bundled with the package, in a few minutes on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"bloodcell {bloodcell.__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineArgumentParser
    )
    for name in COMMANDS:
        importlib.import_module(f"bloodcell.cli.{name.replace('-', '_')}").add_parser(sub)
        # Also accepted after the command; SUPPRESS keeps the top-level value when absent here.
        sub.choices[name].add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


def _fail(message: str, code: int) -> int:
    print(message.replace("\n", " ").strip(), file=sys.stderr)
    return code


def _one_line_warning(command: str) -> Any:
    """A ``warnings.showwarning`` that prints ``bloodcell CMD: warning: message``, without a source line."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"bloodcell {command}: warning: {str(message).strip()}", file=sys.stderr, flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Returns:
        0 on success, 2 for bad input or usage, 1 for an unexpected failure (130 on Ctrl-C).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as err:
        return _fail(str(err), EXIT_USAGE)
    except SystemExit as exit_:  # --help and --version end here
        return int(exit_.code or 0)
    debug = bool(getattr(args, "debug", False))
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning(args.command)
                if getattr(sys.modules[args.run.__module__], "USES_TENSORFLOW", True):
                    import_quietly()
            return int(args.run(args))
    except BloodcellError as err:
        if debug:
            raise
        return _fail(f"bloodcell {args.command}: error: {err}", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail(f"bloodcell {args.command}: interrupted", 130)
    except OSError as err:  # the system refused (permissions, full disk, a file where a folder goes)
        if debug:
            raise
        return _fail(f"bloodcell {args.command}: error: {err}", EXIT_FAILURE)
    except Exception as err:
        if debug:
            raise
        return _fail(
            f"bloodcell {args.command}: unexpected error: {type(err).__name__}: {err} "
            "(run again with --debug for the traceback, and report it if it persists)",
            EXIT_FAILURE,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
