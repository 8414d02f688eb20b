"""edgezo.analysis.cells: a merged study's chart, its intervals worked by hand."""

from __future__ import annotations

import math

import pytest

from edgezo.analysis import cells as K

T2 = 4.3027  # t(0.975, 2) from a printed table


def rows() -> list[dict]:
    accs = {("a", "zo"): (0.70, 0.72, 0.74), ("a", "backprop"): (0.80, 0.80, 0.80),
            ("b", "zo"): (0.50, 0.56, 0.53)}  # fmt: skip
    return [{"target": cell, "method": m, "seed": s, "accuracy": acc}
            for (cell, m), values in accs.items() for s, acc in enumerate(values)]  # fmt: skip


def test_each_cells_methods_get_their_mean_and_t_interval():
    got = K.cell_intervals(rows(), ["target"])
    assert list(got) == ["a", "b"] and list(got["a"]) == ["zo", "backprop"]
    half = T2 * 0.02 / math.sqrt(3)  # a / zo: sd 0.02
    assert (got["a"]["zo"].low, got["a"]["zo"].high) == pytest.approx((0.72 - half, 0.72 + half))
    bp = got["a"]["backprop"]
    assert (bp.low, bp.high) == pytest.approx((0.8, 0.8))  # every seed the same: no width
    assert got["b"]["zo"].mean == pytest.approx(0.53) and "backprop" not in got["b"]


def test_the_chart_is_a_png(tmp_path):
    payload = {
        "study": "ood",
        "quick": True,
        "seeds": [0, 1, 2],
        "keys": ["target"],
        "rows": rows(),
    }
    path = K.plot_cells(payload, tmp_path / "sub" / "cells.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
