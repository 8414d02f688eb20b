"""The ablation study's tables (``edgezo run ablations --seeds ...``), made from its JSON alone.

Each row (a family and a label, e.g. ``m/sign-3``) is shown as its mean test accuracy over
the seeds with the 95% t-interval (:func:`~edgezo.analysis.stats.t_interval`), the lr chosen
on validation per seed, and the steps and forward passes counted by the training loop. Each
comparison ``a - b`` of the study's config (``comparisons``) is the t-interval of the
per-seed differences (paired: a seed's rows share its batch order and backbone), decided:

* *better* when the whole interval lies above 0;
* *worse* when it lies below 0;
* *inconclusive* when it holds 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .stats import Interval, accuracy_interval, direction, t_interval

BETTER, WORSE, INCONCLUSIVE = "better", "worse", "inconclusive"


def by_row(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """``{"family/row": {seed: row}}``, in the order the rows first appear."""
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(f"{r['family']}/{r['row']}", {})[int(r.get("seed", 0))] = r
    return out


def difference(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], a: str, b: str) -> Interval:
    """The t-interval (points) of ``a - b`` over the seeds both rows have (a ``ValueError``
    naming the row when one is missing)."""
    for name in (a, b):
        if name not in runs:
            raise ValueError(f"comparison {a} - {b}: no row {name!r} in the results "
                             f"(rows: {', '.join(runs)})")  # fmt: skip
    seeds = sorted(set(runs[a]) & set(runs[b]))
    if not seeds:
        raise ValueError(f"comparison {a} - {b}: the two rows share no seed")
    values = [runs[a][s]["accuracy"] - runs[b][s]["accuracy"] for s in seeds]
    return t_interval(values).scaled(100.0)


def decision(diff: Interval) -> str:
    """:data:`BETTER`, :data:`WORSE` or :data:`INCONCLUSIVE` on the interval of a difference
    (one seed: no interval, always inconclusive)."""
    return {1: BETTER, -1: WORSE, 0: INCONCLUSIVE}[direction(diff)]


def _same(values: Sequence[Any]) -> str:
    """One value if every seed has it, else all of them."""
    distinct = list(dict.fromkeys(values))
    return ", ".join(_fmt(v) for v in (distinct if len(distinct) == 1 else values))


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def at_edge(row: Mapping[str, Any]) -> bool:
    """Whether the row chose the lowest or highest lr of a grid of several values (a wider
    grid could move it); rows that do not record their ``grid`` are not judged."""
    grid = row.get("grid") or []
    return len(grid) > 1 and row["lr"] in (min(grid), max(grid))


def lr_cell(rows: Sequence[Mapping[str, Any]]) -> str:
    """The seeds' chosen lrs (:func:`_same`), ``*`` after each one at its grid's edge."""
    marked = [f"{_fmt(r['lr'])}{'*' if at_edge(r) else ''}" for r in rows]
    distinct = list(dict.fromkeys(marked))
    return ", ".join(distinct if len(distinct) == 1 else marked)


def ablation_body(payload: Mapping[str, Any]) -> list[str]:
    """The rows' table and the comparisons' table, as Markdown lines."""
    runs = by_row(payload["rows"])
    lines = [
        "Test accuracy (%) per row: mean over the seeds [95% t-interval, cut to 0-100]; lr "
        "chosen on the validation split per seed (`*`: the lowest or highest value of the "
        "row's grid, so a wider grid could move the row); steps and forward passes as counted "
        "by the training loop.",
        "",
        "| family | row | trains | test accuracy | lr | steps | forwards |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for seeds in runs.values():
        r = [seeds[s] for s in sorted(seeds)]
        acc = accuracy_interval([x["accuracy"] for x in r]).text()
        lines.append(
            f"| {r[0]['family']} | {r[0]['row']} | {r[0].get('start', '')} | {acc} | "
            f"{lr_cell(r)} | {_same([x['steps'] for x in r])} | "
            f"{_same([x['forwards'] for x in r])} |"
        )
    lines += [
        "",
        "Differences (points, a - b per seed): mean [95% t-interval]; better / worse when the "
        "interval excludes 0, inconclusive when it holds 0.",
        "",
        "| a | b | a - b | decision |",
        "|---|---|---|---|",
    ]
    for a, b in payload["config"]["comparisons"]:
        diff = difference(runs, a, b)
        lines.append(f"| {a} | {b} | {diff.text(scale=1.0)} | {decision(diff)} |")
    return lines
