"""The ``liteport`` command line: the parser and the top-level error handling."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from liteport import __version__
from liteport.cli import convert, images, inventory, matrix
from liteport.cli.common import EXIT_FAILED, EXIT_USAGE
from liteport.errors import LiteportError


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except LiteportError as exc:
        _error(str(exc), args)
        return EXIT_USAGE if exc.kind == "bad_input" else EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted", args)
        return 130


def _error(message: str, args: argparse.Namespace) -> None:
    if getattr(args, "verbose", False):
        traceback.print_exc()
    print(f"liteport: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is fatal")
    common.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and logs")

    parser = argparse.ArgumentParser(
        prog="liteport",
        parents=[common],
        description="Convert PyTorch models to TensorFlow Lite through pinned converter backends.",
    )
    parser.add_argument("--version", action="version", version=f"liteport {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    inventory.add_parsers(sub, common)
    convert.add_parsers(sub, common)
    matrix.add_parsers(sub, common)
    images.add_parsers(sub, common)
    return parser
