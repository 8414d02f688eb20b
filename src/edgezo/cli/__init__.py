"""The ``edgezo`` command line.

    edgezo --version
    edgezo demo [--steps N] [--seed S] [--quick] [--threads T] [--no-progress] [--json FILE] [--out DIR]
    edgezo run STUDY [--quick] [--out DIR] [--seed S] [--no-progress]
    edgezo memory MODEL [--regime ft|lp] [--batch N] [--out DIR]
    edgezo landscape [--quick] [--grid N] [--directions pca|random] [--out DIR]
    edgezo report [--results DIR] [--out DIR] [--run-quick]
    edgezo distributed [--nproc N] [--steps N] [--model mlp|vit] [--checkpoint FILE --save-every K]
    edgezo hw report [--throughput N] [--bits B] [--target xilinx|ice40|ecp5] [--out DIR]

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
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__

PROG = "edgezo"
EXIT_ERROR = 2

#: Subcommand modules of this package, in the order ``--help`` lists them; each has
#: ``add_cli(subparsers)``.
COMMANDS: list[str] = ["demo", "run", "memory", "landscape", "report", "distributed", "hw"]


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
