"""edgezo.train.sampler: EpochSampler follows the documented batch order and resumes mid-epoch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from edgezo.train import EpochSampler


def _reference_batches(n: int, batch_size: int, seed: int, steps: int) -> list[Tensor]:
    """The documented order, written out: per epoch one randperm of a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    batches: list[Tensor] = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=g)
        batches += [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return batches[:steps]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**31))
def test_sampler_covers_each_epoch_once_in_the_reference_order(n, data, seed):
    batch_size = data.draw(st.integers(1, n))
    per_epoch = n // batch_size
    steps = 3 * per_epoch
    sampler = EpochSampler(n, batch_size, seed)
    got = [sampler.next() for _ in range(steps)]
    expected = _reference_batches(n, batch_size, seed, steps)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    for e in range(3):  # within an epoch no index repeats
        epoch = torch.cat(got[e * per_epoch : (e + 1) * per_epoch])
        assert len(set(epoch.tolist())) == per_epoch * batch_size


def test_sampler_state_resumes_mid_epoch():
    a = EpochSampler(10, 3, seed=5)
    for _ in range(4):  # into the second epoch
        a.next()
    b = EpochSampler(10, 3, seed=0)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.next(), b.next()) for _ in range(7))


def test_sampler_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match=r"batch_size = 11 exceeds the 10 training samples"):
        EpochSampler(10, 11)
