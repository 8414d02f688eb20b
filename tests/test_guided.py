"""Momentum-guided sampling: the formula bit for bit, its moments, the Directions contract, resume."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO
from edgezo.directions import Gaussian, Pool, Rademacher
from edgezo.directions.guided import MomentumGuided, Ramp, quantize_history
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats.fixedpoint import ZFormat

DIM = 10_007
BASES = {
    "gaussian": lambda: Gaussian(seed=3),
    "rademacher": lambda: Rademacher(seed=3),
    "pool": lambda: Pool(size=4099, seed=3),
}


def f32(x):
    return torch.tensor(x, dtype=torch.float32)


def with_history(base="gaussian", alpha=0.5, beta=0.5, queries=2, steps=2):
    """A bound source whose history has been committed ``steps`` times (non-trivial ``h``)."""
    g = MomentumGuided(BASES[base](), alpha=alpha, beta=beta).bind(DIM, queries)
    for s in range(steps):
        g.commit(s)
    return g


def noise(base, step, query, queries=2):
    """The base's two noises of perturbation ``(step, query)``, from an independent instance."""
    b = BASES[base]().bind(DIM, 2 * queries)
    return b.sample(step, 2 * query, 0, DIM), b.sample(step, 2 * query + 1, 0, DIM)


# -- the formula ---------------------------------------------------------------
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("alpha", [0.5, 0.2, 1.0])
def test_beta_one_is_scaled_base_noise_exactly(base, alpha):
    g = with_history(base, alpha=alpha, beta=1.0)
    n1, _ = noise(base, 7, 1)
    assert torch.equal(g.sample(7, 1, 0, DIM), n1 * f32(math.sqrt(alpha)))


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("alpha", [0.5, 0.0])
def test_beta_zero_is_history_plus_noise(base, alpha):
    g = with_history(base, alpha=0.5, beta=0.7)  # build a history with some beta...
    g.beta, g.alpha = 0.0, alpha  # ...then look at the pure-history end
    h = g.history.clone()
    _, n2 = noise(base, 9, 0)
    expected = h.float() * f32(3.5 / 127) + n2 * f32(math.sqrt(1 - alpha))
    assert torch.equal(g.sample(9, 0, 0, DIM), expected)
    # and against float64 arithmetic
    ref = h.double() * 3.5 / 127 + math.sqrt(1 - alpha) * n2.double()
    assert torch.allclose(g.sample(9, 0, 0, DIM).double(), ref, rtol=1e-6, atol=1e-6)


def test_general_beta_matches_the_formula_in_float64():
    alpha, beta = 0.3, 0.6
    g = with_history("gaussian", alpha, beta)
    n1, n2 = noise("gaussian", 4, 1)
    h = g.history.double() * 3.5 / 127
    ref = beta * math.sqrt(alpha) * n1.double() + (1 - beta) * (h + math.sqrt(1 - alpha) * n2)
    assert torch.allclose(g.sample(4, 1, 0, DIM).double(), ref, rtol=1e-6, atol=1e-6)


def test_conditional_mean_and_variance_match_the_formula():
    n, alpha, beta = 400_000, 0.3, 0.4
    g = MomentumGuided(Gaussian(seed=11), alpha=alpha, beta=0.5).bind(n)
    g.commit(0)  # a history z_t with roughly unit variance... (0.5**2 * 0.3 + 0.25 * 0.7)
    g.beta = beta
    zt = g.history.double() * 3.5 / 127
    z = g.sample(1, 0, 0, n).double()
    resid = z - (1 - beta) * zt  # z_{t+1} - E[z_{t+1} | z_t]
    var = beta**2 * alpha + (1 - beta) ** 2 * (1 - alpha)
    assert abs(float(resid.mean())) < 4 * math.sqrt(var / n)
    assert abs(float(resid.var()) / var - 1) < 0.02
    # the slope of z_{t+1} on z_t is 1 - beta; the residual is uncorrelated with z_t
    slope = float((z * zt).sum() / (zt * zt).sum())
    assert abs(slope - (1 - beta)) < 0.01
    assert abs(float(torch.corrcoef(torch.stack([resid, zt]))[0, 1])) < 0.01


