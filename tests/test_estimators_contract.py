"""Contract tests every estimator runs through (like torch's ``common_optimizers.py``).

``ESTIMATORS`` is the registry: a new estimator is one more entry, and then it
is checked for what ``ZO`` relies on: a skipped step (a non-finite loss, or an
exception in the closure) leaves the weights as they were; a checkpoint resumes
bit-exactly; two runs with the same seed give the same weights; the forwards it
declares are the forwards it makes; and its capabilities match what the number
formats accept.

The float model's weights are multiples of ``2**-6``, ``z`` is Rademacher and
``eps`` a power of two, so every perturbation and restore is exact in float32
and "as they were" can be checked bit for bit.
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
from edgezo.estimators import JVP, Central, Estimator, Forward, SharpnessAware, Sign
from edgezo.fixedpoint import quantize_model, trainable_parameters

EPS = 2.0**-8

#: the registry: (id, factory, supports fixed-point weights)
ESTIMATORS: list[tuple[str, Callable[[], Estimator], bool]] = [
    ("central", Central, True),
    ("forward", Forward, True),
    ("sign", Sign, True),
    ("jvp", JVP, False),
    ("sam-sign", lambda: SharpnessAware("sign", rho=2 * EPS), True),
    ("sam-central", lambda: SharpnessAware("central", rho=3 * EPS), True),
    ("sam-forward", lambda: SharpnessAware("forward", rho=EPS), True),
]
IDS = [name for name, _, _ in ESTIMATORS]


def dyadic_model() -> nn.Module:
    """A small MLP whose weights are multiples of 2**-6 (exact under +/- eps * z)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 64) / 64)
    return net


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def build(factory, net: nn.Module, fixed: bool = False, seed: int = 0) -> ZO:
    params = trainable_parameters(net) if fixed else list(net.parameters())
    lr = 1e-2 if fixed else 1e-3
    return ZO(params, lr=lr, eps=EPS, directions=Rademacher(seed), estimator=factory(), queries=2)


def state(net: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in net.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def run(opt: ZO, net: nn.Module, steps: int) -> list[float]:
    x, y = batch()
    return [float(opt.step(lambda: F.cross_entropy(net(x), y))) for _ in range(steps)]


def quantized() -> nn.Module:
    x, _ = batch()
    return quantize_model(dyadic_model(), weight_bits=16, activation_bits=8, calibration=[x])


def cases():
    for name, factory, fixed_ok in ESTIMATORS:
        yield pytest.param(factory, False, id=f"{name}-float")
        if fixed_ok:
            yield pytest.param(factory, True, id=f"{name}-fixed")


@pytest.mark.parametrize(("factory", "fixed"), list(cases()))
@pytest.mark.parametrize("bad_call", [1, 2, 3])
def test_a_non_finite_loss_skips_the_step_and_leaves_the_weights(factory, fixed, bad_call):
    net = quantized() if fixed else dyadic_model()
    opt = build(factory, net, fixed)
    x, y = batch()
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        loss = F.cross_entropy(net(x), y)
        return loss * math.nan if calls == bad_call else loss

    before = state(net)
    loss = opt.step(closure)
    if calls >= bad_call:  # the estimator reached the bad evaluation (the loss it reports
        assert opt.skipped == 1  # may be another, finite one: forward's L(w))
        assert same(state(net), before)
    else:
        assert math.isfinite(float(loss)) and opt.skipped == 0
    assert opt.steps == 1
    assert all(p.fixed.perturbation is None for p in trainable_parameters(net)) if fixed else True


@pytest.mark.parametrize(("factory", "fixed"), list(cases()))
@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_an_exception_in_the_closure_leaves_the_weights(factory, fixed, failing_call):
    net = quantized() if fixed else dyadic_model()
    opt = build(factory, net, fixed)  # first step: the float weights are still exact dyadics
    x, y = batch()
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise KeyboardInterrupt
        return F.cross_entropy(net(x), y)

    before = state(net)
    if failing_call > opt.estimator.forwards(opt.queries):
        return  # (jvp: two forwards in all)
    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    assert same(state(net), before)
    assert opt.steps == 0
    if fixed:
        assert all(p.fixed.perturbation is None for p in trainable_parameters(net))


@pytest.mark.parametrize(("factory", "fixed"), list(cases()))
def test_a_checkpoint_resumes_bit_exactly(factory, fixed):
    net = quantized() if fixed else dyadic_model()
    opt = build(factory, net, fixed)
    run(opt, net, 2)
    weights, saved = net.state_dict(), opt.state_dict()
    weights = {k: v.clone() for k, v in weights.items()}
    straight = run(opt, net, 3)
    resumed_net = quantized() if fixed else dyadic_model()
    resumed_net.load_state_dict(weights)
    resumed = build(factory, resumed_net, fixed)
    resumed.load_state_dict(saved)
    assert run(resumed, resumed_net, 3) == straight
    assert same(state(resumed_net), state(net))


@pytest.mark.parametrize(("factory", "fixed"), list(cases()))
def test_same_seed_same_weights(factory, fixed):
    nets = [quantized() if fixed else dyadic_model() for _ in range(2)]
    losses = [run(build(factory, net, fixed), net, 3) for net in nets]
    assert losses[0] == losses[1]
    assert same(state(nets[0]), state(nets[1]))


@pytest.mark.parametrize(("factory", "fixed"), list(cases()))
def test_the_declared_forwards_are_the_forwards_made(factory, fixed):
    net = quantized() if fixed else dyadic_model()
    opt = build(factory, net, fixed)
    run(opt, net, 2)
    assert opt.forwards == 2 * opt.estimator.forwards(opt.queries)


@pytest.mark.parametrize(("name", "factory", "fixed_ok"), ESTIMATORS, ids=IDS)
def test_capabilities_decide_what_fixed_point_accepts(name, factory, fixed_ok):
    est = factory()
    assert est.needs_float_weights == (not fixed_ok)
    assert isinstance(est.sign_updates, bool) and isinstance(est.perturbs_weights, bool)
    if fixed_ok:
        build(factory, quantized(), fixed=True)
    else:
        with pytest.raises(ValueError, match="needs float weights"):
            build(factory, quantized(), fixed=True)
