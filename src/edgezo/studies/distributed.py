"""The data-parallel example of :mod:`edgezo.distributed`: a small model trained with
:class:`~edgezo.distributed.DataParallelZO`, each rank on its shard of the batch.

Run by ``edgezo distributed`` and ``python -m edgezo.distributed`` (options:
:func:`edgezo.cli.distributed.add_arguments`); each prints JSON: steps, losses,
bytes per step, replica check.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
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
    check_replicas,
    free_port,
    init_from_env,
    load_checkpoint,
    save_checkpoint,
    shard,
)
from ..optim import ZO

FEATURES, CLASSES, EXAMPLES = 32, 10, 4096


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


def train(args: argparse.Namespace, ctx: RankInfo) -> dict[str, Any]:
    """Train the example data-parallel on this rank; its summary (the same on every rank but timings)."""
    model, batch = build_example(args.model, args.seed)
    model.to(ctx.device)
    dp = DataParallelZO(example_optimizer(model, args))
    resumed = load_checkpoint(args.checkpoint, model, dp) if args.checkpoint else None
    start = dp.optimizer.steps
    part = shard(args.batch, ctx.rank, ctx.world)
    losses, times = [], []
    while dp.optimizer.steps < args.steps:
        x, y = batch(dp.optimizer.steps, args.batch)
        xs, ys = x[part.start : part.stop].to(ctx.device), y[part.start : part.stop].to(ctx.device)
        began = time.perf_counter()
        loss = dp.step(lambda: F.cross_entropy(model(xs), ys), weight=len(part))  # noqa: B023
        times.append(time.perf_counter() - began)
        losses.append(float(loss))
        done = dp.optimizer.steps
        if args.check_every and done % args.check_every == 0 and not check_replicas(model):
            raise DistributedZOError(f"Replicas differ after step {done}")
        if args.checkpoint and args.save_every and done % args.save_every == 0:
            save_checkpoint(args.checkpoint, model, dp)
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
        "resumed_from_step": start if resumed is not None else None,
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


def check_args(args: argparse.Namespace) -> None:
    """A ``ValueError`` naming the first option out of range."""
    for name in ("steps", "nproc", "batch", "queries", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("save_every", "check_every"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
    if args.save_every and not args.checkpoint:
        raise ValueError("--save-every needs --checkpoint FILE")


def run_rank(args: argparse.Namespace) -> int:
    """One rank: join the group, train, print the summary on rank 0."""
    torch.set_num_threads(args.threads)
    ctx = init_from_env(timeout_s=args.timeout)
    try:
        result = train(args, ctx)
        if ctx.rank == 0:
            print(json.dumps(result, indent=2), flush=True)
    except DistributedZOError as e:
        print(f"rank {ctx.rank}: error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        dist.destroy_process_group()
    return 0


def _spawned(index: int, args: argparse.Namespace, port: int) -> None:
    """Entry of a rank started by :func:`torch.multiprocessing.start_processes`."""
    env = {"RANK": index, "LOCAL_RANK": index, "WORLD_SIZE": args.nproc}
    os.environ.update({k: str(v) for k, v in env.items()})
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = run_rank(args)
    if code:
        sys.exit(code)


def run(args: argparse.Namespace) -> int:
    """Run the example: as one rank under torchrun, else spawn ``--nproc`` local ranks."""
    check_args(args)
    if "RANK" in os.environ:
        return run_rank(args)
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_spawned, (args, free_port()), nprocs=args.nproc, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        print(f"edgezo.distributed: error: {' '.join(str(e).split())[:500]}", file=sys.stderr)
        return 1
    return 0
