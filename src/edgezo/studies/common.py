"""What every study shares: adapting one prepared model by one method, choosing its
learning rate on validation data, and writing results as JSON, Markdown and PNG.

Linear probing is run on features computed once: when only the head trains, the
backbone's output on a sample never changes, so the head is trained on
``model.features(x)`` (computed in eval mode, by the float or the fixed-point
backbone of the method) instead of running the frozen backbone at every
forward. The numbers are those of the full model; the wall time is not what a
device that runs the whole network would spend.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.stats import pack_correct
from ..train import FitResult, fit, grid_search
from .methods import (
    FORWARD_ONLY,
    Settings,
    make_optimizer,
    prepare,
    probe_grids,
    vision_grids,
    vision_settings,
)

Data = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Budget:
    """How much a study trains: ``steps`` for backprop, ``zo_steps`` for forward-only methods."""

    steps: int
    zo_steps: int
    batch: int = 64
    grid: bool = False  # grid-search each method's lr on validation data (full runs)
    eval_points: int = 10  # evaluations per run (the curves' points)


#: The regimes that train only a head (on features computed once: see the module's docstring).
PROBES = frozenset({"lp", "lp3"})


@dataclass(frozen=True)
class VisionPlan:
    """What the vision studies (cross-domain, OOD) share: the backbone's pretraining steps, the
    budgets of prompt tuning (``budget``) and linear probing (``probe_budget``), each method's
    default settings and lr grids (:func:`regime_plan` picks a regime's)."""

    pretrain_steps: int = 2000
    budget: Budget = Budget(steps=300, zo_steps=1000, batch=64, grid=True)  # prompt tuning
    #: linear probing trains a head on cached features: 1,000 ZO steps take ~1 s there
    probe_budget: Budget = Budget(steps=1000, zo_steps=5000, batch=64, grid=True)
    settings: dict[str, Settings] = field(default_factory=vision_settings)
    grids: dict[str, tuple[float, ...]] = field(default_factory=vision_grids)
    probe_grids: dict[str, tuple[float, ...]] = field(default_factory=probe_grids)


def regime_plan(cfg: VisionPlan, regime: str) -> tuple[Budget, Mapping[str, tuple[float, ...]]]:
    """``(budget, lr grids)`` of a vision study's ``regime``: ``cfg.probe_budget`` and
    ``cfg.probe_grids`` for linear probing, ``cfg.budget`` and ``cfg.grids`` otherwise."""
    if regime in PROBES:
        return cfg.probe_budget, cfg.probe_grids
    return cfg.budget, cfg.grids


@dataclass(frozen=True)
class Options:
    """How a study runs: ``quick`` (its small config), where it writes, its seed, progress
    bars, and how many processes its independent runs are spread over."""

    quick: bool
    out: Path
    seed: int = 0
    progress: bool = True
    jobs: int = 1
    pretrain_seed: int | None = None  # the vision backbones' pretraining seed (None: ``seed``)

    @property
    def backbone_seed(self) -> int:
        """The seed a vision study pretrains its backbone with: ``pretrain_seed`` when given
        (several seeds sharing one backbone: a ViT's pretraining takes minutes), else ``seed``."""
        return self.seed if self.pretrain_seed is None else self.pretrain_seed


@dataclass(frozen=True)
class Study:
    """A study's ``run``: ``run(quick, out, seed=0, progress=True, config=None, jobs=1,
    pretrain_seed=None)`` runs
    ``body(config, options)`` with ``config`` or else the quick or the full config, writes the
    study's files under ``out`` and returns its summary (what ``edgezo run`` calls)."""

    quick_config: Any
    full_config: Any
    body: Callable[[Any, Options], dict[str, Any]]

    def __call__(
        self,
        quick: bool,
        out: Path,
        seed: int = 0,
        progress: bool = True,
        config: Any = None,
        jobs: int = 1,
        pretrain_seed: int | None = None,
    ) -> dict[str, Any]:
        cfg = config or (self.quick_config if quick else self.full_config)
        return self.body(cfg, Options(quick, Path(out), seed, progress, jobs, pretrain_seed))


@dataclass
class Outcome:
    """One adapted model's numbers."""

    method: str
    lr: float | None
    accuracy: float
    val_accuracy: float | None = None
    steps: int = 0
    forwards: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: which test examples it got right (:func:`~edgezo.analysis.stats.pack_correct`) and how
    #: many there were: the claims' paired bootstrap over seeds x examples reads them
    correct: str | None = field(default=None, repr=False)
    examples: int | None = None

    def row(self, **cell: Any) -> dict[str, Any]:
        out = {**cell, **asdict(self)}
        out.pop("history")
        if self.correct is None:
            out.pop("correct"), out.pop("examples")
        return out


@torch.no_grad()
def features(model: nn.Module, x: Tensor, batch: int = 500) -> Tensor:
    """``model.features(x)`` in eval mode, ``batch`` samples at a time."""
    model.eval()
    return torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)])


