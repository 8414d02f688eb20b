"""The fixed-point (QZO-FF) step against the float step, with each integer executor (CPU).

SmallCNN (batch 64), quantized 16w8a (``quantize_model``, calibrated on the batch), trained
with ``presets.qzo_ff`` (sign-3-SPSA, Gaussian z, 6 forwards a step); the float model
(the same weights before quantization) with the same preset. Two cases: every layer
trained (``whole``) and the classifier head only (``head``, the demo's case), each timed
in the same interleaved rounds as six forwards of the quantized model (no_grad):

* ``float``: the float step (compiled CPU passes of the counter Gaussian);
* ``int_compiled``: the integer step on its compiled executor (the C step,
  ``edgezo.runtime.step``), what FixedPointFormat takes when a C compiler is there;
* ``int_python``: the same on the torch executor (``EDGEZO_KERNELS=off``), the reference.

Reported: medians (ms) and paired-median ratios to six forwards and to the float step.

    PYTHONPATH=src python benchmarks/fixedpoint_step.py --out results.json
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see step_overhead.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json, timing_parser  # noqa: E402
from step_overhead import environment, interleaved, ratio  # noqa: E402
from torch import nn  # noqa: E402

from edgezo import passes, presets  # noqa: E402
from edgezo.fixedpoint import quantize_model, trainable_parameters  # noqa: E402
from edgezo.models import SmallCNN  # noqa: E402

LR, EPS = 1e-3, 1e-2


def trained(model: nn.Module, head_only: bool) -> list[torch.Tensor]:
    """The parameters a case trains: the integers of a quantized model (else every float
    weight), of the head only with ``head_only``; everything else frozen."""
    params = trainable_parameters(model) or list(model.parameters())
    if head_only:
        head = {id(p) for p in model.head.parameters()}
        params = [p for p in params if id(p) in head]
    for p in model.parameters():
        if p.is_floating_point():
            p.requires_grad_(any(p is q for q in params))
    return params


def step_fn(model: nn.Module, head_only: bool, x, y, mode: str) -> tuple[Callable, str]:
    """One qzo_ff step of ``model`` (the integer executor chosen under ``mode``), and its name."""
    passes.mode = mode
    try:
        opt = presets.qzo_ff(trained(model, head_only), lr=LR, eps=EPS, seed=0)
    finally:
        passes.mode = "auto"
    executor = getattr(opt.formats[-1], "executor", None) if trainable_parameters(model) else None
    return lambda: opt.step(
        lambda: F.cross_entropy(model(x), y)
    ), executor or "float (compiled passes)"


def measure(head_only: bool, repeats: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    base = SmallCNN().eval()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    qmodel = quantize_model(base, weight_bits=16, activation_bits=8, calibration=[x])

    def six_forwards() -> None:
        with torch.no_grad():
            for _ in range(6):
                F.cross_entropy(qmodel(x), y)

    fns: dict[str, Callable[[], Any]] = {"six_forwards": six_forwards}
    executors = {}
    cases = {"float": (copy.deepcopy(base), "auto"), "int_compiled": (copy.deepcopy(qmodel), "auto"),
             "int_python": (copy.deepcopy(qmodel), "off")}  # fmt: skip
    for name, (model, mode) in cases.items():
        fns[name], executors[name] = step_fn(model, head_only, x, y, mode)
    times = interleaved(fns, repeats, warmup)
    out: dict[str, Any] = {"executors": executors, "steps": {}}
    for name, values in times.items():
        entry: dict[str, Any] = {"median_ms": 1e3 * statistics.median(values)}
        if name != "six_forwards":
            entry["paired_median_to_six_forwards"] = ratio(times, name, "six_forwards")[
                "paired_median_ratio"
            ]
            entry["paired_median_to_float_step"] = ratio(times, name, "float")[
                "paired_median_ratio"
            ]
        out["steps"][name] = entry
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = timing_parser(__doc__, 15)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "fixedpoint_step",
        "env": environment(args.threads),
        "config": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "lr": LR,
            "eps": EPS,
            "preset": "qzo_ff (sign, 3 queries, Gaussian)",
            "batch": 64,
        },  # fmt: skip
        "cases": {c: measure(c == "head", args.repeats, args.warmup) for c in ("whole", "head")},
    }
    results["wall_s"] = time.perf_counter() - start
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
