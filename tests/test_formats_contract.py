"""Contract tests every number format runs through (like torch's ``common_optimizers.py``).

``FORMATS`` is the registry: ``(id, format factory, fixed-point weights?)``.
Each format is checked directly (perturb / restore / update / decay on the
tensors it owns) and through ``ZO``: a perturbation changes what the model
computes and a restore puts it back bit for bit; an empty update leaves the
weights; an update moves them against ``z``; decay shrinks them; a skipped step
leaves them; a checkpoint resumes bit-exactly; the same seed gives the same
weights. Float weights are multiples of ``2**-6`` and ``z`` is Rademacher with
a power-of-two ``eps``, so float restores are exact too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgezo import ZO
from edgezo.directions import LFSR, Rademacher
from edgezo.estimators import Sign
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats import (
    FixedPointFormat,
    FloatFormat,
    NumberFormat,
    UntrainableError,
    bind_formats,
    default_formats,
)
from edgezo.params import ParamSpace

EPS = 2.0**-8

#: the registry: (id, factory, trains fixed-point weights)
FORMATS: list[tuple[str, Callable[[], NumberFormat], bool]] = [
    ("float", FloatFormat, False),
    ("fixed-z8", FixedPointFormat, True),
    ("fixed-z6", lambda: FixedPointFormat(z_bits=6, z_max=3.0), True),
]
IDS = [name for name, _, _ in FORMATS]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def model(fixed: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 64) / 64)
    if fixed:
        net = quantize_model(net, weight_bits=16, activation_bits=8, calibration=[batch()[0]])
    return net


def params_of(net: nn.Module, fixed: bool) -> list[torch.Tensor]:
    return trainable_parameters(net) if fixed else list(net.parameters())


def bound(factory, fixed: bool, directions=None) -> tuple[nn.Module, NumberFormat]:
    net = model(fixed)
    space = ParamSpace([params_of(net, fixed)])
    source = (directions or Rademacher(0)).bind(space.dim, 2)
    (fmt,) = bind_formats(space, [factory()], source, EPS)
    return net, fmt


def state(net: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in net.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def output(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(batch()[0])


@pytest.mark.parametrize(("factory", "fixed"), [(f, x) for _, f, x in FORMATS], ids=IDS)
def test_perturb_changes_the_model_and_restore_puts_it_back_bit_for_bit(factory, fixed):
    net, fmt = bound(factory, fixed)
    weights, out = state(net), output(net)
    fmt.start()
    fmt.perturb([((0, 0), 1.0), ((0, 1), -2.0)])
    assert not torch.equal(output(net), out)
    fmt.perturb([((0, 0), -1.0), ((0, 1), 2.0)])  # back to zero along both
    assert same(state(net), weights)
    fmt.perturb([((0, 1), 3.0)])
    fmt.restore()
    assert same(state(net), weights) and torch.equal(output(net), out)


@pytest.mark.parametrize(("factory", "fixed"), [(f, x) for _, f, x in FORMATS], ids=IDS)
def test_an_empty_update_restores_and_an_update_moves_against_z(factory, fixed):
    net, fmt = bound(factory, fixed)
    weights, out = state(net), output(net)
    fmt.start()
    fmt.perturb([((0, 0), 1.0)])
    fmt.update([], [], [0.1])
    fmt.decay([0.0])
    fmt.end()
    assert same(state(net), weights) and torch.equal(output(net), out)
    before = [seg.param.detach().double().clone() for seg in fmt.segments]
    n = len(fmt.indices)
    fmt.start()
    fmt.update([(0, 0, 1.0)], [[1.0] * (max(fmt.indices) + 1)], [1e-2])
    fmt.end()
    along = 0.0
    for seg, start in zip(fmt.segments, before, strict=True):
        z = fmt.directions.sample(0, 0, seg.offset, seg.numel).double()
        along += float(((seg.param.detach().double().reshape(-1) - start.reshape(-1)) * z).sum())
    assert n > 0 and along < 0  # w -= lr * z


@pytest.mark.parametrize(("factory", "fixed"), [(f, x) for _, f, x in FORMATS], ids=IDS)
def test_decay_shrinks_the_weights(factory, fixed):
    net, fmt = bound(factory, fixed)
    before = [seg.param.detach().double().abs().clone() for seg in fmt.segments]
    fmt.decay([0.25])
    after = [seg.param.detach().double().abs() for seg in fmt.segments]
    assert all(bool((a <= b).all()) for a, b in zip(after, before, strict=True))
    assert any(bool((a < b).any()) for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize(("factory", "fixed"), [(f, x) for _, f, x in FORMATS], ids=IDS)
def test_bind_leaves_the_configured_format_unbound(factory, fixed):
    fmt = factory()
    net = model(fixed)
    space = ParamSpace([params_of(net, fixed)])
    (bound_fmt,) = bind_formats(space, [fmt], Rademacher(0).bind(space.dim), EPS)
    assert bound_fmt is not fmt and fmt.segments == () and len(bound_fmt.segments) == len(space)
    assert all(fmt.owns(seg) for seg in space)
    assert isinstance(fmt.problems([1e-2], Sign()) if fmt.segments else [], list)


def zo(factory, fixed: bool, net: nn.Module) -> ZO:
    return ZO(
        params_of(net, fixed), lr=1e-2, eps=EPS, directions=Rademacher(0), estimator="sign",
        queries=2, formats=factory(),
    )  # fmt: skip


def run(opt: ZO, net: nn.Module, steps: int) -> list[float]:
    x, y = batch()
    return [float(opt.step(lambda: F.cross_entropy(net(x), y))) for _ in range(steps)]


@pytest.mark.parametrize(("factory", "fixed"), [(f, x) for _, f, x in FORMATS], ids=IDS)
def test_zo_skipped_step_resume_and_determinism(factory, fixed):
    net = model(fixed)
    opt = zo(factory, fixed, net)
    x, y = batch()
    weights = state(net)
    opt.step(lambda: F.cross_entropy(net(x), y) * math.nan)
    assert opt.skipped == 1 and same(state(net), weights)
    run(opt, net, 2)
    saved, weights = opt.state_dict(), {k: v.clone() for k, v in net.state_dict().items()}
    straight = run(opt, net, 3)
    again = model(fixed)
    again.load_state_dict(weights)
    resumed = zo(factory, fixed, again)
    resumed.load_state_dict(saved)
    assert run(resumed, again, 3) == straight and same(state(again), state(net))
    twin = model(fixed)
    twin_opt = zo(factory, fixed, twin)
    twin_opt.step(lambda: F.cross_entropy(twin(x), y) * math.nan)
    run(twin_opt, twin, 5)
    assert same(state(twin), state(net))


def test_default_formats_own_every_tensor_of_a_mixed_model_exactly_once():
    net = model(fixed=True)
    extra = torch.zeros(4)
    space = ParamSpace([[*trainable_parameters(net), extra]])
    for seg in space:
        assert sum(fmt.owns(seg) for fmt in default_formats()) == 1
    formats = bind_formats(space, default_formats(), Rademacher(0).bind(space.dim), EPS)
    assert [f.name for f in formats] == ["float", "fixed point"]
    assert sorted(i for f in formats for i in f.indices) == list(range(len(space)))


def test_fixed_point_settings_are_checked_and_force_is_on_the_format():
    net = model(fixed=True)
    params = trainable_parameters(net)
    with pytest.raises(ValueError, match="z_max"):
        FixedPointFormat(z_max=0.0)
    with pytest.raises(ValueError, match="bit width"):
        FixedPointFormat(z_bits=1)
    tiny = dict(lr=1e-9, eps=1e-9, estimator="sign", queries=3)
    with pytest.raises(UntrainableError, match="force=True"):
        ZO(params, **tiny)
    opt = ZO(params, **tiny, formats=FixedPointFormat(force=True))
    assert opt.formats[0].force
    with pytest.raises(TypeError, match="NumberFormat"):
        ZO(params, formats=["fixed"])


def test_a_native_hardware_source_gives_z_q_directly():
    _, fmt = bound(FixedPointFormat, True, directions=LFSR(bits=7, seed=5))
    assert fmt.zf.native and fmt.zf.one == round(1 / fmt.zf.dz)
