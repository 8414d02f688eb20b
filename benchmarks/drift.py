"""How far floating-point perturb/restore moves the weights when nothing should change.

A central ZO step with lr = 0 adds ``+eps z``, ``-2 eps z`` and ``+eps z``: the
weights should come back unchanged, but every addition rounds. This measures
the drift per dtype and source, after 1 and after many steps, in ulps of each
weight (``torch.finfo``-spacing at its value), next to a MeZO-style reference
implementation (global RNG re-seeded per tensor, ``torch.normal``, out-of-place
``param.data = param.data + scale * eps * z``, PEERS.md).

It also measures a failed step (a NaN at the last forward): how close the
restore comes, against README's bound ``2 q finfo.eps (|w| + max_i |eps z_i|)``
(``failed_step``: the largest ratio to ``q finfo.eps (...)``, so at most 2).

    python benchmarks/drift.py [--steps 100] [--dim 100000] [--out FILE]

Prints one JSON object (and writes it to ``--out``), with what made it under ``env``.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
from _common import emit_json, provenance

from edgezo import ZO
from edgezo.directions import Gaussian, Pool

WEIGHT_STD = 0.05  # the weights ~ N(0, WEIGHT_STD), a trained layer's scale
FAILED_STEP_SEEDS = 5


def spacing(w: torch.Tensor) -> torch.Tensor:
    """ulp of each element (float64): the gap to the next representable value away from zero."""
    up = torch.nextafter(w.abs(), torch.tensor(float("inf"), dtype=w.dtype))
    return (up.double() - w.abs().double()).clamp_min(torch.finfo(w.dtype).tiny)


def mezo_round_trip(params: list[torch.Tensor], eps: float, seed: int) -> None:
    """MeZO's perturb_parameters(+1, -2, +1) with the global RNG, as in its trainer."""
    for scale in (1, -2, 1):
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(mean=0, std=1, size=p.shape, dtype=p.dtype)
            p.data = p.data + scale * z * eps


def summarise(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    ulp = (after.double() - before.double()).abs() / spacing(before)
    return {
        "changed_fraction": float((after != before).double().mean()),
        "median_ulps": float(ulp.median()),
        "p99_ulps": float(ulp.quantile(0.99)) if ulp.numel() <= 2**24 else float("nan"),
        "max_ulps": float(ulp.max()),
    }


def measure(dtype: torch.dtype, how: str, steps: int, dim: int, eps: float) -> dict[str, dict]:
    g = torch.Generator().manual_seed(0)
    weight = (torch.randn(dim, generator=g) * WEIGHT_STD).to(dtype)
    bias = torch.zeros(dim // 10, dtype=dtype)
    params = [weight.clone(), bias.clone()]
    loss = lambda: torch.tensor(1.0)  # noqa: E731  (flat loss: only rounding can move w)
    out = {}
    for done in sorted({1, steps}):
        for p, init in zip(params, [weight, bias], strict=True):
            p.copy_(init)
        if how == "mezo-style":
            for s in range(done):
                mezo_round_trip(params, eps, seed=s)
        else:
            source = Gaussian(0) if how == "gaussian" else Pool(2**20 + 1, seed=0)
            opt = ZO(params, lr=0.0, eps=eps, directions=source)
            for _ in range(done):
                opt.step(loss)
        out[f"after_{done}"] = {
            "weights": summarise(weight, params[0]),
            "zero_bias": {"nonzero_fraction": float((params[1] != 0).double().mean())},
        }
    return out


def failed_step(dtype: torch.dtype, estimator: str, queries: int, dim: int, eps: float) -> dict:
    """A step whose last forward returns NaN (the most roundings before the restore), 5 seeds:
    the largest ``|w' - w| / (q finfo.eps (|w| + max_i |eps z_i|))`` (README: at most 2) and the
    fraction of weights not put back exactly. ``dim`` weights ~ N(0, 0.05) plus ``dim/10`` zeros."""
    info, worst, changed = torch.finfo(dtype), 0.0, 0.0
    fail_at = 2 * queries if estimator == "central" else queries + 1
    for seed in range(FAILED_STEP_SEEDS):
        g = torch.Generator().manual_seed(seed)
        init = torch.randn(dim, generator=g) * WEIGHT_STD
        init = torch.cat([init, torch.zeros(dim // 10)]).to(dtype)
        w = torch.nn.Parameter(init.clone())
        opt = ZO(
            [w], lr=1.0, eps=eps, directions=Gaussian(seed), estimator=estimator, queries=queries
        )
        calls = iter(range(1, fail_at + 1))
        opt.step(lambda calls=calls: torch.tensor(math.nan if next(calls) == fail_at else 1.0))
        z = torch.stack(
            [opt.directions.sample(0, i, 0, w.numel(), dtype=torch.float64) for i in range(queries)]
        )
        scale = info.eps * (init.double().abs() + eps * z.abs().amax(0)) + info.tiny * info.eps
        drift = (w.detach().double() - init.double()).abs()
        worst = max(worst, float((drift / scale).max()) / queries)
        changed = max(changed, float((drift > 0).double().mean()))
    return {"max_bound_ratio": round(worst, 3), "changed_fraction": round(changed, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = provenance()
    results = {
        str(dtype).removeprefix("torch."): {
            how: measure(dtype, how, args.steps, args.dim, args.eps)
            for how in ("gaussian", "pool", "mezo-style")
        }
        for dtype in (torch.float32, torch.bfloat16, torch.float16)
    }
    failed = {
        f"{str(dtype).removeprefix('torch.')}/{estimator}/q{q}": failed_step(
            dtype, estimator, q, args.dim, args.eps
        )
        for dtype in (torch.float32, torch.bfloat16, torch.float16)
        for estimator in ("central", "forward")
        for q in (1, 3)
    }
    result = {
        "benchmark": "drift",
        "eps": args.eps,
        "dim": args.dim,
        "weight_std": WEIGHT_STD,
        "zero_biases": args.dim // 10,
        "steps": args.steps,
        "failed_step_seeds": FAILED_STEP_SEEDS,
        "results": results,
        "failed_step": failed,
        "env": {**env, "loadavg_at_end": list(os.getloadavg())},
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
