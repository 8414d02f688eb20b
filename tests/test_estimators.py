"""Estimators against autograd: the reference for every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO
from edgezo.analysis.memory import forward_peak_activation_bytes, zo_step_scratch_bytes
from edgezo.directions import Gaussian, Pool, Rademacher, Uniform
from edgezo.estimators import ESTIMATORS, get_estimator
from edgezo.models import ViTConfig, ViTTiny


def tiny_problem(seed=0):
    """A small MLP classifier (58 weights) and one batch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4))
    x = torch.randn(32, 5, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    return model, (lambda: F.cross_entropy(model(x), y))


def autograd_gradient(model, closure):
    params = list(model.parameters())
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), params)
    return torch.cat([g.reshape(-1) for g in grads]).double()


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


def estimated_gradient(model, closure, lr=1.0, **zo):
    """-(w_after - w_before) / lr after one step: the estimate the update applied."""
    before = flat(model)
    opt = ZO(model.parameters(), lr=lr, **zo)
    opt.step(closure)
    after = flat(model)
    with torch.no_grad():  # put the weights back for the caller
        for p, v in zip(
            model.parameters(), before.split([p.numel() for p in model.parameters()]), strict=True
        ):
            p.copy_(v.view_as(p))
    return (before - after) / lr, opt


@pytest.mark.parametrize(
    "directions",
    [Gaussian(seed=1), Rademacher(seed=1), Uniform(seed=1), Pool(size=4099, seed=1)],
    ids=["gaussian", "rademacher", "uniform", "pool"],
)
def test_central_mean_over_many_directions_approaches_autograd(directions):
    model, closure = tiny_problem()
    true = autograd_gradient(model, closure)
    d = true.numel()
    # the mean of N estimates has error ~ sqrt(d / N) |g|: N = 25 d gives cos ~ 0.98
    estimate, _ = estimated_gradient(
        model, closure, eps=1e-3, directions=directions, queries=25 * d
    )
    cosine = F.cosine_similarity(estimate, true, dim=0)
    assert cosine > 0.95
    # unbiased in magnitude: the projection on the gradient matches |g|^2
    assert float(estimate @ true / (true @ true)) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("estimator", ["central", "forward", "jvp"])
def test_single_direction_coefficient_is_the_directional_derivative(estimator):
    model, closure = tiny_problem(seed=3)
    true = autograd_gradient(model, closure)
    src = Gaussian(seed=4)
    estimate, opt = estimated_gradient(
        model, closure, eps=1e-4, directions=src, estimator=estimator
    )
    z = src.sample(0, 0, 0, opt.space.dim).double()
    coefficient = float(estimate @ z / (z @ z))
    tolerance = 1e-5 if estimator == "jvp" else 2e-2 * abs(float(true @ z)) + 1e-3
    assert coefficient == pytest.approx(float(true @ z), abs=tolerance)
    # the update is exactly along z
    torch.testing.assert_close(estimate, coefficient * z, rtol=1e-4, atol=1e-7)


def test_central_is_exact_on_a_quadratic():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50, dtype=torch.float64))
    a = torch.randn(50, 50, dtype=torch.float64)
    h = a @ a.T / 50

    def closure():
        return 0.5 * w @ h @ w

    src = Rademacher(seed=0)
    before = w.detach().clone()
    opt = ZO([w], lr=1.0, eps=0.1, directions=src)  # large eps: still exact for a quadratic
    opt.step(closure)
    z = src.sample(0, 0, 0, 50, dtype=torch.float64)
    expected = before - float((h @ before) @ z) * z
    torch.testing.assert_close(w.detach(), expected, rtol=1e-9, atol=1e-9)


def test_forward_difference_has_its_curvature_bias():
    """One-sided: c = g.z + (eps/2) z'Hz exactly on a quadratic."""
    w = torch.nn.Parameter(torch.ones(20, dtype=torch.float64))

    def closure():
        return (w**2).sum()  # H = 2I

    src = Rademacher(seed=2)
    opt = ZO([w], lr=1.0, eps=0.5, directions=src, estimator="forward")
    opt.step(closure)
    z = src.sample(0, 0, 0, 20, dtype=torch.float64)
    c = float(2 * torch.ones(20, dtype=torch.float64) @ z + 0.5 / 2 * 2 * (z @ z))
    torch.testing.assert_close(w.detach(), 1 - c * z)


