"""What the ``jvp`` estimator (forward-mode AD) costs beside a central ZO step: memory and time.

Per workload (``step_overhead.py``'s SmallCNN and ViT-tiny-like model, and an MLP whose
weights dwarf its activations), in units of the trainable weights' bytes:

* ``forward``: the forward's largest live set (activations), ``central`` and ``jvp``: the
  largest live set of one ``ZO.step`` (weights and the pinned batch excluded), measured
  with :class:`edgezo.analysis.memory.LiveTensors`, which sees every tensor an ATen op
  returns (forward-mode tangents included); ``jvp_extra_over_weights`` is
  ``(jvp - forward) / weights``; ``largest_tensor_over_weights`` the largest trained
  tensor's share (PyTorch's forward-AD formula briefly holds one more tensor of that size
  while a tensor's tangent is made);
* ``times``: medians of interleaved rounds of two plain forwards, a central step and a
  jvp step (``--repeats``; a shared machine gives indicative numbers only).

Usage::

    python benchmarks/jvp_memory.py [--workloads mlp smallcnn vittiny] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _common import emit_json
from step_overhead import build, closure_of
from torch import nn

from edgezo import ZO
from edgezo.analysis.memory import forward_peak_activation_bytes, zo_step_scratch_bytes
from edgezo.directions import Gaussian

WORKLOADS = ("mlp", "smallcnn", "vittiny")


def workload(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model and batch: ``step_overhead``'s, or an MLP of 1.6M weights on a batch of 8."""
    if name != "mlp":
        return build(name)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
    model.append(nn.Linear(1024, 10))
    return model.eval(), torch.randn(8, 512), torch.randint(0, 10, (8,))


def memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Largest live sets of a forward, a central step and a jvp step, over the weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in params)
    closure = closure_of(model, x, y)
    out: dict[str, Any] = {"weights_mb": weights / 1e6}
    out["forward_over_weights"] = forward_peak_activation_bytes(model, x) / weights
    for estimator in ("central", "jvp"):
        opt = ZO(params, lr=0.0, eps=1e-3, estimator=estimator, directions=Gaussian(seed=0))
        out[f"{estimator}_over_weights"] = zo_step_scratch_bytes(opt, closure, model, x) / weights
    out["jvp_extra_over_weights"] = out["jvp_over_weights"] - out["forward_over_weights"]
    out["largest_tensor_over_weights"] = max(p.numel() * p.element_size() for p in params) / weights
    return {k: round(v, 4) for k, v in out.items()}


def times(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Median seconds of two forwards, a central step and a jvp step, in interleaved rounds."""
    params = [p for p in model.parameters() if p.requires_grad]
    closure = closure_of(model, x, y)
    opts = {
        e: ZO(params, lr=0.0, eps=1e-3, estimator=e, directions=Gaussian(seed=0))
        for e in ("central", "jvp")
    }

    def two_forwards() -> None:
        with torch.no_grad():
            closure()
            closure()

    fns = {
        "two_forwards": two_forwards,
        **{e: (lambda o=o: o.step(closure)) for e, o in opts.items()},
    }
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r:  # the first round warms up
                samples[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    base = med["two_forwards"]
    return {
        **{f"{k}_s": round(v, 5) for k, v in med.items()},
        "central_over_two_forwards": round(med["central"] / base, 3),
        "jvp_over_two_forwards": round(med["jvp"] / base, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (0: memory only)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__}
    for name in args.workloads:
        model, x, y = workload(name)
        results[name] = {"memory": memory(model, x, y)}
        if args.repeats:
            results[name]["times"] = times(model, x, y, args.repeats)
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
