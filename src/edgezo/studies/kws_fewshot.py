"""Few-shot keyword spotting (QZO-FF's audio case, PAPERS.md B): 5-way 1-shot episodes on
words the backbone never heard, with SimpleShot and ProtoNets.

Here (:mod:`edgezo.studies.audio`): the personalization study's CRNN and
DS-CNN, pretrained on 12 classes without the ``held_out`` words (the ten digits
in the full run), meet episodes of those words: 5 of them, one utterance each
(the support), 15 more each to classify (the query). Test episodes are spoken by
the new speaker groups (never pretrained on either); the learning rate is chosen
on validation episodes of the same words spoken by the pretraining speakers.

Two nearest-centroid classifiers on the backbone's features:

* ``ProtoNets`` (Snell et al. 2017, arXiv 1703.05175): the raw features, squared
  Euclidean distance to each class mean;
* ``SimpleShot`` (Wang et al. 2019, arXiv 1911.04623) with CL2N: every feature
  is centred by the mean feature of the base (pretraining) clips and L2-normalized,
  then the nearest class mean wins (:func:`cl2n`).

Zero-shot is the classifier on the pretrained features. The trained methods adapt
on the support set as the vision few-shot study does
(:func:`edgezo.studies.fewshot.solve`): ``lp`` trains a head initialised as
the nearest-centroid classifier on the frozen (CL2N or raw) features with
cross-entropy; ``ft`` trains every weight on the prototypical loss of the
support set. For ``lp`` the features of every clip are computed once (the frozen
backbone gives the same features in every episode); QZO-FF 16w8a reads those of
a 16w8a copy of the backbone, calibrated on the base clips, with its own CL2N
mean. Accuracy is the mean over the test episodes with a 95% interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.episodes import EpisodeSampler
from ..fixedpoint import quantize_model
from .audio import (
    ARCHS,
    AUDIO_CLAIMS,
    QUICK_DATA,
    AudioData,
    KeywordData,
    backbone,
    load_data,
    lr_grids,
    memory_notes,
    method_settings,
    pretraining_index,
    spectrograms,
)
from .common import Budget, Options, Outcome, Study, calibration_batches, features
from .fewshot import EpisodePlan, choose_lr, episodes, mean_ci
from .methods import QUANTIZED, Settings
from .parallel import Workers
from .results import StudyWriter

CLASSIFIERS = ("ProtoNets", "SimpleShot")


#: Learning rates (a 1-shot support set is 5 clips: the head's lr is large, 30 steps).
LP_LRS = {"backprop": 1e-2, "zo": 3e-2, "pezo": 3e-2, "qzo-ff 16w8a": 1e-2}
FT_LRS = {"backprop": 1e-4, "zo": 1e-4, "pezo": 1e-4, "qzo-ff 16w8a": 3e-4}


@dataclass(frozen=True)
class Config(EpisodePlan):
    """The study's data, backbones, classifiers, methods, budgets and lrs; its episodes (5-way
    1-shot, 1000 test and 20 validation episodes): :class:`~.fewshot.EpisodePlan`."""

    shots: int = 1
    episodes: int = 1000  # test tasks of zero-shot and lp
    val_episodes: int = 20  # per learning rate of the grid
    data: AudioData = AudioData()
    backbones: tuple[str, ...] = ARCHS
    classifiers: tuple[str, ...] = CLASSIFIERS
    regimes: tuple[str, ...] = ("lp", "ft")
    methods: tuple[str, ...] = ("zero-shot", "backprop", "zo", "pezo", "qzo-ff 16w8a")
    budget: Budget = Budget(steps=30, zo_steps=30, batch=5, grid=True)  # lp
    ft_budget: Budget = Budget(steps=20, zo_steps=30, batch=5, grid=False)
    settings: dict[str, dict[str, Settings]] = field(
        default_factory=lambda: {"lp": method_settings(LP_LRS), "ft": method_settings(FT_LRS)}
    )
    grids: dict[str, dict[str, tuple[float, ...]]] = field(
        default_factory=lambda: {"lp": lr_grids(LP_LRS), "ft": {}}
    )  # ft is too costly to grid-search per episode: FT_LRS


FULL = Config()
QUICK = Config(
    data=QUICK_DATA,
    backbones=("crnn",),
    episodes=100,
    ft_episodes=5,
    budget=Budget(steps=30, zo_steps=30, batch=5, grid=False),
    ft_budget=Budget(steps=10, zo_steps=20, batch=5, grid=False),
)


def cl2n(feats: Tensor, centre: Tensor) -> Tensor:
    """SimpleShot's CL2N: ``(f - centre) / |f - centre|`` per row (``centre``: the base-class
    mean feature)."""
    return F.normalize(feats - centre, dim=-1)


class Embedding(nn.Module):
    """What a few-shot classifier measures distances in: ``body.features(x)`` (``x`` itself when
    ``body`` is ``None``: features computed beforehand), through :func:`cl2n` when ``centre``
    is given. ``head`` is a placeholder that each ``lp`` task replaces."""

    def __init__(self, body: nn.Module | None, dim: int, centre: Tensor | None = None) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = dim
        self.head = nn.Linear(dim, 1)
        self.register_buffer("centre", centre)

    def features(self, x: Tensor) -> Tensor:
        f = x if self.body is None else self.body.features(x)
        return f if self.centre is None else cl2n(f, self.centre)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class Pools:
    """One backbone's episode material: per pool (``val``, ``test``) the log-mel inputs, the
    word labels, and the frozen features of the float and the 16w8a backbone; the base
    clips' mean feature of each."""

    inputs: dict[str, Tensor]
    labels: dict[str, Tensor]
    feats: dict[str, dict[str, Tensor]]  # "float" | "16w8a" -> pool -> (N, F)
    base_mean: dict[str, Tensor]  # "float" | "16w8a" -> (F,)


