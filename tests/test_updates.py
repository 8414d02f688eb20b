"""Update rules: kernel-wise normalization (QZO-FF Eq. 9), and the four enhancements together."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO
from edgezo.directions import Gaussian, Rademacher
from edgezo.directions.guided import MomentumGuided, Ramp
from edgezo.estimators import SharpnessAware
from edgezo.fixedpoint import dequantized_copy, quantize_model, trainable_parameters
from edgezo.formats.fixedpoint import ZFormat
from edgezo.formats.fixedpoint.quant import Requant, saturate
from edgezo.params import ParamSpace
from edgezo.updates import SGD, KernelNormalized, Momentum
from edgezo.updates.sparse import sparse_groups

EPS = 1e-3


def problem(seed=0, dtype=torch.float32, hidden=16):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
    ).to(dtype)
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(6, 3, generator=g)
    xs = [torch.randn(16, 6, generator=g, dtype=dtype) for _ in range(20)]
    return model, [(x, (x.float() @ teacher).argmax(1)) for x in xs]


def fixed(model, batches, per_channel=False):
    calib = [x for x, _ in batches[:4]]
    return quantize_model(model, 16, 8, per_channel=per_channel, calibration=calib)


def step(opt, closure):
    """``opt.step`` with the rule's ``begin`` hook called first (what ZO is to do; idempotent)."""
    if hasattr(opt.update_rule, "begin"):
        opt.update_rule.begin(opt.steps, opt.space)
    return opt.step(closure)


@torch.no_grad()
def full_loss(model, batches):
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    return float(F.cross_entropy(model(x), y))


# -- the factors -------------------------------------------------------------------------


def recording_closure(model, x, y):
    """A cross-entropy closure that also records every loss it returns (as floats)."""
    losses = []

    def closure():
        loss = F.cross_entropy(model(x), y)
        losses.append(float(loss))
        return loss

    return closure, losses


def test_factors_are_weight_norm_over_direction_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 7, generator=g), torch.randn(5, generator=g) * 0.01
    mask = (torch.rand(30, 7, generator=g) < 0.2).float()
    space = ParamSpace([[a, b]], masks={a: mask})
    z = Gaussian(seed=4).bind(space.dim, 2)
    f = KernelNormalized().factors(3, 1, space, z)
    full = z.sample(3, 1, 0, space.dim, dtype=torch.float64)
    za, zb = full[:210].view(30, 7), full[210:]
    ref_a = float((a.double() * mask).norm() / (za * mask).norm())
    ref_b = float(b.double().norm() / zb.norm())
    assert f == pytest.approx([ref_a, ref_b], rel=1e-12)


def test_base_factors_multiply_and_state_passes_through():
    class Half(SGD):
        def factors(self, step, query, space, directions):
            return [0.5] * len(space)

    w = torch.randn(10)
    space, z = ParamSpace([[w]]), Gaussian(0).bind(10)
    plain = KernelNormalized().factors(0, 0, space, z)
    assert KernelNormalized(Half()).factors(0, 0, space, z) == [plain[0] * 0.5]
    rule = KernelNormalized(Momentum(0.9, 3))
    momentum = Momentum(0.9, 3)
    for r in (rule, momentum):
        r.commit(0, [1.0, -1.0])
    assert rule.terms(1, [0.5]) == momentum.terms(1, [0.5])
    other = KernelNormalized(Momentum(0.9, 3))
    other.load_state_dict(rule.state_dict())
    assert other.terms(1, [0.5]) == rule.terms(1, [0.5]) and len(rule.terms(1, [0.5])) == 3
    with pytest.raises(TypeError):
        KernelNormalized(KernelNormalized())


def test_zero_tensor_and_zero_direction_get_factor_zero():
    w, frozen = torch.zeros(4), torch.randn(3)
    space = ParamSpace([[w, frozen]], masks={frozen: torch.zeros(3)})
    assert KernelNormalized().factors(0, 0, space, Gaussian(1).bind(7)) == [0.0, 0.0]


