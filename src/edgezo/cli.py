"""The ``edgezo`` command line.

    edgezo --version
    edgezo demo [--steps N] [--seed S] [--quick] [--threads T] [--no-progress] [--json FILE] [--out DIR]
    edgezo run STUDY [--quick] [--out DIR] [--seed S] [--no-progress]
    edgezo memory MODEL [--regime ft|lp] [--batch N] [--out DIR]
    edgezo landscape [--quick] [--grid N] [--directions pca|random] [--out DIR]
    edgezo report [--results DIR] [--out DIR] [--run-quick]
    edgezo distributed [--nproc N] [--steps N] [--model mlp|vit] [--checkpoint FILE --save-every K]
    edgezo hw report [--throughput N] [--bits B] [--target xilinx|ice40|ecp5] [--out DIR]

Adding a subcommand: write ``def _add_NAME(subparsers)`` that creates its
parser and sets ``handler`` (a function ``args -> int``, the exit code) with
``set_defaults``, and list it in :data:`COMMANDS`. Handlers import their
modules lazily, so ``edgezo --help`` stays fast.

Errors are reported as one line, ``edgezo: error: ...``, with exit code 2 (as
argparse does for bad arguments); set ``EDGEZO_DEBUG=1`` to get the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

PROG = "edgezo"
EXIT_ERROR = 2


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


# -- edgezo demo ---------------------------------------------------------------
def _add_demo(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="pretrain a small CNN on MNIST, shift the domain, adapt it with MeZO, PeZO, QZO-FF",
        description=(
            "Last-mile adaptation with forward passes only: a SmallCNN pretrained with backprop "
            "on MNIST (cached after the first run) meets a washed-out, noisy camera; its "
            "classifier head is adapted with zeroth-order SGD (MeZO: Gaussian directions; PeZO: "
            "a pre-generated uniform pool; QZO-FF: 16-bit integer weights, 8-bit activations) "
            "on the same batches. Prints accuracy before and "
            "after, steps, forward passes and wall time. Cache: $EDGEZO_CACHE or ~/.cache/edgezo."
        ),
    )
    p.add_argument(
        "--steps", type=_positive_int, default=None, help="ZO steps per method (default 800)"
    )
    p.add_argument(
        "--seed",
        type=_nonnegative_int,
        default=0,
        help="seed of the adaptation: batch order and ZO directions (default 0)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a much smaller run (smoke test, a few seconds)"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch CPU threads (default: torch's choice; use 1 on a busy machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--out", default="results/demo", help="directory of curves.png (default results/demo)"
    )
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from .demo import run_demo

    result = run_demo(
        steps=args.steps,
        seed=args.seed,
        quick=args.quick,
        progress=not args.no_progress,
        out=args.out,
    )
    if args.json:
        from .cache import atomic_write

        payload = {k: v for k, v in result.items() if k != "table"}
        text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
        atomic_write(args.json, lambda f: f.write(text.encode("utf-8")))
    return 0


# -- edgezo hw -------------------------------------------------------------------
def _add_hw(subparsers: Any) -> None:
    from .hw.cli import add_cli  # light: Amaranth is imported only when a report runs

    add_cli(subparsers)


# -- edgezo run / memory ---------------------------------------------------------
def _add_run(subparsers: Any) -> None:
    from .experiments.cli import add_cli  # light: a study's modules load when it runs

    add_cli(subparsers)


def _add_memory(subparsers: Any) -> None:
    from .analysis.memory_cli import add_cli

    add_cli(subparsers)


def _add_report(subparsers: Any) -> None:
    from .analysis.report_cli import add_cli

    add_cli(subparsers)


def _add_distributed(subparsers: Any) -> None:
    from .distributed import add_cli

    add_cli(subparsers)


def _add_landscape(subparsers: Any) -> None:
    from .analysis.landscape_cli import add_cli

    add_cli(subparsers)


#: Subcommand registrars, in the order ``--help`` lists them.
COMMANDS: list[Callable[[Any], None]] = [
    _add_demo,
    _add_run,
    _add_memory,
    _add_landscape,
    _add_report,
    _add_distributed,
    _add_hw,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Zeroth-order and forward-gradient training the way an edge device does it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
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
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("EDGEZO_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
