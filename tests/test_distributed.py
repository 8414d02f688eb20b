"""edgezo.distributed: data-parallel ZO with scalar-only communication (gloo on loopback).

Multi-process tests fork one process per rank, give it torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free loopback
port) and run a scenario; every rank saves what it saw and the test compares it
with an independent reference: each rank's weights against the others'
(``torch.equal``), and against a plain single-process ``ZO`` run on the
concatenated batch. A slow test runs the example command under real ``torchrun``.

Why the single-process match is not bit-exact: the distributed loss is
``sum_r w_r L_r / sum_r w_r`` of the shard means, the reference the mean over the
whole batch: the same sum grouped differently, so the two losses differ by a
few ulps. The estimate divides a loss difference by ``2 eps``, so a loss error
``delta`` moves a weight by about ``lr * delta / eps * |z|`` per step:
- float64 (``delta`` ~ 1e-16, lr 0.05, eps 1e-3): ~1e-14 per step, tolerance 1e-10;
- float32 (``delta`` ~ 2e-7): ~1e-5 per step, tolerance 2e-4 after 6 steps;
- QZO-FF 16w8a: integer weights and sign coefficients: equal, unless a loss
  difference were within rounding of zero (it is not in this problem).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo import ZO
from edgezo.cli.distributed import add_arguments, main
from edgezo.directions import Gaussian, Pool, Rademacher
from edgezo.distributed import (
    BYTES_PER_EVALUATION,
    DataParallelZO,
    DistributedZOError,
    RankInfo,
    check_replicas,
    combine,
    free_port,
    init_from_env,
    load_checkpoint,
    replica_digest,
    save_checkpoint,
    shard,
)
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.presets import qzo_ff
from edgezo.studies.distributed import (
    check_resume,
    failure_message,
    rank_entry,
    train,
)

STEPS = 6
KILL_STEP, SAVE_EVERY = 5, 2  # the killed run's last checkpoint is at step 4
CONFIGS = {
    "central": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Gaussian(1)),
    "pool-q2": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Pool(1009, seed=1), queries=2),
    "forward-q2": lambda ps: ZO(
        ps, lr=0.05, eps=1e-3, directions=Gaussian(1), estimator="forward", queries=2
    ),
    "sign-m3": lambda ps: ZO(
        ps, lr=0.02, eps=1e-3, directions=Rademacher(1), estimator="sign", queries=3
    ),
    "jvp": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Gaussian(1), estimator="jvp"),
    "momentum": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Gaussian(1), momentum=0.9),
    "nan-at-2": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Gaussian(1)),
    "central-fp32": lambda ps: ZO(ps, lr=0.05, eps=1e-3, directions=Gaussian(1)),
    "qzo-ff-16w8a": lambda ps: qzo_ff(ps, lr=1e-2, eps=1e-3, seed=1),  # integer weights
}
FLOAT64 = [n for n in CONFIGS if n not in ("central-fp32", "qzo-ff-16w8a")]
WORLD4_CONFIGS = ["central", "sign-m3"]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-4}


# -- the problem, shared by the ranks and the single-process reference --------------------------
def dtype_of(name: str) -> torch.dtype:
    return torch.float64 if name in FLOAT64 else torch.float32


def build(name: str) -> tuple[nn.Module, ZO]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype_of(name))
    if name.startswith("qzo-ff"):
        calibration = [global_batch(-1, 32, torch.float32)[0]]
        model = quantize_model(model, weight_bits=16, activation_bits=8, calibration=calibration)
        return model, CONFIGS[name](trainable_parameters(model))
    return model, CONFIGS[name](list(model.parameters()))


def global_batch(step: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(size, 6, generator=g).to(dtype), torch.randint(0, 3, (size,), generator=g)


def loss_fn(model, x, y, name, step, poisoned):
    """Cross-entropy; ``nan-at-2`` returns NaN at step 2 where ``poisoned`` (one rank only)."""
    if name == "nan-at-2" and step == 2 and poisoned:
        return torch.tensor(math.nan)
    return F.cross_entropy(model(x), y)


def reference(name: str, batch: int) -> dict:
    """Plain single-process ZO on the concatenated (global) batch."""
    model, opt = build(name)
    losses = []
    for step in range(STEPS):
        x, y = global_batch(step, batch, dtype_of(name))
        losses.append(float(opt.step(lambda x=x, y=y, s=step: loss_fn(model, x, y, name, s, True))))
    return {"state": model.state_dict(), "losses": losses, "skipped": opt.skipped}


# -- the ranks' side (forked processes) --------------------------------------------------------
#: torch.distributed's calls that send tensors, and the position of the argument they send
#: (0 unless given): ``all_gather(outputs, input)`` sends its input, ``all_reduce(tensor)`` its tensor.
SENDS = {
    "all_gather": 1,
    "all_gather_into_tensor": 1,
    "all_reduce": 0,
    "all_to_all": 1,
    "all_to_all_single": 1,
    "broadcast": 0,
    "gather": 0,
    "reduce": 0,
    "reduce_scatter": 1,
    "reduce_scatter_tensor": 1,
    "scatter": 1,
    "send": 0,
    "isend": 0,
}
#: calls that pickle Python objects (their size is not the tensors'): counted apart.
OBJECT_CALLS = (
    "all_gather_object",
    "broadcast_object_list",
    "gather_object",
    "scatter_object_list",
)


def tensor_bytes(value) -> int:
    """Bytes of a tensor or of a list of tensors (``None`` and the rest: 0)."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