@pytest.mark.parametrize("per_channel", [False, True])
def test_fixed_point_weight_norms_are_dequantized(per_channel):
    model, batches = problem()
    q = fixed(model, batches, per_channel)
    params = trainable_parameters(q)
    space = ParamSpace([params])
    z = Gaussian(2).bind(space.dim)
    f = KernelNormalized().factors(0, 0, space, z)
    deq = list(dequantized_copy(q).values())
    for fi, w, seg in zip(f, deq, space, strict=True):
        zn = z.sample(0, 0, seg.offset, seg.numel, dtype=torch.float64).norm()
        assert fi == pytest.approx(float(w.double().norm() / zn), rel=1e-6)


# -- Eq. 9, end to end ----------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["central", "sign"])
@pytest.mark.parametrize("masked", [False, True])
def test_each_tensor_moves_by_lr_c_times_its_norm_float(estimator, masked):
    """One query: Delta w_i = -lr c ||w_i|| z_i / ||z_i||, so ||Delta w_i|| = lr |c| ||w_i||."""
    model, batches = problem(dtype=torch.float64)
    params = list(model.parameters())
    groups = sparse_groups(params, sparsity=0.5, rule="random") if masked else params
    masks = groups[0]["masks"] if masked else [torch.ones_like(p) for p in params]
    lr, directions = 0.05, Gaussian(8)
    opt = ZO(
        groups,
        lr=lr,
        eps=EPS,
        directions=directions,
        estimator=estimator,
        update=KernelNormalized(),
    )
    x, y = batches[0]
    closure, losses = recording_closure(model, x, y)

    before = [p.detach().clone() for p in params]
    step(opt, closure)
    d = losses[0] - losses[1]
    c = d / (2 * EPS) if estimator == "central" else math.copysign(1.0, d)
    for seg, w0, m in zip(opt.space, before, masks, strict=True):
        z = directions.sample(0, 0, seg.offset, seg.numel, dtype=torch.float64).view_as(w0) * m
        w_norm = float((w0 * m).norm())
        expected = -lr * c * w_norm * z / z.norm()
        change = seg.param.detach() - w0
        assert torch.allclose(change, expected, rtol=0, atol=1e-13)
        assert float(change.norm()) == pytest.approx(lr * abs(c) * w_norm, rel=1e-9)


