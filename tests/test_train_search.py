"""edgezo.train.search: grid_search picks the best finite score in a deterministic order."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from edgezo.train import grid_search


def test_grid_search_finds_the_best_point_of_a_known_function():
    def score(p: dict) -> float:  # maximum at lr = 0.1, width = 8
        return -((math.log10(p["lr"]) + 1) ** 2) - (p["width"] - 8) ** 2 / 16

    grid = {"lr": [1e-3, 1e-2, 1e-1, 1.0], "width": [4, 8, 16]}
    best = grid_search(grid, score)
    assert best.best == {"lr": 0.1, "width": 8} and best.score == 0.0
    assert [(r["lr"], r["width"]) for r in best.table] == [
        (lr, w) for lr in grid["lr"] for w in grid["width"]
    ]
    worst = grid_search(grid, score, maximize=False)
    assert worst.best == {"lr": 1e-3, "width": 16}


def test_grid_search_ignores_diverged_runs_and_rejects_empty_grids():
    run: Callable[[dict], float] = lambda p: math.nan if p["lr"] > 0.5 else p["lr"]  # noqa: E731
    assert grid_search({"lr": [0.1, 1.0, 0.3]}, run).best == {"lr": 0.3}
    with pytest.raises(ValueError, match=re.escape("needs a non-empty grid")):
        grid_search({}, run)
    with pytest.raises(ValueError, match=re.escape("grid['lr'] has no values")):
        grid_search({"lr": []}, run)
    with pytest.raises(TypeError, match=re.escape("grid['lr'] must be a list of values")):
        grid_search({"lr": "0.1"}, run)
    with pytest.raises(ValueError, match="non-finite score"):
        grid_search({"lr": [1.0]}, run)
