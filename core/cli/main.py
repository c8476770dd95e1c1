"""The ``liteport`` command line: the parser and the top-level error handling."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from liteport import __version__
from liteport.cli import convert, explain, images, inventory, matrix
from liteport.cli.common import EXIT_FAILED, EXIT_USAGE
from liteport.errors import LiteportError


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what a resume hint repeats
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


def _common_options(default: object) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--strict-plugins",
        action="store_true",
        default=default,
        help="a plugin that fails to load is fatal",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="show tracebacks and logs"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    # The options are accepted before and after the subcommand. The subcommands' copies default to
    # SUPPRESS: a default there would overwrite what was given before the subcommand.
    common = _common_options(argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="liteport",
        parents=[_common_options(False)],
        description="Convert PyTorch models to TensorFlow Lite through pinned converter backends.",
    )
    parser.add_argument("--version", action="version", version=f"liteport {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    inventory.add_parsers(sub, common)
    convert.add_parsers(sub, common)
    explain.add_parsers(sub, common)
    matrix.add_parsers(sub, common)
    images.add_parsers(sub, common)
    return parser
