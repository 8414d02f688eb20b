"""``edgezo run STUDY [--quick] [--out DIR] [--seed S] [--jobs N] [--no-progress]``.

The studies are named in :data:`edgezo.studies.STUDIES` and run by
:func:`edgezo.studies.run_study`; ``jobs`` spreads the study's independent runs
over that many processes (:mod:`edgezo.studies.parallel`); the results do not
depend on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..studies import STUDIES
from .args import positive_int


def add_cli(subparsers: Any) -> None:
    """Register ``edgezo run`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "run",
        help="run one of the papers' studies (tables, JSON and PNG curves)",
        description=(
            "Run a study: a backbone pretrained here with backprop (cached) is adapted with "
            "backprop, MeZO-style ZO, PeZO and QZO-FF 16w8a. Writes results.json, results.md "
            "and PNG figures under --out/STUDY. --quick is a small version that finishes in "
            "minutes."
        ),
    )
    p.add_argument("study", choices=sorted(STUDIES), help="which study")
    p.add_argument("--quick", action="store_true", help="small data and few steps (minutes)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="processes to spread the study's runs over, each with cores/N threads (default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the study and print its summary as JSON."""
    from ..studies import run_study

    summary = run_study(
        args.study, args.quick, args.out, args.seed, not args.no_progress, args.jobs
    )
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=float)
    print()
    return 0
