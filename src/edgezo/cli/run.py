"""``edgezo run STUDY [--quick] [--out DIR] [--seed S | --seeds S,S,... [--pretrain-seed S]] [--jobs N] [--no-progress]``.

Prints the study's table (Markdown), its claims checked, and where its files are.

The studies are named in :data:`edgezo.studies.STUDIES` and run by
:func:`edgezo.studies.run_study`; ``jobs`` spreads the study's independent runs
over that many processes (:mod:`edgezo.studies.parallel`); the results do not
depend on it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..studies import STUDIES
from .args import make_dir, positive_int, writable_dir


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
    p.add_argument(
        "study",
        choices=sorted(STUDIES),
        metavar="STUDY",
        help=f"which study: {', '.join(sorted(STUDIES))}",
    )
    p.add_argument("--quick", action="store_true", help="small data and few steps (minutes)")
    p.add_argument(
        "--out",
        metavar="DIR",
        type=writable_dir,
        default="results",
        help="output directory, created if missing; the study writes DIR/STUDY (default results)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of everything random (default 0)"
    )
    p.add_argument(
        "--seeds",
        type=seed_list,
        metavar="S,S,...",
        default=None,
        help="run the study once per seed (e.g. 0,1,2) into DIR/STUDY/seed-S and merge them: "
        "DIR/STUDY/results.json holds every seed's rows, results.md means and 95%% intervals "
        "(replaces --seed); a seed already finished there with the same flags is kept",
    )
    p.add_argument(
        "--pretrain-seed",
        type=int,
        metavar="S",
        default=None,
        help="with --seeds: one backbone pretrained with seed S for every seed of a vision study "
        "(a ViT's pretraining takes minutes); default: each seed pretrains its own",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        default=1,
        help="processes to spread the study's runs over, each with cores/N threads (default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds``' parser: :func:`edgezo.studies.seeds.parse_seeds`, as an argparse error."""
    from ..studies.seeds import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table, the papers' claims checked and where the files are."""
    from ..studies import run_study

    make_dir(args.out)  # checked when parsed: a bad path fails before the study
    if args.seeds:
        from ..studies.seeds import run_seeds

        summary = run_seeds(args.study, args.quick, args.out, args.seeds, not args.no_progress,
                            args.jobs, args.pretrain_seed)  # fmt: skip
    else:
        summary = run_study(
            args.study, args.quick, args.out, args.seed, not args.no_progress, args.jobs
        )
    print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """What ``edgezo run`` prints: the Markdown table, one line per claim, the files written."""
    lines = [summary["table"], ""]
    for c in summary.get("claims", []):
        extra = "".join(
            f", {c[k]} {k}" for k in ("inconclusive", "vacuous") if k in c
        )  # merged seeds: cells decided on intervals
        lines.append(
            f"claim: {c['claim']}: {c['hits']}/{c['cells']} cells ({c['share']:.0%}, "
            f"wanted {c['wanted']:.0%}{extra}): {c['verdict']}"
        )
    out = summary["out"]
    lines.append(f"wrote {out}/results.json, {out}/results.md and the curves (PNG) in {out}")
    return "\n".join(lines)