class SentBytes:
    """Counts the payload this rank hands to torch.distributed (tensor bytes, outermost calls).

    While active, every call of :data:`SENDS` and :data:`OBJECT_CALLS` is wrapped, both
    where user code finds it (``torch.distributed.X``) and in ``distributed_c10d``; a
    call made inside another wrapped call (``all_gather_object`` -> ``all_gather``) is
    not counted twice.
    """

    def __init__(self) -> None:
        self.bytes = self.calls = self.objects = 0
        self._depth = 0
        self._saved: list[tuple[object, str, object]] = []

    def _count(self, name: str, args: tuple) -> None:
        self.calls += 1
        if name in OBJECT_CALLS:
            self.objects += 1
        elif len(args) > SENDS[name]:
            self.bytes += tensor_bytes(args[SENDS[name]])

    def _wrap(self, name: str, fn):
        def counted(*args, **kwargs):
            if self._depth == 0:
                self._count(name, args)
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def __enter__(self) -> SentBytes:
        for module in (dist, dist.distributed_c10d):
            for name in (*SENDS, *OBJECT_CALLS):
                if hasattr(module, name):
                    fn = getattr(module, name)
                    self._saved.append((module, name, fn))
                    setattr(module, name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc) -> None:
        for module, name, fn in reversed(self._saved):
            setattr(module, name, fn)
        self._saved.clear()


def run_steps(model, dp, name, batch, until, rank, world, on_step=None, poisoned=None):
    """Steps until ``until`` on this rank's shard; rank 1 is the one ``nan-at-2`` poisons."""
    poisoned = rank == 1 if poisoned is None else poisoned
    losses = []
    part = shard(batch, rank, world)
    while dp.optimizer.steps < until:
        step = dp.optimizer.steps
        x, y = global_batch(step, batch, dtype_of(name))
        xs, ys = x[part.start : part.stop], y[part.start : part.stop]

        def closure(xs=xs, ys=ys, step=step):
            if on_step is not None:
                on_step(step)
            return loss_fn(model, xs, ys, name, step, poisoned)

        losses.append(float(dp.step(closure, weight=len(part))))
    return losses


def record(model, dp, losses, **extra) -> dict:
    return {
        "state": model.state_dict(),
        "losses": losses,
        "skipped": dp.optimizer.skipped,
        "steps": dp.optimizer.steps,
        "forwards": dp.optimizer.forwards,
        "comm_bytes": dp.comm_bytes,
        "replicas_identical": check_replicas(model),
        **extra,
    }


def failure(error: BaseException, began: float) -> dict:
    return {"type": type(error).__name__, "message": str(error), "seconds": time.time() - began}


