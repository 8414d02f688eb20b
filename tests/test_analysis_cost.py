"""edgezo.analysis.cost: each timed step is the step it names, rounds rotate and drop their
warm-up, and the table's medians and per-round ratio intervals are the hand-computed ones."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from edgezo import presets
from edgezo.analysis import cost as K
from edgezo.analysis.memory import stand_in_loss


def small_model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), torch.randn(4, 6)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_each_timed_step_is_the_step_it_names():
    model, x = small_model()
    fns = K.step_functions(model, x, list(model.parameters()))
    assert tuple(fns) == K.STEPS
    start = weights(model)
    fns["two forwards"]()
    assert all(torch.equal(a, b) for a, b in zip(weights(model), start, strict=True))

    def reference(name: str) -> list[torch.Tensor]:
        twin = copy.deepcopy(model)
        params = list(twin.parameters())
        if name == "backprop":  # SGD by autograd, lr 1e-6
            stand_in_loss(twin(x)).backward()
            return [p.detach() - 1e-6 * p.grad for p in params]
        make = presets.mezo if name == "zo" else presets.pezo
        make(params, seed=0).step(lambda: stand_in_loss(twin(x)))
        return weights(twin)

    for name in ("zo", "pezo", "backprop"):
        before, expected = weights(model), reference(name)
        fns[name]()
        after = weights(model)
        assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True)), name
        for a, e in zip(after, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-12, msg=name)


def test_rounds_rotate_the_order_and_drop_the_warm_up():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = K.interleaved(fns, rounds=3, warmup=2)
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert [calls[i : i + 3] for i in range(0, 15, 3)] == [
        list(w) for w in ("abc", "bca", "cab", "abc", "bca")
    ]
    with pytest.raises(ValueError, match="at least 2 rounds"):
        K.measure_cell(*small_model(), rounds=1, warmup=0)


def cost_data() -> dict:
    """A hand-made ``cost.json``: backprop 2.0, 2.2, 2.4 s against zo 1 s per round."""
    seconds = {"two forwards": [0.9, 0.8, 1.0], "zo": [1.0, 1.0, 1.0],
               "pezo": [1.0, 1.1, 1.2], "backprop": [2.0, 2.2, 2.4]}  # fmt: skip
    meta = {"model": "vit-tiny (ViTTiny)", "batch": 8, "rounds": 3, "warmup": 1, "threads": 1,
            "load_average_start": [0.25, 0.5, 0.5], "load_average_end": [1.0, 0.5, 0.5],
            "environment": {"cpu_count": 2}}  # fmt: skip
    return {"meta": meta, "cells": [{"regime": "ft", "trained": 1234, "seconds": seconds}]}


def test_the_table_shows_medians_and_each_ratios_interval_over_rounds(tmp_path):
    half = 4.3027 * 0.2 / math.sqrt(3)  # ratios 2.0, 2.2, 2.4: mean 2.2, s 0.2, t(0.975, 2)
    iv = K.ratio_interval([2.0, 2.2, 2.4], [1.0, 1.0, 1.0])
    assert (iv.low, iv.mean, iv.high) == pytest.approx((2.2 - half, 2.2, 2.2 + half), abs=1e-3)
    md = K.rebuild_report(tmp_path, cost_data())
    row = next(line for line in md.splitlines() if line.startswith("| ft |"))
    assert "| 1,234 | 900.0 | 1000.0 | 1100.0 | 2200.0 |" in row
    assert f"| 2.20 [{2.2 - half:.2f}, {2.2 + half:.2f}]x |" in row
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
