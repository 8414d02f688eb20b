"""The compiled ZO engine's long run: the 51,712-weight stack, 100 steps, per generator.

For each generator (``--generators``, default every one of ``edgezo.hw.zsources.KEYS``)
the run of ``tests/test_hw_engine.py::test_engine_layer_stack_50k_weights``
(:func:`edgezo.hw.engine_stack.run_stack`): 100 steps of sign-3-SPSA on a two-layer
quantized MLP (192-256-10, 16-bit weights) recorded with edgezo's fixed-point path, replayed
on the 8-lane engine compiled by yosys's CXXRTL and g++, and the engine's block RAM compared
with the Python integers after every step. Recorded per generator: compile seconds, run
seconds, cycles, cycles per second, the whole run's seconds (recording, RTLIL, yosys,
compiling, running, comparing), bit-exact steps of steps and the load average at its start;
with the commit, the CPUs and the load at the start and the end (``env``).

Every design is compiled even if ``~/.cache/edgezo/runtime`` holds it, so the compile
seconds are measured (``--cached``: use the cache; a cached design's compile reads 0).
Generators run one after the other: on a shared machine the seconds depend on its load.

    PYTHONPATH=src python benchmarks/hw_engine_cxxrtl.py --out benchmarks/results/hw_engine_cxxrtl.json
    # 8 minutes on 2 shared cores at a load average of 1 to 4, 30 at 6 to 9;
    # --generators pezo-pool: about 20 s

Needs the ``hw`` extra, yosys, Debian's ``yosys-dev`` (CXXRTL's headers) and ``g++``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from _common import emit_json, provenance

from edgezo.hw.engine_stack import STACK_LANES, run_stack
from edgezo.hw.zsources import KEYS


def measure(key: str, steps: int, rebuild: bool) -> dict[str, Any]:
    """One generator's run (:meth:`~edgezo.hw.engine_stack.StackRun.summary`) and the
    1-minute load average when it began."""
    load = os.getloadavg()[0]
    row = {**run_stack(key, steps, STACK_LANES, rebuild).summary(), "loadavg_at_start": load}
    print(
        f"{key}: compile {row['compile_s']:.0f} s, run {row['run_s']:.1f} s, "
        f"{row['exact_steps']} of {row['steps']} steps bit-exact",
        file=sys.stderr,
        flush=True,
    )
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--generators", nargs="+", choices=KEYS, default=list(KEYS), help="default: all"
    )
    ap.add_argument("--steps", type=int, default=100, help="recorded steps (default 100)")
    ap.add_argument(
        "--cached", action="store_true", help="use compiled designs from the cache (compile 0)"
    )
    ap.add_argument("--out", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps {args.steps}: record at least one step")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = provenance()
    rows = [measure(key, args.steps, not args.cached) for key in args.generators]
    env["loadavg_at_end"] = list(os.getloadavg())
    config = {"lanes": STACK_LANES, "steps": args.steps, "estimator": "sign", "queries": 3,
              "compiled_fresh": not args.cached}  # fmt: skip
    emit_json({"benchmark": "hw_engine_cxxrtl", "env": env, "config": config, "rows": rows},
              args.out)  # fmt: skip


if __name__ == "__main__":
    main()
