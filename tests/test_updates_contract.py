"""Contract tests every update rule runs through (like torch's ``common_optimizers.py``).

``UPDATES`` is the registry: ``(id, rule factory, sparsity)``, where a sparsity
turns on the masks of :func:`edgezo.updates.sparse_groups`. Each entry is
checked, on float and on fixed-point weights, for what ``ZO`` relies on:
``terms`` is pure; a skipped step commits nothing and leaves the weights; a
checkpoint resumes bit-exactly; the same seed gives the same weights;
``segment_weights`` has one finite weight per term and tensor; masked-out
elements never change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgezo import ZO
from edgezo.directions import Rademacher
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.updates import SGD, KernelNormalized, Momentum, UpdateRule, sparse_groups

EPS = 2.0**-8

#: the registry: (id, factory, sparsity or None)
UPDATES: list[tuple[str, Callable[[], UpdateRule], float | None]] = [
    ("sgd", SGD, None),
    ("momentum", lambda: Momentum(0.9, 3), None),
    ("kernel-norm", KernelNormalized, None),
    ("kernel-norm-momentum", lambda: KernelNormalized(Momentum(0.5, 2)), None),
    ("sgd-masks", SGD, 0.5),
    ("kernel-norm-masks", KernelNormalized, 0.7),
]


def cases():
    for name, factory, sparsity in UPDATES:
        for fixed in (False, True):
            kind = "fixed" if fixed else "float"
            yield pytest.param(factory, sparsity, fixed, id=f"{name}-{kind}")


def model(fixed: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 64) / 64)  # exact under +/- eps * z
    if fixed:
        net = quantize_model(net, weight_bits=16, activation_bits=8, calibration=[batch()[0]])
    return net


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def build(factory, sparsity, net: nn.Module, fixed: bool) -> ZO:
    params = trainable_parameters(net) if fixed else list(net.parameters())
    # random masks: the same for a resumed model (top-k would rank the trained weights)
    masked = sparsity is not None
    groups = sparse_groups(params, sparsity, rule="random", seed=3) if masked else params
    lr = 1e-2 if fixed else 1e-3
    return ZO(
        groups, lr=lr, eps=EPS, directions=Rademacher(0), estimator="sign", queries=2,
        update=factory(),
    )  # fmt: skip


def run(opt: ZO, net: nn.Module, steps: int) -> list[float]:
    x, y = batch()
    return [float(opt.step(lambda: F.cross_entropy(net(x), y))) for _ in range(steps)]


def state(net: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in net.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("factory", "sparsity", "fixed"), list(cases()))
def test_terms_are_pure_and_segment_weights_cover_every_tensor(factory, sparsity, fixed):
    net = model(fixed)
    opt = build(factory, sparsity, net, fixed)
    run(opt, net, 2)
    rule, before = opt.update_rule, opt.update_rule.state_dict()
    terms = rule.terms(opt.steps, [1.0, -1.0])
    assert rule.terms(opt.steps, [1.0, -1.0]) == terms and rule.state_dict() == before
    rule.begin(opt.steps, opt.space)
    weights = rule.segment_weights(terms, opt.space, opt.directions)
    assert len(weights) == len(terms)
    assert all(len(w) == len(opt.space) and all(math.isfinite(v) for v in w) for w in weights)
    assert rule.bytes_per_weight() >= 0


@pytest.mark.parametrize(("factory", "sparsity", "fixed"), list(cases()))
def test_a_skipped_step_commits_nothing_and_leaves_the_weights(factory, sparsity, fixed):
    net = model(fixed)
    opt = build(factory, sparsity, net, fixed)
    x, y = batch()
    before, rule_state = state(net), opt.update_rule.state_dict()
    opt.step(lambda: F.cross_entropy(net(x), y) * math.nan)
    assert opt.skipped == 1 and same(state(net), before)
    assert opt.update_rule.state_dict() == rule_state


@pytest.mark.parametrize(("factory", "sparsity", "fixed"), list(cases()))
def test_a_checkpoint_resumes_bit_exactly(factory, sparsity, fixed):
    net = model(fixed)
    opt = build(factory, sparsity, net, fixed)
    run(opt, net, 3)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    saved = opt.state_dict()
    straight = run(opt, net, 3)
    again = model(fixed)
    again.load_state_dict(weights)
    resumed = build(factory, sparsity, again, fixed)
    resumed.load_state_dict(saved)
    assert run(resumed, again, 3) == straight and same(state(again), state(net))


@pytest.mark.parametrize(("factory", "sparsity", "fixed"), list(cases()))
def test_same_seed_same_weights_and_masked_elements_never_change(factory, sparsity, fixed):
    nets = [model(fixed) for _ in range(2)]
    opts = [build(factory, sparsity, net, fixed) for net in nets]
    frozen = [(seg.param.detach().clone(), seg.mask) for seg in opts[0].space]
    assert run(opts[0], nets[0], 4) == run(opts[1], nets[1], 4)
    assert same(state(nets[0]), state(nets[1]))
    moved = False
    for seg, (start, mask) in zip(opts[0].space, frozen, strict=True):
        changed = seg.param.detach() != start
        moved |= bool(changed.any())
        if mask is not None:
            assert not bool((changed & ~mask.dense().view(changed.shape)).any())
    assert moved
