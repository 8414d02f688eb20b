"""The ZO optimizer: determinism, resume, failure safety, update rules, configuration errors."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO
from edgezo.directions import LFSR, Gaussian, Pool, Rademacher, RNGArray
from edgezo.presets import mezo, pezo


def problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(6, 3, generator=g)
    xs = [torch.randn(16, 6, generator=g) for _ in range(40)]
    return model, [(x, (x @ teacher).argmax(1)) for x in xs]


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def train(model, opt, batches):
    for x, y in batches:
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))


CONFIGS = {
    "mezo": lambda ps: mezo(ps, lr=1e-2, seed=1),
    "pezo-pool": lambda ps: pezo(ps, lr=1e-2, seed=1, pool_size=997),
    "pezo-array": lambda ps: pezo(ps, lr=1e-2, seed=1, reuse="array", rngs=4),
    "momentum": lambda ps: ZO(ps, lr=1e-2, directions=Rademacher(1), momentum=0.9, history=4),
    "forward-q3": lambda ps: ZO(
        ps, lr=1e-2, directions=Gaussian(1), estimator="forward", queries=3
    ),
    "sign-wd": lambda ps: ZO(
        ps, lr=1e-3, directions=LFSR(seed=5), estimator="sign", queries=3, weight_decay=0.1
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_same_seed_same_weights_bit_for_bit(name):
    runs = []
    for _ in range(2):
        model, batches = problem()
        train(model, CONFIGS[name](model.parameters()), batches)
        runs.append(weights(model))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    model, _ = problem()
    assert not all(torch.equal(a, b) for a, b in zip(weights(model), runs[0], strict=True))


@pytest.mark.parametrize("name", CONFIGS)
def test_resume_from_checkpoint_is_bit_exact(name):
    model, batches = problem()
    opt = CONFIGS[name](model.parameters())
    train(model, opt, batches[:20])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, batches[20:])
    straight = weights(model)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # a checkpoint is plain data
    model2, _ = problem(seed=7)  # different init: everything must come from the checkpoint
    model2.load_state_dict(saved["model"])
    opt2 = CONFIGS[name](model2.parameters())
    opt2.load_state_dict(saved["opt"])
    train(model2, opt2, batches[20:])
    assert all(torch.equal(a, b) for a, b in zip(weights(model2), straight, strict=True))
    assert opt2.steps == opt.steps == 40


def test_loading_a_checkpoint_of_another_source_fails_clearly():
    model, _ = problem()
    state = ZO(model.parameters(), directions=Pool(997, seed=1)).state_dict()
    with pytest.raises(ValueError, match="same direction source"):
        ZO(model.parameters(), directions=Pool(997, seed=2)).load_state_dict(state)
    other = torch.nn.Linear(6, 3)
    with pytest.raises(ValueError, match="do not match"):
        ZO(other.parameters(), directions=Pool(997, seed=1)).load_state_dict(state)


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units of the last place of float32 values (via their ordered bit patterns)."""

    def ordered(t):
        i = t.float().view(torch.int32).long()
        return torch.where(i < 0, -(i & 0x7FFFFFFF), i)

    return (ordered(a) - ordered(b)).abs()


@pytest.mark.parametrize("where", ["plus", "minus"])
def test_non_finite_loss_skips_the_update_and_restores_the_weights(where):
    model, batches = problem()
    opt = ZO(model.parameters(), lr=10.0, eps=1e-3, directions=Gaussian(0))
    x, y = batches[0]
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        bad = (where == "plus" and calls == 1) or (where == "minus" and calls == 2)
        return torch.tensor(math.nan) if bad else F.cross_entropy(model(x), y)

    before = weights(model)
    loss = opt.step(closure)
    assert math.isnan(loss.item())
    assert opt.skipped == 1 and opt.steps == 1
    # perturb + restore in float32 is exact up to rounding: at most 2 ulps of drift
    # (the README's table gives the measured distribution)
    drift = max(int(ulps(a, b).max()) for a, b in zip(weights(model), before, strict=True))
    assert drift <= 2
    train(model, opt, batches[1:3])  # and training goes on
    assert opt.skipped == 1


