"""PeZO's adaptive-scaling rules compared: which scale keeps the ZO estimate unbiased?

PeZO (PAPERS.md A) replaces the Gaussian by a uniform distribution, and its
pre-generation variant reuses a finite pool, "scaled so the estimator keeps the
right magnitude"; the exact rule is not public. edgezo offers:

* ``Uniform(scale="unit")``: uniform on [-sqrt 3, sqrt 3], E[z z^T] = I;
* ``Uniform(scale="perturbation")``: every z rescaled so ||z||^2 = d;
* ``Pool(scale="pool")``: the pool divided once by its empirical RMS;
* ``Pool(scale="unit")``: the pool as drawn (no correction);
* ``Pool(scale="perturbation")``: every window rescaled so ||z||^2 = d;

for a small pool (P = 2**10 < d) and a large one (P = 2**20 > d), with
``Gaussian`` as the reference. The model is a 64-32-10 MLP on scikit-learn's
8x8 digits (d = 2410 weights). For every rule:

1. ``estimator``: at the initial weights, on a fixed batch, K central estimates
   ``g_k = c_k z_k`` (``c_k = (L(w + eps z_k) - L(w - eps z_k)) / (2 eps)``,
   computed in float64 so only the directions matter), against the autograd
   gradient ``g``: the cosine of their mean to ``g``; ``projection_ratio`` =
   ``<mean g_k, g> / |g|^2``, which is 1 for an unbiased estimator (this is
   what a scale rule corrects); ``second_moment_along_gradient`` =
   ``mean (z_k . u)^2`` with ``u = g / |g|``, the eps -> 0 value of the same
   ratio, i.e. ``u^T E[z z^T] u``. ``isotropic_reference_cosine`` =
   ``1 / sqrt(1 + (d + 1) / K)`` is what Gaussian z give on average. Repeated
   over ``--seeds`` source seeds.
2. ``second_moment``: ``||z_t||^2 / d`` over the same K perturbations: mean,
   standard deviation, min, max.
3. ``training``: ZO-SGD (central, q = 1) with the real ``ZO`` optimizer for
   ``--steps`` steps, batch 64, same model init, data order and source seed
   per seed; final loss on the training split and accuracy on the test split.

Prints one JSON object (also ``--out file.json``). ``--quick`` is a smoke run.

Usage::

    python benchmarks/scale_rules.py
    python benchmarks/scale_rules.py --quick
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/step_overhead.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json, provenance  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from edgezo import ZO  # noqa: E402
from edgezo.directions import Directions, Gaussian, Pool, Uniform  # noqa: E402

HIDDEN = 32
POOL_SIZES = (2**10, 2**20)
EPS = 1e-3


def rules() -> dict[str, Callable[[int], Directions]]:
    """Rule name -> factory taking a seed."""
    out: dict[str, Callable[[int], Directions]] = {
        "Gaussian": lambda s: Gaussian(seed=s),
        "Uniform(unit)": lambda s: Uniform(seed=s, scale="unit"),
        "Uniform(perturbation)": lambda s: Uniform(seed=s, scale="perturbation"),
    }
    for size in POOL_SIZES:
        for scale in Pool.SCALES:
            out[f"Pool(P=2**{size.bit_length() - 1},{scale})"] = lambda s, size=size, scale=scale: (
                Pool(size=size, seed=s, scale=scale)
            )
    return out


# -- data and model ------------------------------------------------------------
def load_data() -> dict[str, Tensor]:
    """Digits, pixels scaled to [0, 1], a fixed 75/25 split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_train = int(0.75 * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def batched_loss(w: Tensor, shapes: list[torch.Size], x: Tensor, y: Tensor) -> Tensor:
    """Loss of the MLP for each row of ``w`` (K, d): flat weights in ``model.parameters()`` order."""
    parts, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        parts.append(w[:, start : start + n].reshape(w.shape[0], *shape))
        start += n
    w1, b1, w2, b2 = parts
    h = torch.relu(torch.einsum("bi,kji->kbj", x, w1) + b1[:, None, :])
    logits = torch.einsum("kbj,kcj->kbc", h, w2) + b2[:, None, :]
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), y.repeat(k), reduction="none")
    return losses.view(k, b).mean(1)


# -- 1 and 2: estimator quality and second moment ------------------------------
def directions_matrix(src: Directions, dim: int, count: int) -> Tensor:
    """``z(step=t, query=0)`` for t < count, as rows (float64)."""
    src.bind(dim, 1)
    return torch.stack([src.sample(t, 0, 0, dim).double() for t in range(count)])


