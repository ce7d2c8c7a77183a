"""The ``bloodcell`` command line.

Example:
    $ bloodcell info
    $ bloodcell demo --out runs/demo
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import bloodcell
from bloodcell.errors import BloodcellError

__all__ = ["main"]


def _load(
    spec: str, image_size: int | None = 96, verbose: bool = True
) -> bloodcell.datasets.BloodCellDataset:
    """``sample`` → the bundled sample; a folder → load_folder; a ``.npz`` → load_npz."""
    import os

    from bloodcell import datasets

    if spec == "sample":
        return datasets.load_sample()
    if os.path.isdir(spec):
        return datasets.load_folder(spec, image_size=image_size, verbose=verbose)
    return datasets.load_npz(spec, image_size=image_size, verbose=verbose)


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    print(f"bloodcell {bloodcell.__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    print(f"numpy {np.__version__}")
    try:
        import keras
        import tensorflow as tf

        print(f"tensorflow {tf.__version__}, keras {keras.__version__} (backend {keras.backend.backend()})")
        devices = [d.name for d in tf.config.list_logical_devices()]
        print(f"devices: {', '.join(devices)}")
    except ImportError as err:  # pragma: no cover - tensorflow is a dependency
        print(f"tensorflow: not importable ({err})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    data = _load(args.data)
    print(f"Loaded {args.data}: {data!r}")
    print(data.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bloodcell", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bloodcell {bloodcell.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions and devices")
    info.set_defaults(func=cmd_info)
    demo = sub.add_parser("demo", help="the main job on the bundled real sample")
    demo.add_argument(
        "--data", default="sample", help="'sample' (default), a class-folder root or an .npz file"
    )
    demo.add_argument("--out", default="runs/demo", help="output folder")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BloodcellError as err:
        print(f"bloodcell: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
