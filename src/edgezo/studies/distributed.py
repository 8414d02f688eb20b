"""The data-parallel example of :mod:`edgezo.distributed`: a small model trained with
:class:`~edgezo.distributed.DataParallelZO`, each rank on its shard of the batch.

Run by ``edgezo distributed`` and ``python -m edgezo.distributed`` (options:
:func:`edgezo.cli.distributed.add_arguments`); each prints JSON: steps, losses,
bytes per step, replica check.

What is checked where. The options are checked when parsed; before a rank
starts, :func:`check_resume` reads ``--checkpoint`` (if the file exists) and
refuses one that is unreadable, not written by this example, written with other
settings, or already past ``--steps``. A rank that fails reports its exception
(type and message) to the launching process, which raises one
:class:`~edgezo.distributed.DistributedZOError` naming the rank that failed first
(``EDGEZO_DEBUG=1``: every rank also prints its traceback). ``--checkpoint`` is
written every ``--save-every`` steps, after the last step, and when the run is
stopped: SIGINT (Ctrl-C) or SIGTERM makes every rank finish the step they agree
on, save, and exit (the launcher returns ``128 + signal``); a second Ctrl-C stops
at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..directions import Gaussian, Pool
from ..distributed import (
    DataParallelZO,
    DistributedZOError,
    RankInfo,
    all_gather_floats,
    check_replicas,
    free_port,
    init_from_env,
    load_checkpoint,
    load_failure,
    save_checkpoint,
    shard,
)
from ..optim import ZO

FEATURES, CLASSES, EXAMPLES = 32, 10, 4096
#: The options a checkpoint of the example records and a resume must repeat.
SETTINGS = ("model", "batch", "estimator", "queries", "directions", "lr", "eps", "seed")
CHECKPOINT_KEYS = {"model", "optimizer", "extra"}


def build_example(
    model: str, seed: int
) -> tuple[nn.Module, Callable[[int, int], tuple[Tensor, Tensor]]]:
    """The example's model and its global batch for a step: ``batch(step, size) -> (x, y)``.

    ``mlp``: a 32-64-10 MLP on a synthetic task (labels of a random linear
    teacher on Gaussian inputs, 4096 examples). ``vit``: ViTTiny (5.3M
    parameters) on random 3x32x32 images and labels (for timing). Batches are a
    function of ``(seed, step)`` only, so a resumed run sees the same data.
    """
    torch.manual_seed(seed)
    if model == "mlp":
        net: nn.Module = nn.Sequential(nn.Linear(FEATURES, 64), nn.Tanh(), nn.Linear(64, CLASSES))
        g = torch.Generator().manual_seed(seed)
        inputs = torch.randn(EXAMPLES, FEATURES, generator=g)
        labels = (inputs @ torch.randn(FEATURES, CLASSES, generator=g)).argmax(1)
    elif model == "vit":
        from ..models import ViTTiny

        net = ViTTiny()
        g = torch.Generator().manual_seed(seed)
        inputs = torch.randn(256, 3, 32, 32, generator=g)
        labels = torch.randint(0, CLASSES, (256,), generator=g)
    else:
        raise ValueError(f"Unknown example model {model!r}; choose 'mlp' or 'vit'")

    def batch(step: int, size: int) -> tuple[Tensor, Tensor]:
        rows = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(inputs), (size,), generator=rows)
        return inputs[idx], labels[idx]

    return net, batch


def example_optimizer(model: nn.Module, args: argparse.Namespace) -> ZO:
    """The example's ZO optimizer: ``--directions`` (Gaussian or a pool), ``--estimator``, ..."""

    directions = (
        Pool(2**20 + 1, seed=args.seed) if args.directions == "pool" else Gaussian(args.seed)
    )
    return ZO(
        model.parameters(),
        lr=args.lr,
        eps=args.eps,
        directions=directions,
        estimator=args.estimator,
        queries=args.queries,
    )


