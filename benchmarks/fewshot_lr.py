"""Few-shot learning rates: query accuracy of each method and lr on validation episodes.

The few-shot study (``edgezo run fewshot``) adapts a whole backbone on 25 support
images per episode; its full run searches backprop's ft lr but uses fixed ft lrs
for the forward-only methods (a search costs ~4x the study). This sweep is where
those lrs come from: for one backbone and regime, every (method, lr) adapts on
the same ``--episodes`` validation episodes (Fashion-MNIST training images, the
study's validation sampler) for the study's step budget and reports the mean
query accuracy, with zero-shot ProtoNets for reference.

    python benchmarks/fewshot_lr.py --arch resnet --regime ft

Prints one JSON object (also ``--out file.json``). Without ``--grid`` it sweeps
the study's own grids (``Config.grids``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from _common import emit_json

from edgezo.data.episodes import EpisodeSampler
from edgezo.data.images import as_input, load_images
from edgezo.studies import fewshot
from edgezo.studies.common import Budget, backbone


def sweep(arch: str, regime: str, grid: dict[str, list[float]], n: int, zo_steps: int) -> dict:
    cfg = fewshot.FULL
    budget = Budget(steps=cfg.budget.steps, zo_steps=zo_steps, batch=cfg.budget.batch)
    x, y = load_images(cfg.target, "train")
    shape = {"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries}
    val = (as_input(x), EpisodeSampler(y, **shape, seed=1))  # the study's validation episodes
    source = backbone(arch, cfg.source, steps=cfg.pretrain_steps, seed=0, progress=False)
    rows: list[dict[str, Any]] = []
    for method, lrs in {"zero-shot": [None], **grid}.items():
        for lr in lrs:
            settings = cfg.settings[regime][method].with_lr(lr) if lr is not None else None
            started = time.perf_counter()
            accs, _ = fewshot.episodes(method, source, regime, settings, val, n, budget, 0, False)
            rows.append(
                {"method": method, "lr": lr, "accuracy": 100 * statistics.fmean(accs),
                 "ci95": 100 * fewshot.mean_ci(accs)[1],
                 "seconds": time.perf_counter() - started}
            )  # fmt: skip
    return {"arch": arch, "regime": regime, "episodes": n, "zo_steps": zo_steps, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet", choices=["resnet", "vit"])
    ap.add_argument("--regime", default="ft", choices=["ft", "lp"])
    ap.add_argument("--episodes", type=int, default=10, help="validation episodes (10)")
    ap.add_argument("--zo-steps", type=int, default=fewshot.FULL.budget.zo_steps)
    ap.add_argument("--grid", type=json.loads, help='JSON {"method": [lr, ...]}')
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    grid = args.grid or {k: list(v) for k, v in fewshot.Config().grids[args.regime].items()}
    emit_json(sweep(args.arch, args.regime, grid, args.episodes, args.zo_steps), args.out)


if __name__ == "__main__":
    main()