def test_several_queries_add_their_normalized_terms_float():
    model, batches = problem(dtype=torch.float64)
    params = list(model.parameters())
    lr, q, directions = 0.02, 3, Rademacher(5)
    opt = ZO(
        params,
        lr=lr,
        eps=EPS,
        directions=directions,
        estimator="sign",
        queries=q,
        update=KernelNormalized(),
    )
    x, y = batches[1]
    closure, losses = recording_closure(model, x, y)

    before = [p.detach().clone() for p in params]
    step(opt, closure)
    signs = [math.copysign(1.0, losses[2 * i] - losses[2 * i + 1]) for i in range(q)]
    for seg, w0 in zip(opt.space, before, strict=True):
        expected = torch.zeros_like(w0)
        for i, s in enumerate(signs):
            z = directions.sample(0, i, seg.offset, seg.numel, dtype=torch.float64).view_as(w0)
            expected -= lr * (s / q) * w0.norm() * z / z.norm()
        assert torch.allclose(seg.param.detach() - w0, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("per_channel", [False, True])
def test_fixed_point_update_is_the_integer_formula_of_eq9(per_channel):
    """sign, one query: w_q -= requant(s * z_q), requant ~ lr * f_i * dz / dw (f_i from Eq. 9)."""
    model, batches = problem()
    q = fixed(model, batches, per_channel)
    params = trainable_parameters(q)
    lr, directions = 0.05, Gaussian(3)
    opt = ZO(
        params, lr=lr, eps=EPS, directions=directions, estimator="sign", update=KernelNormalized()
    )
    x, y = batches[0]
    closure, losses = recording_closure(q, x, y)

    before = [p.data.clone() for p in params]
    deq = [w.double() for w in dequantized_copy(q).values()]
    opt.step(closure)  # no begin needed: fixed-point weights are never perturbed in place
    s = (losses[0] > losses[1]) - (losses[0] < losses[1])
    zf = ZFormat.of(directions)
    for seg, w_q, w in zip(opt.space, before, deq, strict=True):
        dw = seg.param.fixed.scale.double()
        z = directions.sample(0, 0, seg.offset, seg.numel, dtype=torch.float64)
        f = float(w.norm() / z.norm())  # ||w_i|| / ||z_i||
        z_q = zf.integers(directions, 0, 0, seg.offset, seg.numel).view(w_q.shape).to(torch.int64)
        rows = (s * z_q).reshape(dw.numel(), -1)
        change = Requant.of((lr * f * zf.dz / dw).reshape(-1, 1)).apply(rows).view(w_q.shape)
        assert torch.equal(seg.param.data, saturate(w_q.to(torch.int64) - change, 16).to(w_q.dtype))
        # in real units the integer update is Eq. 9 up to the 8-bit z and the weight grid (the
        # stored weights may differ where they saturate: max-abs scales put the largest at qmax)
        moved = float((change.double() * dw).norm())
        assert moved == pytest.approx(lr * float(w.norm()), rel=0.03)


def test_resume_with_kernel_normalization_is_bit_exact():
    def make(m):
        return ZO(
            m.parameters(),
            lr=0.05,
            directions=Gaussian(1),
            estimator="sign",
            queries=2,
            update=KernelNormalized(Momentum(0.5, 3)),
        )

    model, batches = problem()
    opt = make(model)
    for x, y in batches[:6]:
        step(opt, lambda x=x, y=y: F.cross_entropy(model(x), y))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    for x, y in batches[6:12]:
        step(opt, lambda x=x, y=y: F.cross_entropy(model(x), y))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2, _ = problem(seed=7)
    model2.load_state_dict(saved["model"])
    opt2 = make(model2)
    opt2.load_state_dict(saved["opt"])
    for x, y in batches[6:12]:
        step(opt2, lambda x=x, y=y: F.cross_entropy(model2(x), y))
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters(), strict=True)
    )


# -- all four together ------------------------------------------------------------------------
@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
def test_all_four_enhancements_in_one_optimizer(fixed_point):
    """Guided sampling + sharpness-aware + 90% sparse + kernel-wise norm: trains, frozen stay put."""
    model, batches = problem(hidden=32)
    if fixed_point:
        model = fixed(model, batches)
    params = trainable_parameters(model) if fixed_point else list(model.parameters())
    groups = sparse_groups(params, sparsity=0.9)
    opt = ZO(
        groups,
        lr=0.05,
        eps=EPS,
        directions=MomentumGuided(Gaussian(2), alpha=0.5, beta=Ramp(final=0.5, steps=10)),
        estimator=SharpnessAware("sign", rho=3e-3),
        queries=3,
        update=KernelNormalized(),
    )
    before = [p.detach().clone() for p in params]
    curve = [full_loss(model, batches)]
    for _ in range(3):
        for x, y in batches:
            step(opt, lambda x=x, y=y: F.cross_entropy(model(x), y))
        curve.append(full_loss(model, batches))
    assert opt.forwards == 3 * len(batches) * (2 * 3 + 2) and opt.skipped == 0
    assert opt.directions.history.any()
    for p, m, w0 in zip(params, groups[0]["masks"], before, strict=True):
        assert torch.equal(p.detach()[m == 0], w0[m == 0])
    # every epoch lowers the loss (fixed point more slowly: max-abs scales put each tensor's
    # largest weight, which top-k keeps, at the saturation limit, so it cannot grow)
    assert (
        all(b < a for a, b in zip(curve[:-1], curve[1:], strict=True))
        and curve[-1] < curve[0] - 0.01
    )
