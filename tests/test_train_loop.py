"""edgezo.train.loop: fit against hand-written loops, bit-exact resume, interruptions, logs, snapshots."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgezo import ZO, presets
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.train import (
    EpochSampler,
    fit,
    flat_weights,
    warmup_cosine,
)

N, FEATURES, CLASSES = 96, 4, 3


def _data(n: int = N, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    w = torch.randn(FEATURES, CLASSES, generator=g)
    return x, (x @ w).argmax(1)


def _mlp(dropout: float = 0.2) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Linear(FEATURES, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, CLASSES)
        )


def _batches(n: int, batch_size: int, seed: int, steps: int) -> list[Tensor]:
    """fit's batch order (test_train_sampler checks it against the documented order)."""
    sampler = EpochSampler(n, batch_size, seed)
    return [sampler.next() for _ in range(steps)]


def _equal_states(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- fit against hand-written loops ------------------------------------------------------------
def test_backprop_fit_equals_a_plain_sgd_loop_bit_for_bit():
    x, y = _data()
    steps, batch, seed = 25, 16, 3
    model = _mlp()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), steps=steps,
        batch_size=batch, seed=seed, progress=False)  # fmt: skip

    ref = _mlp()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # fit seeds the model's own randomness (dropout) with seed
        for idx in _batches(N, batch, seed, steps):
            opt.zero_grad()
            F.cross_entropy(ref(x[idx]), y[idx]).backward()
            opt.step()
    assert _equal_states(model, ref)


def test_backprop_fit_reaches_the_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(64, 1, generator=g)
    model = nn.Linear(3, 1)
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.2), (x, y), steps=300,
                 batch_size=64, loss_fn=F.mse_loss, eval_sets={"train": (x, y)},
                 progress=False)  # fmt: skip
    design = torch.cat([x, torch.ones(64, 1)], 1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution.squeeze(1)
    got = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()]).double()
    assert torch.allclose(got, solution, atol=1e-4)
    assert set(result.final["train"]) == {"loss"}  # float targets: no accuracy
    residual = float(((design @ solution - y.double().squeeze(1)) ** 2).mean())
    assert result.final["train"]["loss"] == pytest.approx(residual, rel=1e-4)


def test_zo_fit_equals_a_plain_opt_step_loop_bit_for_bit():
    x, y = _data()
    steps, batch, seed = 30, 8, 2
    model = _mlp()
    opt = presets.mezo(model.parameters(), lr=1e-2, seed=7)
    result = fit(model, opt, (x, y), steps=steps, batch_size=batch, seed=seed, progress=False)

    ref = _mlp()
    ref_opt = presets.mezo(ref.parameters(), lr=1e-2, seed=7)
    ref.eval()  # fit runs ZO steps in eval mode (no dropout between the perturbed forwards)
    for idx in _batches(N, batch, seed, steps):
        ref_opt.step(lambda idx=idx: F.cross_entropy(ref(x[idx]), y[idx]))
    assert _equal_states(model, ref)
    assert result.forwards == ref_opt.forwards == 2 * steps


def test_fit_leaves_the_callers_random_state_alone():
    x, y = _data()
    model = _mlp()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), steps=3, batch_size=8,
        progress=False)  # fmt: skip
    assert torch.equal(torch.get_rng_state(), before)


# -- resume ----------------------------------------------------------------------------------
STEPS, BATCH = 20, 16


def _setup(kind: str, x: Tensor) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    """A fresh model, optimizer and scheduler of each kind (all built the same way each call)."""
    model = _mlp()
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    if kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, opt, warmup_cosine(opt, STEPS, warmup=3)
    if kind == "mezo":
        opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    elif kind == "pezo":
        opt = presets.pezo(model.parameters(), lr=1e-2, seed=0, pool_size=101)
    else:  # "qzo-ff 16w8a": integer weights and updates
        model = quantize_model(model, 16, 8, calibration=[x[:32]])
        opt = presets.qzo_ff(trainable_parameters(model), lr=1e-2, eps=1e-2, seed=0)
    return model, opt, warmup_cosine(opt, STEPS, warmup=3)