def test_commit_stores_query_zero_as_8_bits_and_next_step_uses_it():
    g = MomentumGuided(Gaussian(seed=1), alpha=0.5, beta=0.5).bind(DIM, 3)
    assert g.history.dtype == torch.int8 and g.history.numel() == DIM
    assert g.bytes_per_weight() == 1.0 and not g.history.any()
    z0 = g.sample(0, 0, 0, DIM)
    g.commit(0)
    assert torch.equal(g.history, quantize_history(z0, 3.5 / 127))
    assert torch.equal(g.history.long(), torch.round(z0 / (3.5 / 127)).clamp(-127, 127).long())
    assert g.last == 0
    with pytest.raises(ValueError, match="cannot regenerate"):
        g.sample(0, 0, 0, 5)
    fresh = MomentumGuided(Gaussian(seed=1), alpha=0.5, beta=0.5).bind(DIM, 3)
    assert not torch.equal(g.sample(1, 2, 0, DIM), fresh.sample(1, 2, 0, DIM))


def test_ramp_schedule_starts_at_pure_noise():
    ramp = Ramp(final=0.25, steps=3, start=1)
    assert [ramp(s) for s in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.25]
    g = MomentumGuided(Gaussian(seed=3), alpha=0.5, beta=ramp).bind(DIM)
    g.commit(0)
    n1, _ = noise("gaussian", 0, 0, queries=1)
    # step 0 had beta = 1: its z (now the history) is pure noise
    assert torch.equal(g.history, quantize_history(n1 * f32(math.sqrt(0.5)), 3.5 / 127))
    assert g.beta_at(2) == 0.5 and g.config()["beta"]["type"] == "Ramp"
    with pytest.raises(ValueError, match="beta"):
        MomentumGuided(Gaussian(), beta=lambda s: 1.5).bind(5).sample(0, 0, 0, 5)


def test_bad_configurations_fail_clearly():
    with pytest.raises(ValueError, match="alpha"):
        MomentumGuided(Gaussian(), alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        MomentumGuided(Gaussian(), beta=-0.1)
    with pytest.raises(ValueError, match="Ramp|final"):
        Ramp(final=2.0)
    with pytest.raises(TypeError, match="Directions|directions"):
        MomentumGuided("gaussian")
    with pytest.raises(RuntimeError, match="bind"):
        MomentumGuided(Gaussian()).sample(0, 0, 0, 3)


# -- the Directions contract ------------------------------------------------------
@pytest.mark.parametrize("base", BASES)
@settings(max_examples=20, deadline=None)
@given(
    step=st.integers(2, 10**6),
    query=st.integers(0, 1),
    offset=st.integers(0, DIM - 1),
    beta=st.sampled_from([0.0, 0.3, 1.0]),
    data=st.data(),
)
def test_numbers_do_not_depend_on_chunking(base, step, query, offset, beta, data):
    n = data.draw(st.integers(1, DIM - offset))
    g = with_history(base, alpha=0.4, beta=0.5)
    g.beta = beta
    whole = g.sample(step, query, 0, DIM)
    assert torch.equal(g.sample(step, query, offset, n), whole[offset : offset + n])
    again = with_history(base, alpha=0.4, beta=0.5)
    again.beta = beta
    assert torch.equal(again.sample(step, query, offset, n), whole[offset : offset + n])


def test_dtype_and_device_arguments():
    g = with_history()
    z = g.sample(3, 1, 10, 100)
    z64 = g.sample(3, 1, 10, 100, dtype=torch.float64, device="cpu")
    assert z64.dtype == torch.float64 and torch.equal(z64, z.double())


def test_state_dict_round_trip_restores_history_and_step():
    g = with_history(steps=3)
    state = g.state_dict()
    z = g.sample(5, 0, 0, DIM)
    g.commit(5)
    assert not torch.equal(state["history"], g.history)  # the state is a copy
    other = MomentumGuided(Gaussian(seed=3), alpha=0.5, beta=0.5).bind(DIM, 2)
    other.load_state_dict(state)
    assert other.last == 2 and torch.equal(other.sample(5, 0, 0, DIM), z)
    wrong = MomentumGuided(Gaussian(seed=4), alpha=0.5, beta=0.5).bind(DIM, 2)
    with pytest.raises(ValueError, match="directions"):
        wrong.load_state_dict(state)


# -- through the optimizer ----------------------------------------------------------
def problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(6, 3, generator=g)
    xs = [torch.randn(16, 6, generator=g) for _ in range(30)]
    return model, [(x, (x @ teacher).argmax(1)) for x in xs]


def fixed(model, batches):
    return quantize_model(model, 16, 8, calibration=[x for x, _ in batches[:4]])


def train(model, opt, batches):
    for x, y in batches:
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))


