"""Few-shot adaptation (QZO-FF, PAPERS.md B): 5-way 5-shot episodes, ProtoNets.

Here: backbones pretrained with backprop on MNIST (the studies' ViT and a small
ResNet) meet episodes of Fashion-MNIST's test set: 5 of its 10 classes, 5
labelled images each (the support), 15 more per class to classify (the query),
classes the backbone has never seen. For every episode and method a fresh copy
is adapted on the support set only, then the queries are classified:

* ``ft`` (full fine-tuning with ProtoNets): every weight trains on the
  prototypical loss of the support set (each support image against the class
  means of the support set, by negative squared distance); queries go to the
  nearest class mean of the adapted support features. Batch norm keeps its
  pretrained statistics (25 images are too few to re-estimate them).
* ``lp`` (linear probing): a head initialised as the nearest-class-mean
  classifier trains on the frozen support features with cross-entropy.

Zero-shot is ProtoNets on the pretrained features. Accuracy is the mean over the
test episodes with a 95% interval (1.96 standard errors): 100 for zero-shot and lp,
the first 30 of them for ft (each ft episode adapts a whole backbone; a
QZO-FF episode on the ViT is ~100 three-query integer steps). Learning rates are
chosen on separate validation episodes from Fashion-MNIST's training images.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.episodes import EpisodeSampler
from ..data.images import as_input, load_images
from ..models.regimes import FrozenBatchNorm2d
from ..models.regimes import prepare as prepare_regime
from .common import (
    Budget,
    Options,
    Outcome,
    Study,
    adapt,
    backbone,
    best_lr,
    features,
    prototype_head,
)
from .methods import Settings
from .parallel import Workers
from .results import StudyWriter


@dataclass(frozen=True)
class EpisodePlan:
    """The tasks of a few-shot study (this one and kws-fewshot): ``ways``-way ``shots``-shot
    episodes with ``queries`` queries per class; how many test episodes, and how many
    validation episodes score each learning rate of the grid."""

    ways: int = 5
    shots: int = 5
    queries: int = 15
    episodes: int = 100  # test tasks of zero-shot and lp
    ft_episodes: int = 30  # test tasks of ft (each adapts a copy of the whole backbone)
    val_episodes: int = 10  # per learning rate of the grid


@dataclass(frozen=True)
class Config(EpisodePlan):
    """The study's data, backbones, methods, budget and lrs; its episodes: :class:`EpisodePlan`."""

    source: str = "mnist"
    target: str = "fashion-mnist"
    backbones: tuple[str, ...] = ("resnet", "vit")
    regimes: tuple[str, ...] = ("ft", "lp")
    methods: tuple[str, ...] = ("zero-shot", "backprop", "zo", "pezo", "qzo-ff 16w8a")
    pretrain_steps: int = 2000
    budget: Budget = Budget(steps=50, zo_steps=100, batch=25, grid=True)
    settings: dict[str, dict[str, Settings]] = field(
        default_factory=lambda: {
            # ft lrs: fixed by a single-seed sweep on 10 validation episodes; the three-seed
            # sweep (benchmarks/fewshot_lr.py, docs/studies.md) has ZO's and PeZO's best mean at
            # 1e-5 and QZO-FF's at 3e-3, inside its intervals; ZO at 1e-4 diverges, a sign step
            # needs a larger lr than a ZO-SGD step
            "ft": {
                "backprop": Settings(lr=1e-4),
                "zo": Settings(lr=3e-5),
                "pezo": Settings(lr=3e-5),
                "qzo-ff 16w8a": Settings(lr=1e-3),
            },
            "lp": {
                "backprop": Settings(lr=1e-2),
                "zo": Settings(lr=1e-2),
                "pezo": Settings(lr=1e-2),
                "qzo-ff 16w8a": Settings(lr=5e-4),
            },
        }
    )
    grids: dict[str, dict[str, tuple[float, ...]]] = field(
        default_factory=lambda: {
            # ft: searched only where ``Budget.grid`` and the grid is given (costly: every
            # lr adapts the whole backbone on every validation episode)
            "ft": {
                "backprop": (3e-5, 1e-4, 3e-4),
                "zo": (1e-5, 3e-5, 1e-4),
                "pezo": (1e-5, 3e-5, 1e-4),
                "qzo-ff 16w8a": (3e-4, 1e-3, 3e-3),
            },
            "lp": {
                "backprop": (3e-3, 1e-2, 3e-2),
                "zo": (3e-3, 1e-2, 3e-2),
                "pezo": (3e-3, 1e-2, 3e-2),
                "qzo-ff 16w8a": (2e-4, 5e-4, 1e-3),
            },
        }
    )


def _without_zo_ft_search(cfg: Config) -> Config:
    """``cfg`` whose forward-only ft lrs are the swept defaults (searching them costs 4x the
    study); backprop's ft lr and every lp lr are still searched."""
    grids = {**cfg.grids, "ft": {"backprop": cfg.grids["ft"]["backprop"]}}
    return replace(cfg, grids=grids)


FULL = _without_zo_ft_search(Config())
QUICK = Config(
    backbones=("resnet",),
    episodes=20,
    ft_episodes=20,
    budget=Budget(steps=30, zo_steps=100, batch=25, grid=False),
)


class FeatureNet(nn.Module):
    """A backbone seen as its embedding: ``forward(x) = backbone.features(x)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)


def prototypes(feats: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Class means ``(ways, F)`` of ``feats`` (labels ``0..ways-1``)."""
    return torch.stack([feats[labels == c].mean(0) for c in range(ways)])