def estimator_quality(
    factory: Callable[[int], Directions], seed: int, data: dict[str, Tensor], k: int, batch: int
) -> dict[str, Any]:
    model = make_model(0)
    shapes = [p.shape for p in model.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    dim = w0.numel()
    x, y = data["x_train"][:batch].double(), data["y_train"][:batch]

    w = w0.clone().requires_grad_(True)
    batched_loss(w[None], shapes, x, y)[0].backward()
    g = w.grad.detach()
    u = g / g.norm()

    src = factory(seed)
    z = directions_matrix(src, dim, k)
    coef = torch.empty(k, dtype=torch.float64)
    for i in range(0, k, 250):
        zc = z[i : i + 250]
        plus = batched_loss(w0 + EPS * zc, shapes, x, y)
        minus = batched_loss(w0 - EPS * zc, shapes, x, y)
        coef[i : i + 250] = (plus - minus) / (2 * EPS)
    mean_est = (coef[:, None] * z).mean(0)
    r = z.square().sum(1) / dim
    out: dict[str, Any] = {
        "cosine_mean_estimate_to_grad": float(F.cosine_similarity(mean_est, g, dim=0)),
        "projection_ratio": float(mean_est @ g / (g @ g)),
        "second_moment_along_gradient": float((z @ u).square().mean()),
        "relative_error_of_mean_estimate": float((mean_est - g).norm() / g.norm()),
        "second_moment": {
            "mean": float(r.mean()),
            "std": float(r.std()),
            "min": float(r.min()),
            "max": float(r.max()),
        },
    }
    if isinstance(src, Pool):
        out["distinct_perturbations"] = src.distinct_perturbations
    return out


# -- 3: training ---------------------------------------------------------------
def train(
    factory: Callable[[int], Directions] | None,
    seed: int,
    data: dict[str, Tensor],
    steps: int,
    lr: float,
    batch: int,
) -> dict[str, Any]:
    """ZO-SGD with ``factory(seed)`` directions, or backprop SGD when ``factory`` is None."""
    model = make_model(seed)
    xt, yt = data["x_train"], data["y_train"]
    gen = torch.Generator().manual_seed(1000 + seed)
    if factory is None:
        opt: Any = torch.optim.SGD(model.parameters(), lr=lr)
    else:
        opt = ZO(model.parameters(), lr=lr, eps=EPS, directions=factory(seed))
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        xb, yb = xt[idx], yt[idx]
        if factory is None:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        else:
            opt.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
    with torch.no_grad():
        loss = float(F.cross_entropy(model(xt), yt))
        acc = float((model(data["x_test"]).argmax(1) == data["y_test"]).float().mean())
    res = {"final_train_loss": loss, "test_accuracy": acc}
    if factory is not None:
        res["skipped_steps"] = opt.skipped
    return res


def mean_of(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows]
    return statistics.fmean(vals) if all(math.isfinite(v) for v in vals) else math.nan


# -- main ----------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (seconds)")
    ap.add_argument("--out", help="also write the JSON to this file")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--k", type=int, help="estimates per rule (default 2000; quick 100)")
    ap.add_argument("--batch", type=int, default=256, help="fixed batch for the estimator check")
    ap.add_argument("--steps", type=int, help="training steps (default 1000; quick 30)")
    ap.add_argument("--lr", type=float, default=0.01, help="ZO learning rate (default 0.01)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2; quick 0)")
    args = ap.parse_args(argv)
    if args.k is None:
        args.k = 100 if args.quick else 2000
    if args.steps is None:
        args.steps = 30 if args.quick else 1000
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_data()
    dim = sum(p.numel() for p in make_model(0).parameters())
    results: dict[str, Any] = {
        "benchmark": "scale_rules",
        "env": {**provenance(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "config": {
            "quick": args.quick,
            "model": f"MLP 64-{HIDDEN}-10 on sklearn digits",
            "dim": dim,
            "pool_sizes": list(POOL_SIZES),
            "eps": EPS,
            "k": args.k,
            "estimator_batch": args.batch,
            "train_steps": args.steps,
            "train_batch": 64,
            "lr": args.lr,
            "seeds": args.seeds,
            "n_train": len(data["x_train"]),
            "n_test": len(data["x_test"]),
        },
        "isotropic_reference_cosine": 1.0 / math.sqrt(1.0 + (dim + 1) / args.k),
        "rules": {},
    }
    for name, factory in rules().items():
        quality = [estimator_quality(factory, s, data, args.k, args.batch) for s in args.seeds]
        training = [train(factory, s, data, args.steps, args.lr, 64) for s in args.seeds]
        results["rules"][name] = {
            "summary": {
                "cosine_mean_estimate_to_grad": mean_of(quality, "cosine_mean_estimate_to_grad"),
                "projection_ratio": mean_of(quality, "projection_ratio"),
                "second_moment_along_gradient": mean_of(quality, "second_moment_along_gradient"),
                "second_moment_mean": statistics.fmean(q["second_moment"]["mean"] for q in quality),
                "second_moment_std": statistics.fmean(q["second_moment"]["std"] for q in quality),
                "final_train_loss": mean_of(training, "final_train_loss"),
                "test_accuracy": mean_of(training, "test_accuracy"),
            },
            "estimator": quality,
            "training": training,
        }
    backprop = [train(None, s, data, args.steps, args.lr, 64) for s in args.seeds]
    results["backprop_sgd_reference"] = {
        "final_train_loss": mean_of(backprop, "final_train_loss"),
        "test_accuracy": mean_of(backprop, "test_accuracy"),
        "per_seed": backprop,
    }
    results["wall_s"] = time.perf_counter() - t0
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
