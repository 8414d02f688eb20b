"""A study over several seeds: ``edgezo run STUDY --seeds 0,1,2``.

Every seed is a whole run of the study (:func:`edgezo.studies.study_runner`): the
seed draws the train/validation/test subsets, the data order, the perturbations
(every optimizer is seeded) and the backbone's pretraining (its cache key holds
the seed, so each seed pretrains its own backbone once). Seed ``S`` writes its
usual files under ``OUT/STUDY/seed-S/``; then :func:`merge` writes
``OUT/STUDY/results.json`` with every row of every seed (each row carries its
``seed``), the provenance of the runs (:func:`provenance`) and the claims
decided on intervals over the seeds (:mod:`edgezo.analysis.claims`), and
``results.md`` with each cell's mean and 95% t-interval over the seeds.

The merged ``results.json`` is what ``edgezo report`` reads and what is
committed under ``results/``; the per-seed folders (figures, per-seed tables)
are outputs, not committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..analysis.claims import DECISIONS, cell_decisions, share_verdict
from ..analysis.stats import t_interval
from .results import provenance, write_text


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: distinct non-negative integers, in the order given."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"--seeds takes integers separated by commas, like 0,1,2 (got {text!r})"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers (got {text!r})")
    return seeds


def run_seeds(
    name: str, quick: bool, out: Path, seeds: Sequence[int], progress: bool = True, jobs: int = 1
) -> dict[str, Any]:
    """Run study ``name`` once per seed (into ``out/name/seed-S``), then :func:`merge` them into
    ``out/name``; returns the merged summary (what ``edgezo run`` prints)."""
    from . import study_runner

    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    run = study_runner(name)
    folder = Path(out) / name
    seconds = {}
    for seed in seeds:
        started = time.perf_counter()
        run(quick=quick, out=folder / f"seed-{seed}", seed=seed, progress=progress, jobs=jobs)
        seconds[seed] = time.perf_counter() - started
    return merge(folder, seeds, seconds)


def merge(folder: Path, seeds: Sequence[int], seconds: Mapping[int, float] | None = None) -> dict:
    """Merge ``folder/seed-S/results.json`` of each seed into ``folder/results.json`` and
    ``results.md``; returns the summary (``out``, ``claims``, ``table``)."""
    payloads = [json.loads((folder / f"seed-{s}" / "results.json").read_text()) for s in seeds]
    first = payloads[0]
    for seed, p in zip(seeds, payloads, strict=True):
        if p["config"] != first["config"] or p["study"] != first["study"]:
            raise ValueError(f"{folder}/seed-{seed} was run with another study or config than "
                             f"seed-{seeds[0]}; rerun it with the same flags")  # fmt: skip
    rows = [{**r, "seed": s} for s, p in zip(seeds, payloads, strict=True) for r in p["rows"]]
    keys = first.get("keys") or cell_keys(rows)
    claims = [decided(rows, c) for c in first["claims"] if "reference" in c]
    payload = {
        "study": first["study"],
        "quick": first["quick"],
        "seed": seeds[0],
        "seeds": list(seeds),
        "keys": list(keys),
        "config": first["config"],
        "rows": rows,
        "claims": claims,
        "seconds": {str(s): round(t, 1) for s, t in (seconds or {}).items()},
        "provenance": provenance(),
    }
    write_text(folder / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    table = seed_table(rows, keys, methods_of(rows))
    write_text(folder / "results.md", seed_markdown(payload, table))
    return {"out": str(folder), "claims": claims, "table": table}


def cell_keys(rows: Sequence[Mapping]) -> list[str]:
    """The string fields that name a cell (every string field but ``method``), in row order."""
    return [k for k, v in rows[0].items() if isinstance(v, str) and k not in ("method", "correct")]


def methods_of(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def decided(rows: Sequence[Mapping], claim: Mapping[str, Any]) -> dict[str, Any]:
    """A study's claim (``method`` within ``points`` of ``reference`` in a ``wanted`` share of
    cells) decided on the intervals over seeds, vacuous cells left out."""
    cells = cell_decisions(rows, claim["method"], claim["reference"], claim["points"])
    counted = [d for d in cells if d.vacuous is None]
    count = {v: sum(d.decision == v for d in counted) for v in DECISIONS}
    return {
        **{k: claim[k] for k in ("claim", "method", "reference", "points", "wanted")},
        "hits": count["reproduced"],
        "cells": len(counted),
        "share": count["reproduced"] / len(counted) if counted else 0.0,
        "inconclusive": count["inconclusive"],
        "vacuous": len(cells) - len(counted),
        "verdict": share_verdict(cells, claim["wanted"]) if cells else "not comparable",
    }


def seed_table(rows: Sequence[Mapping], keys: Sequence[str], methods: Sequence[str]) -> str:
    """A Markdown table: one line per cell, per method the mean test accuracy (%) over the
    seeds and its 95% t-interval ``mean [low, high]``."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        cells.setdefault(tuple(r[k] for k in keys), {}).setdefault(r["method"], [])
        cells[tuple(r[k] for k in keys)][r["method"]].append(float(r["accuracy"]))
    lines = ["| " + " | ".join([*keys, *methods]) + " |", "|" + "---|" * (len(keys) + len(methods))]
    for cell, accs in cells.items():
        texts = [t_interval(accs[m]).text() if m in accs else "" for m in methods]
        lines.append("| " + " | ".join([*map(str, cell), *texts]) + " |")
    return "\n".join(lines)


def seed_markdown(payload: Mapping[str, Any], table: str) -> str:
    """``results.md`` of a merged study: the table, the claims, the per-seed folders."""
    seeds = ", ".join(map(str, payload["seeds"]))
    lines = [
        f"# {payload['study']}{' (quick)' if payload['quick'] else ''}, seeds {seeds}",
        "",
        "Test accuracy (%) per cell and method: mean over the seeds [95% t-interval].",
        "",
        table,
        "",
        "## The papers' claims",
        "",
        "Each cell decided on its 95% interval of the difference (reproduced / inconclusive /"
        " not); vacuous cells (the reference or backprop not above zero-shot beyond its "
        "interval, or zero-shot within the margin too) do not count.",
        "",
        "| claim | reproduced cells | inconclusive | vacuous | share | wanted | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in payload["claims"]:
        lines.append(
            f"| {c['claim']} | {c['hits']}/{c['cells']} | {c['inconclusive']} | {c['vacuous']} "
            f"| {c['share']:.0%} | {c['wanted']:.0%} | {c['verdict']} |"
        )
    lines += ["", "Per seed: " + ", ".join(f"`seed-{s}/`" for s in payload["seeds"]) + "."]
    return "\n".join(lines) + "\n"