def scenario_train(out: Path, rank: int, world: int, batch: int) -> None:
    """Every config for STEPS steps; with two ranks also: a 1-ulp difference, a seed mismatch, a raise."""
    names = list(CONFIGS) if world == 2 else WORLD4_CONFIGS
    for name in names:
        model, opt = build(name)
        dp = DataParallelZO(opt)
        with SentBytes() as sent:  # what the steps hand to torch.distributed, measured
            losses = run_steps(model, dp, name, batch, STEPS, rank, world)
        found = {"sent_bytes": sent.bytes, "sent_calls": sent.calls, "sent_objects": sent.objects}
        torch.save(record(model, dp, losses, **found), out / f"{name}-{rank}.pt")
    if world != 2:
        return
    found: dict = {}
    model, _ = build("central")
    if rank == 1:  # one element, one ulp
        with torch.no_grad():
            w = model[0].weight
            w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(math.inf, dtype=w.dtype))
    found["after_1ulp"] = check_replicas(model)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    try:
        DataParallelZO(ZO(model.parameters(), directions=Gaussian(seed=rank)))
    except DistributedZOError as e:
        found["seed_mismatch"] = str(e)

    model, opt = build("central")
    dp = DataParallelZO(opt)
    run_steps(model, dp, "central", batch, 1, rank, world)
    before = [t.clone() for t in model.state_dict().values()]

    def explode(step):
        if rank == 1:
            raise ValueError("injected failure on rank 1")

    began = time.time()
    try:
        run_steps(model, dp, "central", batch, 2, rank, world, on_step=explode)
    except (ValueError, DistributedZOError) as e:
        found["raise"] = failure(e, began)
    found["restored"] = max(
        float((a - b).abs().max()) for a, b in zip(before, model.state_dict().values(), strict=True)
    )
    found["steps_after_raise"] = dp.optimizer.steps
    torch.save(found, out / f"extra-{rank}.pt")


def scenario_kill(out: Path, rank: int, world: int, batch: int) -> None:
    """Central, checkpoint every SAVE_EVERY steps; rank 1 is SIGKILLed inside step KILL_STEP."""
    model, opt = build("central")
    dp = DataParallelZO(opt)

    def die(step):
        if rank == 1 and step == KILL_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    began = time.time()
    try:
        for until in range(1, STEPS + 1):
            began = time.time()
            run_steps(model, dp, "central", batch, until, rank, world, on_step=die)
            if until % SAVE_EVERY == 0:
                save_checkpoint(out / "ckpt.pt", model, dp, extra={"note": "kill"})
    except DistributedZOError as e:
        (out / f"kill-{rank}.json").write_text(json.dumps(failure(e, began)))


def scenario_resume(out: Path, rank: int, world: int, batch: int) -> None:
    """Restart from the kill's checkpoint to STEPS; then a rank that hangs past a 2 s timeout."""
    torch.manual_seed(123)  # other weights than build(): they must come from the checkpoint
    model, opt = build("central")
    dp = DataParallelZO(opt)
    extra = load_checkpoint(out / "ckpt.pt", model, dp)
    start = dp.optimizer.steps
    losses = run_steps(model, dp, "central", batch, STEPS, rank, world)
    torch.save(record(model, dp, losses, start=start, extra=extra), out / f"resumed-{rank}.pt")

    quick = dist.new_group(timeout=datetime.timedelta(seconds=2))
    model, opt = build("central")
    dp = DataParallelZO(opt, group=quick)

    def stall(step):
        if rank == 1:
            time.sleep(4)

    began = time.time()
    try:
        run_steps(model, dp, "central", batch, 1, rank, world, on_step=stall)
    except DistributedZOError as e:
        (out / f"hang-{rank}.json").write_text(json.dumps(failure(e, began)))


SCENARIOS = {"train": scenario_train, "kill": scenario_kill, "resume": scenario_resume}


def rank_main(scenario: str, out: Path, batch: int, rank: int, world: int, port: int) -> None:
    """One rank: torchrun's environment, then the scenario (in a forked process)."""
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()}, MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    context = init_from_env(timeout_s=30)
    SCENARIOS[scenario](out, context.rank, context.world, batch)
    dist.destroy_process_group()


