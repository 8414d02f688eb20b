"""Speed of the hardware checks: Amaranth co-simulation (cycles/s) and yosys synthesis (s).

For each design of the report at a small throughput: how fast the Amaranth simulator
runs it, and that its lanes equal the Python model over the simulated cycles.

    python benchmarks/hw_cosim.py [--throughput 4] [--cycles 2000] [--synth]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from edgezo.hw.cosim import simulate
from edgezo.hw.designs import build
from edgezo.hw.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--synth", action="store_true", help="also time yosys (xilinx)")
    args = parser.parse_args()
    rows = {}
    for d in build(throughput=args.throughput):
        start = time.perf_counter()
        out = simulate(d.gen, args.cycles + d.latency)
        sim_s = time.perf_counter() - start
        row = {
            "cycles_per_s": round(args.cycles / sim_s),
            "matches_model": bool(np.array_equal(out[d.latency :], d.expected(args.cycles))),
        }
        if args.synth:
            start = time.perf_counter()
            res = synthesize(d.gen, "xilinx")
            row.update(synth_s=round(time.perf_counter() - start, 1), luts=res.luts, ffs=res.ffs)
        rows[d.key] = row
    print(json.dumps({"throughput": args.throughput, "cycles": args.cycles, "designs": rows}))


if __name__ == "__main__":
    main()