def calibration_batches(x: Tensor, batches: int = 4, batch: int = 64) -> list[Tensor]:
    """The first ``batches`` batches of the target's training inputs (fixed-point calibration)."""
    return list(x[: batches * batch].split(batch))


def adapt(
    method: str,
    model: nn.Module,
    train: Data,
    evals: Mapping[str, Data],
    settings: Settings | None,
    budget: Budget,
    *,
    seed: int = 0,
    head_only: bool = False,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    progress: bool = False,
) -> tuple[nn.Module, FitResult | None]:
    """Adapt a copy of ``model`` (whose trained parameters have ``requires_grad``) by ``method``.

    Returns the adapted model (float or fixed point) and the fit result (``None``
    for zero-shot). With ``head_only`` the head is trained on precomputed
    features and the returned model is the whole network with the new head.
    ``evals`` are evaluated ``budget.eval_points`` times during the run.
    """
    net, params = prepare(method, model, calibration_batches(train[0]))
    optimizer = make_optimizer(method, params, settings, seed) if settings else None
    if optimizer is None:
        return net, None
    steps = budget.zo_steps if method in FORWARD_ONLY else budget.steps
    target, train_data, eval_data = net, train, dict(evals)
    if head_only:
        target = net.head
        train_data = (features(net, train[0]), train[1])
        eval_data = {k: (features(net, x), y) for k, (x, y) in evals.items()}
    kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
    result = fit(
        target,
        optimizer,
        train_data,
        steps=steps,
        batch_size=min(budget.batch, len(train[0])),
        eval_sets=eval_data or None,
        eval_every=max(1, steps // budget.eval_points) if eval_data else None,
        seed=seed,
        progress=progress,
        **kwargs,
    )
    return net, result


def run_method(
    method: str,
    model: nn.Module,
    train: Data,
    val: Data,
    test: Data | None,
    grid: Sequence[float],
    defaults: Settings | None,
    budget: Budget,
    seed: int = 0,
    head_only: bool = False,
    progress: bool = False,
) -> tuple[Outcome, nn.Module]:
    """Adapt by ``method`` and test: the lr is ``defaults.lr`` or, with ``budget.grid``,
    the best of ``grid`` on ``val`` (both papers grid-search the learning rate).

    Returns the outcome (test accuracy ``nan`` without ``test``) and the adapted model.
    """
    if defaults is None:  # zero-shot
        net, _ = prepare(method, model, calibration_batches(train[0]))
        return Outcome(method, None, **tested(net, test)), net
    runs: dict[float, tuple[nn.Module, FitResult, float]] = {}

    def train_with(lr: float) -> None:
        started = time.perf_counter()
        net, result = adapt(
            method, model, train, {"val": val}, defaults.with_lr(lr), budget,
            seed=seed, head_only=head_only, progress=progress,
        )  # fmt: skip
        runs[lr] = (net, result, time.perf_counter() - started)

    def score(lr: float) -> float:
        train_with(lr)
        return runs[lr][1].final["val"]["accuracy"]

    lr = best_lr(grid if budget.grid else [defaults.lr], score)
    net, result, seconds = runs[lr]
    outcome = Outcome(
        method,
        lr,
        **tested(net, test),
        val_accuracy=result.final["val"]["accuracy"],
        steps=result.steps,
        forwards=result.forwards,
        seconds=seconds,
        history=result.history,
    )
    return outcome, net


def best_lr(grid: Sequence[float], score: Callable[[float], float]) -> float:
    """The lr of ``grid`` with the best ``score(lr)`` (a validation accuracy): every study's
    lr choice, by :func:`edgezo.train.grid_search` (the first on a tie; a non-finite score never
    wins; when every run diverged, the first lr)."""
    scores: dict[float, float] = {}

    def run(params: dict[str, Any]) -> float:
        scores[params["lr"]] = score(params["lr"])
        return scores[params["lr"]]

    try:
        return grid_search({"lr": list(grid)}, run).best["lr"]
    except ValueError:
        if len(scores) == len(grid) and not any(map(math.isfinite, scores.values())):
            return grid[0]
        raise


def outcome_of(*args: Any) -> Outcome:
    """``run_method(*args)``'s outcome alone: a study cell as a task of
    :class:`~edgezo.studies.parallel.Workers` (the adapted model stays in the worker)."""
    return run_method(*args)[0]


def correct_flags(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1000) -> Tensor:
    """Which of ``(x, y)`` ``model`` gets right (bool, one per example): top-1 in eval mode,
    :func:`edgezo.train.evaluate`'s accuracy example by example."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch]).argmax(1) == y[i : i + batch]
                              for i in range(0, len(x), batch)])  # fmt: skip
    finally:
        model.train(was_training)


def tested(model: nn.Module, test: Data | None, batch: int = 1000) -> dict[str, Any]:
    """``model``'s test accuracy and which examples it got right (packed), as :class:`Outcome`
    fields; accuracy ``nan`` without ``test`` (:func:`correct_flags`)."""
    if test is None:
        return {"accuracy": math.nan}
    flags = correct_flags(model, *test, batch=batch)
    return {"accuracy": flags.double().mean().item(), "correct": pack_correct(flags.numpy()),
            "examples": len(flags)}  # fmt: skip


# -- data and backbones -----------------------------------------------------------------------
def subsets(x: Tensor, y: Tensor, sizes: Sequence[int], seed: int) -> list[Data]:
    """Disjoint random subsets of ``(x, y)`` of the given sizes (one permutation from ``seed``)."""
    if sum(sizes) > len(x):
        raise ValueError(f"asked for {sum(sizes)} samples from a set of {len(x)}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for n in sizes:
        idx = order[start : start + n]
        out.append((x[idx], y[idx]))
        start += n
    return out


@torch.no_grad()
def prototype_head(head: nn.Linear, feats: Tensor, labels: Tensor) -> nn.Linear:
    """Set a linear head to the nearest-class-mean classifier of ``feats``: ``w_c = mu_c``,
    ``b_c = -|mu_c|^2 / 2``, so ``argmax(head(f))`` is the class whose mean is nearest to
    ``f`` (ProtoNets' rule). The zero-shot row of a new label space, and every method's start."""
    classes = head.out_features
    means = torch.stack([feats[labels == c].mean(0) for c in range(classes)])
    head.weight.copy_(means)
    head.bias.copy_(-0.5 * means.pow(2).sum(1))
    return head


def _build(arch: str, classes: int) -> nn.Module:
    from ..models.cnn import SmallCNN
    from ..models.resnet import SmallResNet
    from ..models.vit import ViTConfig, ViTTiny

    builders: dict[str, Callable[[], nn.Module]] = {
        "vit": lambda: ViTTiny(ViTConfig.small(classes=classes)),
        "resnet": lambda: SmallResNet(classes=classes),
        "cnn": lambda: SmallCNN(classes=classes),
    }
    if arch not in builders:
        raise ValueError(f"Unknown backbone {arch!r}; choose from {', '.join(builders)}")
    return builders[arch]()


ARCHS = ("vit", "resnet", "cnn")


def backbone(
    arch: str,
    dataset: str,
    *,
    steps: int,
    lr: float = 1e-3,
    batch: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Backbone ``arch`` pretrained with backprop (Adam) on all of ``dataset``'s training set;
    trained once and then loaded from the cache (``$EDGEZO_CACHE``)."""
    from ..data.images import as_input, load_images, num_classes

    x, y = load_images(dataset, "train")
    classes = num_classes(dataset)
    model, _ = pretrained_announced(
        f"{arch}-{dataset}",
        functools.partial(_build, arch, classes),
        (as_input(x), y),
        config={"arch": arch, "dataset": dataset, "classes": classes},
        steps=steps,
        batch_size=batch,
        lr=lr,
        seed=seed,
        progress=progress,
    )
    return model.eval()


def pretrained_announced(name: str, build: Callable[[], nn.Module], train: tuple[Tensor, Tensor],
                         **kwargs: Any) -> tuple[nn.Module, Any]:  # fmt: skip
    """:func:`edgezo.models.pretrain.pretrained` (same arguments), saying on stderr when it
    trains: a first run's pretraining takes minutes, also without progress bars."""
    from .. import cache
    from ..models.pretrain import cache_config, pretrained

    training = {k: kwargs.get(k, default) for k, default in PRETRAINING.items()}
    if not cache.state_path(name, cache_config(name, kwargs["config"], **training)).is_file():
        print(
            f"pretraining {name} with backprop ({training['steps']} steps; first run only: "
            f"cached in {cache.cache_dir()} after) ...",
            file=sys.stderr,
            flush=True,
        )
    return pretrained(name, build, train, **kwargs)


#: The training arguments of :func:`edgezo.models.pretrain.pretrained` in its cache key, with
#: their defaults (``None``: required).
PRETRAINING = {"steps": None, "batch_size": None, "lr": None, "seed": 0, "optimizer": "adam"}