def test_an_exception_in_the_closure_leaves_the_weights_as_they_were():
    model, batches = problem()
    opt = ZO(model.parameters(), lr=10.0, directions=Pool(997, seed=0), queries=2)
    x, y = batches[0]
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        if calls == 3:  # second query, weights perturbed along z_1
            raise KeyboardInterrupt
        return F.cross_entropy(model(x), y)

    before = weights(model)
    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    drift = max(int(ulps(a, b).max()) for a, b in zip(weights(model), before, strict=True))
    assert drift <= 2
    assert opt.steps == 0


def test_lr_zero_round_trips_are_bounded_in_ulps():
    """lr = 0: many perturb/restore cycles drift by a few ulps at most (float32)."""
    model, batches = problem()
    opt = ZO(model.parameters(), lr=0.0, eps=1e-3, directions=Gaussian(0))
    before = weights(model)
    train(model, opt, batches * 5)  # 200 steps, 600 passes
    d = torch.cat([ulps(a, b).flatten() for a, b in zip(weights(model), before, strict=True)])
    # each cycle rounds by about an ulp either way: a random walk, ~sqrt(steps) ulps.
    # A restore that missed by a fraction of eps * z would be ~10^4 ulps away.
    assert int(d.max()) <= 4 * math.sqrt(200)


