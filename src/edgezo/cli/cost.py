"""``edgezo cost MODEL [--regimes ft,vpt] [--batch N] [--rounds N] [--out DIR]``: time per iteration.

Times a backprop step against ZO steps (MeZO's and PeZO's) and two plain forwards on one
of ``edgezo memory``'s models, per training regime, in paired rounds
(:mod:`edgezo.analysis.cost`), and writes ``cost.md``, ``cost.png`` and ``cost.json``.
Run it on a quiet machine: the JSON records the load average at the start and the end.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from .args import int_at_least, make_dir, writable_dir
from .memory import MODELS, REGIMES, build


def regime_list(text: str) -> tuple[str, ...]:
    """``ft,vpt`` as a tuple of known regimes (an unknown one names the known)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in REGIMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown regime(s) {unknown or [text]}; give a comma list of {sorted(REGIMES)}"
        )
    return names


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``edgezo cost`` on ``subparsers`` (``handler`` returns the exit code)."""
    p = subparsers.add_parser(
        "cost",
        help="time per iteration: backprop against ZO steps, in paired rounds",
        description=(
            "Time a backprop step, MeZO's and PeZO's ZO steps and two plain forwards on a model, "
            "per training regime, each once per round in a rotating order; the ratios (backprop "
            "over ZO, per round) get a 95% t-interval over the rounds. Writes cost.md, cost.png "
            "and cost.json. Run it on a quiet machine."
        ),
    )
    p.add_argument("model", choices=sorted(MODELS), metavar="MODEL",
                   help=f"model to time: {', '.join(sorted(MODELS))}")  # fmt: skip
    p.add_argument("--regimes", type=regime_list, default=("ft", "vpt"), metavar="R[,R...]",
                   help="what trains, one cell each (default ft,vpt: the whole network runs)")  # fmt: skip
    p.add_argument("--batch", type=int_at_least(1), default=8, metavar="N",
                   help="batch size (default 8)")  # fmt: skip
    p.add_argument("--rounds", type=int_at_least(2), default=20, metavar="N",
                   help="timed rounds per regime (default 20)")  # fmt: skip
    p.add_argument("--warmup", type=int_at_least(0), default=3, metavar="N",
                   help="untimed rounds first (default 3)")  # fmt: skip
    p.add_argument("--threads", type=int_at_least(1), default=1, metavar="N",
                   help="torch threads (default 1)")  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="seed of weights and batch")  # fmt: skip
    p.add_argument("--out", type=writable_dir, default="cost", metavar="DIR",
                   help="output folder, created if missing (default ./cost)")  # fmt: skip
    p.set_defaults(handler=run_cost)
    return p


def run_cost(args: argparse.Namespace) -> int:
    """Time every regime, write the three files, print the table and where they are."""
    from ..analysis.cost import load_average, measure_cell, write_cost_report
    from ..analysis.memory import environment
    from ..studies.results import provenance

    make_dir(args.out)  # checked when parsed: a bad path fails before the work
    torch.set_num_threads(args.threads)
    meta: dict[str, Any] = {
        "model": f"{args.model} ({MODELS[args.model].description})",
        "batch": args.batch, "rounds": args.rounds, "warmup": args.warmup,
        "threads": args.threads, "seed": args.seed, "load_average_start": load_average(),
    }  # fmt: skip
    cells = []
    for regime in args.regimes:
        model, x = build(args.model, regime, args.batch, args.seed)
        cells.append({"regime": regime, **measure_cell(model, x, args.rounds, args.warmup)})
    meta.update(load_average_end=load_average(), environment=environment(),
                provenance=provenance())  # fmt: skip
    paths = write_cost_report(args.out, {"meta": meta, "cells": cells})
    print(paths[0].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
