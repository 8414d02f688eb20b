"""The chart of a merged study (``edgezo run STUDY --seeds ...``): every cell's methods, as the
mean test accuracy over the seeds with its 95% t-interval, drawn from the merged JSON alone.

One row per cell (the study's keys, e.g. ``fashion-mnist / vpt``), one marker per method,
offset within the row so intervals do not overlap. It is the picture of the table that
:func:`edgezo.analysis.tables.seed_table` prints, so a reader sees at a glance which
intervals overlap (the claims are decided on the paired differences, not on this overlap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..extras import require
from ..figures import save_png
from .stats import Interval, accuracy_interval


def accuracies_by_cell(
    rows: Sequence[Mapping], keys: Sequence[str]
) -> dict[tuple, dict[str, list[float]]]:
    """``cell -> method -> test accuracy of each seed``, cells (tuples of the ``keys``' values)
    and methods in the rows' order."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        cell = cells.setdefault(tuple(r[k] for k in keys), {})
        cell.setdefault(r["method"], []).append(float(r["accuracy"]))
    return cells


def cell_intervals(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[str, dict[str, Interval]]:
    """``"key / key" -> method -> Interval`` of the test accuracy (fractions) over the seeds,
    in the rows' order."""
    return {
        " / ".join(map(str, cell)): {m: accuracy_interval(v) for m, v in by.items()}
        for cell, by in accuracies_by_cell(rows, keys).items()
    }


def plot_cells(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Draw the merged study's cells (mean test accuracy in %, 95% t-interval bars) as a PNG."""
    require("matplotlib", "studies", needed_by="the study chart").use("Agg")
    import matplotlib.pyplot as plt

    cells = cell_intervals(payload["rows"], payload["keys"])
    methods = list(dict.fromkeys(m for by in cells.values() for m in by))
    fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.28 * len(cells) * max(2, len(methods)) / 2))
    step = 0.8 / max(1, len(methods))
    for j, method in enumerate(methods):
        ys, means, errs = [], [], [[], []]
        for i, by in enumerate(cells.values()):
            if method not in by:
                continue
            iv = by[method]
            ys.append(i - 0.4 + step * (j + 0.5))
            means.append(100 * iv.mean)
            errs[0].append(100 * (iv.mean - iv.low))
            errs[1].append(100 * (iv.high - iv.mean))
        ax.errorbar(means, ys, xerr=errs, fmt="o", ms=4, capsize=2, label=method)
    ax.set_yticks(range(len(cells)), list(cells), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%): mean over seeds, 95% t-interval")
    seeds = ", ".join(map(str, payload["seeds"]))
    ax.set_title(f"{payload['study']}{' (quick)' if payload['quick'] else ''}, seeds {seeds}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = save_png(fig, path, dpi=110)
    plt.close(fig)
    return path
