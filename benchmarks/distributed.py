"""Data-parallel ZO on this machine: bytes per step against a gradient all-reduce, step time vs ranks.

Workloads (the example of :mod:`edgezo.studies.distributed`, central estimator, one query):

* ``mlp``: a 32-64-10 MLP (2,762 parameters), global batch 64, Gaussian directions;
* ``vit``: ViTTiny (5.3M parameters), global batch 16 of 3x32x32 images, Pool directions.

Each configuration ``W ranks x T threads`` (default ``1x1, 2x1, 4x1`` and ``1x2``, one
process using both cores, the single-process alternative to two ranks) trains
for ``--steps`` steps on gloo over loopback; the global batch is split over the
ranks (strong scaling: every rank still makes all perturbation passes over the
whole model, only the forwards shrink). The ranks are forked from this process
and join through :func:`edgezo.distributed.init_from_env` as under torchrun.
A run reports rank 0's median step time over its steps after the first; the
configurations are run round-robin ``--repeats`` times (the machine's load falls
on all alike) and the table gives the median over repeats, with the speedup
against ``1x1``. ``idle_cores_estimate`` is what ``W`` ranks would take on
``W`` idle cores: 1x1's step minus the forward work the smaller shards save
(forwards timed here at each shard size), exchanges taken as free; it is
derived, not measured. ``comm_seconds`` is the time rank 0 spent in the exchanges,
waiting for slower ranks included. ``OMP_WAIT_POLICY=PASSIVE`` is set (unless
already set) as in ``step_overhead.py``, and the load average is recorded: on
a machine shared with other jobs the numbers include their contention.

Communication is measured by ``DataParallelZO.comm_bytes`` (payload a rank hands
to the collectives per step) against ``4 d`` bytes, the payload of an fp32
gradient all-reduce of the same model. The wire bytes of the ring algorithms are
derived: an all-gather sends ``(W - 1) x payload`` per rank, an all-reduce
``2 (W - 1) / W x payload``.

Usage::

    python benchmarks/distributed.py                 # both workloads, prints JSON
    python benchmarks/distributed.py --quick         # mlp, 1x1 and 2x1, one repeat (smoke)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

# before torch loads OpenMP: spin-waiting threads on shared cores measure the scheduler
# (see benchmarks/step_overhead.py); matters for the 1x2 configuration
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json, provenance  # noqa: E402
from tqdm import tqdm  # noqa: E402

from edgezo.cli.distributed import add_arguments  # noqa: E402
from edgezo.distributed import BYTES_PER_EVALUATION, free_port, init_from_env, shard  # noqa: E402
from edgezo.studies.distributed import build_example, train  # noqa: E402

WORKLOADS = {
    "mlp": {"model": "mlp", "batch": 64, "directions": "gaussian", "lr": 1e-2, "steps": 60},
    "vit": {"model": "vit", "batch": 16, "directions": "pool", "lr": 1e-4, "steps": 8},
}
CONFIGS = ["1x1", "2x1", "4x1", "1x2"]


def rank_main(
    settings: dict[str, Any], rank: int, world: int, threads: int, port: int, out: Any
) -> None:
    """One forked rank: torchrun's environment, then the example's training; rank 0 reports."""
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()}, MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(threads)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(settings, threads=threads)
    ctx = init_from_env(timeout_s=args.timeout)
    result = train(args, ctx)
    if rank == 0:
        out.put(result)
    torch.distributed.destroy_process_group()


def run_once(settings: dict[str, Any], config: str) -> dict[str, Any]:
    """One training run of ``config`` (``"WxT"``); rank 0's summary."""
    world, threads = (int(v) for v in config.split("x"))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=rank_main, args=(settings, r, world, threads, port, out))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    result = out.get(timeout=1800)
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"{config}: a rank failed, exit codes {[p.exitcode for p in procs]}")
    return result


def forward_seconds(
    settings: dict[str, Any], sizes: list[int], repeats: int = 5
) -> dict[int, float]:
    """Median time of one forward + loss of the workload per batch size (here, one thread)."""
    model, batch = build_example(settings["model"], seed=0)
    x, y = batch(0, max(sizes))
    out = {}
    with torch.no_grad():
        for size in sizes:
            times = []
            for _ in range(repeats + 1):  # the first is a warm-up
                began = time.perf_counter()
                F.cross_entropy(model(x[:size]), y[:size])
                times.append(time.perf_counter() - began)
            out[size] = statistics.median(times[1:])
    return out