def test_momentum_replay_matches_a_buffered_reference():
    """Truncated heavy ball from seed replay == the same update with explicit z vectors."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(30, dtype=torch.float64))
    target = torch.randn(30, dtype=torch.float64)

    def closure():
        return ((w - target) ** 2).sum() + (w**4).sum() * 0.01

    beta, history, lr, steps = 0.8, 3, 0.01, 12
    src = Rademacher(seed=9)
    opt = ZO([w], lr=lr, directions=src, estimator="jvp", momentum=beta, history=history)

    ref = w.detach().clone()
    past = []  # (coefficient, z) newest first
    for t in range(steps):
        opt.step(closure)
        z = src.sample(t, 0, 0, 30, dtype=torch.float64)
        grad = 2 * (ref - target) + 0.04 * ref**3
        past.insert(0, (float(grad @ z), z))
        past = past[:history]
        ref = ref - lr * sum(beta**k * c * z_k for k, (c, z_k) in enumerate(past))
    torch.testing.assert_close(w.detach(), ref, rtol=1e-10, atol=1e-12)


def test_several_queries_average_their_directions():
    w = torch.nn.Parameter(torch.linspace(-1, 1, 25, dtype=torch.float64))

    def closure():
        return (torch.sin(w) * w).sum()

    src = Gaussian(seed=2)
    q, lr = 4, 0.1
    before = w.detach().clone()
    ZO([w], lr=lr, directions=src, estimator="jvp", queries=q).step(closure)
    grad = torch.sin(before) + before * torch.cos(before)
    zs = [src.sample(0, i, 0, 25, dtype=torch.float64) for i in range(q)]
    expected = before - lr * sum(float(grad @ z) * z for z in zs) / q
    torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=1e-6)


def test_weight_decay_is_decoupled():
    w = torch.nn.Parameter(torch.full((10,), 2.0))
    opt = ZO([w], lr=0.1, weight_decay=0.5, directions=Gaussian(0))
    opt.step(lambda: torch.tensor(1.0))  # flat loss: only the decay moves w
    torch.testing.assert_close(w.detach(), torch.full((10,), 2.0 * (1 - 0.05)))


def test_masked_weights_are_never_perturbed_nor_changed():
    model, batches = problem()
    first = model[0].weight
    mask = (torch.rand(first.shape, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    groups = [
        {"params": [first], "masks": [mask]},
        {"params": [p for p in model.parameters() if p is not first], "lr": 0.0},
    ]
    opt = ZO(groups, lr=0.05, directions=Gaussian(0), weight_decay=0.1)
    frozen = first.detach().clone()
    seen = []

    def closure_for(x, y):
        def closure():
            seen.append(torch.equal(first.detach()[mask == 0], frozen[mask == 0]))
            return F.cross_entropy(model(x), y)

        return closure

    for x, y in batches[:10]:
        opt.step(closure_for(x, y))
    assert all(seen)  # not even perturbed
    assert torch.equal(first.detach()[mask == 0], frozen[mask == 0])
    assert not torch.equal(first.detach()[mask == 1], frozen[mask == 1])
    assert opt.space.trainable() == int(mask.sum()) + sum(
        p.numel() for p in model.parameters() if p is not first
    )


def test_groups_have_their_own_learning_rate():
    a = torch.nn.Parameter(torch.ones(5))
    b = torch.nn.Parameter(torch.ones(5))
    opt = ZO([{"params": [a]}, {"params": [b], "lr": 0.0}], lr=0.1, estimator="jvp")
    opt.step(lambda: (a**2).sum() + (b**2).sum())
    assert not torch.equal(a.detach(), torch.ones(5))
    assert torch.equal(b.detach(), torch.ones(5))


def test_step_returns_the_unperturbed_loss_for_forward_and_jvp():
    model, batches = problem()
    x, y = batches[0]
    for estimator in ["forward", "jvp"]:
        expected = F.cross_entropy(model(x), y).item()
        opt = ZO(model.parameters(), lr=0.0, estimator=estimator, directions=Gaussian(0))
        loss = opt.step(lambda: F.cross_entropy(model(x), y))
        assert loss.item() == pytest.approx(expected, rel=1e-6)
        assert loss.dtype == torch.float32


def test_the_optimizer_trains():
    model, batches = problem()
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    before = F.cross_entropy(model(x), y).item()
    opt = pezo(model.parameters(), lr=0.02, seed=0, pool_size=4099)
    train(model, opt, batches * 10)
    assert F.cross_entropy(model(x), y).item() < 0.7 * before


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"eps": 0.0}, ValueError, r"Invalid eps: 0.0; the perturbation scale must be > 0"),
        ({"eps": -1e-3}, ValueError, r"Invalid eps"),
        ({"lr": -1.0}, ValueError, r"Invalid learning rate: -1.0"),
        ({"queries": 0}, ValueError, r"Invalid number of queries: 0"),
        ({"queries": 1.5}, ValueError, r"Invalid number of queries"),
        ({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay"),
        ({"momentum": 1.0}, ValueError, r"Invalid momentum: 1.0; use 0 <= momentum < 1"),
        ({"momentum": 0.9, "history": 0}, ValueError, r"Invalid momentum history"),
        ({"estimator": "adam"}, ValueError, r"Unknown estimator 'adam'"),
        ({"directions": "gaussian"}, TypeError, r"directions must be an edgezo.directions source"),
        (
            {"directions": Pool(size=100, seed=0)},
            ValueError,
            r"size 100 divides the parameter count",
        ),
        ({"directions": RNGArray(n=4, seed=0), "queries": 0}, ValueError, r"queries"),
    ],
)
def test_bad_configuration_fails_fast(kwargs, error, message):
    w = torch.nn.Parameter(torch.zeros(10, 50))
    with pytest.raises(error, match=message):
        ZO([w], **kwargs)


def test_bad_parameters_and_closures_fail_clearly():
    with pytest.raises(TypeError, match="floating-point"):
        ZO([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match="not contiguous"):
        ZO([torch.zeros(4, 5).t()])
    w = torch.nn.Parameter(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="mask of shape"):
        ZO([{"params": [w], "masks": [torch.ones(5, 4)]}])
    opt = ZO([w], directions=Gaussian(0))
    with pytest.raises(ValueError, match="scalar loss"):
        opt.step(lambda: w.sum(0))
    # the failed step put w back: zeros +a -a leave at most the rounding of a (fused multiply-add)
    assert float(w.detach().abs().max()) <= 1e-3 * 6 * 2**-23
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()


def test_learning_rate_schedulers_drive_the_step_size():
    w = torch.nn.Parameter(torch.ones(8))
    opt = ZO([w], lr=0.1, estimator="jvp", directions=Gaussian(0))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.0)
    opt.step(lambda: (w**2).sum())
    sched.step()  # lr -> 0: the next step must not move w
    after_first = w.detach().clone()
    opt.step(lambda: (w**2).sum())
    assert torch.equal(w.detach(), after_first)


def test_param_groups_cannot_be_added_later():
    opt = ZO([torch.nn.Parameter(torch.ones(3))], directions=Gaussian(0))
    with pytest.raises(RuntimeError, match="create a new ZO optimizer"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})


def test_an_interrupt_inside_a_pass_takes_back_the_tensors_already_done():
    class Flaky(Gaussian):
        calls = 0

        def sample(self, *args, **kwargs):
            Flaky.calls += 1
            if Flaky.calls == 7:  # second pass (4 tensors a pass), after its first two tensors
                raise KeyboardInterrupt
            return super().sample(*args, **kwargs)

        def kernel_spec(self):
            return None  # no kernel spec: passes call the overridden sample (the torch path)

    model, batches = problem()
    opt = ZO(model.parameters(), lr=1.0, directions=Flaky(seed=0))
    x, y = batches[0]
    before = weights(model)
    with pytest.raises(KeyboardInterrupt):
        opt.step(lambda: F.cross_entropy(model(x), y))
    drift = max(int(ulps(a, b).max()) for a, b in zip(weights(model), before, strict=True))
    assert drift <= 2


# -- misuse during a step (issue 14) -------------------------------------------------------------
def test_frozen_parameters_are_neither_perturbed_nor_updated():
    """requires_grad=False float parameters are left alone, as torch.optim leaves them."""
    model, batches = problem()
    model[0].requires_grad_(False)  # a frozen backbone, given to ZO with everything else
    frozen = [p.detach().clone() for p in model[0].parameters()]
    trained = model[2].weight.detach().clone()
    opt = ZO(model.parameters(), lr=0.05, directions=Gaussian(0), weight_decay=0.1)
    seen = []

    def closure_for(x, y):
        def closure():
            layer = zip(model[0].parameters(), frozen, strict=True)
            seen.append(all(torch.equal(p, f) for p, f in layer))
            return F.cross_entropy(model(x), y)

        return closure

    for x, y in batches[:5]:
        opt.step(closure_for(x, y))
    assert all(seen)  # not even perturbed
    assert all(torch.equal(p, f) for p, f in zip(model[0].parameters(), frozen, strict=True))
    assert not torch.equal(model[2].weight.detach(), trained)
    assert opt.space.dim == sum(p.numel() for p in model[2].parameters())


def test_a_group_may_opt_in_to_train_frozen_parameters():
    w = torch.nn.Parameter(torch.ones(6), requires_grad=False)
    with pytest.raises(ValueError, match="requires_grad=False.*train_frozen"):
        ZO([w], directions=Gaussian(0))
    plain = torch.ones(6)  # requires_grad=False by default only: ZO needs no autograd, it trains
    ZO([plain], lr=0.1, directions=Gaussian(0)).step(lambda: (plain**2).sum())
    assert not torch.equal(plain, torch.ones(6))
    opt = ZO([{"params": [w], "train_frozen": True}], lr=0.1, directions=Gaussian(0))
    opt.step(lambda: (w**2).sum())
    assert not torch.equal(w, torch.ones(6))


def swapped(conversion):
    """Run a module conversion with torch's ``swap_module_params_on_conversion`` future set."""
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        conversion()
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: setattr(m[0].weight, "data", m[0].weight.data.clone()),
        lambda m: m.half(),
        lambda m: m.double(),
        lambda m: setattr(m[0].weight, "data", m[0].weight.data.clone().view(-1)),
        lambda m: swapped(m.double),
    ],
    ids=["new-storage", "half", "double", "reshaped-copy", "swap-tensors"],
)
def test_a_parameter_replaced_after_construction_fails_clearly(change):
    model, batches = problem()
    opt = ZO(model.parameters(), lr=0.05, directions=Gaussian(0))
    change(model)
    x, y = batches[0]
    with pytest.raises(RuntimeError, match="changed since the optimizer was built.*new ZO"):
        opt.step(lambda: F.cross_entropy(model(x.to(model[0].weight.dtype)), y))
    assert opt.steps == 0


