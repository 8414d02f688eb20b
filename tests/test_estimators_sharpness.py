"""Sharpness-aware perturbation: the ascent, the point the base runs at, the update at w, costs."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO
from edgezo.directions import Gaussian, Pool
from edgezo.estimators import Estimate, Estimator, SharpnessAware
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats.fixedpoint import ZFormat
from edgezo.formats.fixedpoint.quant import Requant, saturate

EPS = 1e-3


def problem(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model.to(dtype)
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(6, 3, generator=g)
    xs = [torch.randn(16, 6, generator=g, dtype=dtype) for _ in range(30)]
    return model, [(x, (x.float() @ teacher).argmax(1)) for x in xs]


def fixed(model, batches):
    return quantize_model(model, 16, 8, calibration=[x for x, _ in batches[:4]])


def train(model, opt, batches):
    for x, y in batches:
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))


def params_of(model):
    fp = any(hasattr(p, "fixed") for p in model.parameters())
    return trainable_parameters(model) if fp else list(model.parameters())


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def with_ascent_slot(opt):
    """Bind the source with ``queries + 1`` if ZO has not (the ascent's own window)."""
    need = opt.queries + getattr(opt.estimator, "extra_queries", 0)
    if opt.directions.queries < need:
        opt.directions.bind(opt.space.dim, need)
    return opt


class Given(Estimator):
    """Perturbs nothing; returns given coefficients (to apply a known update at w)."""

    name = "sign"

    def __init__(self, coefficients):
        self.coefficients = coefficients

    def forwards(self, queries):
        return 0

    def estimate(self, probe, closure, queries):
        return Estimate(0.0, list(self.coefficients), [0.0])


# -- configuration ----------------------------------------------------------------
def test_rho_is_a_whole_number_of_eps():
    assert SharpnessAware("sign", rho=4.4e-3).multiple(1e-3) == 4
    assert SharpnessAware("sign", rho=0.0).multiple(1e-3) == 0
    with pytest.raises(ValueError, match="rounds to 0"):
        SharpnessAware("sign", rho=4e-4).multiple(1e-3)
    with pytest.raises(ValueError, match="rho"):
        SharpnessAware("sign", rho=-1.0)
    with pytest.raises(ValueError, match="jvp"):
        SharpnessAware("jvp", rho=1e-3)
    sam = SharpnessAware("central", rho=2e-3)
    assert sam.forwards(3) == 8 and SharpnessAware("sign", rho=0).forwards(3) == 6
    assert sam.extra_queries == 1 and sam.name == "central"


def test_too_small_rho_is_refused_when_the_optimizer_is_built():
    model, _ = problem()
    with pytest.raises(ValueError, match="rounds to 0"):
        ZO(model.parameters(), eps=EPS, estimator=SharpnessAware("sign", rho=1e-4))
    # exactly half of eps rounds to 0 too (ties to even), and the message says so
    with pytest.raises(ValueError, match="at most half of eps"):
        ZO(model.parameters(), eps=EPS, estimator=SharpnessAware("sign", rho=EPS / 2))


# -- rho = 0 is the base, bit for bit ----------------------------------------------------
def run(estimator, fixed_point, steps=8):
    model, batches = problem()
    if fixed_point:
        model = fixed(model, batches)
    opt = ZO(
        params_of(model), lr=1e-2, eps=EPS, directions=Gaussian(2), estimator=estimator, queries=2
    )
    losses = [opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y)) for x, y in batches[:steps]]
    return weights(model), losses, opt.forwards


@pytest.mark.parametrize("base", ["sign", "central", "forward"])
@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
def test_rho_zero_equals_the_base_estimator_bit_for_bit(base, fixed_point):
    w1, l1, f1 = run(base, fixed_point)
    w2, l2, f2 = run(SharpnessAware(base, rho=0.0), fixed_point)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(l1, l2, strict=True)) and f1 == f2