def example_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options that change the numbers of a run (recorded in its checkpoints)."""
    return {name: getattr(args, name) for name in SETTINGS}


# -- stopping on a signal ------------------------------------------------------------------
class StopRequest:
    """Set by SIGINT or SIGTERM: the ranks stop after a step they agree on (see :func:`train`).

    A second SIGINT (Ctrl-C twice) raises ``KeyboardInterrupt`` at once: the
    rank dies mid-step, the others stop with an error, the last checkpoint stays.
    """

    def __init__(self) -> None:
        self.signals: list[int] = []

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and signal.SIGINT in self.signals:
            raise KeyboardInterrupt
        self.signals.append(signum)

    def agreed(self, group: Any = None) -> int:
        """The first signal any rank received (0: none); a collective, every rank calls it."""
        own = float(self.signals[0]) if self.signals else 0.0
        received = [int(sig) for (sig,) in all_gather_floats([own], group) if sig]
        return received[0] if received else 0


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


# -- training --------------------------------------------------------------------------------
def train(
    args: argparse.Namespace, ctx: RankInfo, stop: StopRequest | None = None
) -> dict[str, Any]:
    """Train the example data-parallel on this rank; its summary (the same on every rank but timings).

    With ``stop``, the ranks agree after every step whether one of them was
    signalled (8 bytes each) and then stop together, so the checkpoint they save
    is a step boundary every rank reached.
    """
    model, batch = build_example(args.model, args.seed)
    model.to(ctx.device)
    dp = DataParallelZO(example_optimizer(model, args))
    resumed = load_checkpoint(args.checkpoint, model, dp) if args.checkpoint else None
    start = dp.optimizer.steps
    saved_at = start if resumed is not None else None
    part = shard(args.batch, ctx.rank, ctx.world)
    losses, times, stopped_by = [], [], 0
    while dp.optimizer.steps < args.steps and not stopped_by:
        x, y = batch(dp.optimizer.steps, args.batch)
        xs, ys = x[part.start : part.stop].to(ctx.device), y[part.start : part.stop].to(ctx.device)
        began = time.perf_counter()
        loss = dp.step(lambda: F.cross_entropy(model(xs), ys), weight=len(part))  # noqa: B023
        times.append(time.perf_counter() - began)
        losses.append(float(loss))
        done = dp.optimizer.steps
        if args.check_every and done % args.check_every == 0 and not check_replicas(model):
            raise DistributedZOError(f"Replicas differ after step {done}")
        stopped_by = stop.agreed() if stop is not None else 0
        if args.checkpoint and args.save_every and done % args.save_every == 0:
            saved_at = save_example(args, model, dp)
    if args.checkpoint and saved_at != dp.optimizer.steps:  # the final (or stopped) state
        saved_at = save_example(args, model, dp)
    return summary(args, ctx, model, dp, losses, times) | {
        "resumed_from_step": start if resumed is not None else None,
        "checkpoint_step": saved_at if args.checkpoint else None,
        "stopped_by": signal_name(stopped_by) if stopped_by else None,
    }


def save_example(args: argparse.Namespace, model: nn.Module, dp: DataParallelZO) -> int:
    """Write ``--checkpoint`` with the run's settings; the step it holds."""
    save_checkpoint(args.checkpoint, model, dp, extra={"settings": example_settings(args)})
    return dp.optimizer.steps


def summary(
    args: argparse.Namespace,
    ctx: RankInfo,
    model: nn.Module,
    dp: DataParallelZO,
    losses: list[float],
    times: list[float],
) -> dict[str, Any]:
    """What a run prints: sizes, steps, losses, bytes and seconds per step, the replica check."""
    taken = len(losses)
    params = sum(p.numel() for p in model.parameters())
    return {
        "world": ctx.world,
        "backend": ctx.backend,
        "model": args.model,
        "params": params,
        "estimator": args.estimator,
        "queries": args.queries,
        "global_batch": args.batch,
        "steps": dp.optimizer.steps,
        "steps_run": taken,
        "skipped": dp.optimizer.skipped,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_last10_mean": statistics.fmean(losses[-10:]) if losses else None,
        "comm_bytes_per_step": dp.comm_bytes / taken if taken else 0,
        "gradient_allreduce_bytes_per_step": 4 * params,
        "comm_seconds_per_step": dp.comm_seconds / taken if taken else 0.0,
        # the first step warms up allocators and kernels
        "step_seconds_median": statistics.median(times[1:] or times) if times else None,
        "replicas_identical": check_replicas(model),
    }


