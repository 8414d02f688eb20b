"""ZO checkpoints: a checkpoint resumes only the optimizer it was written by, or says why not.

``load_state_dict`` compares every setting that changes the numbers (estimator,
queries, eps, direction source, update rule, masks, number formats) and raises one
error listing every difference; lr and weight_decay are restored from the checkpoint
(training state under a schedule, as in ``torch.optim``). A malformed checkpoint gets a
``ValueError`` naming the field.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO
from edgezo.directions import Gaussian, Pool
from edgezo.fixedpoint import FixedPointFormat, quantize_model, trainable_parameters
from edgezo.updates import KernelNormalized, Momentum


def problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    g = torch.Generator().manual_seed(100 + seed)
    xs = [torch.randn(16, 6, generator=g) for _ in range(6)]
    return model, [(x, x.sum(1).gt(0).long()) for x in xs]


def train(model, opt, batches):
    for x, y in batches:
        opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))


def saved(opt):
    """``opt.state_dict()`` through ``torch.save`` / ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_other_eps_and_queries_are_refused_in_one_error_naming_both():
    model, batches = problem()
    opt = ZO(model.parameters(), lr=1e-2, eps=1e-3, queries=3, directions=Pool(997, seed=0))
    train(model, opt, batches[:2])
    other = ZO(model.parameters(), lr=1e-2, eps=1e-2, queries=1, directions=Pool(997, seed=0))
    with pytest.raises(ValueError) as info:
        other.load_state_dict(saved(opt))
    message = str(info.value)
    assert "eps=0.001" in message and "eps=0.01" in message
    assert "queries=3" in message and "queries=1" in message
    assert "build the optimizer with the checkpoint's settings" in message
    assert other.eps == 1e-2 and other.queries == 1 and other.steps == 0  # nothing loaded


def test_a_refused_checkpoint_changes_nothing():
    model, batches = problem()
    opt = ZO(model.parameters(), lr=1e-2, momentum=0.9, directions=Gaussian(0))
    train(model, opt, batches[:2])
    other = ZO(model.parameters(), lr=5e-2, momentum=0.5, directions=Gaussian(0))
    with pytest.raises(ValueError, match="beta"):
        other.load_state_dict(saved(opt))
    assert other.param_groups[0]["lr"] == 5e-2 and other.steps == 0
    assert other.update_rule.state_dict() == {"past": []}


def test_momentum_checkpoint_into_plain_sgd_and_back_is_refused():
    model, batches = problem()
    momentum = ZO(model.parameters(), lr=1e-2, momentum=0.9, directions=Gaussian(0))
    plain = ZO(model.parameters(), lr=1e-2, directions=Gaussian(0))
    train(model, momentum, batches[:2])
    with pytest.raises(ValueError, match="Momentum.*SGD|SGD.*Momentum"):
        plain.load_state_dict(saved(momentum))
    with pytest.raises(ValueError, match="Momentum.*SGD|SGD.*Momentum"):
        momentum.load_state_dict(saved(plain))


def test_update_rule_settings_are_compared():
    model, _ = problem()
    a = ZO(model.parameters(), momentum=0.9, history=4, directions=Gaussian(0))
    b = ZO(model.parameters(), momentum=0.9, history=8, directions=Gaussian(0))
    with pytest.raises(ValueError, match="history"):
        b.load_state_dict(saved(a))
    c = ZO(model.parameters(), update=KernelNormalized(), directions=Gaussian(0))
    d = ZO(model.parameters(), update=KernelNormalized(Momentum(0.9, 4)), directions=Gaussian(0))
    with pytest.raises(ValueError, match="update"):
        d.load_state_dict(saved(c))


def test_estimator_and_source_differences_are_listed_together():
    model, _ = problem()
    a = ZO(model.parameters(), estimator="forward", directions=Pool(997, seed=1))
    b = ZO(model.parameters(), estimator="central", directions=Pool(997, seed=2))
    with pytest.raises(ValueError) as info:
        b.load_state_dict(saved(a))
    assert "estimator" in str(info.value) and "directions" in str(info.value)
    assert "same direction source" in str(info.value)


