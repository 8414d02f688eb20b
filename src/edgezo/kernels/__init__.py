"""Fused Triton kernels for the perturbation passes, used automatically on CUDA.

The torch path of :mod:`edgezo.directions` is the reference; on a GPU it makes
``z`` piece by piece on the CPU (counter sources) or issues one op per tensor.
A kernel pass instead reads and writes every weight once, computing ``z`` in
registers (:mod:`edgezo.kernels.hash`) or gathering it from the pool, for
several passes at once (:mod:`edgezo.kernels.perturb`). A pass takes the kernel
path when all of these hold, else the torch path:

* the source is :class:`~edgezo.directions.Gaussian`, :class:`~edgezo.directions.Rademacher`,
  :class:`~edgezo.directions.Uniform` or :class:`~edgezo.directions.Pool` (the
  hardware-RNG models and momentum-guided sampling stay on the torch path);
* every tensor of the pass is float32, float16 or bfloat16 and has no mask;
* every tensor is on a CUDA device (or :data:`mode` is ``"on"``);
* ``triton`` can be imported (``pip install triton``, or ``pip install edgezo[gpu]``).

:data:`mode` (initially from the environment variable ``EDGEZO_KERNELS``):
``"auto"`` (the rules above), ``"off"`` (always torch) or ``"on"`` (kernels also
for CPU tensors, through Triton's interpreter: set ``TRITON_INTERPRET=1`` before
triton is imported; slow, for tests).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

MODES = ("auto", "on", "off")

#: ``"auto"``, ``"on"`` or ``"off"`` (see the module docstring).
mode: str = os.environ.get("EDGEZO_KERNELS", "auto")

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_plans: dict[tuple, tuple[Sequence, Any]] = {}
_triton_error: str | None = None


def _import_kernels() -> Any:
    """The kernel module, or ``None`` if triton cannot be imported (the reason is kept)."""
    global _triton_error
    try:
        from . import perturb
    except ImportError as error:
        _triton_error = str(error)
        return None
    return perturb


def _eligible(segments: Sequence) -> bool:
    """Whether the tensors of a pass can take the kernel path under :data:`mode`."""
    if mode not in MODES:
        raise ValueError(f"Invalid kernel mode {mode!r} (EDGEZO_KERNELS); choose one of {MODES}")
    if mode == "off" or not segments:
        return False
    if any(seg.mask is not None or seg.flat().dtype not in _FLOATS for seg in segments):
        return False
    return mode == "on" or all(seg.flat().device.type == "cuda" for seg in segments)


def plan(segments: Sequence) -> list | None:
    """Kernel tables of ``segments`` (cached per sequence object), or ``None``: use torch."""
    key = (id(segments), len(segments), mode)
    cached = _plans.get(key)
    if cached is not None and cached[0] is segments:
        return cached[1]
    groups = None
    if _eligible(segments):
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


def _check_interpreter(segments: Sequence, kernels: Any) -> None:
    if not kernels.interpreted() and any(s.flat().device.type != "cuda" for s in segments):
        raise RuntimeError(
            "Kernels on CPU tensors run in Triton's interpreter: set the environment variable "
            "TRITON_INTERPRET=1 before triton is first imported, or use EDGEZO_KERNELS=auto"
        )


def _live(passes: Sequence) -> list:
    """The passes that move something (all-zero multiples are no-ops on both paths)."""
    return [p for p in passes if any(k != 0.0 for k in p[2])]


def counter_passes_(source, segments: Sequence, eps: float, passes: Sequence) -> bool:
    """``passes`` of a counter source by kernel if :func:`plan` allows; False: not done."""
    groups = plan(segments)  # first: triton is imported only for tensors that can use it
    if groups is None:
        return False
    from .hash import kind_of
    from .perturb import counter_passes_ as launch

    if kind_of(source) is None:
        return False

    dim = max(seg.end for seg in segments)
    _apply(lambda gs, e, ps: launch(source, gs, dim, e, ps), groups, [(eps, _live(passes))])
    return True


def pool_passes_(pool, segments: Sequence, eps: float, passes: Sequence) -> bool:
    """``passes`` of a :class:`~edgezo.directions.Pool` by kernel; False: not done."""
    groups = plan(segments)
    if groups is None:
        return False
    from .perturb import pool_passes_ as launch

    live = _live(passes)
    if pool.scale == "perturbation":  # a scaled pool per window: one launch per pass
        units = [
            (eps * pool._window_scale(pool.position(s, q, 0)), [(s, q, m)]) for s, q, m in live
        ]
    else:
        units = [(eps, live)]
    _apply(lambda gs, e, ps: launch(pool, gs, e, ps), groups, units)
    return True


def _apply(launch, groups: list, units: list) -> None:
    """Launch every ``(eps, passes)`` unit on every group; if interrupted, take back what was done."""
    done = []
    try:
        for eps, passes in units:
            if passes:
                for group in groups:
                    launch([group], eps, passes)
                    done.append((group, eps, passes))
    except BaseException:
        for group, eps, passes in reversed(done):
            launch([group], eps, [(s, q, [-k for k in m]) for s, q, m in reversed(passes)])
        raise
