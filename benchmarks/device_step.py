"""The C device step (edgezo.runtime.device) vs a plain memory copy of the weights.

On ``--weights`` int16 weights (default 1M, one 1000 x 1000 tensor, per-tensor
scale) and for each source: the perturbed read (one direction, into the read
buffer), the sign-3 update (three directions) and, for reference, the Python
path's read; against ``copy_`` of the same int16 tensor (one thread, as the C
step is single-threaded). Medians of ``--repeats`` runs, in milliseconds. Also:
the C library's compile time (fresh build into a temporary directory) and the
device state of the demo's ``pezo 16w8a`` head (pool of 1021, sign-3).

    PYTHONPATH=src python benchmarks/device_step.py --out results.json

``--march haswell`` builds the C step for that x86 level instead of this CPU's own
(``-march=native``): on a CPU with AVX-512, the same machine then measures the AVX2 build, which
separates the instruction set from the CPU model when two machines disagree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import emit_json

from edgezo import ZO
from edgezo.directions import LFSR, Pool, Rademacher, RNGArray, Xorshift
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats import FixedPointFormat
from edgezo.models import SmallCNN
from edgezo.models.portable import cpu_model
from edgezo.runtime import clib
from edgezo.runtime.device import DeviceFormat

SOURCES = {
    "pool 1021": lambda: Pool(size=1021, seed=0),
    "lfsr 7-bit (native)": lambda: LFSR(width=16, seed=1, bits=7),
    "xorshift 8-bit (table)": lambda: Xorshift(seed=1, bits=8),
    "rng array 16 x lfsr": lambda: RNGArray(n=16, rng="lfsr", bits=7, seed=0),
    "rademacher (hash)": lambda: Rademacher(seed=0),
}


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def optimizer(n: int, source, fmt) -> tuple[ZO, torch.nn.Parameter]:
    torch.manual_seed(0)
    model = quantize_model(torch.nn.Linear(n // 1000, 1000, bias=False), 16, None)
    params = trainable_parameters(model)
    opt = ZO(params, lr=1e-3, eps=1e-3, estimator="sign", queries=3, directions=source(),
             formats=fmt, )  # fmt: skip
    return opt, params[0]


def one_source(name: str, n: int, repeats: int) -> dict[str, float]:
    opt, p = optimizer(n, SOURCES[name], DeviceFormat())
    fmt = opt.formats[0]
    buffer = torch.empty_like(p.data)
    out = {"memcpy_ms": median_ms(lambda: buffer.copy_(p.data), repeats)}
    fmt.perturb([((7, 1), 1)])
    out["c_read_ms"] = median_ms(lambda: p.fixed.perturbation.read(p), repeats)
    fmt.restore()
    terms, weights = [(7, q, 1 / 3) for q in range(3)], [[1 / 3], [-1 / 3], [1 / 3]]
    out["c_update_ms"] = median_ms(lambda: fmt.update(terms, weights, [1e-3]), repeats)
    py, pp = optimizer(n, SOURCES[name], FixedPointFormat())
    py.formats[0].perturb([((7, 1), 1)])
    out["python_read_ms"] = median_ms(lambda: pp.fixed.perturbation.read(pp), max(3, repeats // 5))
    out["c_read_vs_memcpy"] = out["c_read_ms"] / out["memcpy_ms"]
    return out


def demo_state() -> int:
    torch.manual_seed(0)
    head = quantize_model(SmallCNN().head, 16, None)
    opt = ZO(trainable_parameters(head), lr=5e-4, eps=1e-3, estimator="sign", queries=3,
             directions=Pool(size=1021, seed=0), formats=DeviceFormat())  # fmt: skip
    return opt.formats[0].state_bytes()


def compile_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return clib.build(clib.compiler(), Path(tmp) / "edgezo_step.so")


def use_march(march: str) -> None:
    """Build the C step for ``-march=march`` from here on (before the first build: the cached
    library's name hashes the flags); a level the compiler refuses is an error, not the generic
    build clib falls back to, which the JSON would then time under the wrong name."""
    clib.NATIVE = (f"-march={march}",)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        try:
            clib.build(clib.compiler(), Path(tmp) / "probe.so")
        except UserWarning as refused:
            raise SystemExit(
                f"device_step.py: the C compiler refused --march {march} ({refused}); pass a "
                "level it knows for this CPU (x86: haswell, skylake-avx512, x86-64-v3), or none"
            ) from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--out", default=None)
    ap.add_argument("--march", default=None, help="build for -march=MARCH, not this CPU's own")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.march:
        use_march(args.march)
    result = {
        "weights": args.weights, "repeats": args.repeats, "threads": 1,
        "march": args.march or "native", "cpu": cpu_model(),
        "compile_s": compile_seconds(), "demo_head_state_bytes": demo_state(),
        "sources": {name: one_source(name, args.weights, args.repeats) for name in SOURCES},
    }  # fmt: skip
    emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