class _FailAt:
    """A loss that raises ``error`` on its ``at``-th training call (evaluations not counted)."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at, self.error, self.calls = at, error, 0

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        if len(y) == BATCH:
            self.calls += 1
            if self.calls == self.at:
                raise self.error
        return F.cross_entropy(out, y)


def _run(kind, x, y, tmp_path, name, loss_fn=F.cross_entropy, **kw):
    model, opt, sched = _setup(kind, x)
    kw.setdefault("checkpoint_path", tmp_path / f"{name}.pt")
    result = fit(model, opt, (x, y), steps=STEPS, batch_size=BATCH, loss_fn=loss_fn,
                 scheduler=sched, eval_sets={"val": (x[:40], y[:40])}, eval_every=6,
                 log_path=tmp_path / f"{name}.jsonl", seed=4, progress=False,
                 snapshot_every=5, **kw)  # fmt: skip
    return model, opt, result


def _log(path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in lines]


def _warns_if(condition: bool, match: str):
    return pytest.warns(UserWarning, match=match) if condition else contextlib.nullcontext()


@pytest.mark.parametrize("kind", ["sgd", "adam", "mezo", "pezo", "qzo-ff 16w8a"])
@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "ctrl-c"]
)
def test_resume_after_an_interruption_equals_an_uninterrupted_run(kind, error, tmp_path):
    x, y = _data()
    full, full_opt, expected = _run(kind, x, y, tmp_path, "full")

    fail = _FailAt(14, error)  # ZO: the second forward of step 7 (qzo: inside step 3)
    per_step = full_opt.forwards // STEPS if isinstance(full_opt, ZO) else 1
    completed = (fail.at - 1) // per_step
    float_zo = kind in ("mezo", "pezo")
    with pytest.raises(type(error)), _warns_if(float_zo, "within rounding"):
        _run(kind, x, y, tmp_path, "cut", loss_fn=fail, checkpoint_every=4)
    saved = torch.load(tmp_path / "cut.pt", weights_only=True)
    # saved at the failure, except where float ZO's undo is inexact: the last periodic one
    assert saved["step"] == (completed // 4 * 4 if float_zo else completed)

    resumed, resumed_opt, result = _run(kind, x, y, tmp_path, "cut")
    assert _equal_states(resumed, full)
    assert [r["loss"] for r in result.history] == [r["loss"] for r in expected.history]
    assert torch.equal(result.trajectory, expected.trajectory)
    assert result.trajectory_steps == expected.trajectory_steps == [0, 5, 10, 15, 20]
    assert result.final == expected.final
    assert _log(tmp_path / "cut.jsonl") == _log(tmp_path / "full.jsonl")
    assert result.forwards == expected.forwards  # the completed steps' forwards
    if isinstance(full_opt, ZO):
        assert resumed_opt.steps == full_opt.steps


@pytest.fixture
def interactive_sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal (a shell's background job, e.g. a CI
    runner's, starts Python with SIGINT ignored, and fit then leaves SIGINT alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("kind", ["adam", "mezo"])
def test_a_first_ctrl_c_stops_cleanly_after_the_step(kind, tmp_path, interactive_sigint):
    x, y = _data()
    full, _, expected = _run(kind, x, y, tmp_path, "full")

    class CtrlC:  # a real SIGINT in the middle of step 7 (ZO: between its two forwards)
        calls = 0

        def __call__(self, out, target):
            if len(target) == BATCH:
                self.calls += 1
                if self.calls == (7 if kind == "adam" else 14):
                    os.kill(os.getpid(), signal.SIGINT)
            return F.cross_entropy(out, target)

    with pytest.raises(KeyboardInterrupt):
        _run(kind, x, y, tmp_path, "cut", loss_fn=CtrlC())
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["step"] == 7
    resumed, _, result = _run(kind, x, y, tmp_path, "cut")
    assert _equal_states(resumed, full)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back


def test_an_interruption_inside_the_update_keeps_the_last_checkpoint(tmp_path):
    """Backprop: a step that fails after its forward/backward may have half-updated weights."""

    class Interrupted(torch.optim.SGD):
        fail_at: int | None = 10

        def step(self, closure=None):
            loss = super().step(closure)  # a complete update, but fit cannot know that
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt
            return loss

    x, y = _data()
    path = tmp_path / "ck.pt"

    def run(checkpoint):
        model = _mlp()
        opt = Interrupted(model.parameters(), lr=0.1)
        opt.fail_at = 10 if checkpoint == "cut" else None
        saving = {} if checkpoint is None else {"checkpoint_path": path, "checkpoint_every": 4}
        fit(model, opt, (x, y), steps=STEPS, batch_size=BATCH, progress=False, **saving)
        return model

    with pytest.warns(UserWarning, match="half updated"), pytest.raises(KeyboardInterrupt):
        run("cut")
    assert torch.load(path, weights_only=True)["step"] == 8
    assert _equal_states(run("resume"), run(None))


def test_rerunning_a_finished_checkpoint_takes_no_step(tmp_path):
    x, y = _data()
    first, _, done = _run("mezo", x, y, tmp_path, "a")
    again, opt, result = _run("mezo", x, y, tmp_path, "a")
    assert _equal_states(first, again)
    assert opt.steps == STEPS
    assert result.history == done.history and result.final == done.final


def test_resuming_with_other_settings_says_which(tmp_path):
    x, y = _data()
    model = _mlp()
    path = tmp_path / "ck.pt"
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), steps=4, batch_size=8,
        checkpoint_path=path, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"batch_size = 8, but this run has batch_size = 16"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), steps=8, batch_size=16,
            checkpoint_path=path, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"at step 4, past steps = 2"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), steps=2, batch_size=8,
            checkpoint_path=path, progress=False)  # fmt: skip


# -- logs, snapshots, schedules --------------------------------------------------------------
def test_jsonl_log_has_the_documented_keys(tmp_path):
    x, y = _data()
    model = _mlp()
    nan_step = 4

    def loss_fn(out: Tensor, target: Tensor) -> Tensor:  # non-finite at step 4: ZO skips it
        loss_fn.calls += 1  # two forwards per central step; the first evaluation is after step 5
        loss = F.cross_entropy(out, target)
        return loss * math.nan if (loss_fn.calls + 1) // 2 == nan_step else loss

    loss_fn.calls = 0
    opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    path = tmp_path / "log.jsonl"
    result = fit(model, opt, (x, y), steps=12, batch_size=8, loss_fn=loss_fn,
                 eval_sets={"val": (x[:20], y[:20])}, eval_every=5, log_path=path,
                 progress=False)  # fmt: skip
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))
    for r in records:
        assert {"step", "loss", "lr", "wall_s", "forwards", "skipped"} <= r.keys()
    evaluated = [r["step"] for r in records if "eval/val/accuracy" in r]
    assert evaluated == [5, 10, 12]
    assert all("eval/val/loss" in r for r in records if r["step"] in evaluated)
    assert records[nan_step - 1]["loss"] is None  # non-finite numbers are written as null
    assert records[-1]["skipped"] == 1 and records[-1]["forwards"] == 24
    assert json.loads(result.to_json())["history"][nan_step - 1]["loss"] is None
    assert result.final["val"]["accuracy"] == records[-1]["eval/val/accuracy"]


def test_trajectory_rows_are_the_weights_at_their_steps():
    x, y = _data()
    model = _mlp()
    start = flat_weights(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit(model, opt, (x, y), steps=12, batch_size=8, snapshot_every=5, progress=False)
    assert result.trajectory_steps == [0, 5, 10, 12]
    assert result.trajectory.shape == (4, sum(p.numel() for p in model.parameters()))
    assert torch.equal(result.trajectory[0], start)
    assert torch.equal(result.trajectory[-1], flat_weights(model.parameters()))
    assert torch.equal(start, torch.cat([p.detach().reshape(-1) for p in _mlp().parameters()]))


def test_fixed_point_snapshots_are_the_dequantized_weights():
    x, y = _data()
    model = quantize_model(_mlp(), 16, 8, calibration=[x])
    params = trainable_parameters(model)
    opt = presets.qzo_ff(params, lr=1e-2, eps=1e-2, seed=0)
    result = fit(model, opt, (x, y), steps=3, batch_size=8, snapshot_every=3, progress=False)
    expected = torch.cat([(p.data.float() * p.fixed.scale).reshape(-1) for p in params])
    assert torch.equal(result.trajectory[-1], expected)
    assert not torch.equal(result.trajectory[0], result.trajectory[-1])  # integers moved


def test_bad_settings_fail_with_what_to_change():
    x, y = _data()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"Invalid eval_every: 0; use an integer >= 1"):
        fit(model, opt, (x, y), steps=2, batch_size=4, eval_every=0, progress=False)
    with pytest.raises(TypeError, match=r"ReduceLROnPlateau needs a metric"):
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        fit(model, opt, (x, y), steps=2, batch_size=4, scheduler=sched, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint_every needs a checkpoint_path"):
        fit(model, opt, (x, y), steps=2, batch_size=4, checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match=r"train has 96 inputs but 95 labels"):
        fit(model, opt, (x, y[:-1]), steps=2, batch_size=4, progress=False)


def test_eval_every_without_eval_sets_trains_and_logs_no_evaluation():
    x, y = _data()
    model = _mlp(dropout=0.0)
    opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    result = fit(model, opt, (x, y), steps=4, batch_size=16, eval_every=2, progress=False)
    assert result.steps == 4 and result.final == {}
    assert not any(k.startswith("eval/") for record in result.history for k in record)