def launch(scenario: str, world: int, out: Path, batch: int, timeout: float = 40) -> list[int]:
    """Run ``world`` ranks of ``scenario``; returns their exit codes.

    The ranks are forked from this process (torch is already imported: a fresh
    interpreter per rank would spend seconds importing it on a busy machine);
    each joins the group through :func:`init_from_env`, as under torchrun.
    """
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    procs = [
        ctx.Process(target=rank_main, args=(scenario, out, batch, r, world, port))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    deadline = time.time() + timeout
    for p in procs:
        p.join(max(deadline - time.time(), 0.1))
        if p.exitcode is None:
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


# -- fixtures: one launch per scenario ---------------------------------------------------------
@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    out = tmp_path_factory.mktemp("world2")
    reference("jvp", 12)  # loads forward-mode AD's decompositions once, before the fork
    assert launch("train", 2, out, batch=12) == [0, 0]
    return out


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    out = tmp_path_factory.mktemp("world4")
    assert launch("train", 4, out, batch=10) == [0] * 4  # shards of 3, 3, 2, 2: weighted
    return out


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill")
    killed = launch("kill", 2, out, batch=12)
    resumed = launch("resume", 2, out, batch=12)
    return out, killed, resumed


def ranks(out: Path, name: str, world: int) -> list[dict]:
    return [torch.load(out / f"{name}-{r}.pt", weights_only=True) for r in range(world)]


def assert_bit_identical(states: list[dict]) -> None:
    for state in states[1:]:
        for key, value in state.items():
            assert torch.equal(value, states[0][key]), key


# -- multi-process tests ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("world", "batch", "name"),
    [(2, 12, n) for n in CONFIGS] + [(4, 10, n) for n in WORLD4_CONFIGS],
)
def test_replicas_bit_identical_and_match_single_process(world, batch, name, request):
    out = request.getfixturevalue("run2" if world == 2 else "run4")
    got = ranks(out, name, world)
    assert_bit_identical([g["state"] for g in got])
    assert all(g["replicas_identical"] for g in got)
    for g in got:
        np.testing.assert_array_equal(g["losses"], got[0]["losses"])  # NaN == NaN here

    ref = reference(name, batch)
    tol = TOLERANCE[dtype_of(name)]
    for key, value in ref["state"].items():
        torch.testing.assert_close(got[0]["state"][key], value, rtol=0, atol=tol)
    np.testing.assert_allclose(got[0]["losses"], ref["losses"], rtol=tol, equal_nan=True)
    assert got[0]["skipped"] == ref["skipped"] == (1 if name == "nan-at-2" else 0)
    # the weights moved: the comparison is not between two untouched initial states
    initial = build(name)[0].state_dict()
    assert not all(torch.equal(initial[k], v) for k, v in ref["state"].items())


# forward passes per step (the estimators' table): central/sign 2q, forward q + 1, jvp q
FORWARDS = {"central": 2, "pool-q2": 4, "forward-q2": 3, "sign-m3": 6, "jvp": 1}


@pytest.mark.parametrize("name", FORWARDS)
def test_communication_is_24_bytes_per_forward(run2, name):
    for got in ranks(run2, name, 2):
        forwards = FORWARDS[name]
        assert got["forwards"] == STEPS * forwards
        # measured: one collective per forward, three float64 numbers each, no object pickles
        assert got["sent_objects"] == 0
        assert got["sent_calls"] == STEPS * forwards
        assert got["sent_bytes"] == STEPS * forwards * 24
        # and the optimizer's own counter reports exactly what was sent
        assert got["comm_bytes"] == got["sent_bytes"] == STEPS * forwards * BYTES_PER_EVALUATION


def test_sent_bytes_counts_the_payload_handed_to_torch_distributed(world1):
    with SentBytes() as sent:
        dist.all_gather([torch.empty(5, dtype=torch.float64)], torch.zeros(5, dtype=torch.float64))
        dist.all_reduce(torch.zeros(3, dtype=torch.float32))
        dist.all_gather_object([None], {"a": 1})  # calls all_gather inside: counted once
    assert (sent.bytes, sent.calls, sent.objects) == (5 * 8 + 3 * 4, 3, 1)
    assert dist.all_gather.__name__ == "all_gather"  # unwrapped again


def test_check_replicas_sees_one_ulp_and_a_seed_mismatch_is_refused(run2):
    extra = ranks(run2, "extra", 2)
    assert [e["after_1ulp"] for e in extra] == [False, False]
    for e in extra:
        assert e["seed_mismatch"].startswith("Rank(s) [1] start from other weights")
        assert "same direction seed" in e["seed_mismatch"]


