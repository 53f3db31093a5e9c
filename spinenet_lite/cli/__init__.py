"""The ``spinenet-lite`` command line.

Each group of sub-commands lives in its own module of this package with a
``register(subparsers)`` function; :func:`main` collects them. A
:class:`~spinenet_lite.errors.SpineNetError` ends the program with a one-line
reason on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import SpineNetError

# Modules of this package that add sub-commands, in the order they are listed.
COMMAND_MODULES: tuple[str, ...] = (
    "synth",
    "extract",
    "train",
    "evaluate",
    "experiment",
    "predict",
    "spider",
    "ablation",
    "localise",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="spinenet-lite",
        description="SpineNet (MICCAI 2016) reproduced: synthesise, extract, train, grade, explain.",
    )
    parser.add_argument("--version", action="version", version=f"spinenet-lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:  # a command module that fails to import fails the whole CLI, loudly
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spinenet-lite``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except SpineNetError as exc:
        print(f"spinenet-lite {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinenet-lite {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
