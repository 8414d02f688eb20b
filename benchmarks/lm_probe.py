"""MiniLM-L6 linear probe on real movie reviews: MeZO, PeZO, QZO-FF 16w8a and backprop, 3 seeds.

The ``probe`` variant of ``lm_reviews.py``, the "last mile" regime of PAPERS.md B
on text: MiniLM-L6 (the offline wheel) is frozen, every review is turned into one
sentence vector once (:func:`edgezo.integrations.probe.sentence_features`: the
mean of the last hidden states), and a new 384x2 head (770 numbers) is trained on
the cached vectors. Task: :func:`edgezo.data.reviews.movie_reviews`,
``--per-class`` training reviews of each class (seeded: each seed draws its own
subset, batch order, head initialization and perturbations), the data module's
1,000-review ``validation`` split (disjoint from train and test) to choose the
hyper-parameters, the 1,000 ``test`` reviews to report.

Methods (rows of ``results.json``):

* ``zero-shot``: the untrained head (chance: the vacuity reference);
* ``mezo``: :func:`edgezo.presets.mezo` (Gaussian ``z``, central, one query);
* ``pezo``: :func:`edgezo.presets.pezo` with a pool of 509 uniform numbers,
  fewer than the 770 trained ones (reused inside every perturbation);
* ``qzo-ff 16w8a``: the whole probe quantized (:func:`~edgezo.integrations.probe.quantize_probe`:
  16-bit weights, 8-bit activations, calibrated on 256 training reviews), its
  features computed by the quantized encoder, its head's int16 weights trained by
  :func:`edgezo.presets.qzo_ff` (sign-3-SPSA, integer perturbation and update);
* ``backprop`` (Adam) and ``backprop sgd`` (plain SGD), on the float features;
* ``backprop 16w8a``: Adam on the 16w8a encoder's vectors (a float head): QZO-FF's
  reference on the same vectors, which separates what the quantized encoder loses
  from what the integer sign-3 training loses.

Budget: every method gets ``--forwards`` forward passes of a batch of ``--batch``:
two per step for mezo and pezo, six for qzo-ff (three queries), and backprop
``forwards / 2`` steps (a forward and a backward each). ``lr`` (and ``eps`` for the
ZO methods) is the grid point with the best validation accuracy averaged over the
seeds; each seed's test accuracy is that of the run trained with it.

    python benchmarks/lm_probe.py --out results/lm-reviews          # the study (~10 min)
    python benchmarks/lm_probe.py --per-class 8 --eval-size 16 --forwards 24 --quick  # a smoke run

Writes ``OUT/results.json`` (the merged-study format of ``edgezo run --seeds``:
one row per method and seed, with ``variant: probe``; provenance, grids,
timings, memory) and prints it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers: no hub access

import torch
import torch.nn.functional as F
from _common import emit_study
from torch import Tensor, nn

from edgezo import cache, presets
from edgezo.analysis.memory import optimizer_state_bytes, weight_bytes
from edgezo.analysis.stats import pack_correct
from edgezo.analysis.tables import decided
from edgezo.data.reviews import LABELS, movie_reviews
from edgezo.fixedpoint import trainable_parameters
from edgezo.integrations.probe import (
    SentenceProbe,
    load_minilm_probe,
    quantize_probe,
    sentence_features,
)
from edgezo.studies.results import provenance

METHODS = ("mezo", "pezo", "qzo-ff 16w8a", "backprop", "backprop sgd", "backprop 16w8a")
#: Forward passes of a batch per step (qzo-ff: 3 queries of 2 forwards).
FORWARDS = {"mezo": 2, "pezo": 2, "qzo-ff 16w8a": 6, "backprop": 2, "backprop sgd": 2,
            "backprop 16w8a": 2}  # fmt: skip
#: The grids: lr values, and eps values for the ZO methods (None: backprop).
GRIDS: dict[str, tuple[tuple[float, ...], tuple[float | None, ...]]] = {
    "mezo": ((1e-3, 3e-3, 1e-2, 3e-2), (1e-3, 1e-2)),
    "pezo": ((1e-3, 3e-3, 1e-2, 3e-2), (1e-3, 1e-2)),
    "qzo-ff 16w8a": ((1e-4, 3e-4, 1e-3, 3e-3), (1e-3, 1e-2)),
    "backprop": ((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), (None,)),
    "backprop sgd": ((3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0), (None,)),
    "backprop 16w8a": ((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), (None,)),
}
POOL_SIZE = 509  # PeZO's pool: a prime below the 770 trained numbers
CLAIMS = (("qzo-ff 16w8a", "backprop", 5.0, 0.8), ("pezo", "mezo", 1.0, 1.0))
Split = tuple[Tensor, Tensor]


def featurize(args: argparse.Namespace) -> dict[str, Any]:
    """Every review's sentence vector, once per backbone (float, 16w8a), and the reviews' splits."""
    tokenizer, probe = load_minilm_probe(len(LABELS), seed=0)
    train = {s: movie_reviews("train", per_class=args.per_class, seed=s) for s in args.seeds}
    texts = list(dict.fromkeys(t for s in args.seeds for t in train[s][0]))  # each review once
    evals = {name: movie_reviews(name) for name in ("validation", "test")}
    evals = {k: (t[: args.eval_size], y[: args.eval_size]) for k, (t, y) in evals.items()}
    calibration = movie_reviews("train")[0][: args.calibration]  # fixed: the same for every seed
    quantize = lambda p: quantize_probe(p, tokenizer, calibration, args.max_length)  # noqa: E731
    quantized = quantize(probe)
    out: dict[str, Any] = {"backbones": {}, "model_bytes": {}, "seconds_per_review": {},
                           "cpu_seconds_per_review": {}}  # fmt: skip
    for name, model in (("float", probe), ("16w8a", quantized)):
        done = {key: features(model, tokenizer, chunk, name, args)
                for key, chunk in [("train", texts), *((k, v[0]) for k, v in evals.items())]}  # fmt: skip
        vectors = {key: x for key, (x, _) in done.items()}
        seconds = sum(t for _, t in done.values())
        index = {t: i for i, t in enumerate(texts)}
        out["backbones"][name] = {
            **{s: (vectors["train"][[index[t] for t in train[s][0]]], torch.tensor(train[s][1]))
               for s in args.seeds},
            **{k: (vectors[k], torch.tensor(evals[k][1])) for k in evals},
        }  # fmt: skip
        out["model_bytes"][name] = weight_bytes(model)
        out["seconds_per_review"][name] = seconds / (len(texts) + 2 * args.eval_size)
        sample = evals["test"][0][: args.timing_reviews]  # timed again, in CPU seconds
        cpu = time.process_time()
        sentence_features(model, tokenizer, sample, args.max_length)
        out["cpu_seconds_per_review"][name] = (time.process_time() - cpu) / len(sample)
    seeded = {s: SentenceProbe(probe.encoder, len(LABELS), tokenizer.pad_token_id, s)
              for s in args.seeds}  # fmt: skip
    out["heads"] = {
        "float": {s: p.head for s, p in seeded.items()},
        "16w8a": {s: quantize(p).head for s, p in seeded.items()},  # the same encoder integers
    }
    return out


def features(model, tokenizer, texts: list[str], backbone: str, args) -> tuple[Tensor, float]:
    """:func:`sentence_features` of ``texts`` and the seconds they took, from the cache when this exact set was done before
    (keyed by the texts' SHA-256, the backbone, the length and calibration, torch's version)."""
    key = {"what": "benchmarks/lm_probe.py sentence features", "format": 1, "backbone": backbone,
           "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "torch": torch.__version__,
           "max_length": args.max_length, "calibration": args.calibration}  # fmt: skip
    hit = cache.load_state("lm-probe-features", key)
    if hit is None or args.no_cache:
        started = time.perf_counter()
        x = sentence_features(model, tokenizer, texts, args.max_length)
        seconds = torch.tensor(time.perf_counter() - started, dtype=torch.float64)
        hit = {"x": x, "seconds": seconds}  # the time it took when it was computed
        cache.save_state("lm-probe-features", key, hit)
    return hit["x"], float(hit["seconds"])


def make_optimizer(method: str, params: list[Tensor], lr: float, eps: float | None, seed: int):
    """The optimizer of ``method`` over the head's parameters."""
    if method in ("backprop", "backprop 16w8a"):
        return torch.optim.Adam(params, lr=lr)
    if method == "backprop sgd":
        return torch.optim.SGD(params, lr=lr)
    if method == "mezo":
        return presets.mezo(params, lr=lr, eps=eps, seed=seed)
    if method == "pezo":
        return presets.pezo(params, lr=lr, eps=eps, seed=seed, pool_size=POOL_SIZE)
    return presets.qzo_ff(params, lr=lr, eps=eps, seed=seed)


