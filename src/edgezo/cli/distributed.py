"""``edgezo distributed [--nproc N] [--steps N] [--model mlp|vit] ...``: the data-parallel example.

The same example as ``python -m edgezo.distributed``; the training is
:mod:`edgezo.studies.distributed`, imported when the command runs. Each option
is checked when parsed (argparse types); ``--checkpoint`` is checked before any
rank starts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence

from ..distributed import DEFAULT_TIMEOUT_S, DistributedZOError
from .args import nonnegative_int, positive_int

#: The first paragraph of :mod:`edgezo.distributed`'s docstring, in plain text.
DESCRIPTION = (
    "Data-parallel ZO over torch.distributed: ranks exchange a few scalars per step, never "
    "weights. Trains a small model on a synthetic task and prints JSON (steps, losses, bytes "
    "per step, replica check). Ctrl-C or SIGTERM stops after a step and saves --checkpoint."
)


def finite_float(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a finite float ``>= minimum`` (or ``> minimum``), a one-line message otherwise."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    """Run the example: as one rank under torchrun, else spawn ``--nproc`` local ranks."""
    from ..studies.distributed import run as run_example

    return run_example(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The example's options (shared by ``python -m edgezo.distributed`` and ``edgezo distributed``)."""
    add_method_options(p)
    add_run_options(p)
    p.set_defaults(handler=run)


def add_method_options(p: argparse.ArgumentParser) -> None:
    """What is trained and how: model, batch, estimator, directions, lr, eps, seed."""
    p.add_argument(
        "--steps", type=positive_int, default=100, help="train until this step (default 100)"
    )
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="ranks to spawn on this machine with gloo (ignored under torchrun; default 1)",
    )
    p.add_argument(
        "--model",
        choices=["mlp", "vit"],
        default="mlp",
        help="mlp: 2,762 parameters; vit: ViT-tiny, 5.36M (default mlp)",
    )
    p.add_argument(
        "--batch", type=positive_int, default=64, help="global batch, split over ranks (64)"
    )
    p.add_argument(
        "--estimator",
        choices=["central", "forward", "sign", "jvp"],
        default="central",
        help="gradient estimator: central or forward difference, sign of the central "
        "difference, or forward-mode jvp (default central)",
    )
    p.add_argument(
        "--queries", type=positive_int, default=1, help="directions per step (default 1)"
    )
    p.add_argument(
        "--directions",
        choices=["gaussian", "pool"],
        default="gaussian",
        help="perturbations: Gaussian from a counter-based RNG, or a pre-generated pool of "
        "2**20 + 1 uniform numbers as in PeZO (default gaussian)",
    )
    p.add_argument(
        "--lr",
        type=finite_float(0.0, inclusive=True),
        default=1e-2,
        help="learning rate (>= 0; default 1e-2)",
    )
    p.add_argument(
        "--eps",
        type=finite_float(0.0, inclusive=False),
        default=1e-3,
        help="perturbation scale (> 0; default 1e-3)",
    )
    p.add_argument("--seed", type=int, default=0, help="model, data and direction seed (0)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How the run goes: timeout, checkpoints, replica checks, threads."""
    p.add_argument(
        "--timeout",
        type=finite_float(0.0, inclusive=False),
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before a silent peer fails a collective (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="resumed from if it exists (with the same options); written every --save-every "
        "steps, after the last step, and when Ctrl-C or SIGTERM stops the run",
    )
    p.add_argument(
        "--save-every",
        type=nonnegative_int,
        default=0,
        help="also checkpoint every K steps (0: only at the end; needs --checkpoint)",
    )
    p.add_argument(
        "--check-every",
        type=nonnegative_int,
        default=0,
        help="check every K steps that the replicas are bit-identical (0: at the end only)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads per rank (default 1)"
    )


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``edgezo distributed`` (the same example as ``python -m edgezo.distributed``)."""
    p = subparsers.add_parser(
        "distributed",
        help="train a small model data-parallel with ZO, exchanging only scalars",
        description=DESCRIPTION,
    )
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgezo.distributed``: the example alone (exit code 2 on a bad option, 1 on a failed rank)."""
    parser = argparse.ArgumentParser(
        prog="python -m edgezo.distributed",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as e:
        parser.error(str(e))
        return 2
    except DistributedZOError as e:
        if os.environ.get("EDGEZO_DEBUG"):
            raise
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
