"""QZO-FF in fixed point vs float ZO vs backprop: last-mile adaptation of the demo's SmallCNN.

The setting is ``edgezo demo``'s (:mod:`edgezo.studies.demo`): SmallCNN pretrained with
backprop on MNIST (cached), deployed behind a washed-out, noisy camera
(zero-shot ~43% on the shifted test set), and its classifier head (1290
parameters: linear probing, the cheapest last-mile regime of PAPERS.md B)
adapted on labelled shifted train images. Rows (final shifted-test accuracy,
mean +/- sample std over seeds; every run of a seed sees the same batches):

* zero-shot: fp32, and the 16w8a and 8w8a quantized models before training;
* fp32 backprop: Adam on the head (lr chosen on the validation set);
* fp32 ZO: sign-m-SPSA, m = 3 (``edgezo.presets.qzo_ff`` on float parameters);
* QZO-FF 16w8a: ``quantize_model`` of the whole model (16-bit weights, 8-bit
  activations calibrated on 4 shifted train batches), ``qzo_ff`` on the
  head's integers (integer perturbation and update);
* QZO-FF 8w8a, forced (the message the tool raises without ``force=True`` is
  recorded; at the chosen lr it may have nothing to say, see ``paper regime``);
* 16w8a with 90% sparse updates (top-k magnitude per tensor, the paper's
  default), and for diagnosis: random masks, fp32 ZO with the same top-k
  masks, and 16w8a with a scale of headroom 2 (``w_max * 2 / qmax``: the
  largest weights are not at the integer limit), dense and 90% sparse. The
  column "trained weights at the integer limit" counts trained integers at
  ``+/-(2**(b-1) - 1)`` at the end: with the paper's scale the largest
  pretrained weight starts there, and perturbations or updates that would
  push such a weight outwards saturate;
* each enhancement on 16w8a alone: momentum-guided sampling (alpha 0.5, beta
  1 for the first 10% of steps, then a ramp to 0.5 over 20%), sharpness-aware
  perturbation (rho = 5 eps), kernel-wise normalization (at the shared lr, and
  at its own lr from its own grid: Eq. 9 makes lr a relative step);
* the paper regime: 16w8a and 8w8a at the largest grid ``lr`` for which the
  tool refuses 8-bit weights (the smallest update rounds to zero).

lr and eps: one grid search of fp32 ZO (seed 0) scored on a validation split
(the last shifted *train* images, disjoint from the adaptation set; the test
set is never used to choose), reused unchanged for every ZO row, fixed point
included. Backprop's Adam lr is chosen the same way from its own grid.

Speed: the backbone is frozen, so its output for an image never changes while
the head trains; each model's features are computed once per image (by that
model: the quantized backbones give their own features) and the closure runs
the head on them. That is exactly the demo's loss (checked on a batch,
``feature_cache_max_abs_diff``) at a fraction of the cost. The step-time
comparison of the integer and float paths is taken on the full model
(``full_model``, as the demo runs it) and on the head alone (``head_only``,
where ZO's own arithmetic dominates).

    python benchmarks/fixedpoint.py [--quick] [--out FILE] [--markdown FILE]
    python benchmarks/fixedpoint.py --from-json FILE --markdown TABLE.md   # re-render only

Prints one JSON object (progress lines go to stderr; ``--quiet`` hides them).
Full run: about 5 minutes on two shared cores (one torch thread). ``--quick``:
the demo's quick backbone, small sets, 150 steps, one seed, no grid (a smoke
run, about 20 s once the quick backbone is cached).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

# before torch loads OpenMP: do not spin on a shared machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from edgezo import ZO, presets  # noqa: E402
from edgezo.analysis.benchmarks import fixedpoint_markdown  # noqa: E402
from edgezo.directions import Gaussian  # noqa: E402
from edgezo.directions.guided import MomentumGuided, Ramp  # noqa: E402
from edgezo.estimators import SharpnessAware  # noqa: E402
from edgezo.fixedpoint import trainable_parameters  # noqa: E402
from edgezo.studies import demo  # noqa: E402
from edgezo.studies.results import provenance  # noqa: E402
from edgezo.updates import KernelNormalized, sparse_groups  # noqa: E402

TARGETS = {"q16_vs_fp32_zo_points": 1.0, "sparse_vs_dense_points": 2.0}


@dataclass(frozen=True)
class Config:
    demo: demo.DemoConfig = demo.FULL  # backbone, shift, batch, train/test sizes
    steps: int = 1000  # ZO and backprop steps per run
    seeds: tuple[int, ...] = (0, 1, 2)
    validation: int = 5000  # last shifted train images, for the grid search
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    eps_grid: tuple[float, ...] = (1e-3, 1e-2)
    bp_lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    # kernel-wise normalization makes lr relative (||dw_i|| = lr ||w_i|| per query): its own grid
    kn_lr_grid: tuple[float, ...] = (1e-2, 3e-2, 1e-1)
    sparsity: float = 0.9
    headroom: float = 2.0  # diagnostic rows: w_max * headroom / qmax (the paper's is 1)
    guided_alpha: float = 0.5
    guided_beta: float = 0.5  # final beta of the ramp (from 1)
    rho_multiple: int = 5  # sharpness-aware radius rho = rho_multiple * eps
    curve_points: int = 5  # test accuracy recorded this many times per run
    timing_repeats: int = 7
    timing_steps: tuple[int, int] = (5, 20)  # steps per repeat: (full model, head only)
    paper_regime: bool = True
    quick: bool = False
    lr: float | None = None  # skip the grid: use these
    eps: float | None = None
    bp_lr: float | None = None
    kn_lr: float | None = None


FULL = Config()
QUICK = Config(
    demo=replace(demo.QUICK, train_samples=2000, test_samples=1000),
    steps=150,
    seeds=(0,),
    validation=0,
    timing_repeats=3,
    timing_steps=(2, 5),
    paper_regime=False,
    quick=True,
    lr=3e-3,
    eps=1e-3,
    bp_lr=1e-2,
    kn_lr=3e-2,
)


# -- data and models ----------------------------------------------------------------------------
@torch.no_grad()
def features(model: nn.Module, x: Tensor, chunk: int = 1000) -> Tensor:
    """``model.features(x)``: the frozen backbone's output, once per image."""
    model.eval()
    return torch.cat([model.features(x[i : i + chunk]) for i in range(0, len(x), chunk)])


