"""The convergence study's tables and figure (``edgezo run convergence --seeds ...``), from its
JSON alone.

Each row of the merged ``results.json`` is one (cell, method, seed) with its ``curve`` (step
-> validation and test accuracy, step 0 the zero-shot start) and ``budget``, the steps its
study gave that method. Per cell:

* the test accuracy of each method at its study's budget, at the ``marks`` of the config
  (e.g. 1,000 / 3,000 / 10,000 steps; "-" where a run has no point there) and at its
  last step: the mean over the seeds and the 95% t-interval
  (:func:`~edgezo.analysis.stats.t_interval`);
* the gap ZO - backprop (points, per seed: paired, the seed's runs share its data) at the
  budgets (ZO at its budget against backprop at its own) and at the ends, and the change
  of the gap from the budgets to the ends, decided on its t-interval: *narrows* when the
  whole interval lies above 0, *widens* below 0, *inconclusive* when it holds 0; and
  whether ZO ends within 5 points of backprop (:func:`~edgezo.analysis.stats.decide`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ..figures import save_png
from .stats import Interval, accuracy_interval, decide, direction, t_interval

NARROWS, WIDENS, INCONCLUSIVE = "narrows", "widens", "inconclusive"
#: The "within X points of backprop" margin checked at the end (the papers' 5 points).
MARGIN = 5.0

Runs = dict[str, dict[str, dict[int, Mapping[str, Any]]]]  # cell -> method -> seed -> row


def by_cell(rows: Sequence[Mapping[str, Any]]) -> Runs:
    """``{cell: {method: {seed: row}}}``, in the order the rows first appear."""
    out: Runs = {}
    for r in rows:
        out.setdefault(r["cell"], {}).setdefault(r["method"], {})[int(r.get("seed", 0))] = r
    return out


def accuracy_at(row: Mapping[str, Any], step: int | str, key: str = "test") -> float | None:
    """The ``key`` accuracy of ``row``'s curve at ``step`` (``"budget"``: the row's budget;
    ``"end"``: its last point); ``None`` when the curve has no point there. A row without a
    curve (zero-shot) has its accuracy at every step."""
    curve = row.get("curve")
    if curve is None:
        return float(row["accuracy"] if key == "test" else row["val_accuracy"])
    if step == "end":
        return float(curve[key][-1])
    step = int(row["budget"]) if step == "budget" else int(step)
    steps = list(curve["step"])
    return float(curve[key][steps.index(step)]) if step in steps else None


def interval_at(seeds: Mapping[int, Mapping[str, Any]], step: int | str) -> Interval | None:
    """The t-interval (fraction) over the seeds of the test accuracy at ``step``; ``None``
    when a seed's curve has no point there."""
    values = [accuracy_at(seeds[s], step) for s in sorted(seeds)]
    if any(v is None for v in values):
        return None
    return accuracy_interval([float(v) for v in values if v is not None])


def gap_values(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], step: str) -> list[float]:
    """ZO - backprop (fraction) per seed both have, each at ``step`` of its own run
    (``"budget"`` or ``"end"``); a ``ValueError`` naming what is missing."""
    for method in ("zo", "backprop"):
        if method not in runs:
            raise ValueError(f"the convergence rows have no {method!r} run in this cell")
    seeds = sorted(set(runs["zo"]) & set(runs["backprop"]))
    if not seeds:
        raise ValueError("the zo and backprop runs of a cell share no seed")
    out = []
    for s in seeds:
        zo, bp = accuracy_at(runs["zo"][s], step), accuracy_at(runs["backprop"][s], step)
        if zo is None or bp is None:
            raise ValueError(f"seed {s}: a curve has no point at its {step}")
        out.append(zo - bp)
    return out


def gap(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], step: str) -> Interval:
    """The t-interval (points) of ZO - backprop per seed at ``step`` (:func:`gap_values`)."""
    return t_interval(gap_values(runs, step)).scaled(100.0)


