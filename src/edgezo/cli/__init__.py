"""The ``edgezo`` command line.

    edgezo --version
    edgezo demo [--quick] [--steps N] [--out DIR] ...
    edgezo run STUDY [--quick] [--out DIR] ...
    edgezo memory MODEL [--regime ft|lp|lp3|vpt] ...
    edgezo cost MODEL [--regimes ft,vpt] [--batch N] [--rounds N] ...
    edgezo landscape [--quick] ...
    edgezo report [--results DIR] [--run-quick] ...
    edgezo distributed [--nproc N] [--steps N] ...
    edgezo hw report [--target ecp5|ice40|ice40up|xilinx] ...

Every flag: :func:`synopsis` (the README's "Command line" block), or ``edgezo NAME --help``.

Adding a subcommand: write a module ``edgezo.cli.NAME`` with ``add_cli(subparsers)``
that creates its parser and sets ``handler`` (a function ``args -> int``, the exit
code) with ``set_defaults``, and list it in :data:`COMMANDS`. Handlers import the
command's implementation lazily, so ``edgezo --help`` and ``edgezo NAME --help``
need only the core dependencies. Argument types shared by commands are in
:mod:`edgezo.cli.args`.

Errors are reported as one line, ``edgezo: error: ...``, with exit code 2 (as
argparse does for bad arguments); set ``EDGEZO_DEBUG=1`` to get the traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__

PROG = "edgezo"
EXIT_ERROR = 2

#: Subcommand modules of this package, in the order ``--help`` lists them; each has
#: ``add_cli(subparsers)``.
COMMANDS: list[str] = [
    "demo",
    "run",
    "memory",
    "cost",
    "landscape",
    "report",
    "distributed",
    "hw",
    "export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Zeroth-order and forward-gradient training the way an edge device does it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_cli(subparsers)
    return parser


def synopsis() -> str:
    """One usage line per command (and subcommand), as the parsers define them.

    The README's "Command line" block is this text (tests/test_readme_cli.py compares
    them): ``python -c "import edgezo.cli as c; print(c.synopsis())"``.
    """
    lines = []
    for parser in leaf_commands(build_parser()):
        parser.formatter_class = functools.partial(argparse.HelpFormatter, width=10_000)
        lines.append(parser.format_usage().strip().removeprefix("usage: ").replace(" [-h]", ""))
    return "\n".join([*lines, f"{PROG} --version"])


def leaf_commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser of every leaf command under ``parser`` (e.g. ``hw report``), in ``--help`` order."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [parser]
    return [leaf for sub in subparsers for p in sub.choices.values() for leaf in leaf_commands(p)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or runtime error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version (0) or a usage error (2)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command (see {PROG} --help)", file=sys.stderr)
        return EXIT_ERROR
    try:
        handler = getattr(args, "handler", None) or args.func  # edgezo.hw sets ``func``
        return int(handler(args) or 0)
    except KeyboardInterrupt as e:  # edgezo.train.interrupt.Terminated: SIGTERM, exit code 143
        code = getattr(e, "exit_code", 130)
        print(
            f"{PROG}: {'terminated (SIGTERM)' if code != 130 else 'interrupted'}", file=sys.stderr
        )
        return code
    except Exception as e:
        if os.environ.get("EDGEZO_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