def test_a_raising_rank_stops_the_others_with_a_clear_error(run2):
    own, peer = (e["raise"] for e in reversed(ranks(run2, "extra", 2)))
    assert own["type"] == "ValueError" and own["message"] == "injected failure on rank 1"
    assert peer["type"] == "DistributedZOError"
    assert peer["message"].startswith("Rank(s) [1] failed while evaluating the closure at step 1")
    assert peer["seconds"] < 5  # told at once, not after a timeout
    for e in ranks(run2, "extra", 2):
        assert e["steps_after_raise"] == 1  # the failed step did not count
        assert e["restored"] < 1e-12  # perturbation undone (to float rounding)


def test_a_killed_rank_stops_the_others_with_a_clear_error(killed_then_resumed):
    out, killed, _ = killed_then_resumed
    assert killed == [0, -signal.SIGKILL]
    report = json.loads((out / "kill-0.json").read_text())
    assert report["type"] == "DistributedZOError"
    assert report["message"].startswith("A collective failed: another rank died")
    assert "timeout" in report["message"]
    assert report["seconds"] < 5  # the dead peer's closed socket is seen at once


def test_a_hanging_rank_fails_the_others_after_the_timeout(killed_then_resumed):
    out, _, resumed = killed_then_resumed
    report = json.loads((out / "hang-0.json").read_text())
    assert report["type"] == "DistributedZOError"
    assert "did not answer within the process group's timeout" in report["message"]
    assert "timeout (2 s;" in report["message"]  # the group's own timeout, not edgezo's default
    assert 1.9 < report["seconds"] < 5  # group timeout: 2 s; rank 1 sleeps 4 s
    assert resumed[0] == 0


def test_restart_resumes_from_last_checkpoint_bit_exactly(killed_then_resumed, run2):
    out, _, _ = killed_then_resumed
    straight = ranks(run2, "central", 2)
    resumed = ranks(out, "resumed", 2)
    assert [r["start"] for r in resumed] == [4, 4]
    assert resumed[0]["extra"] == {"note": "kill"}
    assert_bit_identical([r["state"] for r in resumed] + [straight[0]["state"]])
    assert resumed[0]["losses"] == straight[0]["losses"][4:]


def example_args(**changes) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(changes)
    return args


def scenario_example(out: Path, rank: int, world: int, batch: int) -> None:
    """The example's training function: 3 steps with a checkpoint, then a restart to step 5."""
    ctx = RankInfo(rank, world, rank, "gloo", torch.device("cpu"))
    ckpt = str(out / "example.pt")
    first = train(example_args(steps=3, batch=batch, checkpoint=ckpt, save_every=3), ctx)
    second = train(example_args(steps=5, batch=batch, checkpoint=ckpt), ctx)
    straight = train(example_args(steps=5, batch=batch), ctx)
    (out / f"example-{rank}.json").write_text(json.dumps([first, second, straight]))


SCENARIOS["example"] = scenario_example


def test_example_trains_checkpoints_and_resumes(tmp_path):
    assert launch("example", 2, tmp_path, batch=16) == [0, 0]

    def untimed(rank):
        runs = json.loads((tmp_path / f"example-{rank}.json").read_text())
        return [{k: v for k, v in run.items() if "seconds" not in k} for run in runs]

    first, second, straight = untimed(0)
    assert untimed(1) == [first, second, straight]  # every rank reports the same training
    assert first["world"] == 2 and first["steps"] == 3 and first["replicas_identical"]
    assert first["comm_bytes_per_step"] == 48  # central, one query: two 24-byte exchanges
    assert first["gradient_allreduce_bytes_per_step"] == 4 * first["params"] == 4 * 2762
    assert second["resumed_from_step"] == 3 and second["steps_run"] == 2
    assert second["loss_last"] == straight["loss_last"]  # the restart continued exactly