@dataclass
class Variant:
    """One deployed model (fp32 or quantized) and its cached features."""

    name: str
    model: nn.Module
    feats: dict[str, Tensor]

    def head(self) -> nn.Module:
        """A fresh copy of the head (float, or fixed point with its activation hook)."""
        return copy.deepcopy(self.model.head)

    def params(self, head: nn.Module) -> list[Tensor]:
        if self.name == "fp32":
            for p in head.parameters():
                p.requires_grad_(True)
            return list(head.parameters())
        return list(trainable_parameters(head))


@torch.no_grad()
def head_accuracy(head: nn.Module, f: Tensor, y: Tensor) -> float:
    head.eval()
    return float((head(f).argmax(1) == y).double().mean())


# -- one run --------------------------------------------------------------------------------------
def batches(n: int, steps: int, batch: int, seed: int) -> list[Tensor]:
    """The batch indices of a seed: the demo's draw (``randint`` from a seeded generator)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, n, (batch,), generator=gen) for _ in range(steps)]


def zo_run(
    variant: Variant,
    make: Callable[[list[Any]], ZO],
    data: dict[str, tuple[Tensor, Tensor]],
    order: list[Tensor],
    score: str,
    curve_every: int,
    sparse: float | None = None,
    rule: str = "topk",
) -> dict[str, Any]:
    """Train a fresh head with the optimizer ``make(params)``; accuracy on ``score`` at the end.

    ``sparse``: train only that fraction's complement of each tensor, masks by ``rule``.
    """
    head = variant.head().eval()
    params: list[Any] = variant.params(head)
    if sparse is not None:
        params = sparse_groups(params, sparsity=sparse, rule=rule)
    opt = make(params)

    def step(fb: Tensor, yb: Tensor) -> None:
        opt.step(lambda: F.cross_entropy(head(fb), yb))

    result = train_head(head, step, variant, data, order, score, curve_every)
    result.update(
        steps=opt.steps,
        forwards=opt.forwards,
        skipped=opt.skipped,
        saturated=saturated_fraction(opt),
    )
    return result


def train_head(
    head: nn.Module,
    step: Callable[[Tensor, Tensor], None],
    variant: Variant,
    data: dict[str, tuple[Tensor, Tensor]],
    order: list[Tensor],
    score: str,
    curve_every: int,
) -> dict[str, Any]:
    """Run ``step(features, labels)`` over the batches of ``order``: accuracy, curve, seconds."""
    f_train, y_train = variant.feats["train"], data["train"][1]
    f_score, y_score = variant.feats[score], data[score][1]
    curve = []
    start = time.perf_counter()
    for i, idx in enumerate(order):
        step(f_train[idx], y_train[idx])
        if curve_every and (i + 1) % curve_every == 0 and i + 1 < len(order):
            curve.append([i + 1, head_accuracy(head, f_score, y_score)])
    seconds = time.perf_counter() - start
    acc = head_accuracy(head, f_score, y_score)
    curve.append([len(order), acc])
    return {"acc": acc, "seconds": seconds, "curve": curve}


def saturated_fraction(opt: ZO) -> float | None:
    """Fraction of the trained integer weights at the end of their range (``+/-(2**(b-1) - 1)``).

    A weight there cannot grow in magnitude: its perturbation and update saturate.
    The scale is fixed before training at ``w_max / qmax``, so the largest
    pretrained weight starts there. ``None`` for float weights.
    """
    if not opt.space.fixed_segments:
        return None
    at_limit = total = 0
    for seg in opt.space:
        if not seg.fixed:
            continue
        limit = (1 << (seg.param.fixed.bits - 1)) - 1
        on = seg.flat().abs().to(torch.int64) >= limit
        if seg.mask is not None:
            on = on & seg.mask.dense()
        total += seg.trained
        at_limit += int(on.sum())
    return at_limit / max(1, total)


def bp_run(
    variant: Variant,
    lr: float,
    data: dict[str, tuple[Tensor, Tensor]],
    order: list[Tensor],
    score: str,
    curve_every: int,
) -> dict[str, Any]:
    """Adam on the same head and batches (backprop through the head only: the rest is frozen)."""
    head = variant.head().eval()
    opt = torch.optim.Adam(variant.params(head), lr=lr)

    def step(fb: Tensor, yb: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(head(fb), yb).backward()
        opt.step()

    result = train_head(head, step, variant, data, order, score, curve_every)
    result.update(steps=len(order), forwards=len(order), skipped=0)
    return result


# -- the optimizers of the rows -------------------------------------------------------------------
def qzo(lr: float, eps: float, seed: int, force: bool = False, **kw: Any) -> Callable:
    return lambda params: presets.qzo_ff(params, lr=lr, eps=eps, seed=seed, force=force, **kw)


def guided(lr: float, eps: float, seed: int, steps: int, cfg: Config) -> Callable:
    """sign-3-SPSA with momentum-guided z: beta = 1 for the first 10% of steps, then a ramp."""
    ramp = Ramp(final=cfg.guided_beta, steps=max(1, steps // 5), start=steps // 10)
    return lambda params: ZO(
        params,
        lr=lr,
        eps=eps,
        directions=MomentumGuided(Gaussian(seed), alpha=cfg.guided_alpha, beta=ramp),
        estimator="sign",
        queries=3,
    )


def sharpness(lr: float, eps: float, seed: int, cfg: Config) -> Callable:
    return lambda params: ZO(
        params,
        lr=lr,
        eps=eps,
        directions=Gaussian(seed),
        estimator=SharpnessAware("sign", rho=cfg.rho_multiple * eps),
        queries=3,
    )


def tool_message(variant: Variant, lr: float, eps: float) -> str | None:
    """What the tool says before training ``variant``'s head at ``lr``/``eps`` (None: nothing)."""
    try:
        presets.qzo_ff(variant.params(variant.head()), lr=lr, eps=eps, seed=0)
    except ValueError as e:
        return str(e)
    return None