# -- checks before any rank starts -------------------------------------------------------------
def check_args(args: argparse.Namespace) -> None:
    """A ``ValueError`` naming the first option out of range (the parser checks each alone)."""
    for name in ("steps", "nproc", "batch", "queries", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("save_every", "check_every"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
    for name, low in (("lr", 0.0), ("eps", None), ("timeout", None)):
        value = getattr(args, name)
        if not math.isfinite(value) or (value < low if low is not None else value <= 0):
            bound = f">= {low:g}" if low is not None else "> 0"
            raise ValueError(f"--{name} must be a finite number {bound}, got {value}")
    if args.save_every and not args.checkpoint:
        raise ValueError("--save-every needs --checkpoint FILE")


def read_checkpoint(path: str) -> dict[str, Any] | None:
    """``--checkpoint``'s content, ``None`` if the file does not exist yet (it will be written).

    Raises ``ValueError`` for a path that cannot be written, a file that is not
    readable as a torch checkpoint, or one that this example did not write.
    """
    file = Path(path)
    if not file.exists():
        folder = file.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(
                f"--checkpoint {path}: the folder {folder} does not exist or is not writable; "
                "create it or choose another path"
            )
        return None
    if file.is_dir():
        raise ValueError(f"--checkpoint {path} is a folder; give a file path")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"--checkpoint {path} is not readable as a checkpoint ({load_failure(e)}); "
            "give a file that edgezo distributed wrote, or a new path to start a new run"
        ) from None
    if not (
        isinstance(state, dict)
        and state.keys() >= CHECKPOINT_KEYS
        and isinstance(state["optimizer"], dict)
        and isinstance(state["optimizer"].get("zo"), dict)
        and isinstance(state["extra"], dict)
    ):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"--checkpoint {path} is not a checkpoint of edgezo distributed (it holds {found}, "
            f"not {sorted(CHECKPOINT_KEYS)} with a ZO optimizer state); give a file that edgezo "
            "distributed wrote, or a new path to start a new run"
        )
    return state


def recorded_settings(state: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint was written with (lr, eps, queries also from the optimizer)."""
    optimizer = state["optimizer"]
    found = {"eps": optimizer["zo"].get("eps"), "queries": optimizer["zo"].get("queries")}
    groups = optimizer.get("param_groups") or [{}]
    found["lr"] = groups[0].get("lr")
    return {**found, **state["extra"].get("settings", {})}


def check_settings(args: argparse.Namespace, state: dict[str, Any]) -> None:
    """Refuse a resume with other settings than the checkpoint's (the checkpoint would win)."""
    theirs = recorded_settings(state)
    differ = [
        f"--{name} {value} (the checkpoint's: {theirs[name]})"
        for name, value in example_settings(args).items()
        if name in theirs and theirs[name] != value
    ]
    if differ:
        raise ValueError(
            f"--checkpoint {args.checkpoint} was written with other settings: "
            f"{', '.join(differ)}; pass the checkpoint's values to resume it, or another "
            "--checkpoint path to start a new run"
        )


def check_loadable(args: argparse.Namespace, state: dict[str, Any]) -> None:
    """Load the checkpoint into this run's model and optimizer (on this process, once)."""
    model, _ = build_example(args.model, args.seed)
    try:
        model.load_state_dict(state["model"])
        example_optimizer(model, args).load_state_dict(state["optimizer"])
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:300]
        raise ValueError(
            f"--checkpoint {args.checkpoint} does not fit this run's model and optimizer "
            f"({type(e).__name__}: {reason}); resume with the options that wrote it, or give "
            "another --checkpoint path to start a new run"
        ) from None


def check_resume(args: argparse.Namespace) -> None:
    """Before any rank starts: ``--checkpoint`` (if it exists) can be resumed by this command."""
    if not args.checkpoint:
        return
    state = read_checkpoint(args.checkpoint)
    if state is None:
        return
    check_settings(args, state)
    check_loadable(args, state)
    step = state["optimizer"]["zo"]["steps"]
    if step > args.steps:
        raise ValueError(
            f"--checkpoint {args.checkpoint} is at step {step}, past --steps {args.steps}: "
            f"pass --steps above {step} to train on, or another --checkpoint to start a new run"
        )
    if step == args.steps:
        print(
            f"edgezo distributed: --checkpoint {args.checkpoint} is already at step {step} "
            "= --steps; nothing to train (raise --steps to continue)",
            file=sys.stderr,
            flush=True,
        )


# -- ranks --------------------------------------------------------------------------------------
def debugging() -> bool:
    return bool(os.environ.get("EDGEZO_DEBUG"))


def report_failure(error: BaseException, rank: int, reports: str | None) -> None:
    """Tell the launcher (``reports`` folder) or the user (stderr) why this rank stopped."""
    if debugging():
        traceback.print_exc()
    message = " ".join(str(error).split())
    if reports is not None:
        record = {"rank": rank, "type": type(error).__name__, "message": message}
        (Path(reports) / f"failed-{rank}.json").write_text(json.dumps(record))
    elif not debugging():
        print(f"rank {rank}: error: {type(error).__name__}: {message}", file=sys.stderr, flush=True)


