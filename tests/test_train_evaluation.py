"""edgezo.train.evaluation: evaluate equals one plain pass, whatever its batch size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from edgezo.train import evaluate


def _data(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x @ torch.randn(4, 3, generator=g)).argmax(1)


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


@settings(max_examples=15, deadline=None)
@given(batch_size=st.integers(1, 120))
def test_evaluate_matches_one_plain_pass(batch_size):
    x, y = _data(100)
    model = _model().train()
    got = evaluate(model, x, y, batch_size=batch_size)
    assert model.training  # its mode is put back
    with torch.no_grad():
        logits = model.eval()(x)
    assert got["accuracy"] == (logits.argmax(1) == y).double().mean().item()
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
