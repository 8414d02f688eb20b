"""What benchmark scripts share: how the JSON result leaves the process, and MeZO's step
(the baseline every ZO step is compared with)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch


def timing_parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    """The arguments of a script that times functions in interleaved rounds."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(
        "--repeats", type=int, default=repeats, help=f"timed rounds (default {repeats})"
    )
    ap.add_argument("--warmup", type=int, default=2, help="untimed first rounds (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", help="also write the JSON to this file")
    return ap


def emit_json(results: dict[str, Any], out: str | None) -> None:
    """Print ``results`` as indented JSON and, if ``out`` is given, also write it there."""
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


class MezoStyle:
    """MeZO's step (its ``zo_perturb_parameters`` / ``zo_step`` / ``zo_update``), weight decay 0."""

    def __init__(self, params: list[torch.Tensor], lr: float, eps: float) -> None:
        self.params, self.lr, self.eps = params, lr, eps
        self.generator = torch.Generator(params[0].device)
        self.seed = 0

    def perturb(self, scaling: float) -> None:
        self.generator.manual_seed(self.seed)
        for p in self.params:
            z = torch.normal(
                0.0, 1.0, p.shape, generator=self.generator, device=p.device, dtype=p.dtype
            )
            p.data = p.data + scaling * z * self.eps

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> float:
        self.seed += 1
        self.perturb(1.0)
        loss1 = float(closure())
        self.perturb(-2.0)
        loss2 = float(closure())
        projected = (loss1 - loss2) / (2 * self.eps)
        self.perturb(1.0)
        self.generator.manual_seed(self.seed)
        for p in self.params:
            z = torch.normal(
                0.0, 1.0, p.shape, generator=self.generator, device=p.device, dtype=p.dtype
            )
            p.data = p.data - self.lr * (projected * z)
        return loss1