def announce_stop(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Rank 0 says what a signal stopped and where the run can resume."""
    saved = (
        f"--checkpoint {args.checkpoint} holds step {result['checkpoint_step']}: run the same "
        "command again to resume"
        if args.checkpoint
        else "no --checkpoint was given, so nothing was saved"
    )
    print(
        f"edgezo distributed: stopped by {result['stopped_by']} after step {result['steps']}; "
        f"{saved}",
        file=sys.stderr,
        flush=True,
    )


def run_rank(
    args: argparse.Namespace, stop: StopRequest | None = None, reports: str | None = None
) -> int:
    """One rank: join the group, train, print the summary on rank 0; the exit code.

    A failure is reported (:func:`report_failure`) and gives exit code 1; a
    stop by a signal gives ``128 + signal`` after the checkpoint is saved.
    """
    torch.set_num_threads(args.threads)
    if stop is None:
        stop = StopRequest()
        stop.install()
    rank = int(os.environ.get("RANK", 0))
    try:
        ctx = init_from_env(timeout_s=args.timeout)
        try:
            result = train(args, ctx, stop)
        finally:
            dist.destroy_process_group()
    except Exception as e:
        report_failure(e, rank, reports)
        return 1
    if rank == 0:
        print(json.dumps(result, indent=2), flush=True)
        if result["stopped_by"]:
            announce_stop(args, result)
    return 128 + signal.Signals[result["stopped_by"]] if result["stopped_by"] else 0


def rank_entry(index: int, args: argparse.Namespace, port: int, reports: str) -> None:
    """Entry of a rank started by :func:`torch.multiprocessing.start_processes`."""
    stop = StopRequest()
    stop.install()  # first: a signal from now on stops after a step
    env = {"RANK": index, "LOCAL_RANK": index, "WORLD_SIZE": args.nproc}
    os.environ.update({k: str(v) for k, v in env.items()})
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = run_rank(args, stop, reports)
    if code == 1:
        sys.exit(code)
    if code:  # stopped by a signal: the launcher knows it from this file, the exit stays clean
        (Path(reports) / f"stopped-{index}").write_text(str(code))


# -- the launcher -------------------------------------------------------------------------------
def failure_message(reports: str, error: BaseException) -> str:
    """One line for the user: the rank that failed first (its exception), not a traceback.

    A rank's own error (e.g. ``ValueError``) is preferred to the
    :class:`~edgezo.distributed.DistributedZOError` the others raise because of it.
    """
    found = [json.loads(p.read_text()) for p in sorted(Path(reports).glob("failed-*.json"))]
    hint = "; set EDGEZO_DEBUG=1 to see every rank's traceback"
    if not found:
        how = " ".join(str(error).split()) or type(error).__name__
        return f"a rank ended without reporting an error ({how}){hint}"
    first = next((r for r in found if r["type"] != "DistributedZOError"), found[0])
    others = [r["rank"] for r in found if r is not first]
    also = f" (rank(s) {others} stopped with it)" if others else ""
    return f"rank {first['rank']} failed: {first['type']}: {first['message']}{also}{hint}"


def forward_to(processes: list[Any]) -> None:
    """SIGTERM to each live process (a rank then stops after its step)."""
    for p in processes:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)


@contextlib.contextmanager
def forwarding_signals(processes: list[Any]) -> Iterator[list[int]]:
    """While launched ranks run: SIGINT or SIGTERM to this process is passed on as SIGTERM.

    The ranks then stop after a step, save and exit (see :class:`StopRequest`);
    yields the signals received.
    """
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        forward_to(processes)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spawn_ranks(args: argparse.Namespace, reports: str) -> int:
    """Start ``--nproc`` local ranks (gloo, loopback) and wait; the exit code."""
    import torch.multiprocessing as mp

    processes: list[Any] = []
    with forwarding_signals(processes) as received:  # before the start: no rank is orphaned
        context = mp.start_processes(
            rank_entry,
            (args, free_port(), reports),
            nprocs=args.nproc,
            join=False,
            start_method="spawn",
        )
        processes.extend(context.processes)
        if received:  # a signal while they started: pass it on now
            forward_to(processes)
        try:
            while not context.join(grace_period=10):  # the others report, then stop
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            if received and not list(Path(reports).glob("failed-*.json")):
                name = signal_name(received[0])  # it came before the ranks could handle it
                print(f"edgezo distributed: stopped by {name} before training", file=sys.stderr)
                return 128 + received[0]
            raise DistributedZOError(failure_message(reports, e)) from None
    stopped = [int(p.read_text()) for p in Path(reports).glob("stopped-*")]
    return max(stopped) if stopped else (128 + received[0] if received else 0)


def run(args: argparse.Namespace) -> int:
    """Run the example: as one rank under torchrun, else spawn ``--nproc`` local ranks.

    The options and ``--checkpoint`` are checked first, before any rank starts.
    """
    check_args(args)
    check_resume(args)
    if "RANK" in os.environ:
        return run_rank(args)
    with tempfile.TemporaryDirectory(prefix="edgezo-ranks-") as reports:
        return spawn_ranks(args, reports)
