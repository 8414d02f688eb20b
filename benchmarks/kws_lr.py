"""Keyword-personalization learning rates: validation accuracy of each method and lr.

The personalization study (``edgezo run kws-personalize``) fine-tunes every weight
with a fixed lr per backbone and method (a search would triple its costliest
regime). This sweep is where those lrs come from: for one backbone, new speaker
group and condition, every (method, lr) fine-tunes on the study's adaptation
utterances for the study's ft budget and reports the accuracy on its validation
utterances (never the test ones), with zero-shot for reference. A diverged run
(non-finite loss) reports its accuracy as it is (chance or NaN).

    python benchmarks/kws_lr.py --arch dscnn

Prints one JSON object (also ``--out file.json``). Without ``--grid`` it sweeps
lr/3, lr, 3 lr around the study's ft lrs of that backbone.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from _common import emit_json

from edgezo.models.regimes import prepare as prepare_regime
from edgezo.studies import kws_personalize as kp
from edgezo.studies.audio import backbone, freeze_batchnorm_statistics, load_data
from edgezo.studies.common import adapt
from edgezo.studies.methods import prepare
from edgezo.train import evaluate


def sweep(
    arch: str, group: str, condition: str, grid: dict[str, list[float]], zo_steps: int
) -> dict:
    cfg = kp.FULL
    budget = replace(cfg.budgets["ft"], zo_steps=zo_steps)
    data = load_data(cfg.data)
    cell = kp.target_sets(data, kp.Config(groups=(group,), conditions=(condition,)), 0)
    train, val = cell[group, condition]["train"], cell[group, condition]["val"]
    source, _ = backbone(arch, data, cfg.data, seed=0, progress=False)
    model, _ = prepare_regime(source, "ft", seed=0)
    freeze_batchnorm_statistics(model)
    zero_shot, _ = prepare("zero-shot", model, [train[0]])
    rows: list[dict[str, Any]] = [
        {
            "method": "zero-shot",
            "lr": None,
            "val_accuracy": 100 * evaluate(zero_shot, *val)["accuracy"],
        }
    ]
    for method, lrs in grid.items():
        for lr in lrs:
            started = time.perf_counter()
            settings = cfg.settings[arch]["ft"][method].with_lr(lr)
            _, result = adapt(method, model, train, {"val": val}, settings, budget, seed=0)
            rows.append(
                {"method": method, "lr": lr,
                 "val_accuracy": 100 * result.final["val"]["accuracy"],
                 "final_loss": result.history[-1].get("loss") if result.history else None,
                 "seconds": time.perf_counter() - started}
            )  # fmt: skip
    return {"arch": arch, "group": group, "condition": condition, "budget": budget.__dict__,
            "rows": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="dscnn", choices=list(kp.FT_LRS))
    ap.add_argument("--group", default="flite", help="new speaker group (flite, en-029)")
    ap.add_argument("--condition", default="clean", choices=["clean", "noisy"])
    ap.add_argument("--zo-steps", type=int, default=kp.FULL.budgets["ft"].zo_steps)
    ap.add_argument("--grid", type=json.loads, help='JSON {"method": [lr, ...]}')
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    grid = args.grid or {m: list(v) for m, v in kp.default_grids()[args.arch]["ft"].items()}
    emit_json(sweep(args.arch, args.group, args.condition, grid, args.zo_steps), args.out)


if __name__ == "__main__":
    main()
