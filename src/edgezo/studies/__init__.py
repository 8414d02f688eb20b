"""The demo and the papers' studies as recipes: ``edgezo demo``, ``edgezo run <study> [--quick]``.

Each study adapts a backbone pretrained here (backprop, cached) with every
method of :mod:`edgezo.studies.methods` (the one method registry, which the
demo and Figure 6 use too) and writes, under its output directory,
``results.json`` (every number), ``results.md`` (the tables, with the paper's
claims checked) and PNG figures. Also here: :mod:`edgezo.studies.demo`,
Figure 6's training (:mod:`edgezo.studies.landscape`) and the data-parallel
example (:mod:`edgezo.studies.distributed`).

A study is a module of this package with a function
``run(quick: bool, out: Path, seed: int, progress: bool, jobs: int) -> dict`` that
writes its files under ``out`` and returns its summary; :data:`STUDIES` names them. After
``--seeds``, :func:`edgezo.studies.seeds.merge` writes the merged JSON, its tables and its chart
(:mod:`edgezo.analysis.tables`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

#: Study name -> module under ``edgezo.studies`` (imported only when run).
STUDIES = {
    "cross-domain": "cross_domain",
    "ood": "ood",
    "fewshot": "fewshot",
    "kws-personalize": "kws_personalize",
    "kws-fewshot": "kws_fewshot",
    "ablations": "ablations",
    "convergence": "convergence",
}


def study_module(name: str) -> ModuleType:
    """Study ``name``'s module; a ``ValueError`` naming the studies for an unknown one."""
    if name not in STUDIES:
        raise ValueError(f"Unknown study {name!r}; choose from {', '.join(sorted(STUDIES))}")
    return importlib.import_module(f"{__name__}.{STUDIES[name]}")


def study_runner(name: str) -> Any:
    """Study ``name``'s ``run`` (see the module's docstring); a ``ValueError`` naming the
    studies for an unknown one."""
    return study_module(name).run


def run_study(
    name: str, quick: bool, out: Path, seed: int = 0, progress: bool = True, jobs: int = 1
) -> dict:
    """Run study ``name`` over ``jobs`` processes; its files go to ``out/name``. Several seeds:
    :func:`edgezo.studies.seeds.run_seeds`."""
    run = study_runner(name)
    return run(quick=quick, out=Path(out) / name, seed=seed, progress=progress, jobs=jobs)