def proto_logits(feats: Tensor, protos: Tensor) -> Tensor:
    """ProtoNets' logits: negative squared Euclidean distances ``(B, ways)``."""
    return -torch.cdist(feats, protos).pow(2)


def proto_loss(feats: Tensor, labels: Tensor) -> Tensor:
    """Prototypical loss of a support batch against its own class means."""
    ways = int(labels.max()) + 1
    return F.cross_entropy(proto_logits(feats, prototypes(feats, labels, ways)), labels)


@torch.no_grad()
def proto_accuracy(
    net: nn.Module, support: tuple[Tensor, Tensor], query: tuple[Tensor, Tensor]
) -> float:
    """Query accuracy of nearest-class-mean classification in ``net``'s embedding."""
    net.eval()
    ways = int(support[1].max()) + 1
    protos = prototypes(net(support[0]), support[1], ways)
    return float((proto_logits(net(query[0]), protos).argmax(1) == query[1]).float().mean())


def episode_data(x: Tensor, sampler: EpisodeSampler, i: int) -> tuple[tuple, tuple]:
    ep = sampler.episode(i)
    return (x[ep.support], ep.support_labels), (x[ep.query], ep.query_labels)


def solve(
    method: str,
    source: nn.Module,
    regime: str,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    settings: Settings | None,
    budget: Budget,
    seed: int,
) -> tuple[float, list[dict[str, Any]]]:
    """Adapt a copy of ``source`` on one episode's support set by ``method``; query accuracy."""
    if regime == "ft":
        net = FeatureNet(source)
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.__class__ = FrozenBatchNorm2d
        net.requires_grad_(True)
        adapted, result = adapt(
            method, net, support, {}, settings, budget, seed=seed, loss_fn=proto_loss
        )
        return proto_accuracy(adapted, support, query), result.history if result else []
    model, _ = prepare_regime(source, "lp", classes=int(support[1].max()) + 1, seed=seed)
    prototype_head(model.head, features(model, support[0]), support[1])
    adapted, result = adapt(method, model, support, {}, settings, budget, seed=seed, head_only=True)
    adapted.eval()
    with torch.no_grad():
        accuracy = float((adapted(query[0]).argmax(1) == query[1]).float().mean())
    return accuracy, result.history if result else []


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (1.96 standard errors)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    return statistics.fmean(values), 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def episodes(
    method: str,
    source: nn.Module,
    regime: str,
    settings: Settings | None,
    data: tuple[Tensor, EpisodeSampler],
    n: int,
    budget: Budget,
    seed: int,
    progress: bool,
    workers: Workers | None = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Query accuracies of ``n`` episodes of ``data`` = (inputs, sampler), solved by
    ``workers`` (here, one by one, if ``None``); the first run's log."""
    x, sampler = data
    tasks = [
        (method, source, regime, *episode_data(x, sampler, i), settings, budget, seed)
        for i in range(n)
    ]
    runner = workers or Workers(1, progress=progress)
    solved = runner.map(solve, tasks, desc=f"{regime} {method}")
    return [acc for acc, _ in solved], next((h for _, h in solved if h), [])


def choose_lr(
    method: str,
    source: nn.Module,
    regime: str,
    cfg: Config,
    val: tuple,
    seed: int,
    progress: bool,
    workers: Workers | None = None,
) -> float | None:
    """The lr of ``method`` with the best mean accuracy over the validation episodes."""
    defaults = cfg.settings[regime].get(method)
    grid = cfg.grids[regime].get(method, ())
    if defaults is None or not (cfg.budget.grid and grid):
        return defaults.lr if defaults else None

    def score(lr: float) -> float:
        return statistics.fmean(
            episodes(method, source, regime, defaults.with_lr(lr), val, cfg.val_episodes,
                     cfg.budget, seed, progress, workers)[0]
        )  # fmt: skip

    return best_lr(grid, score)


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run the study with config ``cfg``, its episodes spread over
    ``jobs`` processes; write ``results.json``, ``results.md`` and curves under ``out``."""
    quick, out, seed, progress, jobs = opts.quick, opts.out, opts.seed, opts.progress, opts.jobs
    writer = StudyWriter("fewshot", out, keys=("backbone", "regime"), methods=cfg.methods)
    xv, yv = load_images(cfg.target, "train")
    xt, yt = load_images(cfg.target, "test")
    shape = {"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries}
    val = (as_input(xv), EpisodeSampler(yv, **shape, seed=seed + 1))
    test = (as_input(xt), EpisodeSampler(yt, **shape, seed=seed))
    with Workers(jobs, progress=progress) as workers:
        for arch in cfg.backbones:
            source = backbone(
                arch,
                cfg.source,
                steps=cfg.pretrain_steps,
                seed=opts.backbone_seed,
                progress=progress,
            )
            for regime in cfg.regimes:
                for method in cfg.methods:
                    lr = choose_lr(method, source, regime, cfg, val, seed, progress, workers)
                    settings = cfg.settings[regime][method].with_lr(lr) if lr else None
                    n = cfg.ft_episodes if regime == "ft" else cfg.episodes
                    accs, history = episodes(
                        method, source, regime, settings, test, n, cfg.budget, seed, progress,
                        workers,
                    )  # fmt: skip
                    mean, ci = mean_ci(accs)
                    outcome = Outcome(method, lr, mean, history=history)
                    writer.add(outcome, backbone=arch, regime=regime, ci95=ci, episodes=len(accs))
    return writer.finish(config=cfg, quick=quick, seed=seed)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