def test_in_place_changes_of_the_values_are_fine():
    model, batches = problem()
    opt = ZO(model.parameters(), lr=0.05, directions=Gaussian(0))
    model.load_state_dict(problem(seed=3)[0].state_dict())  # copies into the same storage
    train(model, opt, batches[:2])
    assert opt.steps == 2


@pytest.mark.parametrize("estimator", ["central", "forward", "jvp"])
def test_a_closure_that_writes_the_weights_fails_clearly(estimator):
    model, batches = problem()
    opt = ZO(model.parameters(), lr=0.05, directions=Gaussian(0), estimator=estimator)
    x, y = batches[0]
    before = weights(model)

    def closure():
        loss = F.cross_entropy(model(x), y)
        model[2].bias.detach().zero_()  # e.g. a constraint applied inside the closure
        return loss

    with pytest.raises(RuntimeError, match="closure changed the weights"):
        opt.step(closure)
    assert opt.steps == 0
    # our perturbations are taken back; only the closure's own write remains
    for p, b in zip(list(model.parameters())[:3], before[:3], strict=True):
        assert int(ulps(p.detach(), b).max()) <= 2
    # the closure's zeros remain, minus the perturbation they replaced: |eps z| < 0.01
    assert float(model[2].bias.detach().abs().max()) < 0.01


