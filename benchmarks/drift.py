"""How far floating-point perturb/restore moves the weights when nothing should change.

A central ZO step with lr = 0 adds ``+eps z``, ``-2 eps z`` and ``+eps z``: the
weights should come back unchanged, but every addition rounds. This measures
the drift per dtype and source, after 1 and after many steps, in ulps of each
weight (``torch.finfo``-spacing at its value), next to a MeZO-style reference
implementation (global RNG re-seeded per tensor, ``torch.normal``, out-of-place
``param.data = param.data + scale * eps * z``, PEERS.md).

    python benchmarks/drift.py [--steps 100] [--dim 100000]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import torch

from edgezo import ZO
from edgezo.directions import Gaussian, Pool


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
    weight = (torch.randn(dim, generator=g) * 0.05).to(dtype)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--eps", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        str(dtype).removeprefix("torch."): {
            how: measure(dtype, how, args.steps, args.dim, args.eps)
            for how in ("gaussian", "pool", "mezo-style")
        }
        for dtype in (torch.float32, torch.bfloat16, torch.float16)
    }
    print(
        json.dumps(
            {"benchmark": "drift", "eps": args.eps, "dim": args.dim, "results": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
