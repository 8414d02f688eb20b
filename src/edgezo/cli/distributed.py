"""``edgezo distributed [--nproc N] [--steps N] [--model mlp|vit] ...``: the data-parallel example.

The same example as ``python -m edgezo.distributed``; the training is
:mod:`edgezo.studies.distributed`, imported when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..distributed import DEFAULT_TIMEOUT_S

#: The first paragraph of :mod:`edgezo.distributed`'s docstring, as ``--help`` showed it.
DESCRIPTION = (
    "Data-parallel ZO over ``torch.distributed``: ranks exchange a few scalars per step, "
    "never weights."
)


def run(args: argparse.Namespace) -> int:
    """Run the example: as one rank under torchrun, else spawn ``--nproc`` local ranks."""
    from ..studies.distributed import run as run_example

    return run_example(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The example's options (shared by ``python -m edgezo.distributed`` and ``edgezo distributed``)."""
    p.add_argument("--steps", type=int, default=100, help="train until this step (default 100)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="ranks to spawn on this machine with gloo (ignored under torchrun; default 1)",
    )
    p.add_argument("--model", choices=["mlp", "vit"], default="mlp", help="default mlp")
    p.add_argument("--batch", type=int, default=64, help="global batch, split over ranks (64)")
    p.add_argument("--estimator", choices=["central", "forward", "sign", "jvp"], default="central")
    p.add_argument("--queries", type=int, default=1, help="directions per step (default 1)")
    p.add_argument("--directions", choices=["gaussian", "pool"], default="gaussian")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 1e-2)")
    p.add_argument("--eps", type=float, default=1e-3, help="perturbation scale (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="model, data and direction seed (0)")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before a silent peer fails a collective (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--checkpoint", help="checkpoint file: resumed from if present, written to")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (0: never)")
    p.add_argument("--check-every", type=int, default=0, help="check replicas every K steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.set_defaults(handler=run)


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
    """``python -m edgezo.distributed``: the example alone (exit code 2 on a bad option)."""
    parser = argparse.ArgumentParser(
        prog="python -m edgezo.distributed",
        description="Data-parallel ZO example: train a small model, print JSON.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as e:
        parser.error(str(e))
        return 2