def make_opt(params):
    directions = MomentumGuided(Gaussian(seed=5), alpha=0.5, beta=Ramp(final=0.5, steps=5))
    return ZO(params, lr=1e-2, eps=1e-3, directions=directions, estimator="sign", queries=2)


@torch.no_grad()
def full_loss(model, batches):
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    return float(F.cross_entropy(model(x), y))


def state(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
def test_resume_through_zo_state_dict_is_bit_exact(fixed_point):
    model, batches = problem()
    if fixed_point:
        model = fixed(model, batches)
    params = lambda m: trainable_parameters(m) if fixed_point else list(m.parameters())  # noqa: E731
    opt = make_opt(params(model))
    train(model, opt, batches[:12])
    assert opt.directions.history.any()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, batches[12:])
    straight = state(model)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    # fixed point: the scales dw are not in model.state_dict(), so requantize the same float model
    model2, _ = problem(seed=0 if fixed_point else 7)
    if fixed_point:
        model2 = fixed(model2, batches)
    model2.load_state_dict(saved["model"])
    opt2 = make_opt(params(model2))
    opt2.load_state_dict(saved["opt"])
    assert torch.equal(opt2.directions.history, saved["opt"]["zo"]["directions"]["history"])
    train(model2, opt2, batches[12:])
    assert all(torch.equal(a, b) for a, b in zip(state(model2), straight, strict=True))
    assert torch.equal(opt2.directions.history, opt.directions.history)


def test_fixed_point_history_is_the_z_q_the_integer_path_used():
    model, batches = problem()
    model = fixed(model, batches)
    opt = make_opt(trainable_parameters(model))
    train(model, opt, batches[:6])
    zf = ZFormat.of(opt.directions)
    z_q = zf.integers(opt.directions, opt.steps, 0, 0, opt.space.dim)
    train(model, opt, batches[6:7])
    assert torch.equal(opt.directions.history.to(torch.int32), z_q)


def test_seed_replay_momentum_is_refused_when_the_optimizer_is_built():
    """Fail fast (issue 13, defect 2): not at step 1 with "history has moved on"."""
    from edgezo.updates import KernelNormalized, Momentum

    model, _ = problem()
    for kwargs in ({"momentum": 0.9, "history": 3}, {"update": KernelNormalized(Momentum(0.9, 3))}):
        directions = MomentumGuided(Gaussian(seed=5), beta=0.5)
        with pytest.raises(ValueError, match=r"replays past directions.*MomentumGuided.*momentum="):
            ZO(model.parameters(), lr=1e-2, directions=directions, **kwargs)
    ZO(model.parameters(), lr=1e-2, directions=MomentumGuided(Gaussian(seed=5)))  # SGD: fine


@pytest.mark.parametrize("fixed_point", [False, True], ids=["float", "fixed16"])
def test_training_with_guided_sampling_lowers_the_loss(fixed_point):
    model, batches = problem()
    if fixed_point:
        model = fixed(model, batches)
    params = trainable_parameters(model) if fixed_point else list(model.parameters())
    opt = make_opt(params)
    before = full_loss(model, batches)
    for _ in range(3):
        train(model, opt, batches)
    assert full_loss(model, batches) < before - 0.05


@pytest.mark.parametrize("kwargs", [{"alpha": True}, {"beta": True}, {"z_max": True}])
def test_bools_are_refused_for_the_guided_settings(kwargs):
    with pytest.raises(ValueError, match="Invalid"):
        MomentumGuided(Gaussian(0), **kwargs)