# -- step time: integer path vs float path -------------------------------------------------------
def step_time_ratio(
    float_model: nn.Module,
    int_model: nn.Module,
    xb: Tensor,
    yb: Tensor,
    lr: float,
    eps: float,
    steps: int,
    repeats: int,
) -> dict[str, Any]:
    """Median over repeats of (integer step time / float step time), same batch, interleaved."""
    float_model, int_model = copy.deepcopy(float_model).eval(), copy.deepcopy(int_model).eval()
    f_params = [p for n, p in float_model.named_parameters() if n.startswith("head.")]
    for p in float_model.parameters():
        p.requires_grad_(False)
    for p in f_params:
        p.requires_grad_(True)
    f_opt = presets.qzo_ff(f_params, lr=lr, eps=eps, seed=0)
    i_opt = presets.qzo_ff(trainable_parameters(int_model), lr=lr, eps=eps, seed=0)

    def timed(opt: ZO, model: nn.Module) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            opt.step(lambda: F.cross_entropy(model(xb), yb))
        return (time.perf_counter() - start) / steps

    timed(f_opt, float_model), timed(i_opt, int_model)  # warm-up
    f_times, i_times, ratios = [], [], []
    for _ in range(repeats):
        f, i = timed(f_opt, float_model), timed(i_opt, int_model)
        f_times.append(f), i_times.append(i), ratios.append(i / f)
    return {
        "float_step_ms": 1e3 * statistics.median(f_times),
        "int_step_ms": 1e3 * statistics.median(i_times),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "steps_per_repeat": steps,
        "repeats": repeats,
    }


