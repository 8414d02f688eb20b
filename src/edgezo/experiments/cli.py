"""``edgezo run STUDY [--quick] [--out DIR] [--seed S] [--jobs N] [--no-progress]``.

A study is a module of :mod:`edgezo.experiments` with a function
``run(quick: bool, out: Path, seed: int, progress: bool, jobs: int) -> dict`` that
writes its files under ``out`` and returns its summary; :data:`STUDIES` names them.
``jobs`` spreads the study's independent runs over that many processes
(:mod:`edgezo.experiments.parallel`); the results do not depend on it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ..cli import _int_at_least

#: Study name -> module under ``edgezo.experiments`` (imported only when run).
STUDIES = {
    "cross-domain": "cross_domain",
    "ood": "ood",
    "fewshot": "fewshot",
    "kws-personalize": "kws_personalize",
    "kws-fewshot": "kws_fewshot",
}


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
        type=_int_at_least(1),
        default=1,
        help="processes to spread the study's runs over, each with cores/N threads (default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def run_study(
    name: str, quick: bool, out: Path, seed: int = 0, progress: bool = True, jobs: int = 1
) -> dict:
    """Run study ``name`` over ``jobs`` processes; its files go to ``out/name``."""
    if name not in STUDIES:
        raise ValueError(f"Unknown study {name!r}; choose from {', '.join(sorted(STUDIES))}")
    module = importlib.import_module(f"edgezo.experiments.{STUDIES[name]}")
    return module.run(quick=quick, out=Path(out) / name, seed=seed, progress=progress, jobs=jobs)


def _run(args: argparse.Namespace) -> int:
    summary = run_study(
        args.study, args.quick, args.out, args.seed, not args.no_progress, args.jobs
    )
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=float)
    print()
    return 0
