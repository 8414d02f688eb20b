"""Sparse updates: exact counts, the rules' choices, fixed point, and frozen weights through ZO."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO
from edgezo.directions import Gaussian, Pool
from edgezo.estimators import SharpnessAware
from edgezo.fixedpoint import dequantized_copy, quantize_model, trainable_parameters
from edgezo.updates.sparse import kept, masks, sparse_groups


def tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(40, 25, generator=g),
        torch.randn(7, generator=g) * 0.1,
        torch.randn(3, 4, 5, generator=g) * 3,
    ]


def problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(6, 3, generator=g)
    xs = [torch.randn(16, 6, generator=g) for _ in range(20)]
    return model, [(x, (x @ teacher).argmax(1)) for x in xs]


# -- counts and choices -------------------------------------------------------------
def test_ninety_percent_keeps_exact_counts_per_tensor():
    ps = tensors()
    ms = masks(ps, sparsity=0.9)
    assert [int(m.sum()) for m in ms] == [100, 1, 6]  # 1000 - 900, 7 - round(6.3), 60 - 54
    assert [kept(p.numel(), 0.9) for p in ps] == [100, 1, 6]
    for p, m in zip(ps, ms, strict=True):
        assert m.shape == p.shape and m.dtype == p.dtype
        assert bool(((m == 0) | (m == 1)).all())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3000),
    sparsity=st.floats(0, 0.999),
    rule=st.sampled_from(["topk", "random"]),
    scope=st.sampled_from(["tensor", "global"]),
)
def test_counts_are_exact_for_any_size(n, sparsity, rule, scope):
    p = torch.randn(n)
    (m,) = masks([p], sparsity, rule=rule, scope=scope)
    assert int(m.sum()) == n - round(sparsity * n)


def test_topk_keeps_the_largest_magnitudes():
    for p, m in zip(tensors(), masks(tensors(), sparsity=0.9), strict=True):
        on, off = p.abs()[m.bool()], p.abs()[~m.bool()]
        assert float(on.min()) >= float(off.max())
        ref = torch.zeros(p.numel())
        ref[p.abs().reshape(-1).topk(int(m.sum())).indices] = 1  # no ties in random data
        assert torch.equal(m.reshape(-1), ref)


def test_topk_global_ranks_all_tensors_together():
    ps = tensors()
    ms = masks(ps, sparsity=0.9, scope="global")
    assert sum(int(m.sum()) for m in ms) == 1067 - round(0.9 * 1067)
    on = torch.cat([p.abs()[m.bool()] for p, m in zip(ps, ms, strict=True)])
    off = torch.cat([p.abs()[~m.bool()] for p, m in zip(ps, ms, strict=True)])
    assert float(on.min()) >= float(off.max())
    assert int(ms[1].sum()) == 0  # the small-scale tensor loses everything globally...
    assert int(masks(ps, sparsity=0.9)[1].sum()) == 1  # ...but not per tensor


def test_topk_ties_go_to_the_lower_index():
    (m,) = masks([torch.tensor([1.0, -2.0, 2.0, 2.0, 0.5])], sparsity=0.6)
    assert m.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_random_is_seeded_and_not_by_magnitude():
    a = masks(tensors(), sparsity=0.9, rule="random", seed=3)
    b = masks(tensors(), sparsity=0.9, rule="random", seed=3)
    c = masks(tensors(), sparsity=0.9, rule="random", seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], masks(tensors(), sparsity=0.9)[0])
    # roughly uniform: every row of the 40x25 tensor keeps ~2.5 of 25, none are all kept
    big = masks([torch.randn(200, 100)], sparsity=0.9, rule="random", seed=0)[0]
    assert abs(float(big.mean(0).std())) < 0.1 and float(big.sum(1).max()) < 20


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_a_random_mask_seed_outside_64_bits_is_refused_not_wrapped(seed):
    with pytest.raises(ValueError, match="not wrapped"):
        masks(tensors(), sparsity=0.9, rule="random", seed=seed)


def test_threshold_keeps_magnitudes_above_it():
    ps = tensors()
    ms = masks(ps, rule="threshold", threshold=0.5)
    for p, m in zip(ps, ms, strict=True):
        assert torch.equal(m.bool(), p.abs() > 0.5)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="sparsity"):
        masks(tensors(), sparsity=1.0)
    with pytest.raises(ValueError, match="sparsity"):
        masks(tensors(), sparsity=-0.1)
    with pytest.raises(ValueError, match="rule"):
        masks(tensors(), rule="magnitude")
    with pytest.raises(ValueError, match="threshold"):
        masks(tensors(), rule="threshold")
    with pytest.raises(ValueError, match="threshold"):
        masks(tensors(), rule="topk", threshold=0.1)
    with pytest.raises(ValueError, match="scope"):
        masks(tensors(), scope="layer")


# -- fixed point -------------------------------------------------------------------------
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_fixed_point_ranks_by_dequantized_values(per_channel, scope):
    model, _ = problem()
    q = quantize_model(model, 16, None, per_channel=per_channel)
    params = trainable_parameters(q)
    floats = list(dequantized_copy(q).values())
    ms = masks(params, sparsity=0.9, scope=scope)
    ref = masks(floats, sparsity=0.9, scope=scope)
    assert all(torch.equal(a, b) for a, b in zip(ms, ref, strict=True))
    assert all(m.dtype == torch.float32 for m in ms)
    th = masks(params, rule="threshold", threshold=0.2)
    assert all(torch.equal(a.bool(), f.abs() > 0.2) for a, f in zip(th, floats, strict=True))


# -- parameter groups ---------------------------------------------------------------------
def test_sparse_groups_from_tensors_and_from_groups():
    a, b, c = tensors()
    (g,) = sparse_groups([a, b, c], sparsity=0.9)
    assert g["params"] == [a, b, c] and [int(m.sum()) for m in g["masks"]] == [100, 1, 6]
    groups = sparse_groups([{"params": [a], "lr": 0.1}, {"params": [b, c]}], scope="global")
    assert groups[0]["lr"] == 0.1 and len(groups[1]["masks"]) == 2
    flat = [m for g in groups for m in g["masks"]]
    assert all(
        torch.equal(x, y) for x, y in zip(flat, masks([a, b, c], scope="global"), strict=True)
    )
    with pytest.raises(ValueError, match="masks"):
        sparse_groups([{"params": [a], "masks": [None]}])


# -- through the optimizer: frozen weights stay bit-identical ---------------------------------
@torch.no_grad()
def full_loss(model, batches):
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    return float(F.cross_entropy(model(x), y))


@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
@pytest.mark.parametrize("rule", ["topk", "random"])
def test_masked_weights_never_change_through_zo(fixed_point, rule):
    model, batches = problem()
    if fixed_point:
        model = quantize_model(model, 16, 8, calibration=[x for x, _ in batches[:4]])
    params = trainable_parameters(model) if fixed_point else list(model.parameters())
    before = [p.detach().clone() for p in params]
    groups = sparse_groups(params, sparsity=0.9, rule=rule)
    opt = ZO(
        groups,
        lr=1e-2,
        eps=1e-3,
        directions=Gaussian(1),
        estimator=SharpnessAware("sign", rho=3e-3),  # two directions active at once
        queries=3,
        weight_decay=0.1,
    )
    assert opt.space.trainable() == sum(kept(p.numel(), 0.9) for p in params)
    seen_frozen = []

    def closure(x, y):
        # what the forward reads: masked elements are never perturbed either
        for p, m, w0 in zip(params, groups[0]["masks"], before, strict=True):
            now = (
                p.fixed.perturbation.read(p) if fixed_point and p.fixed.perturbation else p.detach()
            )
            seen_frozen.append(torch.equal(now[m == 0], w0[m == 0]))
        return F.cross_entropy(model(x), y)

    start = full_loss(model, batches)
    for _ in range(2):
        for x, y in batches:
            opt.step(lambda x=x, y=y: closure(x, y))
    assert all(seen_frozen) and len(seen_frozen) == 2 * len(batches) * 8 * len(params)
    for p, m, w0 in zip(params, groups[0]["masks"], before, strict=True):
        assert torch.equal(p.detach()[m == 0], w0[m == 0])  # bit-exact
        if m.sum() > 0:
            assert not torch.equal(p.detach()[m == 1], w0[m == 1])  # the rest trains
    assert full_loss(model, batches) < start


def test_masks_with_a_pool_source_float():
    model, batches = problem()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    groups = sparse_groups(params, sparsity=0.9, rule="threshold", threshold=0.3)
    opt = ZO(groups, lr=1e-2, directions=Pool(997, seed=0), estimator="central", queries=2)
    for x, y in batches:
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
    for p, m, w0 in zip(params, groups[0]["masks"], before, strict=True):
        assert torch.equal(p.detach()[m == 0], w0[m == 0])