def train_head(
    method: str, head: nn.Module, data: Split, lr: float, eps: float | None, seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """Train ``head`` (changed in place) within the forward budget; seconds per step, memory."""
    trained = (
        list(trainable_parameters(head)) if method == "qzo-ff 16w8a" else list(head.parameters())
    )
    opt = make_optimizer(method, trained, lr, eps, seed)
    steps = max(1, args.forwards // FORWARDS[method])
    order = torch.Generator().manual_seed(seed)
    x, y = data
    started, cpu, losses = time.perf_counter(), time.process_time(), []
    for _ in range(steps):
        pick = torch.randint(0, len(y), (args.batch,), generator=order)
        xb, yb = x[pick], y[pick]
        if isinstance(opt, presets.ZO):
            loss = opt.step(lambda xb=xb, yb=yb: F.cross_entropy(head(xb), yb))
        else:
            opt.zero_grad()
            loss = F.cross_entropy(head(xb), yb)
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
    grads = sum(p.grad.numel() * p.grad.element_size() for p in trained if p.grad is not None)
    return {
        "steps": steps, "seconds_per_step": (time.perf_counter() - started) / steps,
        "cpu_seconds_per_step": (time.process_time() - cpu) / steps,
        "train_loss_last": statistics.fmean(losses[-max(1, steps // 10):]),
        "training_state_bytes": grads + optimizer_state_bytes(opt),
    }  # fmt: skip


@torch.no_grad()
def correct(head: nn.Module, data: Split) -> Tensor:
    return head(data[0]).argmax(-1) == data[1]


def grid_run(method, backbone, head0, seed, lr, eps, args) -> dict[str, Any]:
    """One (method, seed, lr, eps) run: a fresh copy of the seed's initial head, trained."""
    head = copy.deepcopy(head0)
    info = train_head(method, head, backbone[seed], lr, eps, seed, args)
    accuracy = float(correct(head, backbone["validation"]).float().mean())
    return {"lr": lr, "eps": eps, **info, "validation": accuracy,
            "test_correct": correct(head, backbone["test"])}  # fmt: skip


def method_rows(method: str, feats: dict[str, Any], args: argparse.Namespace) -> tuple[list, list]:
    """The grid of ``method`` over every seed; its rows at the grid point with the best mean
    validation accuracy, and one summary line per grid point."""
    fmt = "16w8a" if "16w8a" in method else "float"  # the vectors of this encoder
    backbone = feats["backbones"][fmt]
    heads = feats["heads"]["16w8a" if method == "qzo-ff 16w8a" else "float"]
    runs = {(lr, eps, s): grid_run(method, backbone, heads[s], s, lr, eps, args)
            for lr, eps in itertools.product(*GRIDS[method]) for s in args.seeds}  # fmt: skip
    points = list(itertools.product(*GRIDS[method]))
    score = {p: statistics.fmean(runs[(*p, s)]["validation"] for s in args.seeds) for p in points}
    best = max(points, key=lambda p: score[p])  # ties: the first (smallest lr, then eps)
    grid = [{"method": method, "lr": lr, "eps": eps, "validation": score[lr, eps],
             "chosen": (lr, eps) == best} for lr, eps in points]  # fmt: skip
    rows = []
    for s in args.seeds:
        run = runs[(*best, s)]
        flags = run.pop("test_correct")
        rows.append({"method": method, "variant": "probe", "seed": s,
                     "accuracy": float(flags.float().mean()), "correct": pack_correct(flags.numpy()),
                     "examples": len(flags), "validation_accuracy": run.pop("validation"),
                     "forwards": run["steps"] * FORWARDS[method], "quantized": fmt == "16w8a",
                     "model_bytes": feats["model_bytes"][fmt], **run})  # fmt: skip
    return rows, grid


def zero_shot_rows(feats: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The untrained head of each seed on the test reviews (the vacuity reference)."""
    rows = []
    for s in args.seeds:
        flags = correct(feats["heads"]["float"][s], feats["backbones"]["float"]["test"])
        rows.append({"method": "zero-shot", "variant": "probe", "seed": s,
                     "accuracy": float(flags.float().mean()), "correct": pack_correct(flags.numpy()),
                     "examples": len(flags), "steps": 0, "forwards": 0,
                     "model_bytes": feats["model_bytes"]["float"]})  # fmt: skip
    return rows


def study(args: argparse.Namespace) -> dict[str, Any]:
    """The whole probe study as a merged ``results.json`` payload."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    feats = featurize(args)
    feature_seconds = time.perf_counter() - started
    rows, grid = zero_shot_rows(feats, args), []
    for method in METHODS:
        more, points = method_rows(method, feats, args)
        rows, grid = rows + more, grid + points
    claims = [decided(rows, {"claim": f"{m} within {p:g} points of {r}", "method": m,
                             "reference": r, "points": p, "wanted": w}) for m, r, p, w in CLAIMS]  # fmt: skip
    total = time.perf_counter() - started
    config = {k: v for k, v in vars(args).items() if k != "out"}
    return {
        "study": "lm-reviews", "quick": args.quick, "seeds": list(args.seeds), "keys": ["variant"],
        "provenance": provenance(), "rows": rows, "claims": claims, "grid": grid,
        "config": {**config, "grids": {m: [list(v) for v in g] for m, g in GRIDS.items()},
                   "forwards_per_step": FORWARDS, "pool_size": POOL_SIZE},
        # wall time of the whole run, split evenly over the seeds (they share the features)
        "seconds": {str(s): total / len(args.seeds) for s in args.seeds},
        "feature_seconds": feature_seconds, "seconds_per_review": feats["seconds_per_review"],
        "cpu_seconds_per_review": feats["cpu_seconds_per_review"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=512, help="training reviews per class")
    ap.add_argument(
        "--eval-size",
        type=int,
        default=1000,
        help="validation and test reviews (1000: all; fewer for a smoke run)",
    )
    ap.add_argument(
        "--calibration",
        type=int,
        default=256,
        help="training reviews that fix the 16w8a activation scales",
    )
    ap.add_argument("--forwards", type=int, default=12000, help="forward passes per run")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--timing-reviews",
        type=int,
        default=128,
        help="test reviews whose sentence vectors are timed in CPU seconds",
    )
    ap.add_argument(
        "--no-cache",
        action="store_true",
        help="compute the sentence vectors again (and time it) even when cached",
    )
    ap.add_argument("--quick", action="store_true", help="mark the results as a quick run")
    ap.add_argument("--out", help="write OUT/results.json")
    args = ap.parse_args()
    emit_study(study(args), args.out)


if __name__ == "__main__":
    main()