def masked_groups(model, keep_first):
    masks = []
    for p in model.parameters():
        m = torch.zeros_like(p).reshape(-1)
        m[:keep_first] = 1
        masks.append(m.reshape(p.shape))
    return [{"params": list(model.parameters()), "masks": masks}]


def test_masks_are_compared_by_count_and_hash():
    model, batches = problem()
    a = ZO(masked_groups(model, 3), lr=1e-2, directions=Gaussian(0))
    train(model, a, batches[:1])
    state = saved(a)
    assert state["zo"]["settings"]["masks"][0]["ones"] == 3
    with pytest.raises(ValueError, match="masks"):
        ZO(masked_groups(model, 4), lr=1e-2, directions=Gaussian(0)).load_state_dict(state)
    with pytest.raises(ValueError, match="masks"):
        ZO(model.parameters(), lr=1e-2, directions=Gaussian(0)).load_state_dict(state)
    # the same count at other positions: the hash tells them apart
    groups = masked_groups(model, 3)
    groups[0]["masks"][0] = groups[0]["masks"][0].flip(0)
    with pytest.raises(ValueError, match="masks"):
        ZO(groups, lr=1e-2, directions=Gaussian(0)).load_state_dict(state)
    ZO(masked_groups(model, 3), lr=1e-2, directions=Gaussian(0)).load_state_dict(state)


def quantized():
    torch.manual_seed(0)
    return quantize_model(torch.nn.Linear(6, 3), activation_bits=None)


def test_fixed_point_format_settings_are_recorded_and_compared():
    net = quantized()
    a = ZO(
        trainable_parameters(net), lr=1e-2, eps=1e-2, estimator="sign",
        directions=Gaussian(0), formats=FixedPointFormat(z_bits=8, z_max=3.5),
    )  # fmt: skip
    state = saved(a)
    assert state["zo"]["settings"]["formats"][0]["z_bits"] == 8
    b = ZO(
        trainable_parameters(net), lr=1e-2, eps=1e-2, estimator="sign",
        directions=Gaussian(0), formats=FixedPointFormat(z_bits=6, z_max=3.5),
    )  # fmt: skip
    with pytest.raises(ValueError, match="z_bits"):
        b.load_state_dict(state)
    c = ZO(trainable_parameters(net), lr=1e-2, eps=2e-2, estimator="sign", directions=Gaussian(0))
    with pytest.raises(ValueError, match="eps"):
        c.load_state_dict(state)


def test_lr_and_weight_decay_are_restored_from_the_checkpoint():
    """As in torch.optim: a schedule's lr is training state, not a setting."""
    model, batches = problem()
    a = ZO(model.parameters(), lr=1e-2, weight_decay=0.1, directions=Gaussian(0))
    train(model, a, batches[:1])
    a.param_groups[0]["lr"] = 3e-3  # as a scheduler would
    b = ZO(model.parameters(), lr=1.0, weight_decay=0.0, directions=Gaussian(0))
    b.load_state_dict(saved(a))
    assert b.param_groups[0]["lr"] == 3e-3 and b.param_groups[0]["weight_decay"] == 0.1
    assert b.steps == 1


@pytest.mark.parametrize(
    "corrupt, field",
    [
        (lambda s: s["zo"].pop("steps"), "steps"),
        (lambda s: s["zo"].pop("eps"), "eps"),
        (lambda s: s["zo"].pop("directions"), "directions"),
        (lambda s: s["zo"].__setitem__("steps", "3"), "steps"),
        (lambda s: s["zo"].__setitem__("queries", 1.5), "queries"),
        (lambda s: s.pop("param_groups"), "param_groups"),
        (lambda s: s["param_groups"][0].pop("lr"), "lr"),
        (lambda s: s["param_groups"][0].__setitem__("lr", "big"), "lr"),
        (lambda s: s["zo"]["update"].pop("past"), "past"),
        (lambda s: s["zo"]["settings"].pop("update"), "update"),
    ],
)
def test_a_malformed_checkpoint_gets_a_value_error_naming_the_field(corrupt, field):
    model, batches = problem()
    opt = ZO(model.parameters(), lr=1e-2, momentum=0.9, directions=Gaussian(0))
    train(model, opt, batches[:2])
    state = saved(opt)
    corrupt(state)
    fresh = ZO(model.parameters(), lr=1e-2, momentum=0.9, directions=Gaussian(0))
    with pytest.raises(ValueError, match=field):
        fresh.load_state_dict(state)
    assert fresh.steps == 0


