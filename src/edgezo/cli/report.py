"""``edgezo report [--results DIR] [--out DIR] [--run-quick] [--docs FILE ...]``: every result in
one report, and the docs' generated result tables (:mod:`edgezo.analysis.docs`).

Writes ``report.md`` and a self-contained ``report.html``
(:func:`edgezo.analysis.report.build_report`). With ``--run-quick``, first runs
the quick version of every missing result into ``--results``: each study of
``edgezo run`` (``--quick``), ``edgezo memory vit-tiny`` and ``crnn``,
``edgezo cost vit-tiny --rounds 3``, ``edgezo landscape --quick`` and, if yosys is
installed, ``edgezo hw report``. Each is run in this process through its own
subcommand's parser (the command printed is the command run), one after the other;
a failure is reported and the next one runs.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..analysis.claims import CLAIMS, HW, STUDIES, Source
from .args import make_dir, writable_dir

#: ``edgezo`` subcommand -> module whose ``add_cli(subparsers)`` registers it.
REGISTRARS = {
    "run": "edgezo.cli.run",
    "memory": "edgezo.cli.memory",
    "cost": "edgezo.cli.cost",
    "landscape": "edgezo.cli.landscape",
    "hw": "edgezo.cli.hw",
}


def add_cli(subparsers: Any) -> None:
    """Register ``edgezo report`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "report",
        help="one Markdown + HTML report: the papers' claims beside ours, every table and figure",
        description=(
            "Collect every result under --results (study folders from edgezo run, memory/, "
            "cost/, landscape/, hw/), check each claim of the two papers against them, and write "
            "report.md (figures next to it) and a self-contained report.html to --out. "
            "--run-quick first runs the quick version of whatever is missing."
        ),
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        default=Path("results"),
        help="results directory: must hold results, unless --run-quick makes them (default ./results)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=writable_dir,
        default=None,
        help="output directory, created if missing (default: --results)",
    )
    p.add_argument(
        "--run-quick", action="store_true", help="first run the quick versions of missing results"
    )
    p.add_argument(
        "--docs",
        nargs="+",
        type=Path,
        metavar="FILE",
        default=(),
        help="also regenerate the <!-- edgezo:generated ... --> blocks of these Markdown files "
        "(README.md docs/studies.md docs/hw.md) from --results",
    )
    p.set_defaults(handler=_run)


def wanted_sources() -> list[Source]:
    """Every source a claim reads, and every registered study (each once, in order)."""
    from ..studies import STUDIES as REGISTERED

    names = list(STUDIES) + [s for s in REGISTERED if s not in STUDIES]
    sources = [Source("study", s) for s in names]
    sources += [s for c in CLAIMS for s in c.sources if s.kind != "study"]
    return list(dict.fromkeys(sources))


def unavailable(source: Source) -> str | None:
    """Why ``source`` cannot be run here (``None``: it can)."""
    if source.kind == "study":
        from ..studies import STUDIES as REGISTERED

        return None if source.name in REGISTERED else f"edgezo run has no study {source.name!r} yet"
    if source == HW:
        try:
            from ..hw.synth import yosys_command

            yosys_command()
        except Exception as e:  # YosysNotFound: the message says how to install it
            return f"no yosys ({' '.join(str(e).split())})"
    return None


def run_edgezo(argv: list[str]) -> int:
    """Run ``edgezo ARGV`` in this process through the subcommand's own parser."""
    parser = argparse.ArgumentParser(prog="edgezo")
    subparsers = parser.add_subparsers(dest="command", required=True)
    importlib.import_module(REGISTRARS[argv[0]]).add_cli(subparsers)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", None) or args.func
    return int(handler(args) or 0)


def run_quick(results: Path, progress: bool = True) -> dict[str, str]:
    """Run the quick version of every wanted result missing under ``results``.

    Returns ``command -> outcome`` (``ok in N s``, ``failed: ...``, ``skipped: ...``).
    """
    label = str(results)
    todo = [s for s in wanted_sources() if not (results / s.directory / s.filename).is_file()]
    outcomes: dict[str, str] = {}
    bar = tqdm(todo, desc="quick runs", unit="run", disable=not progress)
    for source in bar:
        argv = source.quick_argv(label)
        command = shlex.join(["edgezo", *argv])
        reason = unavailable(source)
        if reason:
            outcomes[command] = f"skipped: {reason}"
        else:
            bar.set_postfix_str(command)
            tqdm.write(f"running: {command}")
            started = time.perf_counter()
            try:
                code = run_edgezo(argv)
                outcomes[command] = (
                    f"ok in {time.perf_counter() - started:.0f} s"
                    if code == 0
                    else f"failed: exit code {code}"
                )
            except (Exception, SystemExit) as e:
                outcomes[command] = f"failed: {type(e).__name__}: {' '.join(str(e).split())}"
        tqdm.write(f"{command}: {outcomes[command]}")
    return outcomes


def check_results(results: Path, run_quick: bool) -> None:
    """Refuse a ``--results`` that holds no results (an empty report says nothing), before any work.

    With ``--run-quick`` the directory is filled first, so it only has to be writable.
    """
    from ..analysis.report import collect

    if run_quick:
        writable_dir(str(results))  # raises argparse.ArgumentTypeError with the reason
        return
    if not results.is_dir():
        state = "is not a directory" if results.exists() else "does not exist"
        raise ValueError(
            f"--results {results} {state}; point it at the folder edgezo run/memory/cost/landscape "
            "wrote into, or add --run-quick to make the quick results there first"
        )
    if not collect(results):
        raise ValueError(
            f"no results under {results} (e.g. {results}/cross-domain/results.json); run "
            f"`edgezo run STUDY --out {results}` first, or add --run-quick"
        )


def _run(args: argparse.Namespace) -> int:
    from ..analysis.report import build_report

    check_results(args.results, args.run_quick)
    if args.out is not None:
        make_dir(args.out)
    notes = {}
    if args.run_quick:
        make_dir(args.results)
        notes = {c: o for c, o in run_quick(args.results).items() if not o.startswith("ok")}
    md, page = build_report(args.results, args.out, notes)
    print(f"wrote {md} and {page}")
    if args.docs:
        from ..analysis.docs import update_docs

        changed = update_docs(args.docs, args.results, str(args.results))
        print(f"regenerated {len(args.docs)} docs from {args.results}; changed: "
              f"{', '.join(map(str, changed)) or 'none'}")  # fmt: skip
    return 0
