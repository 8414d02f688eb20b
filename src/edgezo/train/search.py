"""Hyperparameter selection: :func:`grid_search` runs every combination and picks the best score."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GridResult:
    """What :func:`grid_search` returns.

    Attributes:
        best: the parameters of the best finite score (the first one on a tie).
        score: that score.
        table: every combination in the order run, each with its ``score``.
    """

    best: dict[str, Any]
    score: float
    table: list[dict[str, Any]]


def grid_search(
    grid: Mapping[str, Sequence[Any]], run: Callable[[dict[str, Any]], float], maximize: bool = True
) -> GridResult:
    """Run ``run(params)`` for every combination of ``grid`` and pick the best score.

    Combinations are taken in ``itertools.product`` order of the grid's keys as
    given (the last key varies fastest), so the table and the tie-break are
    deterministic. Non-finite scores (a diverged run) never win.

    Example:
        >>> grid_search({"lr": [0.1, 0.3, 1.0]}, lambda p: -(p["lr"] - 0.3) ** 2).best
        {'lr': 0.3}
    """
    if not grid:
        raise ValueError("grid_search needs a non-empty grid, e.g. {'lr': [1e-3, 1e-2]}")
    values: list[list[Any]] = []
    for name, options in grid.items():
        if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
            raise TypeError(f"grid[{name!r}] must be a list of values, got {options!r}")
        options = list(options)
        if not options:
            raise ValueError(f"grid[{name!r}] has no values; give at least one")
        values.append(options)
    if "score" in grid:
        raise ValueError("'score' is the name of the result column; rename that grid parameter")
    table = []
    for combo in itertools.product(*values):
        params = dict(zip(grid, combo, strict=True))
        table.append({**params, "score": float(run(dict(params)))})
    finite = [row for row in table if math.isfinite(row["score"])]
    if not finite:
        raise ValueError(
            "Every grid point gave a non-finite score (diverged?); try smaller learning rates"
        )
    pick = max if maximize else min
    best = pick(finite, key=lambda row: row["score"])
    return GridResult({k: v for k, v in best.items() if k != "score"}, best["score"], table)
