"""A MeZO-style step and edgezo's steps in the same timing rounds (CPU), against two forwards.

MeZO's own step (``_common.MezoStyle``: ``torch.normal`` per tensor after reseeding, four
out-of-place passes over the weights) runs on a copy of the model, so that its new
storages never touch the tensors edgezo's optimizers point at. In every round, in
rotating order: two forwards (``no_grad``), the MeZO-style step, and ``ZO(...).step``
(central, one query) with ``Gaussian`` (MeZO's distribution), ``Rademacher`` and
``Pool(2**20)``. Reported: medians and the paired median of the per-round ratio to the
two forwards (the headline: robust to load bursts on a shared machine), per workload
of ``benchmarks/step_overhead.py`` (SmallCNN batch 64, ViT-tiny-like batch 16); and the
first-call cost of the compiled passes (a fresh build of ``hash_pass.c`` into a
temporary directory: what the first step on a new machine pays once).

    PYTHONPATH=src python benchmarks/mezo_side_by_side.py --out results.json
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see step_overhead.py

import torch  # noqa: E402
from _common import MezoStyle, emit_json, timing_parser  # noqa: E402
from step_overhead import WORKLOADS, build, closure_of, environment, interleaved, ratio  # noqa: E402

from edgezo import ZO, passes  # noqa: E402
from edgezo.directions import Gaussian, Pool, Rademacher  # noqa: E402
from edgezo.passes import compiled  # noqa: E402
from edgezo.runtime import clib  # noqa: E402

LR, EPS = 1e-6, 1e-3


def steps(workload: str) -> dict[str, Callable[[], Any]]:
    """The timed functions of one workload: two forwards, MeZO's step, edgezo's steps."""
    model, x, y = build(workload)
    closure = closure_of(model, x, y)
    twin = copy.deepcopy(model)
    mezo = MezoStyle([p for p in twin.parameters() if p.requires_grad], LR, EPS)
    twin_closure = closure_of(twin, x, y)

    def two_forwards() -> None:
        with torch.no_grad():
            closure()
            closure()

    def edgezo(source) -> Callable[[], Any]:
        opt = ZO(model.parameters(), lr=LR, eps=EPS, directions=source, estimator="central")
        return lambda: opt.step(closure)

    return {
        "two_forwards": two_forwards,
        "mezo_style": lambda: mezo.step(twin_closure),
        "edgezo_gaussian": edgezo(Gaussian(seed=1)),
        "edgezo_rademacher": edgezo(Rademacher(seed=1)),
        "edgezo_pool": edgezo(Pool(size=2**20, seed=1)),
    }


def measure(workload: str, repeats: int, warmup: int) -> dict[str, Any]:
    """Medians (ms) and ratios to two forwards, every function timed in the same rounds."""
    fns = steps(workload)
    times = interleaved(fns, repeats, warmup)
    out: dict[str, Any] = {"executor": None, "steps": {}}
    for name, values in times.items():
        entry = {"median_ms": 1e3 * statistics.median(values), "n": len(values)}
        if name != "two_forwards":
            entry.update({f"{k}_to_two_forwards": v for k, v in ratio(times, name, "two_forwards").items()})  # fmt: skip
        out["steps"][name] = entry
    fns["edgezo_gaussian"]()
    out["executor"] = passes.last_executor  # which executor ran edgezo's Gaussian passes
    return out


def compile_seconds() -> float:
    """Seconds a fresh build of the compiled CPU passes takes (the cached one is not used)."""
    with tempfile.TemporaryDirectory() as tmp:
        return clib.build(
            clib.compiler(), Path(tmp) / "hash_pass.so", compiled.SOURCE, compiled.FLAGS
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = timing_parser(__doc__, 10)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "mezo_side_by_side",
        "env": environment(args.threads),
        "config": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "lr": LR,
            "eps": EPS,
            "estimator": "central, 1 query",
            "pool_size": 2**20,
        },  # fmt: skip
        "workloads": {w: measure(w, args.repeats, args.warmup) for w in args.workloads},
        "first_call_compile_s": compile_seconds(),
    }
    results["env"]["loadavg_at_end"] = list(os.getloadavg())
    results["wall_s"] = time.perf_counter() - start
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