def word_pools(data: KeywordData, cfg: Config) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"val": ..., "test": ...}``: clip indices and held-out word labels of each pool
    (validation: pretraining speakers; test: the new speaker groups)."""
    d = cfg.data
    out = {}
    for pool, index in (
        ("val", data.where(exclude_groups=d.targets, words=d.held_out)),
        ("test", data.where(groups=d.targets, words=d.held_out)),
    ):
        out[pool] = index, torch.tensor([d.held_out.index(data.words[i]) for i in index.tolist()])
    return out


def pools_of(source: nn.Module, data: KeywordData, cfg: Config, seed: int) -> Pools:
    """The frozen features of every pool clip and of the base clips, float and 16w8a."""
    base = data.x[pretraining_index(data, cfg.data, seed)]
    quantized = quantize_model(source, 16, 8, calibration=calibration_batches(base, batches=8))
    index = word_pools(data, cfg)
    inputs = {pool: data.x[i] for pool, (i, _) in index.items()}
    feats, base_mean = {}, {}
    for kind, net in (("float", source), ("16w8a", quantized)):
        feats[kind] = {pool: features(net, x) for pool, x in inputs.items()}
        base_mean[kind] = features(net, base).mean(0)
    return Pools(inputs, {pool: y for pool, (_, y) in index.items()}, feats, base_mean)


def task_source(
    source: nn.Module, pools: Pools, classifier: str, regime: str, method: str
) -> tuple[Embedding, dict[str, Tensor]]:
    """The model :func:`~edgezo.studies.fewshot.solve` adapts, and the inputs of each pool."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"Unknown classifier {classifier!r}; choose from {', '.join(CLASSIFIERS)}")
    kind = "16w8a" if regime == "lp" and method in QUANTIZED else "float"
    centre = pools.base_mean[kind] if classifier == "SimpleShot" else None
    if regime == "ft":
        return Embedding(source, source.feature_dim, centre), pools.inputs
    return Embedding(None, source.feature_dim, centre), pools.feats[kind]


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run the study with config ``cfg``, its episodes spread over
    ``jobs`` processes; write ``results.json``, ``results.md``, curves and a spectrogram
    figure under ``out``."""
    started = time.perf_counter()
    quick, out, seed, progress, jobs = opts.quick, opts.out, opts.seed, opts.progress, opts.jobs
    keys = ("backbone", "classifier", "regime")
    writer = StudyWriter("kws-fewshot", out, keys, cfg.methods, claims=AUDIO_CLAIMS)
    data = load_data(cfg.data)
    seconds: dict[str, float] = {}
    with Workers(jobs, progress=progress) as workers:
        for arch in cfg.backbones:
            _run_backbone(arch, cfg, data, seed, progress, workers, writer, seconds)
    figure = figure_of(data, cfg, out)
    writer.extra.update(seconds=seconds, spectrograms=[figure],
                        total_seconds=time.perf_counter() - started)  # fmt: skip
    notes = study_notes(cfg, figure, time.perf_counter() - started)
    return writer.finish(config=cfg, quick=quick, seed=seed, notes=notes)


def _run_backbone(
    arch: str,
    cfg: Config,
    data: KeywordData,
    seed: int,
    progress: bool,
    workers: Workers,
    writer: StudyWriter,
    seconds: dict[str, float],
) -> None:
    """Every (classifier, regime, method) cell of one backbone, into ``writer`` and ``seconds``."""
    source, _ = backbone(arch, data, cfg.data, seed=seed, progress=progress)
    pools = pools_of(source, data, cfg, seed)
    shape = {"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries}
    samplers = {
        "val": EpisodeSampler(pools.labels["val"], **shape, seed=seed + 1),
        "test": EpisodeSampler(pools.labels["test"], **shape, seed=seed),
    }
    for classifier in cfg.classifiers:
        for regime in cfg.regimes:
            rcfg = regime_config(cfg, regime)
            n = cfg.ft_episodes if regime == "ft" else cfg.episodes
            for method in cfg.methods:
                clock = time.perf_counter()
                net, x = task_source(source, pools, classifier, regime, method)
                val, test = ((x[p], samplers[p]) for p in ("val", "test"))
                lr = choose_lr(method, net, regime, rcfg, val, seed, progress, workers)
                settings = rcfg.settings[regime][method].with_lr(lr) if lr else None
                accs, history = episodes(
                    method, net, regime, settings, test, n, rcfg.budget, seed, progress, workers
                )
                mean, ci = mean_ci(accs)
                writer.add(Outcome(method, lr, mean, history=history), backbone=arch,
                           classifier=classifier, regime=regime, ci95=ci,
                           episodes=len(accs))  # fmt: skip
                seconds[f"{arch}/{classifier}/{regime}/{method}"] = time.perf_counter() - clock


def regime_config(cfg: Config, regime: str) -> Config:
    """``cfg`` with the budget of ``regime`` (what :func:`~edgezo.studies.fewshot.choose_lr`
    and :func:`~edgezo.studies.fewshot.episodes` read)."""
    return replace(cfg, budget=cfg.ft_budget) if regime == "ft" else cfg


def figure_of(data: KeywordData, cfg: Config, out: Path) -> str:
    """Spectrograms of the held-out words, one clip each, spoken by the new groups."""
    index, labels = word_pools(data, cfg)["test"]
    first = torch.stack([index[labels == k][0] for k in range(min(8, len(cfg.data.held_out)))])
    out.mkdir(parents=True, exist_ok=True)
    return spectrograms(data, first, out / "spectrograms-held-out-words.png").name


def study_notes(cfg: Config, figure: str, seconds: float) -> str:
    d = cfg.data
    lines = [
        f"{cfg.ways}-way {cfg.shots}-shot, {cfg.queries} queries per class; held-out words: "
        f"{', '.join(d.held_out)}; test episodes spoken by {', '.join(d.targets)} "
        f"({cfg.episodes} episodes for zero-shot and lp, {cfg.ft_episodes} for ft); "
        f"accuracy ± 95% interval.",
        "",
        f"Study wall time: {seconds:.0f} s.",
        "",
        memory_notes(),
        "",
        f"![{Path(figure).stem}]({figure})",
    ]
    return "\n".join(lines)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
