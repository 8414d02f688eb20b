"""What benchmark scripts share: how the JSON result leaves the process, and MeZO's step
(the baseline every ZO step is compared with)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import edgezo


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


def emit_study(payload: dict[str, Any], out: str | None) -> None:
    """Print a study's merged payload as sorted, indented JSON and, if ``out`` is given,
    write it to ``OUT/results.json`` (the layout ``edgezo report`` reads)."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    print(text, end="")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.json").write_text(text)


def git_head() -> str | None:
    """The checkout's commit (``+dirty`` if src/ has uncommitted changes), if git is there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head, dirty = (
            subprocess.run(
                ["git", "-C", root, *command], capture_output=True, text=True, check=True
            ).stdout.strip()
            for command in (
                ["rev-parse", "--short", "HEAD"],
                ["status", "--porcelain", "--", "src"],
            )
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """What made a result file (the ``env`` the docs' source lines read): edgezo's version and
    commit, torch, its threads, the CPUs and the load when the run began."""
    return {
        "edgezo": edgezo.__version__,
        "git_head": git_head(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
    }


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
