"""Tables of results over seeds, made from a results file's JSON alone.

The merged ``results.json`` of ``edgezo run STUDY --seeds ...`` (one row per
cell, method and seed) is the one source: its ``results.md``, the report's study
sections and the docs' generated blocks (:mod:`edgezo.analysis.docs`) are all
made here from it, so they cannot disagree. Cells are shown as the mean over the
seeds and the 95% t-interval, cut to 0-100%
(:func:`edgezo.analysis.stats.accuracy_interval`); claims are decided per cell
on intervals, vacuous cells left out (:mod:`edgezo.analysis.claims`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cells import accuracies_by_cell, plot_cells
from .claims import DECISIONS, NOT_COMPARABLE, cell_decisions, share_verdict
from .convergence import convergence_body, plot_convergence
from .stats import accuracy_interval


def cell_keys(rows: Sequence[Mapping]) -> list[str]:
    """The string fields that name a cell (every string field but ``method``), in row order."""
    return [k for k, v in rows[0].items() if isinstance(v, str) and k not in ("method", "correct")]


def methods_of(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def decided(rows: Sequence[Mapping], claim: Mapping[str, Any]) -> dict[str, Any]:
    """A study's claim (``method`` within ``points`` of ``reference`` in a ``wanted`` share of
    cells) decided on the intervals over seeds, vacuous cells left out."""
    cells = cell_decisions(rows, claim["method"], claim["reference"], claim["points"])
    counted = [d for d in cells if d.vacuous is None]
    count = {v: sum(d.decision == v for d in counted) for v in DECISIONS}
    return {
        **{k: claim[k] for k in ("claim", "method", "reference", "points", "wanted")},
        "hits": count["reproduced"],
        "cells": len(counted),
        "share": count["reproduced"] / len(counted) if counted else 0.0,
        "inconclusive": count["inconclusive"],
        "vacuous": len(cells) - len(counted),
        "verdict": share_verdict(cells, claim["wanted"]) if cells else NOT_COMPARABLE,
    }


def seed_table(rows: Sequence[Mapping], keys: Sequence[str], methods: Sequence[str]) -> str:
    """A Markdown table: one line per cell, per method the mean test accuracy (%) over the
    seeds and its 95% t-interval ``mean [low, high]``."""
    cells = accuracies_by_cell(rows, keys)
    lines = ["| " + " | ".join([*keys, *methods]) + " |", "|" + "---|" * (len(keys) + len(methods))]
    for cell, accs in cells.items():
        texts = [accuracy_interval(accs[m]).text() if m in accs else "" for m in methods]
        lines.append("| " + " | ".join([*map(str, cell), *texts]) + " |")
    return "\n".join(lines)


def seed_markdown(payload: Mapping[str, Any]) -> str:
    """``results.md`` of a merged study (``edgezo run --seeds``), made from its JSON alone: the
    table and the claims (a study of :data:`BODIES`: its own tables), the per-seed folders."""
    seeds = ", ".join(map(str, payload["seeds"]))
    body = BODIES.get(payload["study"], study_body)
    name, _ = chart_of(payload["study"])
    chart = ["", f"![{Path(name).stem}]({name})"]
    lines = [
        f"# {payload['study']}{' (quick)' if payload['quick'] else ''}, seeds {seeds}",
        "",
        *body(payload),
        *chart,
        "",
        "Per seed: " + ", ".join(f"`seed-{s}/`" for s in payload["seeds"]) + ".",
    ]
    return "\n".join(lines) + "\n"


#: The chart a merged cells x methods study draws beside its ``results.md``.
CELLS_PNG = "cells.png"


def chart_of(study: str) -> tuple[str, Callable[[Mapping[str, Any], Path], Path]]:
    """``(file name, drawer)`` of a merged study's chart: :data:`CHARTS`, else the cells chart
    (:func:`edgezo.analysis.cells.plot_cells`) of a cells x methods study."""
    return CHARTS.get(study, (CELLS_PNG, plot_cells))


def draw_merged(folder: Path, payload: Mapping[str, Any]) -> None:
    """A merged study's chart (:func:`chart_of`), drawn into its folder from its JSON alone."""
    name, draw = chart_of(payload["study"])
    draw(payload, Path(folder) / name)


def rebuild_report(folder: Path, data: Mapping[str, Any]) -> str:
    """A merged study's ``results.md`` text and figures from its ``results.json`` alone (what
    ``results/`` keeps); ``""`` for a one-seed run whose Markdown is missing."""
    if "seeds" not in data:
        return ""
    draw_merged(folder, data)
    return seed_markdown(data)


def study_body(payload: Mapping[str, Any]) -> list[str]:
    """A merged study's table and claims table, as Markdown lines (``results.md`` and the
    docs' generated blocks show the same)."""
    rows = payload["rows"]
    lines = [
        "Test accuracy (%) per cell and method: mean over the seeds "
        "[95% t-interval, cut to 0-100].",
        "",
        seed_table(rows, payload["keys"], methods_of(rows)),
        "",
        "Claims:",
        "",
        "Each cell decided on its 95% interval of the difference (reproduced / inconclusive /"
        " not); vacuous cells (the reference or backprop not above zero-shot beyond its "
        "interval, or zero-shot within the margin too) do not count.",
        "",
        "| claim | reproduced cells | inconclusive | vacuous | share | wanted | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in payload["claims"]:
        lines.append(
            f"| {c['claim']} | {c['hits']}/{c['cells']} | {c['inconclusive']} | {c['vacuous']} "
            f"| {c['share']:.0%} | {c['wanted']:.0%} | {c['verdict']} |"
        )
    return lines


#: Studies whose merged results are not cells x methods with claims: study -> its body.
BODIES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {"convergence": convergence_body}
#: The studies whose chart is their own: file name and drawer (test accuracy per step).
CHARTS: dict[str, tuple[str, Callable[[Mapping[str, Any], Path], Path]]] = {
    "convergence": ("curves.png", plot_convergence)
}


# -- the demo (edgezo demo) ------------------------------------------------------------------------
DEMO_HEADER = ("method", "before", "after", "steps", "forwards", "wall s")


def demo_table(methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The method table ``edgezo demo`` prints (aligned text): per method the shifted-test
    accuracy before and after, steps, ZO forwards and wall seconds. The README's demo block
    quotes the same lines from the committed ``demo.json``."""
    rows = [DEMO_HEADER]
    for name, m in methods.items():
        rows.append((name, f"{100 * m['before']:.2f}%", f"{100 * m['after']:.2f}%",
                     str(m["steps"]), str(m["forwards"]), f"{m['seconds']:.1f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(DEMO_HEADER))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def demo_seed_table(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Markdown table of the demo over seeds (``runs``: seed -> one run's result): per method
    the accuracy before, after for each seed, and the mean after with its 95% t-interval."""
    seeds = list(runs)
    first = runs[seeds[0]]["methods"]
    lines = [
        "| method | before | "
        + " | ".join(f"after, seed {s}" for s in seeds)
        + " | after: mean [95% t-interval, cut to 0-100] |",
        "|---|---:|" + "---:|" * len(seeds) + "---|",
    ]
    for name, m in first.items():
        afters = [float(runs[s]["methods"][name]["after"]) for s in seeds]
        cells = [f"{100 * a:.2f}" for a in afters]
        lines.append(f"| {name} | {100 * m['before']:.2f} | " + " | ".join(cells)
                     + f" | {accuracy_interval(afters).text()} |")  # fmt: skip
    return lines
