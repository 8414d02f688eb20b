"""Few-shot learning rates: query accuracy of each method and lr on validation episodes.

The few-shot study (``edgezo run fewshot``) adapts a whole backbone on 25 support
images per episode; its full run searches backprop's ft lr but uses fixed ft lrs
for the forward-only methods (a search costs ~4x the study). This sweep is where
those lrs come from: per seed, the seed's own pretrained backbone (as the study
pretrains one per seed), and every (method, lr) adapts on the same ``--episodes``
validation episodes (Fashion-MNIST training images, the study's validation
sampler for that seed) for the study's step budget and reports the mean query
accuracy, with zero-shot ProtoNets for reference.

    python benchmarks/fewshot_lr.py --out benchmarks/results/fewshot_lr.json

Prints one JSON object (also ``--out file.json``), the table in docs/studies.md.
Without ``--grid`` it sweeps the study's grid (``Config.grids``) of each method whose
lr the full study fixes instead of searching (``fewshot.FULL``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from _common import emit_json, provenance

from edgezo.data.episodes import EpisodeSampler
from edgezo.data.images import as_input, load_images
from edgezo.studies import fewshot
from edgezo.studies.common import Budget, backbone


def fixed_lr_grid(regime: str) -> dict[str, list[float]]:
    """The study's grid of each method whose ``regime`` lr the full run fixes."""
    searched = fewshot.FULL.grids[regime]
    return {m: list(g) for m, g in fewshot.Config().grids[regime].items() if m not in searched}


def sweep(
    arch: str, regime: str, grid: dict[str, list[float]], n: int, zo_steps: int, seed: int
) -> list[dict[str, Any]]:
    """One row per (method, lr), zero-shot first: the mean query accuracy (%) over ``n``
    validation episodes of ``seed``, its 95% half-width over the episodes, seconds taken."""
    cfg = fewshot.FULL
    budget = Budget(steps=cfg.budget.steps, zo_steps=zo_steps, batch=cfg.budget.batch)
    x, y = load_images(cfg.target, "train")
    shape = {"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries}
    val = (as_input(x), EpisodeSampler(y, **shape, seed=seed + 1))  # the study's, for this seed
    source = backbone(arch, cfg.source, steps=cfg.pretrain_steps, seed=seed, progress=False)
    rows: list[dict[str, Any]] = []
    for method, lrs in {"zero-shot": [None], **grid}.items():
        for lr in lrs:
            settings = cfg.settings[regime][method].with_lr(lr) if lr is not None else None
            started = time.perf_counter()
            accs, _ = fewshot.episodes(
                method, source, regime, settings, val, n, budget, seed, False
            )
            rows.append(
                {"seed": seed, "method": method, "lr": lr,
                 "accuracy": 100 * statistics.fmean(accs),
                 "ci95": 100 * fewshot.mean_ci(accs)[1],
                 "seconds": time.perf_counter() - started}
            )  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet", choices=["resnet", "vit"])
    ap.add_argument("--regime", default="ft", choices=["ft", "lp"])
    ap.add_argument("--episodes", type=int, default=10, help="validation episodes (10)")
    ap.add_argument("--zo-steps", type=int, default=fewshot.FULL.budget.zo_steps)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (0,1,2)")
    ap.add_argument("--grid", type=json.loads, help='JSON {"method": [lr, ...]}')
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    grid = args.grid or fixed_lr_grid(args.regime)
    seeds = [int(s) for s in args.seeds.split(",")]
    env, started = provenance(), time.perf_counter()
    rows = [
        row
        for seed in seeds
        for row in sweep(args.arch, args.regime, grid, args.episodes, args.zo_steps, seed)
    ]
    study_lrs = {m: fewshot.FULL.settings[args.regime][m].lr for m in grid}
    result = {
        "env": env,
        "config": {"arch": args.arch, "regime": args.regime, "episodes": args.episodes,
                   "zo_steps": args.zo_steps, "seeds": seeds, "grid": grid,
                   "pretrain_steps": fewshot.FULL.pretrain_steps},
        "study_lrs": study_lrs,
        "rows": rows,
        "wall_s": time.perf_counter() - started,
    }  # fmt: skip
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