def test_example_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "0"])
    assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--save-every", "5"])
    assert "--save-every needs --checkpoint FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_example_command_under_torchrun_then_resumed_by_spawn(tmp_path):
    """The documented commands, with real interpreters (six torch imports: slow on a busy machine)."""
    ckpt = tmp_path / "run.pt"
    common = ["-m", "edgezo.distributed", "--checkpoint", str(ckpt), "--save-every", "3"]
    first = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + common
        + ["--steps", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert summary["world"] == 2 and summary["steps"] == 3 and summary["replicas_identical"]
    second = subprocess.run(
        [sys.executable, *common, "--steps", "5", "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout)
    assert summary["resumed_from_step"] == 3 and summary["steps_run"] == 2


# -- single-process tests ---------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(length=st.integers(0, 200), world=st.integers(1, 9))
def test_shard_matches_numpy_array_split(length, world):
    parts = [shard(length, r, world) for r in range(world)]
    expected = np.array_split(np.arange(length), world)
    assert [list(p) for p in parts] == [e.tolist() for e in expected]


def test_shard_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"rank 2 for world size 2; need 0 <= rank < world"):
        shard(10, 2, 2)
    with pytest.raises(ValueError, match=r"length -1; it must be >= 0"):
        shard(-1, 0, 1)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.sampled_from([0.0, 1.0, 2.0, 7.0])
        ),
        min_size=1,
        max_size=6,
    ).filter(lambda rows: any(w > 0 for *_, w in rows))
)
def test_combine_is_the_weighted_mean(rows):
    a = np.array(rows)
    loss, tangent = combine(rows)
    assert loss == pytest.approx(np.average(a[:, 0], weights=a[:, 2]), rel=1e-12, abs=1e-9)
    assert tangent == pytest.approx(np.average(a[:, 1], weights=a[:, 2]), rel=1e-12, abs=1e-9)


def test_combine_leaves_out_empty_shards_and_refuses_no_data():
    assert combine([(2.0, 1.0, 4.0), (math.nan, math.nan, 0.0)]) == (2.0, 1.0)
    assert math.isnan(combine([(2.0, 0.0, 1.0), (math.nan, 0.0, 1.0)])[0])  # a NaN is shared
    with pytest.raises(ValueError, match=r"Every rank gave weight 0"):
        combine([(1.0, 0.0, 0.0)])


def test_replica_digest_sees_one_ulp_dtype_and_shape():
    t = torch.randn(5, 3)
    base = replica_digest([t])
    assert replica_digest([t.clone()]) == base
    bumped = t.clone()
    bumped[2, 1] = torch.nextafter(bumped[2, 1], torch.tensor(math.inf))
    assert replica_digest([bumped]) != base
    assert replica_digest([t.double()]) != base
    assert replica_digest([t.reshape(3, 5)]) != base
    assert 0 <= base < 2**63


def test_init_from_env_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match=r"Missing environment variables .*launch with torchrun"):
        init_from_env()
    with pytest.raises(ValueError, match=r"Invalid timeout_s: 0"):
        init_from_env(timeout_s=0)


def test_wrapper_refuses_other_optimizers_and_needs_a_group():
    model = nn.Linear(2, 1)
    with pytest.raises(TypeError, match=r"wraps an edgezo.ZO optimizer .* got Linear"):
        DataParallelZO(model)  # the model instead of its optimizer
    with pytest.raises(
        RuntimeError, match=r"not initialized: call edgezo.distributed.init_from_env"
    ):
        DataParallelZO(ZO(model.parameters()))