class _HeadOnly(nn.Module):
    """The head on cached features, shaped like a model for :func:`step_time_ratio`."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, f: Tensor) -> Tensor:
        return self.head(f)


# -- the benchmark --------------------------------------------------------------------------------
def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["acc"] for r in runs]
    return {
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "accs": accs,
        "steps": runs[0]["steps"],
        "forwards_per_step": runs[0]["forwards"] / max(1, runs[0]["steps"]),
        "skipped": sum(r["skipped"] for r in runs),
        "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
        "curves": [r["curve"] for r in runs],
        "saturated": (
            None
            if runs[0].get("saturated") is None
            else statistics.fmean(r["saturated"] for r in runs)
        ),
    }


def run(cfg: Config, log: Callable[[str], None]) -> dict[str, Any]:
    wall = time.perf_counter()
    sections: dict[str, float] = {}

    def section(name: str, since: float) -> float:
        now = time.perf_counter()
        sections[name] = now - since
        log(f"{name}: {now - since:.1f} s")
        return now

    t = time.perf_counter()
    dcfg = cfg.demo
    backbone, cached, _ = demo.pretrain(dcfg, progress=False)
    data = demo.load_data(dcfg, validation=cfg.validation)
    t = section("pretrain_and_data", t)

    x_train = data["train"][0]
    splits = [s for s in ("train", "validation", "test") if s in data]
    fp32 = Variant("fp32", backbone, {})
    q16 = Variant("16w8a", demo.quantize_backbone(backbone, x_train, dcfg, 16, 8), {})
    q8 = Variant("8w8a", demo.quantize_backbone(backbone, x_train, dcfg, 8, 8), {})
    q16h = Variant(  # scale with headroom: the largest weights are not at the integer limit
        "16w8a",
        demo.quantize_backbone(backbone, x_train, dcfg, 16, 8, headroom=cfg.headroom),
        {},
    )
    for v in (fp32, q16, q8, q16h):
        for s in splits if v is fp32 else [s for s in splits if s != "validation"]:
            v.feats[s] = features(v.model, data[s][0])
    # the cached features give the demo's loss: check it on one batch
    xb, yb = x_train[: dcfg.batch], data["train"][1][: dcfg.batch]
    cache_diff = 0.0
    with torch.no_grad():
        for v in (fp32, q16, q8, q16h):
            full = v.model(xb)
            cached_logits = v.model.head(v.feats["train"][: dcfg.batch])
            cache_diff = max(cache_diff, float((full - cached_logits).abs().max()))
    t = section("quantize_and_features", t)

    y_test = data["test"][1]
    zero_shot = {
        v.name: head_accuracy(v.model.head, v.feats["test"], y_test) for v in (fp32, q16, q8)
    }
    zero_shot["16w8a_headroom"] = head_accuracy(q16h.model.head, q16h.feats["test"], y_test)
    curve_every = max(1, cfg.steps // cfg.curve_points)

    # grid search (seed 0, validation split): ZO lr/eps on fp32, Adam lr for backprop
    grid: dict[str, Any] = {"zo": [], "bp": [], "kn": []}
    lr, eps, bp_lr, kn_lr = cfg.lr, cfg.eps, cfg.bp_lr, cfg.kn_lr
    if lr is None or eps is None or bp_lr is None or kn_lr is None:
        if "validation" not in data:
            raise ValueError("a grid search needs a validation split (Config.validation > 0)")
        order0 = batches(len(x_train), cfg.steps, dcfg.batch, seed=0)
        if lr is None or eps is None:
            for g_lr in cfg.lr_grid:
                for g_eps in cfg.eps_grid:
                    r = zo_run(fp32, qzo(g_lr, g_eps, 0), data, order0, "validation", 0)
                    grid["zo"].append({"lr": g_lr, "eps": g_eps, "val_acc": r["acc"]})
                    log(f"grid zo lr {g_lr:g} eps {g_eps:g}: val {100 * r['acc']:.2f}%")
            best = max(grid["zo"], key=lambda g: g["val_acc"])
            lr, eps = best["lr"], best["eps"]
        if bp_lr is None:
            for g_lr in cfg.bp_lr_grid:
                r = bp_run(fp32, g_lr, data, order0, "validation", 0)
                grid["bp"].append({"lr": g_lr, "val_acc": r["acc"]})
                log(f"grid bp lr {g_lr:g}: val {100 * r['acc']:.2f}%")
            bp_lr = max(grid["bp"], key=lambda g: g["val_acc"])["lr"]
        if kn_lr is None:
            for g_lr in cfg.kn_lr_grid:
                make = qzo(g_lr, eps, 0, update=KernelNormalized())
                r = zo_run(fp32, make, data, order0, "validation", 0)
                grid["kn"].append({"lr": g_lr, "eps": eps, "val_acc": r["acc"]})
                log(f"grid kernel-normalized lr {g_lr:g}: val {100 * r['acc']:.2f}%")
            kn_lr = max(grid["kn"], key=lambda g: g["val_acc"])["lr"]
        t = section("grid", t)
    assert lr is not None and eps is not None and bp_lr is not None and kn_lr is not None

    # what the tool says before training 8-bit weights (and 16-bit, for contrast)
    message_8w8a = tool_message(q8, lr, eps)
    message_16w8a = tool_message(q16, lr, eps)
    if message_8w8a:
        print(f"[tool, 8w8a at lr {lr:g}, eps {eps:g}]\n{message_8w8a}", file=sys.stderr)
    paper_lr = None
    if cfg.paper_regime:  # the largest grid lr at which the tool refuses 8-bit weights
        refused = [
            g for g in cfg.lr_grid if tool_message(q8, g, eps) and not tool_message(q16, g, eps)
        ]
        paper_lr = max(refused) if refused else None
    message_paper = tool_message(q8, paper_lr, eps) if paper_lr is not None else None
    if message_paper and paper_lr != lr:
        print(f"[tool, 8w8a at lr {paper_lr:g}, eps {eps:g}]\n{message_paper}", file=sys.stderr)

    # the rows: (key, label, variant, kind, optimizer factory per seed, options)
    n, steps = len(x_train), cfg.steps
    rows: list[tuple[str, str, Variant, str, Callable[[int], Callable] | None, dict]] = [
        ("bp_fp32", "fp32 backprop (Adam)", fp32, "bp", None, {}),
        ("zo_fp32", "fp32 ZO sign-3-SPSA", fp32, "zo", lambda s: qzo(lr, eps, s), {}),
        ("q16", "QZO-FF 16w8a", q16, "zo", lambda s: qzo(lr, eps, s), {}),
        ("q8", "QZO-FF 8w8a (forced)", q8, "zo", lambda s: qzo(lr, eps, s, force=True), {}),
        ("q16_sparse", f"16w8a, {cfg.sparsity:.0%} sparse updates (top-k)", q16, "zo",
         lambda s: qzo(lr, eps, s), {"sparse": cfg.sparsity}),
        ("q16_sparse_random", f"16w8a, {cfg.sparsity:.0%} sparse updates (random)", q16, "zo",
         lambda s: qzo(lr, eps, s), {"sparse": cfg.sparsity, "rule": "random"}),
        ("zo_fp32_sparse", f"fp32 ZO, {cfg.sparsity:.0%} sparse updates (top-k)", fp32, "zo",
         lambda s: qzo(lr, eps, s), {"sparse": cfg.sparsity}),
        ("q16_headroom", f"16w8a, headroom {cfg.headroom:g}", q16h, "zo",
         lambda s: qzo(lr, eps, s), {}),
        ("q16_headroom_sparse",
         f"16w8a, headroom {cfg.headroom:g}, {cfg.sparsity:.0%} sparse updates (top-k)", q16h,
         "zo", lambda s: qzo(lr, eps, s), {"sparse": cfg.sparsity}),
        ("q16_guided", "16w8a + momentum-guided sampling", q16, "zo",
         lambda s: guided(lr, eps, s, steps, cfg), {}),
        ("q16_sharpness", "16w8a + sharpness-aware", q16, "zo",
         lambda s: sharpness(lr, eps, s, cfg), {}),
        ("q16_kernel", "16w8a + kernel-wise normalization", q16, "zo",
         lambda s: qzo(lr, eps, s, update=KernelNormalized()), {}),
        ("q16_kernel_own_lr", f"16w8a + kernel-wise normalization, own lr {kn_lr:g}", q16, "zo",
         lambda s: qzo(kn_lr, eps, s, update=KernelNormalized()), {}),
    ]  # fmt: skip
    if paper_lr is not None and paper_lr != lr:
        p_lr = paper_lr
        rows += [
            ("paper_q16", f"paper regime: 16w8a, lr {p_lr:g}", q16, "zo",
             lambda s: qzo(p_lr, eps, s), {}),
            ("paper_q8", f"paper regime: 8w8a (forced), lr {p_lr:g}", q8, "zo",
             lambda s: qzo(p_lr, eps, s, force=True), {}),
        ]  # fmt: skip
    results: dict[str, Any] = {}
    for key, label, variant, kind, make, opts in rows:
        runs = []
        for seed in cfg.seeds:
            order = batches(n, steps, dcfg.batch, seed)
            if kind == "bp":
                r = bp_run(variant, bp_lr, data, order, "test", curve_every)
            else:
                assert make is not None
                r = zo_run(variant, make(seed), data, order, "test", curve_every, **opts)
            runs.append(r)
        results[key] = {"label": label, "precision": variant.name, **summary(runs)}
        m = results[key]
        log(
            f"{label}: {100 * m['mean']:.2f} +/- {100 * m['std']:.2f}% ({m['seconds_per_run']:.1f} s/run)"
        )
    t = section("runs", t)

    # step time of the integer path vs the float path
    timing = {
        "full_model": step_time_ratio(
            backbone, q16.model, xb, yb, lr, eps, cfg.timing_steps[0], cfg.timing_repeats
        ),
        "head_only": step_time_ratio(
            _HeadOnly(backbone.head),
            _HeadOnly(q16.model.head),
            fp32.feats["train"][: dcfg.batch],
            yb,
            lr,
            eps,
            cfg.timing_steps[1],
            cfg.timing_repeats,
        ),
    }
    t = section("timing", t)

    zo, q16r = results["zo_fp32"], results["q16"]
    targets = {
        "q16_within_1pt_of_fp32_zo": {
            "points": 100 * (q16r["mean"] - zo["mean"]),
            "met": 100 * (zo["mean"] - q16r["mean"]) <= TARGETS["q16_vs_fp32_zo_points"],
        },
        "q8_fails_and_tool_warned": {
            "q8_gain_points": 100 * (results["q8"]["mean"] - zero_shot["8w8a"]),
            "q8_vs_q16_points": 100 * (results["q8"]["mean"] - q16r["mean"]),
            "tool_warned": message_8w8a is not None,
            "met": message_8w8a is not None
            and 100 * (results["q8"]["mean"] - zero_shot["8w8a"]) < 5.0,
        },
        "sparse90_within_2pt_of_dense": {
            "points": 100 * (results["q16_sparse"]["mean"] - q16r["mean"]),
            "met": 100 * (q16r["mean"] - results["q16_sparse"]["mean"])
            <= TARGETS["sparse_vs_dense_points"],
            "random_mask_points": 100 * (results["q16_sparse_random"]["mean"] - q16r["mean"]),
            "fp32_topk_vs_fp32_dense_points": 100
            * (results["zo_fp32_sparse"]["mean"] - zo["mean"]),
            "headroom_topk_vs_headroom_dense_points": 100
            * (results["q16_headroom_sparse"]["mean"] - results["q16_headroom"]["mean"]),
        },
        "enhancements_points_vs_16w8a": {
            k: 100 * (results[k]["mean"] - q16r["mean"])
            for k in (
                "q16_sparse",
                "q16_guided",
                "q16_sharpness",
                "q16_kernel",
                "q16_kernel_own_lr",
            )
        },
    }
    if "paper_q8" in results:
        targets["paper_regime"] = {
            "lr": paper_lr,
            "tool_warned": message_paper is not None,
            "q8_gain_points": 100 * (results["paper_q8"]["mean"] - zero_shot["8w8a"]),
            "q16_gain_points": 100 * (results["paper_q16"]["mean"] - zero_shot["16w8a"]),
        }
    cfg_json = asdict(cfg)
    return {
        "benchmark": "fixedpoint",
        "provenance": provenance(),
        "quick": cfg.quick,
        "config": cfg_json,
        "torch_threads": torch.get_num_threads(),
        "backbone": {
            "cached": cached,
            "clean_test_acc": demo.accuracy(backbone, *data["clean_test"]),
            "adapted": [n for n, _ in demo.named_adapted(backbone, dcfg.adapt)],
            "adapted_numel": sum(p.numel() for _, p in demo.named_adapted(backbone, dcfg.adapt)),
        },
        "data": {s: len(data[s][1]) for s in data},
        "feature_cache_max_abs_diff": cache_diff,
        "zero_shot": zero_shot,
        "chosen": {
            "lr": lr,
            "eps": eps,
            "bp_lr": bp_lr,
            "kn_lr": kn_lr,
            "grid_searched": bool(grid["zo"]),
        },
        "grid": grid,
        "tool": {
            "8w8a": {"warned": message_8w8a is not None, "message": message_8w8a},
            "16w8a": {"warned": message_16w8a is not None, "message": message_16w8a},
            "8w8a_paper_regime": {"lr": paper_lr, "message": message_paper},
        },
        "rows": results,
        "timing": timing,
        "targets": targets,
        "sections_s": sections,
        "seconds": time.perf_counter() - wall,
    }


# -- Markdown -----------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table with the settings, step times and targets below it
    (:func:`edgezo.analysis.benchmarks.fixedpoint_markdown`: the README's block shows the same)."""
    return fixedpoint_markdown(result)