# -- the ascent and where the base runs (float) ----------------------------------------------
def quadratic_step(seed, k=3, lr=1e-2):
    """One SAM(central) step on ``|w - t|^2`` in float64; checks every point; returns the sign."""
    torch.manual_seed(seed)
    w = torch.randn(50, dtype=torch.float64)
    target = torch.randn(50, dtype=torch.float64)
    w0, seen = w.clone(), []

    def closure():
        seen.append(w.clone())
        return ((w - target) ** 2).sum()

    def L(v):
        return float(((v - target) ** 2).sum())

    directions = Gaussian(seed)
    sam = SharpnessAware("central", rho=k * EPS)
    opt = ZO([w], lr=lr, eps=EPS, directions=directions, estimator=sam)
    loss = float(opt.step(closure))
    za = directions.sample(0, 1, 0, 50, dtype=torch.float64)  # the ascent: query slot 1
    z0 = directions.sample(0, 0, 0, 50, dtype=torch.float64)
    r = k * EPS
    assert len(seen) == 4 and opt.forwards == 4
    assert torch.allclose(seen[0], w0 + r * za, atol=1e-12)
    assert torch.allclose(seen[1], w0 - r * za, atol=1e-12)
    s = math.copysign(1.0, L(seen[0]) - L(seen[1]))
    nb = w0 + s * r * za  # the neighbour the base estimator runs at
    assert torch.allclose(seen[2], nb + EPS * z0, atol=1e-12)
    assert torch.allclose(seen[3], nb - EPS * z0, atol=1e-12)
    assert loss == pytest.approx((L(seen[0]) + L(seen[1])) / 2, rel=1e-6)  # float32 report
    c = (L(seen[2]) - L(seen[3])) / (2 * EPS)
    assert torch.allclose(w, w0 - lr * c * z0, atol=1e-12)  # the update is applied at w
    # the ascent went uphill: the gradient's component along s * za is positive
    assert float(2 * (w0 - target) @ (s * za)) > 0
    return s


def test_base_runs_at_the_uphill_neighbour_and_update_applies_at_w():
    """Quadratic loss in float64: every evaluation point and the update, against the formulas."""
    assert {quadratic_step(seed) for seed in range(12)} == {1.0, -1.0}


def test_equal_ascent_losses_stay_at_w():
    w = torch.zeros(5, dtype=torch.float64)
    seen = []

    def closure():
        seen.append(w.clone())
        return torch.tensor(1.0) if len(seen) < 3 else (w**2).sum()

    opt = ZO(
        [w], lr=0.0, eps=EPS, directions=Gaussian(0), estimator=SharpnessAware("sign", rho=2e-3)
    )
    opt.step(closure)
    z0 = opt.directions.sample(0, 0, 0, 5, dtype=torch.float64)
    assert torch.allclose(seen[2], EPS * z0, atol=1e-15)
    assert torch.allclose(seen[3], -EPS * z0, atol=1e-15)


def test_a_non_finite_ascent_skips_the_step_and_restores_w():
    w = torch.randn(20)
    w0 = w.clone()
    opt = ZO(
        [w], lr=1.0, eps=EPS, directions=Gaussian(0), estimator=SharpnessAware("sign", rho=2e-3)
    )
    loss = opt.step(lambda: torch.tensor(float("nan")))
    assert math.isnan(float(loss)) and opt.skipped == 1 and opt.forwards == 2
    assert torch.allclose(w, w0, atol=1e-6, rtol=0)


def test_update_equals_applying_the_coefficients_at_w_float():
    model, batches = problem(dtype=torch.float64)
    ref = copy.deepcopy(model)
    x, y = batches[0]
    seen = []
    sam = SharpnessAware("sign", rho=5e-3)
    opt = ZO(model.parameters(), lr=1e-2, eps=EPS, directions=Gaussian(4), estimator=sam, queries=3)
    record = sam.base.estimate

    def spy(probe, closure, queries):
        out = record(probe, closure, queries)
        seen.append(out.coefficients)
        return out

    sam.base.estimate = spy
    opt.step(lambda: F.cross_entropy(model(x), y))
    opt_ref = ZO(
        ref.parameters(),
        lr=1e-2,
        eps=EPS,
        directions=Gaussian(4),
        estimator=Given(seen[0]),
        queries=3,
    )
    opt_ref.step(lambda: torch.tensor(0.0))
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-14, rtol=0)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            model.parameters(), problem(dtype=torch.float64)[0].parameters(), strict=True
        )
    )