@pytest.fixture
def world1():
    """A one-rank gloo group in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["central", "forward-q2", "sign-m3", "jvp", "nan-at-2"])
def test_one_rank_equals_plain_zo_bit_for_bit(world1, name):
    ref = reference(name, batch=8)
    model, opt = build(name)
    dp = DataParallelZO(opt)
    losses = run_steps(model, dp, name, 8, STEPS, rank=0, world=1, poisoned=True)
    assert_bit_identical([model.state_dict(), ref["state"]])
    np.testing.assert_array_equal(losses, ref["losses"])
    assert dp.comm_bytes == 24 * opt.forwards


def test_bad_weight_or_loss_fails_on_the_rank_with_a_clear_error(world1):
    model, opt = build("central")
    dp = DataParallelZO(opt)
    x, y = global_batch(0, 4, torch.float64)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"Invalid weight -1.0; pass the number of examples"):
        dp.step(lambda: F.cross_entropy(model(x), y), weight=-1.0)
    with pytest.raises(
        ValueError, match=r"must return a scalar loss, got a tensor of shape \(4,\)"
    ):
        dp.step(lambda: F.cross_entropy(model(x), y, reduction="none"))
    assert opt.steps == 0
    for a, b in zip(before, model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_checkpoint_roundtrip_on_one_rank(world1, tmp_path):
    model, opt = build("central")
    dp = DataParallelZO(opt)
    assert load_checkpoint(tmp_path / "none.pt", model, dp) is None
    run_steps(model, dp, "central", 8, 2, rank=0, world=1)
    save_checkpoint(tmp_path / "c.pt", model, dp, extra={"epoch": 3})
    model2, opt2 = build("central")
    dp2 = DataParallelZO(opt2)
    assert load_checkpoint(tmp_path / "c.pt", model2, dp2) == {"epoch": 3}
    assert_bit_identical([model.state_dict(), model2.state_dict()])
    assert opt2.steps == 2


@pytest.mark.slow
def test_benchmark_quick_prints_bytes_and_step_times():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "distributed.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mlp = json.loads(done.stdout)["workloads"]["mlp"]
    assert mlp["params"] == 2762
    for config, row in mlp["configs"].items():
        assert row["comm_payload_bytes_per_step"] == 48, config
        assert row["payload_ratio_gradient_over_zo"] == pytest.approx(4 * 2762 / 48)
        assert row["replicas_identical"] and row["step_seconds"] > 0
    assert mlp["configs"]["2x1"]["ring_wire_bytes_per_rank"] == {
        "zo_all_gather": 48,
        "gradient_all_reduce": 4 * 2762,
    }


# -- the example command: checks before the ranks start, checkpoints, failures, signals ----------
@pytest.fixture
def no_spawn(monkeypatch):
    """Starting ranks is an error: the command must fail while parsing or checking."""
    import torch.multiprocessing as mp

    def refuse(*args, **kwargs):
        raise AssertionError("ranks were started")

    monkeypatch.setattr(mp, "start_processes", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "argument --lr: must be a finite number >= 0, got -1"),
        (["--eps", "0"], "argument --eps: must be a finite number > 0, got 0"),
        (["--eps", "nan"], "argument --eps: must be a finite number > 0, got nan"),
        (["--timeout", "0"], "argument --timeout: must be a finite number > 0, got 0"),
        (["--save-every", "-1"], "argument --save-every: must be >= 0, got -1"),
        (["--queries", "1.5"], "argument --queries: expected an integer, got '1.5'"),
    ],
)
def test_options_are_checked_when_parsed(no_spawn, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def example_checkpoint(path: Path, steps: int, **options) -> dict:
    """Train the example on one rank (in this process) until ``steps``, writing ``path``."""
    args = example_args(steps=steps, batch=8, checkpoint=str(path), **options)
    return train(args, RankInfo(0, 1, 0, "gloo", torch.device("cpu")))


def steps_in(path: Path) -> int:
    return torch.load(path, weights_only=True)["optimizer"]["zo"]["steps"]


def test_checkpoint_is_written_after_the_last_step(world1, tmp_path):
    once = example_checkpoint(tmp_path / "end.pt", 3)  # no --save-every: written at the end
    assert steps_in(tmp_path / "end.pt") == 3 == once["checkpoint_step"]
    every = example_checkpoint(tmp_path / "every.pt", 10, save_every=3)
    assert steps_in(tmp_path / "every.pt") == 10 == every["checkpoint_step"]  # not step 9


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    return " ".join(capsys.readouterr().err.split())


def test_unreadable_or_foreign_checkpoints_are_refused_before_any_rank_starts(
    no_spawn, capsys, tmp_path
):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    message = refused(["--checkpoint", str(garbage)], capsys)
    assert "is not readable as a checkpoint (its content is not a file that torch.save" in message
    assert "a new path to start a new run" in message
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    message = refused(["--checkpoint", str(foreign)], capsys)
    assert "is not a checkpoint of edgezo distributed (it holds ['weights']" in message
    message = refused(["--checkpoint", str(tmp_path)], capsys)
    assert "is a folder; give a file path" in message
    message = refused(["--checkpoint", str(tmp_path / "missing" / "c.pt")], capsys)
    assert "does not exist or is not writable" in message


def test_resume_with_other_settings_or_fewer_steps_is_refused(world1, no_spawn, capsys, tmp_path):
    ckpt = tmp_path / "c.pt"
    example_checkpoint(ckpt, 3)
    common = ["--checkpoint", str(ckpt), "--batch", "8"]
    message = refused([*common, "--steps", "2"], capsys)
    assert "is at step 3, past --steps 2: pass --steps above 3" in message
    message = refused([*common, "--steps", "5", "--lr", "0.5", "--queries", "2"], capsys)
    assert "written with other settings: --queries 2 (the checkpoint's: 1), --lr 0.5" in message
    assert "(the checkpoint's: 0.01)" in message
    # a checkpoint of another model (no recorded settings): it does not load
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "other.pt", model, DataParallelZO(ZO(model.parameters(), lr=1e-2)))
    message = refused(["--checkpoint", str(tmp_path / "other.pt")], capsys)
    assert "does not fit this run's model and optimizer (RuntimeError" in message
    # the same step as --steps: nothing to train, and it says so
    check_resume(example_args(steps=3, batch=8, checkpoint=str(ckpt)))
    assert "already at step 3 = --steps; nothing to train" in capsys.readouterr().err


def test_failure_message_names_the_rank_that_failed_first(tmp_path):
    rows = [
        {"rank": 0, "type": "DistributedZOError", "message": "Rank(s) [1] failed ..."},
        {"rank": 1, "type": "ValueError", "message": "bad input"},
    ]
    for row in rows:
        (tmp_path / f"failed-{row['rank']}.json").write_text(json.dumps(row))
    message = failure_message(str(tmp_path), RuntimeError("process 1 exited"))
    assert message.startswith("rank 1 failed: ValueError: bad input (rank(s) [0] stopped with it)")
    assert message.endswith("set EDGEZO_DEBUG=1 to see every rank's traceback")
    empty = tmp_path / "none"
    empty.mkdir()
    message = failure_message(str(empty), RuntimeError("process 1 terminated with signal SIGKILL"))
    assert "without reporting an error (process 1 terminated with signal SIGKILL)" in message


def failing_rank(out: Path, rank: int, port: int) -> None:
    """A rank of the example whose model name is bad (as a rank that fails on its own)."""
    torch.set_num_threads(1)
    rank_entry(rank, example_args(nproc=2, model="bogus"), port, str(out))


def test_a_failing_rank_reports_its_exception_to_the_launcher(tmp_path):
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    procs = [ctx.Process(target=failing_rank, args=(tmp_path, r, port)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [1, 1]
    message = failure_message(str(tmp_path), RuntimeError("process 0 exited with code 1"))
    assert message.startswith("rank 0 failed: ValueError: Unknown example model 'bogus'")


def test_help_has_plain_text_and_explains_every_option(capsys):
    from edgezo.cli import main as edgezo

    assert edgezo(["distributed", "--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":mod:" not in text
    for option in ("--estimator", "--directions", "--model"):
        block = text.split(option + " ", 1)[1].split("\n  --", 1)[0]
        assert len(block.split("}", 1)[-1].strip()) > 20, option  # a help text, not just choices


def test_sigterm_stops_after_a_step_and_leaves_a_resumable_checkpoint(tmp_path):
    """``edgezo distributed`` with 2 spawned ranks, SIGTERM to the launcher only."""
    ckpt = tmp_path / "run.pt"
    command = [sys.executable, "-m", "edgezo.cli", "distributed", "--nproc", "2"]
    command += [
        "--steps",
        "1000000",
        "--batch",
        "8",
        "--checkpoint",
        str(ckpt),
        "--save-every",
        "1",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 150
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, err
    summary = json.loads(out)
    step = summary["steps"]
    assert summary["stopped_by"] == "SIGTERM" and summary["checkpoint_step"] == step >= 1
    assert f"stopped by SIGTERM after step {step}; --checkpoint {ckpt} holds step {step}" in err
    assert "run the same command again to resume" in err
    assert steps_in(ckpt) == step
    check_resume(example_args(steps=step + 1, batch=8, checkpoint=str(ckpt)))  # resumable


def test_load_checkpoint_says_what_is_wrong_with_a_file(world1, tmp_path):
    model, opt = build("central")
    dp = DataParallelZO(opt)
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"garbage.pt is not readable \(its content is not a file"):
        load_checkpoint(tmp_path / "garbage.pt", model, dp)
    torch.save({"model": model.state_dict()}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial.pt was not written by .*save_checkpoint"):
        load_checkpoint(tmp_path / "partial.pt", model, dp)