# -- command line -------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sets, 150 steps, 1 seed")
    ap.add_argument("--out", help="also write the JSON to this file")
    ap.add_argument("--markdown", help="also write the Markdown table to this file")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--steps", type=int, help="steps per run (default 1000; quick 150)")
    ap.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default 3; quick 1)")
    ap.add_argument("--lr", type=float, help="ZO lr (skips the ZO grid; needs --eps)")
    ap.add_argument("--eps", type=float, help="ZO eps (skips the ZO grid; needs --lr)")
    ap.add_argument("--bp-lr", type=float, help="Adam lr of backprop (skips its grid)")
    ap.add_argument("--kn-lr", type=float, help="lr of kernel-wise normalization (skips its grid)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument(
        "--from-json",
        metavar="FILE",
        help="do not run: render FILE (a saved --out) with --markdown",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.seeds is not None:
        cfg = replace(cfg, seeds=tuple(range(args.seeds)))
    if (args.lr is None) != (args.eps is None):
        raise SystemExit("--lr and --eps go together")
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr, eps=args.eps)
    if args.bp_lr is not None:
        cfg = replace(cfg, bp_lr=args.bp_lr)
    if args.kn_lr is not None:
        cfg = replace(cfg, kn_lr=args.kn_lr)

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            result = json.load(f)
    else:
        result = run(cfg, log)
        result["command"] = " ".join(["python benchmarks/fixedpoint.py", *(argv or sys.argv[1:])])
    emit_json(result, args.out)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(result))
    return result


if __name__ == "__main__":
    main()