@pytest.mark.parametrize("spike", [20.0, 500.0])
def test_fp16_loss_spikes_update_without_overflowing(spike):
    """lr 1e-2, eps 1e-3: |L+ - L-| > 13 gave lr c / eps > 65504, past float16's range."""
    runs = {}
    for dtype in (torch.float16, torch.float32):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 50).to(torch.float16).to(dtype))
        opt = ZO([w], lr=1e-2, eps=1e-3, directions=Gaussian(0))
        calls = 0

        def closure(w=w):
            nonlocal calls
            calls += 1
            return (w.float() ** 2).sum() + (spike if calls == 1 else 0.0)

        opt.step(closure)
        assert opt.skipped == 0
        runs[dtype] = w.detach().float()
    assert bool(runs[torch.float16].isfinite().all())
    torch.testing.assert_close(runs[torch.float16], runs[torch.float32], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("failure", ["nan", "inf"])
def test_a_skipped_step_applies_no_weight_decay(failure):
    w = torch.nn.Parameter(torch.full((10,), 2.0))
    opt = ZO([w], lr=0.1, weight_decay=0.5, directions=Gaussian(0))
    opt.step(lambda: torch.tensor(float(failure)))
    assert opt.skipped == 1
    assert int(ulps(w.detach(), torch.full((10,), 2.0)).max()) <= 2  # not 2 * (1 - 0.05)


FLOATS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SOURCES = {"gaussian": Gaussian, "rademacher": Rademacher, "pool": lambda seed: Pool(4099, seed)}


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(sorted(FLOATS)),
    source=st.sampled_from(sorted(SOURCES)),
    estimator=st.sampled_from(["central", "forward", "sign"]),
    queries=st.integers(1, 3),
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    scale=st.sampled_from([0.0, 1e-3, 0.05, 1.0, 30.0]),
    eps=st.sampled_from([1e-4, 1e-3, 1e-2]),
    seed=st.integers(0, 2**16),
    fail_at=st.integers(1, 7),
    how=st.sampled_from(["nan", "inf", "raise"]),
)
def test_a_failed_step_puts_float_weights_back_within_the_documented_bound(
    dtype, source, estimator, queries, shape, scale, eps, seed, fail_at, how
):
    """README: |w' - w| <= 2 q (finfo.eps (|w| + max_i |eps z_i|) + finfo.tiny finfo.eps)."""
    g = torch.Generator().manual_seed(seed)
    init = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(FLOATS[dtype])
    w = torch.nn.Parameter(init.clone())
    source = SOURCES[source](seed)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # an eps below some weights' ulp: still bounded
        try:
            opt = ZO([w], lr=1.0, eps=eps, directions=source, estimator=estimator, queries=queries)
        except ValueError:  # an eps below every weight's ulp is refused: no step to put back
            return
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        if calls == fail_at:
            if how == "raise":
                raise KeyboardInterrupt
            return torch.tensor(float(how))
        return (w.double() ** 2).sum()

    with contextlib.suppress(KeyboardInterrupt):
        opt.step(closure)
    if calls < fail_at:  # the step ended before the failure: nothing to check
        return
    z = (
        torch.stack(
            [opt.directions.sample(0, i, 0, w.numel(), dtype=torch.float64) for i in range(queries)]
        )
        .abs()
        .amax(0)
        .view(shape)
    )
    info = torch.finfo(FLOATS[dtype])
    bound = 2 * queries * (info.eps * (init.double().abs() + eps * z) + info.tiny * info.eps)
    drift = (w.detach().double() - init.double()).abs()
    assert bool((drift <= bound).all()), float((drift / bound).max())
    assert bool((drift[init == 0] == 0).all())  # zeros come back exactly (+a, -2a, +a are exact)
