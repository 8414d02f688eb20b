"""In-domain out-of-distribution adaptation (QZO-FF, PAPERS.md B: CIFAR-10 -> CIFAR-10-C):
a model trained on clean images adapts to the same classes seen through a corrupted camera.

Here: the studies' ViT pretrained with backprop on clean Fashion-MNIST, adapted to
Fashion-MNIST-C (:mod:`edgezo.data.corruptions`: every corruption at severity 1
"easy", 2 "medium" or 3 "hard"). One adaptation per severity: the training
images are split evenly among the corruptions (the device meets all of them),
and the test accuracy is the mean over corruptions of the accuracy on the
corrupted test images. Regimes: linear probing with 1 and 3 layers (``lp``,
``lp3``) and deep prompt tuning (``vpt``); ``sparse zo`` trains 10% of the
weights. Zero-shot is the pretrained model itself (``lp3`` starts from a new
3-layer head, so its zero-shot is chance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..analysis.stats import pack_correct
from ..data.corruptions import CORRUPTIONS, corrupt
from ..data.images import as_input, load_images
from ..models.regimes import prepare as prepare_regime
from .common import (
    PROBES,
    Budget,
    Options,
    Outcome,
    Study,
    VisionPlan,
    backbone,
    correct_flags,
    regime_plan,
    run_method,
    subsets,
)
from .parallel import Workers
from .results import StudyWriter

SEVERITY_NAMES = {1: "easy", 2: "medium", 3: "hard"}


@dataclass(frozen=True)
class Config(VisionPlan):
    """The study's data and methods; its budgets, lrs and grids: :class:`~.common.VisionPlan`."""

    arch: str = "vit"
    source: str = "fashion-mnist"
    severities: tuple[int, ...] = (1, 2, 3)
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)
    regimes: tuple[str, ...] = ("lp", "lp3", "vpt")
    methods: tuple[str, ...] = (
        "zero-shot", "backprop", "zo", "pezo", "qzo-ff 16w8a", "sparse zo",
    )  # fmt: skip
    train: int = 2100  # 100 per corruption
    val: int = 420
    test: int = 500  # per corruption


FULL = Config()
QUICK = Config(
    severities=(1, 3),
    corruptions=("gaussian_noise", "defocus_blur", "fog", "contrast", "pixelate", "rotate"),
    regimes=("lp", "vpt"),
    train=600,
    val=240,
    test=300,
    budget=Budget(steps=100, zo_steps=400, batch=32, grid=False),
    probe_budget=Budget(steps=100, zo_steps=400, batch=32, grid=False),
)


def corrupted_mixture(
    images: Tensor, labels: Tensor, corruptions: tuple[str, ...], severity: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Image ``i`` seen through corruption ``i mod K`` at ``severity``: ``(float inputs, labels)``."""
    out = images.clone()
    for k, name in enumerate(corruptions):
        idx = torch.arange(k, len(images), len(corruptions))
        out[idx] = corrupt(images[idx], name, severity, seed=seed)
    return as_input(out), labels


def adapt_and_test(
    method: str,
    model: torch.nn.Module,
    data: dict[str, tuple[Tensor, Tensor]],
    tests: dict[str, tuple[Tensor, Tensor]],
    cfg: Config,
    regime: str,
    seed: int,
    progress: bool,
) -> tuple[Outcome, dict[str, float]]:
    """One cell: adapt ``model`` in ``regime`` by ``method`` (lr chosen on ``data["val"]``)
    and test it on every corruption; the outcome's accuracy is their mean, and its ``correct``
    flags are every corruption's test images in turn (equal sizes: the claims' paired
    bootstrap over seeds x images reads them). A task of :class:`Workers`."""
    budget, grids = regime_plan(cfg, regime)
    outcome, net = run_method(
        method, model, data["train"], data["val"], None,
        grids.get(method, ()), cfg.settings.get(method), budget,
        seed=seed, head_only=regime in PROBES, progress=progress,
    )  # fmt: skip
    flags = {name: correct_flags(net, *t) for name, t in tests.items()}
    accuracies = {name: f.double().mean().item() for name, f in flags.items()}
    outcome.accuracy = sum(accuracies.values()) / len(accuracies)
    every = torch.cat(list(flags.values()))
    outcome.correct, outcome.examples = pack_correct(every.numpy()), len(every)
    return outcome, accuracies


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run the study with config ``cfg``, its cells spread over
    ``jobs`` processes; write ``results.json``, ``results.md`` and curves under ``out``."""
    quick, out, seed, progress, jobs = opts.quick, opts.out, opts.seed, opts.progress, opts.jobs
    writer = StudyWriter("ood", out, keys=("severity", "regime"), methods=cfg.methods)
    source = backbone(
        cfg.arch, cfg.source, steps=cfg.pretrain_steps, seed=opts.backbone_seed, progress=progress
    )
    x, y = load_images(cfg.source, "train")
    xt, yt = load_images(cfg.source, "test")
    train, val = subsets(x, y, (cfg.train, cfg.val), seed)
    (test,) = subsets(xt, yt, (cfg.test,), seed)
    workers = Workers(jobs, desc="ood cells", progress=progress)
    cells, tasks = [], []
    for severity in cfg.severities:
        data = {
            "train": corrupted_mixture(*train, cfg.corruptions, severity, seed),
            "val": corrupted_mixture(*val, cfg.corruptions, severity, seed + 1),
        }
        tests = {
            name: (as_input(corrupt(test[0], name, severity, seed=seed + 2)), test[1])
            for name in cfg.corruptions
        }
        for regime in cfg.regimes:
            model, _ = prepare_regime(source, regime, seed=seed)
            for method in cfg.methods:
                cells.append({"severity": SEVERITY_NAMES[severity], "regime": regime})
                tasks.append((method, model, data, tests, cfg, regime, seed, workers.task_progress))
    with workers:
        results = workers.map(adapt_and_test, tasks)
    per_corruption: list[dict[str, Any]] = []
    for cell, (outcome, accuracies) in zip(cells, results, strict=True):
        writer.add(outcome, **cell)
        per_corruption += [
            {**cell, "method": outcome.method, "corruption": c, "accuracy": a}
            for c, a in accuracies.items()
        ]
    writer.extra["per_corruption"] = per_corruption
    return writer.finish(config=cfg, quick=quick, seed=seed)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