def idle_estimate(step_1x1: float, world: int, evaluations: float, batch: int, fwd: dict) -> dict:
    """Step time of ``world`` single-thread ranks on ``world`` idle cores, from 1x1's step.

    Each rank makes the same passes over the weights as 1x1 and ``evaluations``
    forwards on its shard instead of the global batch (rank 0 has the largest
    shard); the exchanges are taken as free. An upper bound on the speedup.
    """
    largest = len(shard(batch, 0, world))
    step = step_1x1 - evaluations * (fwd[batch] - fwd[largest])
    return {"step_seconds": step, "speedup_vs_1x1": step_1x1 / step}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over repeats per configuration, speedups against 1x1, and the bytes."""
    rows: dict[str, Any] = {}
    for config, results in runs.items():
        world = results[0]["world"]
        payload = results[0]["comm_bytes_per_step"]
        grad = results[0]["gradient_allreduce_bytes_per_step"]
        rows[config] = {
            "ranks": world,
            "threads_per_rank": int(config.split("x")[1]),
            "step_seconds": statistics.median(r["step_seconds_median"] for r in results),
            "step_seconds_runs": [r["step_seconds_median"] for r in results],
            "comm_seconds_per_step": statistics.median(r["comm_seconds_per_step"] for r in results),
            "comm_payload_bytes_per_step": payload,
            "gradient_allreduce_payload_bytes": grad,
            "payload_ratio_gradient_over_zo": grad / payload,
            "ring_wire_bytes_per_rank": {
                "zo_all_gather": (world - 1) * payload,
                "gradient_all_reduce": 2 * (world - 1) / world * grad,
            },
            "replicas_identical": all(r["replicas_identical"] for r in results),
            "loss_last": results[-1]["loss_last"],
        }
    base = rows.get("1x1")
    for row in rows.values():
        if base:
            row["speedup_vs_1x1"] = base["step_seconds"] / row["step_seconds"]
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--configs", nargs="+", default=CONFIGS, help="WxT: ranks x threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default per workload)")
    ap.add_argument("--quick", action="store_true", help="mlp, 1x1 and 2x1, 1 repeat, 6 steps")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads, args.configs, args.repeats, args.steps = ["mlp"], ["1x1", "2x1"], 1, 6
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)  # this process never runs OpenMP in parallel before forking
    results: dict[str, Any] = {
        "env": {
            **provenance(),
            "backend": "gloo (loopback)",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "repeats": args.repeats,
        },
        "workloads": {},
    }
    for name in args.workloads:
        settings = dict(WORKLOADS[name])
        if args.steps:
            settings["steps"] = args.steps
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.configs}
        began = time.perf_counter()
        order = [c for _ in range(args.repeats) for c in args.configs]  # round-robin
        for config in tqdm(order, desc=name, file=sys.stderr, disable=args.quick):
            runs[config].append(run_once(settings, config))
        params = runs[args.configs[0]][0]["params"]
        configs = summarize(runs)
        worlds = sorted({row["ranks"] for row in configs.values()})
        fwd = forward_seconds(
            settings, sorted({len(shard(settings["batch"], 0, w)) for w in worlds})
        )
        if "1x1" in configs:
            for row in configs.values():
                evaluations = row["comm_payload_bytes_per_step"] / BYTES_PER_EVALUATION
                if row["threads_per_rank"] == 1:
                    row["idle_cores_estimate"] = idle_estimate(
                        configs["1x1"]["step_seconds"],
                        row["ranks"],
                        evaluations,
                        settings["batch"],
                        fwd,
                    )
        results["workloads"][name] = {
            "params": params,
            "global_batch": settings["batch"],
            "steps_per_run": settings["steps"],
            "seconds": time.perf_counter() - began,
            "forward_seconds_by_batch": fwd,
            "configs": configs,
        }
    results["env"]["loadavg_at_end"] = list(os.getloadavg())
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
