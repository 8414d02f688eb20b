"""A study's outputs: ``results.json`` (every number), ``results.md`` (tables and the
papers' claims checked against them) and PNG curves, all written by the tool itself."""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..analysis.curves import plot_curves
from ..cache import atomic_write
from ..models.portable import cpu_model
from ..models.pretrain import loaded_backbones
from .common import Outcome

#: A claim: (method, reference, points, share wanted): ``method`` is at most ``points``
#: (accuracy %) below ``reference`` in at least that share of the cells.
Claim = tuple[str, str, float, float]
#: The claims the vision studies check.
CLAIMS: tuple[Claim, ...] = (
    ("pezo", "backprop", 5.0, 0.8),
    ("qzo-ff 16w8a", "backprop", 5.0, 0.8),
    ("pezo", "zo", 1.0, 1.0),
)


def provenance() -> dict[str, Any]:
    """What made a result: edgezo's version and git commit (``dirty`` when the work tree had
    changes; ``None`` outside a git checkout), torch's version and thread count, the CPU
    architecture, model (:func:`~edgezo.models.portable.cpu_model`) and torch's kernel level on
    it, and the pretrained backbones this process loaded (``backbones``: name, recipe format,
    SHA-256; left out when none). No path or host name."""
    root = Path(__file__).resolve().parents[3]
    commit, dirty = None, None
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()  # fmt: skip
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=10)  # fmt: skip
        dirty = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    made = {
        "edgezo": __version__,
        "commit": commit,
        "dirty": dirty,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    backbones = loaded_backbones()
    return {**made, "backbones": backbones} if backbones else made


#: What a single run's claim check is (its ``met`` / ``not met`` are not the report's verdicts).
ONE_SEED_NOTE = (
    "One seed, one number per cell: met when the point difference is within the margin; no "
    "interval, and cells where zero-shot passes too are not left out. `edgezo run STUDY --seeds "
    "0,1,2` decides each cell on its interval and leaves vacuous cells out (edgezo.analysis.claims)."
)


class StudyWriter:
    """Collects one study's outcomes, cell by cell, and writes its files at :meth:`finish`."""

    def __init__(
        self,
        study: str,
        out: Path,
        keys: Sequence[str],
        methods: Sequence[str],
        claims: Sequence[Claim] = CLAIMS,
    ) -> None:
        self.study, self.out, self.keys, self.methods = study, Path(out), tuple(keys), methods
        self.claims = tuple(claims)  # what finish() checks (default: the vision studies')
        self.rows: list[dict[str, Any]] = []
        self.histories: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
        self.extra: dict[str, Any] = {}  # more JSON for results.json (e.g. per-corruption rows)

    def add(self, outcome: Outcome, **cell: Any) -> None:
        self.rows.append(outcome.row(**cell))
        if outcome.history:
            key = tuple(cell[k] for k in self.keys)
            self.histories.setdefault(key, {})[outcome.method] = outcome.history

    def finish(self, config: Any, quick: bool, seed: int, notes: str = "") -> dict[str, Any]:
        """Write ``results.json``, ``results.md`` and one curves PNG per cell; return the summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        claims = check_claims(self.rows, self.keys, self.claims)
        figures = [self._plot(key, runs) for key, runs in self.histories.items()]
        payload = {
            "study": self.study,
            "quick": quick,
            "seed": seed,
            "keys": list(self.keys),
            "provenance": provenance(),
            "config": _plain(config),
            "rows": self.rows,
            "claims": claims,
            "figures": [f.name for f in figures],
            **self.extra,
        }
        write_text(self.out / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
        write_text(self.out / "results.md", self.markdown(claims, figures, quick, notes))
        return {
            "out": str(self.out),
            "claims": claims,
            "table": pivot(self.rows, self.keys, self.methods),
        }

    def markdown(self, claims: list[dict], figures: list[Path], quick: bool, notes: str) -> str:
        title = f"# {self.study}{' (quick)' if quick else ''}"
        lines = [title, "", "Test accuracy (%) per cell and method.", ""]
        lines += [pivot(self.rows, self.keys, self.methods), ""]
        if notes:
            lines += [notes, ""]
        lines += ["## The papers' claims", "", ONE_SEED_NOTE, "",
                  "| claim | cells | share | wanted | verdict |", "|---|---|---|---|---|"]  # fmt: skip
        for c in claims:
            lines.append(
                f"| {c['claim']} | {c['hits']}/{c['cells']} | {c['share']:.0%} | "
                f"{c['wanted']:.0%} | {c['verdict']} |"
            )
        lines += [""] + [f"![{f.stem}]({f.name})" for f in figures]
        return "\n".join(lines) + "\n"

    def _plot(self, key: tuple, runs: Mapping[str, list[dict[str, Any]]]) -> Path:
        slug = "-".join(re.sub(r"[^a-z0-9]+", "_", str(k).lower()) for k in key)
        return plot_curves(runs, self.out / f"curves-{slug}.png")  # loss and eval accuracy


def pivot(rows: Iterable[Mapping[str, Any]], keys: Sequence[str], methods: Sequence[str]) -> str:
    """A Markdown table: one line per cell (``keys``), one accuracy column (%) per method;
    ``acc ± ci`` where a row has a 95% interval ``ci95``."""
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        text = f"{100 * r['accuracy']:.2f}"
        if r.get("ci95") is not None:
            text += f" ± {100 * r['ci95']:.2f}"
        cells.setdefault(tuple(r[k] for k in keys), {})[r["method"]] = text
    lines = ["| " + " | ".join([*keys, *methods]) + " |", "|" + "---|" * (len(keys) + len(methods))]
    for cell, acc in cells.items():
        lines.append(
            "| " + " | ".join([*map(str, cell), *(acc.get(m, "") for m in methods)]) + " |"
        )
    return "\n".join(lines)


def within(
    rows: Iterable[Mapping[str, Any]],
    keys: Sequence[str],
    method: str,
    reference: str,
    points: float,
) -> tuple[int, int]:
    """In how many cells ``method`` is at most ``points`` (accuracy %) below ``reference``."""
    cells: dict[tuple, dict[str, float]] = {}
    for r in rows:
        cells.setdefault(tuple(r[k] for k in keys), {})[r["method"]] = r["accuracy"]
    pairs = [(c[method], c[reference]) for c in cells.values() if method in c and reference in c]
    return sum(100 * (ref - acc) <= points + 1e-9 for acc, ref in pairs), len(pairs)


def check_claims(
    rows: list[dict[str, Any]], keys: Sequence[str], claims: Sequence[Claim] = CLAIMS
) -> list[dict[str, Any]]:
    """Each claim (default :data:`CLAIMS`) checked on ``rows``: hits, cells, share and a verdict."""
    out = []
    for method, reference, points, wanted in claims:
        hits, cells = within(rows, keys, method, reference, points)
        share = hits / cells if cells else 0.0
        verdict = "not comparable" if not cells else "met" if share >= wanted else "not met"
        out.append({
            "claim": f"{method} within {points:g} points of {reference}",
            "method": method, "reference": reference, "points": points,
            "hits": hits, "cells": cells, "share": share, "wanted": wanted, "verdict": verdict,
        })  # fmt: skip
    return out


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _plain(config: Any) -> Any:
    """A config dataclass as JSON-able data."""
    if dataclasses.is_dataclass(config):
        return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): _plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    return config
