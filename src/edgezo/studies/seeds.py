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

A finished seed also writes ``seed-S/seed.json`` (its flags and wall seconds). A later
``edgezo run STUDY --seeds ...`` with the same flags keeps that seed instead of running it
again, so a multi-seed run stopped part-way (hours for the full studies) resumes at the
first unfinished seed; delete ``seed-S/`` to run it again. The merged file records each
seed's own provenance (``runs``), so seeds run at different commits say so.

The merged ``results.json`` is what ``edgezo report`` reads and what is
committed under ``results/``; the per-seed folders (figures, per-seed tables)
are outputs, not committed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..analysis.tables import (
    cell_keys,
    decided,
    draw_merged,
    methods_of,
    seed_markdown,
    seed_table,
)
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
    name: str,
    quick: bool,
    out: Path,
    seeds: Sequence[int],
    progress: bool = True,
    jobs: int = 1,
    pretrain_seed: int | None = None,
) -> dict[str, Any]:
    """Run study ``name`` once per seed (into ``out/name/seed-S``), then :func:`merge` them into
    ``out/name``; returns the merged summary (what ``edgezo run`` prints). ``pretrain_seed``:
    one backbone for every seed in the vision studies (``None``: each seed pretrains its own)."""
    from . import study_runner

    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    run = study_runner(name)
    folder = Path(out) / name
    flags = {"quick": quick, "pretrain_seed": pretrain_seed}
    for seed in seeds:
        where = folder / f"seed-{seed}"
        if finished(where, flags):
            print(f"{name} seed {seed}: kept, finished in {where} (delete it to run it again)",
                  file=sys.stderr)  # fmt: skip
            continue
        (where / RECORD).unlink(missing_ok=True)
        started = time.perf_counter()
        run(quick=quick, out=where, seed=seed, progress=progress, jobs=jobs,
            pretrain_seed=pretrain_seed)  # fmt: skip
        record = {**flags, "seconds": round(time.perf_counter() - started, 1)}
        write_text(where / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return merge(folder, seeds, pretrain_seed)


#: The file a finished seed writes beside its ``results.json``: its flags and wall seconds.
RECORD = "seed.json"


def finished(where: Path, flags: Mapping[str, Any]) -> bool:
    """Whether the seed run in ``where`` finished with these ``flags`` (``quick``,
    ``pretrain_seed``): its record and its ``results.json`` are there and the flags match."""
    record = where / RECORD
    if not (record.is_file() and (where / "results.json").is_file()):
        return False
    kept = json.loads(record.read_text())
    return all(kept.get(k) == v for k, v in flags.items())


def merge(folder: Path, seeds: Sequence[int], pretrain_seed: int | None = None) -> dict:
    """Merge ``folder/seed-S/results.json`` of each seed into ``folder/results.json`` and
    ``results.md``; returns the summary (``out``, ``claims``, ``table``). Each seed's wall
    seconds come from its record (a seed without one is left out of ``seconds``)."""
    payloads = [json.loads((folder / f"seed-{s}" / "results.json").read_text()) for s in seeds]
    first = payloads[0]
    for seed, p in zip(seeds, payloads, strict=True):
        if p["config"] != first["config"] or p["study"] != first["study"]:
            raise ValueError(f"{folder}/seed-{seed} was run with another study or config than "
                             f"seed-{seeds[0]}; delete it and rerun with the same flags")  # fmt: skip
    rows = [{**r, "seed": s} for s, p in zip(seeds, payloads, strict=True) for r in p["rows"]]
    keys = first.get("keys") or cell_keys(rows)
    claims = [decided(rows, c) for c in first["claims"] if "reference" in c]
    payload = {
        "study": first["study"],
        "quick": first["quick"],
        "seed": seeds[0],
        "seeds": list(seeds),
        "pretrain_seed": pretrain_seed,
        "keys": list(keys),
        "config": first["config"],
        "rows": rows,
        "claims": claims,
        "seconds": recorded_seconds(folder, seeds),
        "provenance": provenance(),
        "runs": {str(s): p["provenance"] for s, p in zip(seeds, payloads, strict=True)},
    }
    write_text(folder / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    write_text(folder / "results.md", seed_markdown(payload))
    draw_merged(folder, payload)
    return {"out": str(folder), "claims": claims, "table": seed_table(rows, keys, methods_of(rows))}


def recorded_seconds(folder: Path, seeds: Sequence[int]) -> dict[str, float]:
    """``{"S": wall seconds}`` of the seeds whose run left a record in ``folder/seed-S``."""
    records = {s: folder / f"seed-{s}" / RECORD for s in seeds}
    return {str(s): json.loads(r.read_text())["seconds"] for s, r in records.items() if r.is_file()}
