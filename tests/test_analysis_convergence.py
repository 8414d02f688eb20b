"""edgezo.analysis.convergence on hand-made results: accuracies at the budgets, marks and ends,
the gap's intervals and verdicts by hand, its docs block and its figure."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.analysis import convergence as V
from edgezo.analysis import docs as D

#: Two-sided 95% quantiles of Student's t from a printed table, by degrees of freedom.
T_TABLE = {1: 12.7062, 2: 4.3027}
CELL = "cell a"


def row(method, seed, tests, steps, budget, lr=1e-3):
    """A row whose curve has test accuracies ``tests`` at ``steps`` (step 0 first)."""
    curve = {"step": list(steps), "test": list(tests), "val": list(tests),
             "val_loss": [1.0] * len(steps)}  # fmt: skip
    return {"cell": CELL, "method": method, "seed": seed, "lr": lr, "accuracy": tests[-1],
            "val_accuracy": tests[-1], "budget": budget, "curve": curve}  # fmt: skip


def payload(bp: list[list[float]], zo: list[list[float]], marks=(20, 40)) -> dict:
    """BP curves at steps 0, 10, 20 (budget 10); ZO at 0, 20, 40, 60 (budget 20)."""
    rows = []
    for seed, (b, z) in enumerate(zip(bp, zo, strict=True)):
        rows.append({"cell": CELL, "method": "zero-shot", "seed": seed, "lr": None,
                     "accuracy": b[0], "val_accuracy": b[0], "budget": 0})  # fmt: skip
        rows.append(row("backprop", seed, b, (0, 10, 20), 10))
        rows.append(row("zo", seed, z, (0, 20, 40, 60), 20, lr=1e-4))
    return {"rows": rows, "config": {"marks": list(marks)}}


BP = [[0.5, 0.80, 0.82], [0.5, 0.78, 0.80], [0.5, 0.82, 0.84]]
ZO = [[0.5, 0.60, 0.70, 0.76], [0.5, 0.62, 0.70, 0.77], [0.5, 0.58, 0.69, 0.78]]


def interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    half = T_TABLE[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def text(values: list[float]) -> str:
    mean, low, high = interval(values)
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def test_accuracy_at_reads_the_curve_at_the_budget_a_mark_and_the_end():
    r = row("zo", 0, [0.5, 0.6, 0.7, 0.76], (0, 20, 40, 60), 20)
    assert V.accuracy_at(r, "budget") == 0.6 and V.accuracy_at(r, 40) == 0.7
    assert V.accuracy_at(r, "end") == 0.76 and V.accuracy_at(r, 30) is None
    zero = {"accuracy": 0.5, "val_accuracy": 0.4}
    assert V.accuracy_at(zero, 1000) == 0.5 and V.accuracy_at(zero, "end", key="val") == 0.4


def test_the_tables_by_hand():
    body = "\n".join(V.convergence_body(payload(BP, ZO)))
    zo_budget = [100 * z[1] for z in ZO]  # 60, 62, 58
    zo_end = [100 * z[-1] for z in ZO]
    bp_end = [100 * b[-1] for b in BP]
    # ZO has no point at 20 in... it has: the budget is 20; mark 40 is its third point; BP has
    # no point at 40 ("-")
    assert (f"| zo | 0.0001 | 20 | {text(zo_budget)} | {text(zo_budget)} | "
            f"{text([100 * z[2] for z in ZO])} | {text(zo_end)} | 60 |") in body  # fmt: skip
    assert (f"| backprop | 0.001 | 10 | {text([100 * b[1] for b in BP])} | {text(bp_end)} | - | "
            f"{text(bp_end)} | 20 |") in body  # fmt: skip
    assert "**cell a** (zero-shot: 50.00 [50.00, 50.00])" in body
    # gaps per seed: at the budgets ZO(20) - BP(10) = -20, -16, -24; at the ends -6, -3, -6;
    # change +14, +13, +18: the whole interval above 0 (mean 15, sd 2.65)
    at_budget = [100 * (z[1] - b[1]) for z, b in zip(ZO, BP, strict=True)]
    at_end = [100 * (z[-1] - b[-1]) for z, b in zip(ZO, BP, strict=True)]
    moved = [e - b for e, b in zip(at_end, at_budget, strict=True)]
    assert interval(moved)[1] > 0
    # at the end the gap's interval holds -5: within 5 points is inconclusive
    assert interval(at_end)[1] < -5 < interval(at_end)[2]
    assert (f"| {text(at_budget)} | {text(at_end)} | {text(moved)} | narrows | inconclusive |"
            in body)  # fmt: skip


def test_a_gap_that_stays_is_inconclusive_and_one_that_grows_widens():
    same = [[0.5, 0.7, 0.7, 0.7]] * 3
    flat_bp = [[0.5, 0.8, 0.8], [0.5, 0.8, 0.81], [0.5, 0.8, 0.79]]
    runs = V.by_cell(payload(flat_bp, same)["rows"])[CELL]
    assert V.verdict(V.change(runs)) == V.INCONCLUSIVE
    worse = [[0.5, 0.7, 0.6, 0.5], [0.5, 0.7, 0.62, 0.52], [0.5, 0.7, 0.58, 0.49]]
    runs = V.by_cell(payload(flat_bp, worse)["rows"])[CELL]
    assert V.verdict(V.change(runs)) == V.WIDENS
    one = V.by_cell(payload(BP[:1], ZO[:1])["rows"])[CELL]
    assert V.verdict(V.change(one)) == V.INCONCLUSIVE  # one seed: no interval


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
                min_size=2, max_size=4))  # fmt: skip
def test_the_change_of_the_gap_is_the_difference_of_the_gaps(seeds):
    bp = [[0.5, a, b] for a, b, _, _ in seeds]
    zo = [[0.5, c, 0.5, d] for _, _, c, d in seeds]
    runs = V.by_cell(payload(bp, zo)["rows"])[CELL]
    moved = V.change(runs)
    assert moved.mean == pytest.approx(V.gap(runs, "end").mean - V.gap(runs, "budget").mean,
                                       abs=1e-9)  # fmt: skip
    assert moved.n == len(seeds)


def test_missing_runs_and_points_are_named():
    rows = [r for r in payload(BP, ZO)["rows"] if r["method"] != "backprop"]
    with pytest.raises(ValueError, match="no 'backprop' run"):
        V.gap(V.by_cell(rows)[CELL], "end")
    data = payload(BP, ZO)
    data["rows"][2]["curve"]["step"][2] = 30  # ZO seed 0 loses its point at the budget (20)
    data["rows"][2]["curve"]["step"][1] = 25
    with pytest.raises(ValueError, match="seed 0: a curve has no point at its budget"):
        V.gap(V.by_cell(data["rows"])[CELL], "budget")


def test_the_figure_and_the_docs_block(tmp_path):
    data = payload(BP, ZO)
    path = V.plot_convergence(data, tmp_path / "curves.png")
    assert path.stat().st_size > 0 and path.read_bytes()[:4] == b"\x89PNG"
    results = tmp_path / "results"
    (results / "convergence").mkdir(parents=True)
    merged = {**data, "study": "convergence", "quick": True, "seeds": [0, 1, 2], "keys": ["cell"],
              "claims": [], "seconds": {"0": 60.0, "1": 60.0, "2": 60.0},
              "provenance": {"edgezo": "0.1.0", "commit": "abcdef1234567", "threads": 1}}  # fmt: skip
    (results / "convergence" / "results.json").write_text(json.dumps(merged))
    body = D.render("convergence", results, "results")
    assert body.startswith("Generated by `edgezo report --docs` from "
                           "`results/convergence/results.json`: quick run, seeds 0, 1, 2")  # fmt: skip
    assert "| narrows | inconclusive |" in body and body.endswith("\n")
    with pytest.raises(ValueError, match="edgezo run nope --seeds 0,1,2"):
        D.render("convergence nope", results, "results")