def change(runs: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> Interval:
    """The t-interval (points) of the gap at the end minus the gap at the budgets, per seed."""
    end, budget = gap_values(runs, "end"), gap_values(runs, "budget")
    return t_interval([e - b for e, b in zip(end, budget, strict=True)]).scaled(100.0)


def verdict(diff: Interval) -> str:
    """:data:`NARROWS`, :data:`WIDENS` or :data:`INCONCLUSIVE` on the interval of the change
    of the gap (one seed: no interval, always inconclusive)."""
    return {1: NARROWS, -1: WIDENS, 0: INCONCLUSIVE}[direction(diff)]


def _steps(n: int) -> str:
    return f"{n:,}"


def cell_table(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]], marks: Sequence[int]
) -> list[str]:
    """One cell's accuracy table (the trained methods), as Markdown lines."""
    head = ["method", "lr", "budget", "at the budget", *(f"{_steps(m)} steps" for m in marks),
            "end", "end steps"]  # fmt: skip
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|---|---:|---|" + "---|" * len(marks) + "---|---:|",
    ]
    for method, seeds in runs.items():
        first = seeds[min(seeds)]
        if first.get("curve") is None:
            continue  # zero-shot: the start, in the cell's line
        cells = [interval_at(seeds, "budget"), *(interval_at(seeds, m) for m in marks),
                 interval_at(seeds, "end")]  # fmt: skip
        texts = ["-" if c is None else c.text() for c in cells]
        lines.append(f"| {method} | {first['lr']:g} | {_steps(int(first['budget']))} | "
                     + " | ".join(texts) + f" | {_steps(int(first['curve']['step'][-1]))} |")  # fmt: skip
    return lines


def cell_line(cell: str, runs: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> str:
    """The cell's name in bold and its zero-shot accuracy (the start of every run)."""
    if "zero-shot" not in runs:
        return f"**{cell}**"
    start = interval_at(runs["zero-shot"], "end")
    return f"**{cell}** (zero-shot: {start.text() if start else '-'})"


def gap_table(runs: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> list[str]:
    """One cell's gap table: ZO - backprop at the budgets and at the ends, its change, the
    verdicts."""
    zo, bp = runs["zo"][min(runs["zo"])], runs["backprop"][min(runs["backprop"])]
    at_budget, at_end, moved = gap(runs, "budget"), gap(runs, "end"), change(runs)
    ends = (zo["curve"]["step"][-1], bp["curve"]["step"][-1])
    return [
        f"| ZO - BP at the budgets ({_steps(zo['budget'])} / {_steps(bp['budget'])} steps) "
        f"| at the ends ({_steps(ends[0])} / {_steps(ends[1])}) | change | the gap "
        f"| ZO within {MARGIN:g} points of BP at the end |",
        "|---|---|---|---|---|",
        f"| {at_budget.text(scale=1.0)} | {at_end.text(scale=1.0)} | {moved.text(scale=1.0)} "
        f"| {verdict(moved)} | {decide(at_end, MARGIN)} |",
    ]


def convergence_body(payload: Mapping[str, Any]) -> list[str]:
    """Per cell its accuracy table and its gap table, as Markdown lines."""
    marks = payload["config"]["marks"]
    lines = [
        "Test accuracy (%) per cell and method: mean over the seeds [95% t-interval, cut to "
        "0-100], at the study's budget for the method, at fixed steps and at the last step "
        "(zero-shot: the start of every run). Gap: ZO - BP per seed in points (paired), each "
        "at its own budget and at its own end; the gap *narrows* when the interval of its "
        "change lies above 0, *widens* below, else *inconclusive*.",
    ]
    for cell, runs in by_cell(payload["rows"]).items():
        lines += ["", cell_line(cell, runs), "", *cell_table(runs, marks), "", *gap_table(runs)]
    return lines


def plot_convergence(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """One panel per cell: each method's test accuracy per step, mean over the seeds and its
    95% t-band, zero-shot as a dashed line, each study budget as a dotted one."""
    Figure = require("matplotlib.figure", "studies", needed_by="plot_convergence").Figure
    cells = by_cell(payload["rows"])
    fig = Figure(figsize=(5.5 * len(cells), 4), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    for ax, (cell, runs) in zip(axes, cells.items(), strict=True):
        for i, (method, seeds) in enumerate(runs.items()):
            color = f"C{i}"
            rows = [seeds[s] for s in sorted(seeds)]
            if rows[0].get("curve") is None:
                ax.axhline(100 * np.mean([r["accuracy"] for r in rows]), color=color,
                           linestyle="--", label=method)  # fmt: skip
                continue
            steps = rows[0]["curve"]["step"]
            bands = [
                accuracy_interval([r["curve"]["test"][j] for r in rows]) for j in range(len(steps))
            ]
            ax.plot(steps, [100 * b.mean for b in bands], color=color, label=method)
            if len(rows) > 1:
                ax.fill_between(steps, [100 * b.low for b in bands], [100 * b.high for b in bands],
                                color=color, alpha=0.2, linewidth=0)  # fmt: skip
            ax.axvline(rows[0]["budget"], color=color, linestyle=":", linewidth=1)
        ax.set(xlabel="step", ylabel="test accuracy (%)", title=cell)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_png(fig, path, dpi=100)