# -- fixed point -------------------------------------------------------------------------------
def test_fixed_point_ascent_and_estimate_share_one_integer_accumulator():
    """The integers every forward reads, against the formula with both directions active."""
    model, batches = problem()
    model = fixed(model, batches)
    x, y = batches[0]
    params = trainable_parameters(model)
    directions, k = Gaussian(9), 4
    opt = ZO(
        params,
        lr=1e-2,
        eps=EPS,
        directions=directions,
        estimator=SharpnessAware("sign", rho=k * EPS),
    )
    seen, losses = [], []

    def closure():
        seen.append(
            [
                p.fixed.perturbation.read(p) if p.fixed.perturbation else p.data.clone()
                for p in params
            ]
        )
        loss = F.cross_entropy(model(x), y)
        losses.append(float(loss))
        return loss

    w_q = [p.data.clone() for p in params]
    opt.step(closure)
    zf = ZFormat.of(directions)
    requant = Requant.of(zf.dz)

    def expected(j, nets):  # sat16(requant(w_q * 1_q + sum_k net_k * eps_q * z_q(0, k)))
        seg = opt.space.segments[j]
        eps_q = torch.round(EPS / seg.param.fixed.scale).to(torch.int64)
        acc = w_q[j].to(torch.int64) * zf.one
        for query, net in nets:
            z_q = zf.integers(directions, 0, query, seg.offset, seg.numel).view(seg.param.shape)
            acc = acc + (net * eps_q) * z_q
        return saturate(requant.apply(acc), 16).to(torch.int16)

    assert len(seen) == 4
    s = (losses[0] > losses[1]) - (losses[0] < losses[1])  # the sign of the loss difference
    for j in range(len(params)):
        assert torch.equal(seen[0][j], expected(j, [(1, +k)]))  # the ascent uses query slot 1
        assert torch.equal(seen[1][j], expected(j, [(1, -k)]))
        assert torch.equal(seen[2][j], expected(j, [(1, s * k), (0, +1)]))
        assert torch.equal(seen[3][j], expected(j, [(1, s * k), (0, -1)]))
    assert all(p.fixed.perturbation is None for p in params)  # nothing left active


def test_fixed_point_sign_follows_the_loss_difference_and_update_applies_at_w():
    model, batches = problem()
    model = fixed(model, batches)
    ref = copy.deepcopy(model)
    x, y = batches[1]
    sam = SharpnessAware("sign", rho=3e-3)
    opt = ZO(
        trainable_parameters(model),
        lr=1e-2,
        eps=EPS,
        directions=Gaussian(6),
        estimator=sam,
        queries=3,
    )
    losses, coefficients = [], []

    def closure():
        loss = F.cross_entropy(model(x), y)
        losses.append(float(loss))
        return loss

    real = sam.base.estimate

    def spy(probe, closure, queries):
        out = real(probe, closure, queries)
        coefficients.append(out.coefficients)
        return out

    sam.base.estimate = spy
    params = trainable_parameters(model)
    opt.step(closure)
    assert len(losses) == 8 and opt.forwards == 8
    # the update is exactly the plain integer update of those coefficients at w (bit for bit)
    opt_ref = ZO(
        trainable_parameters(ref),
        lr=1e-2,
        eps=EPS,
        directions=Gaussian(6),
        estimator=Given(coefficients[0]),
        queries=3,
    )
    opt_ref.step(lambda: torch.tensor(0.0))
    assert all(torch.equal(a, b) for a, b in zip(params, trainable_parameters(ref), strict=True))
    assert not all(
        torch.equal(a, b)
        for a, b in zip(params, trainable_parameters(fixed(*problem())), strict=True)
    )


# -- stream sources and the extra slot -----------------------------------------------------------
def test_stream_source_gives_the_ascent_its_own_window():
    model, batches = problem()
    opt = with_ascent_slot(
        ZO(
            model.parameters(),
            lr=1e-2,
            eps=EPS,
            directions=Pool(997, seed=1),
            estimator=SharpnessAware("sign", rho=2e-3),
            queries=2,
        )
    )
    assert opt.directions.queries == 3
    d = opt.directions
    windows = [d.sample(0, q, 0, opt.space.dim) for q in range(3)]
    assert not torch.equal(windows[2], windows[0]) and not torch.equal(windows[2], windows[1])
    train(model, opt, batches[:3])
    assert opt.forwards == 3 * 6


# -- training and resume ---------------------------------------------------------------------------
@torch.no_grad()
def full_loss(model, batches):
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    return float(F.cross_entropy(model(x), y))


@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
def test_training_with_sharpness_aware_lowers_the_loss(fixed_point):
    model, batches = problem()
    if fixed_point:
        model = fixed(model, batches)
    opt = ZO(
        params_of(model),
        lr=1e-2,
        eps=EPS,
        directions=Gaussian(3),
        estimator=SharpnessAware("sign", rho=5e-3),
        queries=3,
    )
    before = full_loss(model, batches)
    for _ in range(2):
        train(model, opt, batches)
    assert full_loss(model, batches) < before - 0.05


def test_resume_with_sharpness_aware_is_bit_exact():
    def make(m):
        return ZO(
            m.parameters(),
            lr=1e-2,
            eps=EPS,
            directions=Gaussian(3),
            estimator=SharpnessAware("sign", rho=5e-3),
            queries=2,
        )

    model, batches = problem()
    opt = make(model)
    train(model, opt, batches[:5])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, batches[5:10])
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2, _ = problem(seed=7)
    model2.load_state_dict(saved["model"])
    opt2 = make(model2)
    opt2.load_state_dict(saved["opt"])
    train(model2, opt2, batches[5:10])
    assert all(torch.equal(a, b) for a, b in zip(weights(model2), weights(model), strict=True))
