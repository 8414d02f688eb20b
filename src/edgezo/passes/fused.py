"""The fused Triton executor of :mod:`edgezo.passes`: which tensors can take it, and its operations.

The torch path (:mod:`.reference`) is the reference; on a GPU it makes ``z``
piece by piece on the CPU (counter sources) or issues one op per tensor. A
kernel pass instead reads and writes every weight once, computing ``z`` in
registers (:mod:`.triton_hash`) or gathering it from the pool, for several
passes at once (:mod:`.triton_perturb`). It works from the source's
:class:`~edgezo.directions.base.KernelSpec` alone, so a new source with a
hashed or pool kind needs no change here. Triton is imported only when a pass
can use it (CPU-only runs never load it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..directions.base import KernelSpec
    from ..params import Segment

MODES = ("auto", "on", "off")

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_plans: dict[tuple, tuple[Sequence, Any]] = {}
_triton_error: str | None = None


def _import_kernels() -> Any:
    """The kernel module, or ``None`` if triton cannot be imported (the reason is kept)."""
    global _triton_error
    try:
        from . import triton_perturb
    except ImportError as error:
        _triton_error = str(error)
        return None
    return triton_perturb


def _eligible(segments: Sequence[Segment], mode: str) -> bool:
    """Whether the tensors of a pass can take the kernel path under ``mode``."""
    if mode not in MODES:
        raise ValueError(f"Invalid kernel mode {mode!r} (EDGEZO_KERNELS); choose one of {MODES}")
    if mode == "off" or not segments:
        return False
    if any(seg.mask is not None or seg.flat().dtype not in _FLOATS for seg in segments):
        return False
    return mode == "on" or all(seg.flat().device.type == "cuda" for seg in segments)


def plan(segments: Sequence[Segment], mode: str) -> list | None:
    """Kernel tables of ``segments`` (cached per sequence object), or ``None``: use torch."""
    key = (id(segments), len(segments), mode)
    cached = _plans.get(key)
    if cached is not None and cached[0] is segments:
        return cached[1]
    groups = None
    if _eligible(segments, mode):
        kernels = _import_kernels()
        if kernels is None and mode == "on":
            raise ImportError(
                f"EDGEZO_KERNELS=on needs triton ({_triton_error}): pip install triton"
            )
        if kernels is not None:
            _check_interpreter(segments, kernels)
            groups = kernels.plan(segments, kernels.BLOCK)
    if len(_plans) > 32:
        _plans.clear()
    _plans[key] = (segments, groups)
    return groups


def _check_interpreter(segments: Sequence[Segment], kernels: Any) -> None:
    if not kernels.interpreted() and any(s.flat().device.type != "cuda" for s in segments):
        raise RuntimeError(
            "Kernels on CPU tensors run in Triton's interpreter: set the environment variable "
            "TRITON_INTERPRET=1 before triton is first imported, or use EDGEZO_KERNELS=auto"
        )


def operations(
    spec: KernelSpec, groups: list, segments: Sequence[Segment], eps: float, passes: Sequence
) -> Iterator:
    """One operation per (launch unit, dtype group): a unit is a run of passes with one step size.

    Hashed kinds take every pass in one unit (the per-perturbation factor is a kernel
    argument); a pool's table is pre-scaled by ``eps * factor``, so consecutive passes
    with the same factor share a unit (all of them, unless the factor varies per window).
    """
    from . import triton_perturb

    if spec.kind == "pool":
        launch = partial(triton_perturb.pool_passes_, spec)
        units = [
            (eps * factor, list(run))
            for factor, run in itertools.groupby(passes, key=lambda p: spec.factor(p[0], p[1]))
        ]
    else:
        dim = max(seg.end for seg in segments)
        launch = partial(triton_perturb.counter_passes_, spec, dim=dim)
        units = [(eps, list(passes))]
    for unit_eps, unit in units:
        for group in groups:
            yield partial(_launch, launch, group, unit_eps, unit)


def _launch(launch, group, eps: float, passes: Sequence, undo: bool) -> None:
    """Apply ``passes`` to one group, or take them back (negated, in reverse order)."""
    if undo:
        passes = [(s, q, [-k for k in m]) for s, q, m in reversed(passes)]
    launch([group], eps=eps, passes=passes)
