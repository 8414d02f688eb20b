"""edgezo.studies.ablations: the quick study end to end, and its forward accounting checked on
the forwards the training loop counted (not on the config's budgets)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from edgezo.analysis.ablations import ablation_body
from edgezo.studies import STUDIES, ablations, study_runner

#: Forward passes per step, by hand: sign-m-SPSA and the central estimate take two per query,
#: the sharpness-aware ascent two more, backprop one (followed by a backward).
PER_STEP = {
    "m/sign-1": 2, "m/sign-2": 4, "m/sign-3": 6, "m/sign-5": 10,
    "budget/zo q=3": 6, "budget/fp32 sign-3": 6,
    "budget/backprop sgd": 1, "budget/backprop adam": 1,
    "whole/sharpness-aware": 8,
}  # fmt: skip


def per_step(name: str) -> int:
    if name in PER_STEP:
        return PER_STEP[name]
    return {"z": 2, "whole": 6}[name.split("/")[0]]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablations")
    study_runner("ablations")(quick=True, out=out, seed=0, progress=False)
    return json.loads((out / "results.json").read_text())


def named(payload):
    return {f"{r['family']}/{r['row']}": r for r in payload["rows"]}


def test_the_study_is_registered_and_every_row_ran(quick):
    assert STUDIES["ablations"] == "ablations"
    rows = named(quick)
    assert list(rows) == [r.name for r in ablations.rows(ablations.QUICK)]
    for name, r in rows.items():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["examples"] == 500, name
        if name.startswith("zero-shot/"):
            assert r["lr"] is None and r["forwards"] == 0 and r["steps"] == 0
        else:
            assert r["val_accuracy"] is not None and r["lr"] > 0


def test_rows_compared_spend_the_same_counted_forwards(quick):
    rows = named(quick)
    head = {n: r for n, r in rows.items() if r["start"].startswith("head") and r["forwards"]}
    whole = {n: r for n, r in rows.items() if n.startswith("whole/")}
    # every head row (m, z, budget: compared across families) and every whole-network row
    assert len({r["forwards"] for r in head.values()}) == 1 and len(head) == 14
    assert len({r["forwards"] for r in whole.values()}) == 1 and len(whole) == 5
    for name, r in {**head, **whole}.items():  # fewer steps where a step costs more
        assert r["steps"] * per_step(name) == r["forwards"], name
    # the counted forwards are the budgets' (a mismatch would mean a row stopped early)
    assert next(iter(head.values()))["forwards"] == ablations.QUICK.head_forwards
    assert next(iter(whole.values()))["forwards"] == ablations.QUICK.whole_forwards


def test_the_zero_shot_rows_are_the_untrained_models(quick):
    rows = named(quick)
    fp32, q16 = rows["zero-shot/fp32"]["accuracy"], rows["zero-shot/16w8a"]["accuracy"]
    assert abs(fp32 - q16) <= 0.02  # 16-bit weights, 8-bit activations: nearly the fp32 model
    assert rows["budget/backprop adam"]["accuracy"] > fp32 + 0.1  # training moves it


def test_the_comparisons_render_from_the_quick_results(quick):
    body = "\n".join(ablation_body(quick))
    for a, b in ablations.COMPARISONS:
        assert f"| {a} | {b} | " in body
    assert "| inconclusive |" in body and "| better |" not in body  # one seed: no interval


def test_a_budget_that_is_not_a_multiple_of_a_steps_forwards_is_refused():
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    start = ablations.Start(nn.Linear(4, 3), {"train": (x, y), "val": (x, y)}, quantized=False)
    row = ablations.Row("m", "sign-3", "zo", "head fp32", 64, (1e-3,), ablations.sign(3, 1e-2))
    with pytest.raises(ValueError, match="budget of 64 forwards is not a multiple of its 6"):
        ablations.train(row, start, 1e-3, seed=0, batch=8)
    model, result = ablations.train(replace(row, budget=66), start, 1e-3, seed=0, batch=8)
    assert (result.steps, result.forwards) == (11, 66)


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="Unknown family 'q'; choose from m, z, budget, whole"):
        ablations.rows(replace(ablations.QUICK, families=("q",)))
