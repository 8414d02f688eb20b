"""Figure 6's training (``edgezo landscape [--quick] [--grid N] [--directions pca|random]``).

QZO-FF's Figure 6 (PAPERS.md B) end to end: the cross-domain study's source
backbone (a ViT pretrained with backprop on MNIST, cached) is adapted to
Fashion-MNIST by each method (backprop, ZO, QZO-FF 16w8a, QZO-FF 8w8a) in each
regime (linear probing, deep prompt tuning), recording its weight path; around
each final point the training loss is evaluated on a grid of the path's PCA
plane (or of two random filter-normalized directions), and everything is
written under ``--out``: ``landscape.png`` (regimes in rows, methods in
columns, each titled with its test error), ``landscape.md`` and
``landscape.json`` (every number of the figure).

Choices (the papers do not give them):

* Every head starts as the nearest-class-mean classifier of the pretrained
  features, as in the cross-domain study; learning rates are the study's defaults
  (QZO-FF 8w8a uses 16w8a's).
* QZO-FF 8w8a is the same as 16w8a with 8-bit weights. Its ``eps`` and updates
  round to zero, so the optimizer is built with ``force=True``; it barely moves,
  if at all. A path that never moves has no principal directions: that panel uses
  random filter-normalized directions and says so in its title.
* The surface is the training loss over the first ``eval_samples`` training
  samples (the batch budget). Linear probing evaluates the head on features
  computed once (the same losses as the whole model); fixed-point models are
  evaluated on their integer grid (:func:`~edgezo.analysis.landscape.loss_surface`).
* The PCA plane's grid spans the projected path plus a quarter of its extent on
  each side; the random plane's spans ``[-1, 1]`` (Li et al.).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.landscape import (
    Panel,
    Surface,
    evaluation_batches,
    filter_normalized_direction,
    landscape_grid,
    loss_surface,
    pca_directions,
    project,
)
from ..train import FitResult, fit
from . import cross_domain
from .common import (
    Budget,
    Options,
    Study,
    backbone,
    calibration_batches,
    features,
    prototype_head,
    subsets,
)
from .methods import Settings, make_optimizer, prepare
from .results import provenance

Data = tuple[Tensor, Tensor]

#: Figure 6's columns: method name -> column title.
METHODS = {
    "backprop": "BP",
    "zo": "ZO",
    "qzo-ff 16w8a": "QZO-FF 16w8a",
    "qzo-ff 8w8a": "QZO-FF 8w8a",
}
REGIMES = {"lp": "linear probing", "vpt": "prompt tuning"}
DIRECTIONS = ("pca", "random")


@dataclass(frozen=True)
class Config:
    """What the figure trains and evaluates (the defaults: the cross-domain study's ViT)."""

    arch: str = "vit"
    source: str = cross_domain.FULL.source
    target: str = "fashion-mnist"
    regimes: tuple[str, ...] = ("lp", "vpt")
    methods: tuple[str, ...] = tuple(METHODS)
    train: int = 1000
    test: int = 2000
    pretrain_steps: int = cross_domain.FULL.pretrain_steps
    budget: Budget = Budget(steps=300, zo_steps=1500, batch=64)
    snapshots: int = 30  # points of each path
    grid: int = 31  # points per axis of each surface
    eval_samples: int = 256  # the batch budget: training samples per grid point
    eval_batch: int = 256
    directions: str = "pca"
    settings: dict[str, Settings] = field(
        default_factory=lambda: {
            **cross_domain.FULL.settings,
            "qzo-ff 8w8a": cross_domain.FULL.settings["qzo-ff 16w8a"],
        }
    )


FULL = Config()
QUICK = Config(
    train=500,
    test=1000,
    budget=Budget(steps=100, zo_steps=200, batch=32),
    snapshots=20,
    grid=15,
    eval_samples=64,
    eval_batch=64,
)


@dataclass
class Run:
    """One adapted model: what trained, its path and its test error."""

    model: nn.Module  # what the loss is evaluated on (the head, for linear probing)
    params: list[Tensor]
    result: FitResult
    train: Data  # the model's training inputs (features, for linear probing)
    test_error: float
    lr: float


# -- training ----------------------------------------------------------------------------------
def make_method(
    name: str, model: nn.Module, calibration: list[Tensor], settings: Settings, seed: int
) -> tuple[nn.Module, list[Tensor], torch.optim.Optimizer]:
    """A copy of ``model`` for method ``name``, the tensors it trains and its optimizer, from
    the studies' registry (:mod:`edgezo.studies.methods`; ``"qzo-ff 8w8a"`` is built with
    ``force=True``: it cannot train, which is what the figure shows)."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}")
    net, params = prepare(name, model, calibration)
    return net, params, trainable_optimizer(name, params, settings, seed)


def trainable_optimizer(
    name: str, params: list[Tensor], settings: Settings, seed: int
) -> torch.optim.Optimizer:
    """Method ``name``'s optimizer at ``settings.lr`` or, where fixed point rounds that lr's
    update to zero (a ``ValueError``), at the next larger lr of the cross-domain study's grid
    that can train (the study's own rule)."""
    grid = cross_domain.FULL.grids.get(name, ())
    error: ValueError | None = None
    for lr in [settings.lr, *sorted(g for g in grid if g > settings.lr)]:
        try:
            return make_optimizer(name, params, settings.with_lr(lr), seed)
        except ValueError as e:
            error = e
    raise error  # type: ignore[misc]  # the list of lrs is never empty


def adapt_with_path(
    method: str,
    model: nn.Module,
    train: Data,
    test: Data,
    cfg: Config,
    *,
    head_only: bool,
    seed: int = 0,
    progress: bool = False,
) -> Run:
    """Adapt a copy of ``model`` by ``method``, keeping ``cfg.snapshots`` points of its path.

    With ``head_only`` (linear probing) the head trains on features computed once
    (as :func:`edgezo.studies.common.adapt` does) and the run's model is the head.
    """
    net, params, optimizer = make_method(
        method, model, calibration_batches(train[0]), cfg.settings[method], seed
    )
    steps = cfg.budget.steps if method == "backprop" else cfg.budget.zo_steps
    target = net.head if head_only else net
    if head_only:
        train = (features(net, train[0]), train[1])
        test = (features(net, test[0]), test[1])
    result = fit(
        target, optimizer, train, steps=steps, batch_size=min(cfg.budget.batch, len(train[0])),
        eval_sets={"test": test}, seed=seed, progress=progress,
        snapshot_every=max(1, steps // cfg.snapshots),
    )  # fmt: skip
    error = 1.0 - result.final["test"]["accuracy"]
    return Run(target, params, result, train, error, optimizer.param_groups[0]["lr"])


# -- one panel ---------------------------------------------------------------------------------
def plane(run: Run, cfg: Config, seed: int) -> tuple[Tensor, tuple, tuple[str, str], str]:
    """``(directions, grid, axis labels, kind)`` of the run's panel: the path's PCA plane
    (``cfg.directions == "pca"`` and the path moved), else two filter-normalized directions."""
    trajectory = run.result.trajectory
    final = trajectory[-1]
    if cfg.directions == "pca" and bool((trajectory != final).any()):
        directions, explained = pca_directions(trajectory, final)
        xy = project(trajectory, directions, final)
        grid = tuple((low, high, cfg.grid) for low, high in path_window(xy))
        labels = tuple(
            f"PC{k + 1} ({100 * float(explained[k]):.0f}% of the path)" for k in range(2)
        )
        return directions, grid, labels, "pca"
    g = torch.Generator().manual_seed(seed)
    directions = torch.stack([filter_normalized_direction(run.params, g) for _ in range(2)])
    kind = "random" if cfg.directions == "random" else "random (the path never moved)"
    return directions, (-1.0, 1.0, cfg.grid), ("d1 (filter-normalized)", "d2"), kind


def path_window(xy: Tensor, margin: float = 0.25) -> list[tuple[float, float]]:
    """Per axis, the range of the path's coordinates and 0 (the final point), widened by
    ``margin`` of its length on each side; an axis the path hardly uses (a straight path's
    second one) gets at least 5% of the other's length, so the window never collapses."""
    lows = torch.minimum(xy.min(0).values, torch.zeros(2))
    highs = torch.maximum(xy.max(0).values, torch.zeros(2))
    lengths = torch.maximum(highs - lows, 0.05 * (highs - lows).max())
    centers = (lows + highs) / 2
    half = lengths * (0.5 + margin)
    return [(float(c - h), float(c + h)) for c, h in zip(centers, half, strict=True)]


def landscape_panel(
    run: Run, cfg: Config, seed: int = 0, progress: bool = False
) -> tuple[Surface, Tensor, str]:
    """The surface around the run's final weights, its path's coordinates and the plane's kind."""
    directions, grid, labels, kind = plane(run, cfg, seed)
    trajectory = run.result.trajectory
    batches = evaluation_batches(run.train, cfg.eval_samples, cfg.eval_batch)
    surface = loss_surface(
        run.model, run.params, batches, directions, center=trajectory[-1], grid=grid,
        labels=labels, progress=progress,
    )  # fmt: skip
    return surface, project(trajectory, directions, trajectory[-1]), kind


# -- the figure --------------------------------------------------------------------------------
def target_data(cfg: Config, seed: int) -> tuple[Data, Data]:
    """``(train, test)`` of the target at the source's image size."""
    from ..data.images import as_input, image_size, load_images

    size = image_size(cfg.source)
    x, y = load_images(cfg.target, "train")
    xt, yt = load_images(cfg.target, "test")
    (train,) = subsets(as_input(x, size), y, (cfg.train,), seed)
    (test,) = subsets(as_input(xt, size), yt, (min(cfg.test, len(xt)),), seed)
    return train, test


def check_config(cfg: Config) -> None:
    for name in cfg.methods:
        if name not in METHODS:
            raise ValueError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}")
    for regime in cfg.regimes:
        if regime not in REGIMES:
            raise ValueError(f"Unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    if cfg.directions not in DIRECTIONS:
        raise ValueError(f"Unknown directions {cfg.directions!r}; choose pca or random")


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Train every (regime, method), compute its panel, and write the figure, Markdown and JSON."""
    from ..models.regimes import prepare as prepare_regime

    quick, out, seed, progress = opts.quick, opts.out, opts.seed, opts.progress
    check_config(cfg)
    out = Path(out)
    source = backbone(cfg.arch, cfg.source, steps=cfg.pretrain_steps, seed=seed, progress=progress)
    train, test = target_data(cfg, seed)
    rows: list[dict[str, Any]] = []
    for regime in cfg.regimes:
        model, _ = prepare_regime(source, regime, classes=10, seed=seed)
        prototype_head(model.head, features(model, train[0]), train[1])
        for method in cfg.methods:
            started = time.perf_counter()
            r = adapt_with_path(method, model, train, test, cfg, head_only=regime == "lp",
                                seed=seed, progress=progress)  # fmt: skip
            train_seconds = time.perf_counter() - started
            surface, xy, kind = landscape_panel(r, cfg, seed, progress)
            rows.append(_row(regime, method, r, surface, xy, kind, train_seconds))
    plain = plain_config(cfg)
    figure = draw(rows, plain, out / "landscape.png")
    payload = {"quick": quick, "seed": seed, "config": plain, "panels": rows,
               "figure": figure.name, "provenance": provenance()}  # fmt: skip
    _write(out / "landscape.json", json.dumps(payload, indent=1, sort_keys=True) + "\n")
    _write(out / "landscape.md", markdown(rows, plain, quick, figure.name))
    return {"out": str(out), "figure": str(figure), "panels": [_summary(r) for r in rows]}


def draw(rows: list[dict[str, Any]], cfg: Mapping[str, Any], path: Path) -> Path:
    """The figure from the panels' JSON rows: regimes in rows, methods in columns."""
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    grid = [[panel(r) for r in rows if r["regime"] == regime] for regime in regimes]
    return landscape_grid(grid, path, row_labels=[REGIMES[r] for r in regimes],
                          title=f"Loss landscapes: {cfg['source']} -> {cfg['target']} ({cfg['arch']})")  # fmt: skip


def panel(row: Mapping[str, Any]) -> Panel:
    """One panel from its JSON row: the surface, the path, the method and its test error."""
    moved = row["plane"] != "random (the path never moved)"
    note = "" if moved else "\n(no movement: random plane)"
    title = f"{METHODS[row['method']]}: test error {100 * row['test_error']:.1f}%{note}"
    xy = torch.tensor(row["trajectory_xy"], dtype=torch.float64)
    return Panel(Surface.from_dict(row["surface"]), xy, title)


def rebuild_report(folder: Path, data: Mapping[str, Any]) -> str:
    """``landscape.md``'s text from a ``landscape.json`` alone, and ``landscape.png`` drawn into
    ``folder`` (the report of committed results, which keep only the JSON)."""
    figure = draw(data["panels"], data["config"], Path(folder) / "landscape.png")
    text = markdown(data["panels"], data["config"], data["quick"], figure.name)
    if len(data.get("runs", ())) > 1:  # merged by edgezo landscape --seeds
        seeds = ", ".join(map(str, data["seeds"]))
        text += (f"Seeds {seeds} (`--seeds {seeds.replace(' ', '')}`): the table and the figure "
                 f"are seed {data['seeds'][0]}'s; the claims decide on every seed's test error "
                 "and distance moved (`runs` in landscape.json).\n")  # fmt: skip
    return text


def merge_seeds(out: Path, seeds: Sequence[int]) -> dict[str, Any]:
    """One landscape per seed (``out/seed-S/landscape.json``) merged into ``out/landscape.json``:
    the first seed's panels (the figure and its table) and each seed's panel summaries under
    ``runs``, on which the claims decide over the seeds; the figure and Markdown redrawn."""
    out = Path(out)
    runs = {s: json.loads((out / f"seed-{s}" / "landscape.json").read_text()) for s in seeds}
    first = runs[seeds[0]]
    for s, data in runs.items():
        if (data["config"], data["quick"]) != (first["config"], first["quick"]):
            raise ValueError(
                f"seed {s}'s landscape has another config than seed {seeds[0]}'s: delete "
                f"{out / f'seed-{s}'} and run it again"
            )
    payload = {**first, "seeds": list(seeds),
               "runs": {str(s): {"panels": [_summary(r) for r in data["panels"]],
                                 "provenance": data["provenance"]} for s, data in runs.items()}}  # fmt: skip
    _write(out / "landscape.json", json.dumps(payload, indent=1, sort_keys=True) + "\n")
    _write(out / "landscape.md", rebuild_report(out, payload))
    return {"out": str(out), "seeds": list(seeds), "runs": payload["runs"]}


def _row(
    regime: str, method: str, r: Run, surface: Surface, xy: Tensor, kind: str, train_s: float
) -> dict[str, Any]:
    trajectory = r.result.trajectory
    return {
        "regime": regime,
        "method": method,
        "test_error": r.test_error,
        "lr": r.lr,
        "steps": r.result.steps,
        "trained_weights": int(trajectory.shape[1]),
        "path_length": float((trajectory[1:] - trajectory[:-1]).norm(dim=1).sum()),
        "distance_moved": float((trajectory[-1] - trajectory[0]).norm()),
        "plane": kind,
        "train_seconds": train_s,
        "surface_seconds": surface.seconds,
        "surface": surface.to_dict(),
        "trajectory_xy": xy.tolist(),
        "trajectory_steps": r.result.trajectory_steps,
    }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("regime", "method", "test_error", "distance_moved", "plane", "surface_seconds")
    return {k: row[k] for k in keys}


def markdown(rows: list[dict[str, Any]], cfg: Mapping[str, Any], quick: bool, figure: str) -> str:
    """The panels' numbers as a table, the figure and what made it (``cfg``: the plain config
    of the JSON)."""
    n = cfg["grid"]
    lines = [
        f"# Loss landscapes{' (quick)' if quick else ''}",
        "",
        f"{cfg['arch']} pretrained on {cfg['source']}, adapted to {cfg['target']} "
        f"({cfg['train']} samples); test error on {cfg['test']} test samples. Each surface: "
        f"{n}x{n} points of the training loss over {cfg['eval_samples']} samples, around the "
        "final weights.",
        "",
        "| regime | method | lr | test error (%) | steps | weights | distance moved | "
        "path length | plane | loss min..max | surface (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        finite = [v for row in r["surface"]["losses"] for v in row if v is not None]
        span = f"{min(finite):.3g}..{max(finite):.3g}" if finite else "n/a"
        lines.append(
            f"| {r['regime']} | {r['method']} | {r['lr']:g} | {100 * r['test_error']:.2f} | "
            f"{r['steps']} | "
            f"{r['trained_weights']} | {r['distance_moved']:.3g} | {r['path_length']:.3g} | "
            f"{r['plane']} | {span} | {r['surface_seconds']:.1f} |"
        )
    command = "edgezo landscape" + (" --quick" if quick else "")
    if cfg["grid"] != (QUICK if quick else FULL).grid:
        command += f" --grid {cfg['grid']}"
    if cfg["directions"] != "pca":
        command += f" --directions {cfg['directions']}"
    lines += [
        "",
        f"![landscapes]({figure})",
        "",
        "How to read it: each panel is the training loss around the final weights (star) in the "
        "plane of the path's two principal directions (axes: the share of the path's variance "
        "each explains); the red line is the path from the start (circle). A path that never "
        "moved gets two random filter-normalized directions instead (Li et al. 2018). "
        "Fixed-point panels are evaluated on the integer weight grid with 8-bit activations, "
        "so at small scales their surface shows the quantization's steps.",
        "",
        f"Made by `{command}`.",
        "",
    ]
    return "\n".join(lines)


def plain_config(cfg: Config) -> dict[str, Any]:
    data = asdict(cfg)
    data["settings"] = {k: asdict(v) for k, v in cfg.settings.items()}
    return data


def _write(path: Path, text: str) -> None:
    from ..cache import atomic_write

    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
