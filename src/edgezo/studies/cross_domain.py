"""Cross-domain adaptation (QZO-FF, PAPERS.md B): a ViT pretrained on one dataset is
adapted to another, by linear probing (``lp``) and by deep visual prompt tuning (``vpt``).

Here: the studies' ViT (:meth:`~edgezo.models.ViTConfig.small`) pretrained with
backprop on MNIST, adapted to Fashion-MNIST and to scikit-learn's 8x8 digits
(resized to 28x28: another camera, another writer). Both target label spaces
are new, so every head starts as the nearest-class-mean classifier of the
pretrained features (:func:`~edgezo.studies.common.prototype_head`), which
is also the zero-shot row: what the device gets with no training at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.images import as_input, image_size, load_images
from ..models.regimes import prepare as prepare_regime
from .common import (
    PROBES,
    Budget,
    Options,
    Study,
    VisionPlan,
    backbone,
    features,
    outcome_of,
    prototype_head,
    regime_plan,
    subsets,
)
from .methods import BOTH_REUSES
from .parallel import Workers
from .results import StudyWriter


@dataclass(frozen=True)
class Config(VisionPlan):
    """The study's data and methods; its budgets, lrs and grids: :class:`~.common.VisionPlan`."""

    arch: str = "vit"
    source: str = "mnist"
    targets: tuple[str, ...] = ("fashion-mnist", "digits")
    regimes: tuple[str, ...] = ("lp", "vpt")
    methods: tuple[str, ...] = BOTH_REUSES
    train: int = 1000  # target training samples
    val: int = 250
    test: int = 2000


FULL = Config()
QUICK = Config(
    train=500,
    val=250,
    test=1000,
    budget=Budget(steps=100, zo_steps=400, batch=32, grid=False),
    probe_budget=Budget(steps=100, zo_steps=400, batch=32, grid=False),
)


def target_data(name: str, cfg: Config, seed: int) -> dict[str, tuple]:
    """Train / val / test inputs of target ``name`` at the source's image size."""
    size = image_size(cfg.source)
    x, y = load_images(name, "train")
    xt, yt = load_images(name, "test")
    train, val = subsets(as_input(x, size), y, (cfg.train, cfg.val), seed)
    (test,) = subsets(as_input(xt, size), yt, (min(cfg.test, len(xt)),), seed)
    return {"train": train, "val": val, "test": test}


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run the study with config ``cfg``, its cells spread over
    ``jobs`` processes; write ``results.json``, ``results.md`` and curves under ``out``."""
    quick, out, seed, progress, jobs = opts.quick, opts.out, opts.seed, opts.progress, opts.jobs
    writer = StudyWriter("cross-domain", out, keys=("target", "regime"), methods=cfg.methods)
    source = backbone(
        cfg.arch, cfg.source, steps=cfg.pretrain_steps, seed=opts.backbone_seed, progress=progress
    )
    workers = Workers(jobs, desc="cross-domain cells", progress=progress)
    cells, tasks = [], []
    for target in cfg.targets:
        data = target_data(target, cfg, seed)
        for regime in cfg.regimes:
            model, _ = prepare_regime(source, regime, classes=10, seed=seed)
            prototype_head(model.head, features(model, data["train"][0]), data["train"][1])
            budget, grids = regime_plan(cfg, regime)
            for method in cfg.methods:
                cells.append({"target": target, "regime": regime})
                tasks.append((
                    method, model, data["train"], data["val"], data["test"],
                    grids.get(method, ()), cfg.settings.get(method), budget,
                    seed, regime in PROBES, workers.task_progress,
                ))  # fmt: skip
    with workers:
        outcomes = workers.map(outcome_of, tasks)
    for cell, outcome in zip(cells, outcomes, strict=True):
        writer.add(outcome, **cell)
    return writer.finish(config=cfg, quick=quick, seed=seed)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