def test_sign_estimator_uses_the_sign_of_the_difference():
    model, closure = tiny_problem(seed=5)
    true = autograd_gradient(model, closure)
    src = Gaussian(seed=6)
    m = 3
    estimate, opt = estimated_gradient(
        model, closure, lr=0.5, eps=1e-4, directions=src, estimator="sign", queries=m
    )
    zs = [src.sample(0, i, 0, opt.space.dim).double() for i in range(m)]
    expected = sum(torch.sign(true @ z) * z for z in zs) / m  # sign-m-SPSA, PAPERS.md B
    torch.testing.assert_close(estimate, expected, rtol=1e-4, atol=1e-6)


def test_jvp_works_through_attention():
    """Forward-mode AD through scaled_dot_product_attention (the CPU fused kernel lacks it)."""
    torch.manual_seed(0)
    model = ViTTiny(ViTConfig(image=8, patch=4, width=16, depth=1, heads=2, mlp=32, classes=3))
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])

    def closure():
        return F.cross_entropy(model(x), y)

    true = autograd_gradient(model, closure)
    src = Rademacher(seed=0)
    estimate, opt = estimated_gradient(model, closure, estimator="jvp", directions=src)
    z = src.sample(0, 0, 0, opt.space.dim).double()
    assert float(estimate @ z / (z @ z)) == pytest.approx(float(true @ z), rel=1e-4)


def test_jvp_costs_one_copy_of_the_weights_and_keeps_them_bit_exact():
    """Tangents written a chunk at a time into the one tangent per tensor: the step's
    live peak is the weights once, plus the largest tensor once (PyTorch's forward-AD
    formula), plus the forward's activations with their tangents; before, it was twice
    the weights plus the largest tensor. The directional derivative along ``z * mask``
    is autograd's, and the weights' bits (``-0.0`` included) are left as they were."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(300, 400), torch.nn.ReLU(), torch.nn.Linear(400, 300)
    ).double()  # 120,400 + 120,300 weights: tensors of several CHUNK pieces
    with torch.no_grad():
        model[0].weight[0, :7] = -0.0
    x, y = torch.randn(4, 300, dtype=torch.float64), torch.randint(0, 300, (4,))

    def closure():
        return F.cross_entropy(model(x), y)

    params = list(model.parameters())
    mask = (torch.rand(params[0].shape, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    masks = [mask] + [None] * (len(params) - 1)
    true = autograd_gradient(model, closure)
    before = [p.detach().clone() for p in params]
    weights = sum(p.numel() * 8 for p in params)
    frozen = ZO([{"params": params, "masks": masks}], lr=0.0, estimator="jvp")
    scratch = zo_step_scratch_bytes(frozen, closure, model, x)
    forward = forward_peak_activation_bytes(model, x)
    largest = max(p.numel() * 8 for p in params)
    assert weights <= scratch <= weights + largest + 4 * forward
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b) and torch.equal(p.signbit(), b.signbit())
    src = Gaussian(seed=2)
    opt = ZO([{"params": params, "masks": masks}], lr=1.0, estimator="jvp", directions=src)
    opt.step(closure)
    z = src.sample(0, 0, 0, opt.space.dim, dtype=torch.float64)
    z[: mask.numel()] *= mask.view(-1)
    moved = torch.cat([(b - p.detach()).reshape(-1) for p, b in zip(params, before, strict=True)])
    assert torch.equal(
        moved[: mask.numel()][mask.view(-1) == 0], torch.zeros(int((mask == 0).sum()))
    )
    coefficient = float(moved @ z / (z @ z))
    assert coefficient == pytest.approx(float(true @ z), rel=1e-9)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_forward_pass_budget(name):
    model, closure = tiny_problem()
    calls = 0

    def counting():
        nonlocal calls
        calls += 1
        return closure()

    q = 3
    opt = ZO(model.parameters(), lr=1e-3, estimator=name, queries=q, directions=Gaussian(0))
    opt.step(counting)
    assert calls == opt.forwards == get_estimator(name).forwards(q)


def test_unknown_estimator_is_rejected():
    with pytest.raises(ValueError, match="Unknown estimator 'backprop'; choose one of"):
        get_estimator("backprop")