@pytest.mark.parametrize("thing", [None, [], "checkpoint.pt", {"state": {}}, {"zo": 3}])
def test_not_a_zo_checkpoint_is_refused_clearly(thing):
    model, _ = problem()
    with pytest.raises(ValueError, match="ZO"):
        ZO(model.parameters()).load_state_dict(thing)


def legacy(state):
    """A checkpoint as edgezo wrote it before settings were recorded (CHECKPOINT_FORMAT 1)."""
    state = copy.deepcopy(state)
    state["zo"].pop("settings")
    state["zo"].pop("version")
    return state


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_checkpoint_written_before_settings_were_recorded_still_resumes_bit_exactly(momentum):
    model, batches = problem()
    opt = ZO(model.parameters(), lr=1e-2, momentum=momentum, directions=Gaussian(0))
    train(model, opt, batches[:3])
    weights, state = copy.deepcopy(model.state_dict()), legacy(saved(opt))
    train(model, opt, batches[3:])
    straight = [p.detach().clone() for p in model.parameters()]

    model.load_state_dict(weights)
    again = ZO(model.parameters(), lr=1e-2, momentum=momentum, directions=Gaussian(0))
    with pytest.warns(UserWarning, match="before"):
        again.load_state_dict(state)
    train(model, again, batches[3:])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), straight, strict=True))


def test_a_legacy_checkpoint_still_refuses_what_it_records():
    model, batches = problem()
    opt = ZO(model.parameters(), eps=1e-3, momentum=0.9, directions=Gaussian(0))
    train(model, opt, batches[:2])
    state = legacy(saved(opt))
    with pytest.raises(ValueError, match="eps"):
        ZO(model.parameters(), eps=1e-2, momentum=0.9, directions=Gaussian(0)).load_state_dict(
            state
        )
    with pytest.raises(ValueError, match="Momentum"):  # the update state tells them apart
        ZO(model.parameters(), eps=1e-3, directions=Gaussian(0)).load_state_dict(state)


def test_a_gaussian_resume_on_the_other_executor_warns(monkeypatch):
    """The compiled loop and torch's erfinv agree within ulps, not bit for bit: the
    checkpoint says which made its z, and a resume on the other one warns (Pool: nothing)."""
    import warnings

    from edgezo import passes

    if passes.compiled.library() is None:
        pytest.fail("the compiled passes did not build (a C compiler is part of the test setup)")
    for source, recorded in ((Gaussian(seed=1), "compiled CPU loop"), (Pool(1021, seed=1), None)):
        model, batches = problem()
        opt = ZO(model.parameters(), lr=1e-2, eps=1e-3, directions=source)
        train(model, opt, batches[:2])
        state = saved(opt)
        assert (recorded is None) == (state["zo"]["numerics"] is None)
        assert recorded is None or recorded in state["zo"]["numerics"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # same executor: silent
            ZO(model.parameters(), lr=1e-2, eps=1e-3, directions=source).load_state_dict(state)
        monkeypatch.setattr(passes, "mode", "off")
        resumed = ZO(model.parameters(), lr=1e-2, eps=1e-3, directions=source)
        if recorded is None:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                resumed.load_state_dict(state)
        else:
            with pytest.warns(UserWarning, match="not bit-identically"):
                resumed.load_state_dict(state)
        monkeypatch.setattr(passes, "mode", "auto")
