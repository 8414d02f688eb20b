"""edgezo.train.schedules: warmup_cosine follows its formula under fit, for backprop and ZO."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgezo import presets
from edgezo.train import fit, warmup_cosine


@pytest.mark.parametrize("zo", [False, True])
def test_warmup_cosine_follows_its_formula(zo):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    model = nn.Linear(4, 3)
    lr, steps, warmup = 0.05, 14, 4
    opt = (presets.mezo(model.parameters(), lr=lr, seed=0) if zo
           else torch.optim.SGD(model.parameters(), lr=lr))  # fmt: skip
    result = fit(model, opt, (x, y), steps=steps, batch_size=8,
                 scheduler=warmup_cosine(opt, steps, warmup, min_factor=0.1), progress=False)  # fmt: skip
    expected = [
        lr * (s + 1) / warmup
        if s < warmup
        else lr * (0.1 + 0.9 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))) / 2)
        for s in range(steps)
    ]
    assert [r["lr"] for r in result.history] == pytest.approx(expected, rel=1e-12)


def test_warmup_cosine_rejects_bad_settings_with_what_to_change():
    opt = torch.optim.SGD(nn.Linear(4, 3).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"Invalid warmup: 5; use an integer in \[0, steps\)"):
        warmup_cosine(opt, 5, warmup=5)
