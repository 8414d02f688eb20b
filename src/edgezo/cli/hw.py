"""Command line: ``edgezo hw report [--throughput N] [--bits B] [--target T] [--out DIR]``.

:func:`add_cli` registers the ``hw`` command on the main CLI's subparsers;
``python -m edgezo.hw ...`` runs it alone.
"""

from __future__ import annotations

import argparse
import sys

from ..hw.pnr import NextpnrNotFound
from ..hw.synth import TARGETS, YosysNotFound
from .args import make_dir, writable_dir

HW_DESCRIPTION = (
    "The random number generators of ZO training as hardware: Amaranth RTL of every "
    "generator, checked against its Python model and synthesized with yosys. "
    "One subcommand: report. Needs the 'hw' extra (pip install 'edgezo[hw]') and yosys."
)
REPORT_DESCRIPTION = (
    "Synthesize, with yosys, the RTL of LFSR, xorshift32, PeZO's rotating RNG array and "
    "its pool beside Gaussian baselines (CLT, Box-Muller) at the same numbers per cycle, "
    "after checking each design against its Python model bit for bit; estimate switching "
    "power by gate-level simulation. Prints the table and writes report.md, report.png "
    "and report.json under --out."
)


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hw report`` on ``subparsers``; the parsed namespace's ``func(args)`` runs it."""
    hw = subparsers.add_parser(
        "hw",
        help="RNG hardware: synthesis cost and power of the generators",
        description=HW_DESCRIPTION,
    )
    sub = hw.add_subparsers(dest="hw_command", required=True, metavar="SUBCOMMAND")
    rep = sub.add_parser(
        "report",
        help="compare Gaussian, uniform and PeZO generators at equal throughput (table + chart)",
        description=REPORT_DESCRIPTION,
    )
    rep.add_argument(
        "--throughput",
        type=int,
        default=16,
        metavar="N",
        help="numbers per clock cycle (even; default 16)",
    )
    rep.add_argument(
        "--bits",
        type=int,
        default=8,
        metavar="B",
        help="uniform bits per number, 5..16 (default 8)",
    )
    rep.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="xilinx",
        metavar="|".join(sorted(TARGETS)),
        help="yosys synthesis flow (default xilinx)",
    )
    rep.add_argument(
        "--out",
        type=writable_dir,
        default="hw_report",
        metavar="DIR",
        help="output folder, created if missing (default ./hw_report)",
    )
    rep.add_argument(
        "--cycles",
        type=int,
        metavar="N",
        default=256,
        help="cycles of gate-level simulation for power (default 256); with --engine: at "
        "least N cycles counted, in whole steps of a --sim-rows engine after a warm-up step "
        "(0: no energy)",
    )
    rep.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="yosys runs in parallel (default 2)"
    )
    add_engine_options(rep)
    rep.set_defaults(func=run_report)
    return hw


def add_engine_options(rep: argparse.ArgumentParser) -> None:
    """``--engine`` and its options: the whole ZO engine's cost instead of the generators'."""
    rep.add_argument(
        "--engine",
        action="store_true",
        help="cost the whole ZO engine (edgezo.hw.engine) per generator instead of the "
        "generators alone: writes engine.md, engine.png and engine.json",
    )
    rep.add_argument(
        "--lanes",
        default="4,16,64",
        metavar="N,N,...",
        help="--engine: weights per clock, comma-separated (default 4,16,64)",
    )
    rep.add_argument(
        "--dim",
        type=int,
        default=16384,
        metavar="D",
        help="--engine: weights in the engine's memory, a multiple of every lane count "
        "(default 16384)",
    )
    rep.add_argument(
        "--queries",
        type=int,
        default=3,
        metavar="M",
        help="--engine: queries per step m of sign-m-SPSA (default 3, QZO-FF)",
    )
    rep.add_argument(
        "--pnr",
        action="store_true",
        help="--engine: also place and route each engine with nextpnr (ecp5/ice40 targets) "
        "for fmax (minutes per design)",
    )
    rep.add_argument(
        "--sim-rows",
        type=int,
        default=64,
        metavar="R",
        help="--engine: rows of the short engine simulated for the energy per step "
        "(default 64; energy per cycle times the full engine's cycles per step)",
    )
    rep.add_argument(
        "--generators",
        default=None,
        metavar="K,K,...",
        help="--engine: generators to cost (default all: boxmuller,clt,lfsr,xorshift,"
        "pezo-array,pezo-pool)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Run the report; print the Markdown and where the files are. Returns an exit status."""
    from ..hw.report import write_report  # a missing 'hw' extra names itself (edgezo.extras)

    make_dir(args.out)  # checked when parsed: a bad path fails before synthesis
    if args.engine:
        return run_engine_report(args)
    try:
        path, rows = write_report(
            args.out, args.throughput, args.bits, args.target, args.cycles, args.jobs
        )
    except (YosysNotFound, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.png')}, {path.with_suffix('.json')}")
    bad = [r.key for r in rows if r.netlist_matches is False]
    if bad:
        print(f"error: synthesized netlist differs from the Python model: {bad}", file=sys.stderr)
        return 1
    return 0


def run_engine_report(args: argparse.Namespace) -> int:
    """``hw report --engine``: the engine's cost per generator and lane count."""
    from ..hw.engine_report import write_engine_report
    from ..hw.power import SimUnavailable  # needs Amaranth: imported with the report
    from ..hw.zsources import KEYS

    try:
        lanes = [int(n) for n in args.lanes.split(",")]
        keys = list(KEYS) if args.generators is None else args.generators.split(",")
        path, _ = write_engine_report(
            args.out,
            keys,
            lanes,
            args.target,
            args.dim,
            args.cycles,
            args.queries,
            args.pnr,
            args.sim_rows,
        )
    except (YosysNotFound, NextpnrNotFound, SimUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.png')}, {path.with_suffix('.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edgezo.hw``: the ``hw`` command alone."""
    parser = argparse.ArgumentParser(prog="edgezo")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hw", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
