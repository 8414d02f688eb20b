"""How ``w += sum_p k_p round(eps z_p)`` is executed: one entry point, one rollback.

A direction source (:mod:`edgezo.directions`) only says what ``z`` is: its
``sample`` and, optionally, a :class:`~edgezo.directions.base.KernelSpec`.
This package applies *passes* to the weights: a pass ``(step, query, multiples)``
adds ``multiples[i] * round(eps * z(step, query))`` to tensor ``i``, the step
``a = round(eps z)`` rounded to the tensor's dtype *before* it is added, so the
optimizer's ``+a, -2a, +a`` round trip brings a zero back to exactly zero.
:func:`apply_` is the only entry point; it picks the executor in one place:

* the fused Triton kernels (:mod:`.fused`, :mod:`.triton_hash`, :mod:`.triton_perturb`)
  when the source has a kernel spec and :func:`edgezo.passes.fused.plan` accepts the
  tensors: every weight read and written once for several passes, ``z`` computed in
  registers or gathered from the pool;
* else, for CPU tensors and a counter spec (``"gaussian"``, ``"rademacher"``,
  ``"uniform"``) or a ``"pool"`` spec, the compiled C loop (:mod:`.compiled`): hash (or
  read the pool), map and add in one pass over each tensor, no eps-scaled copy of the
  pool, built with the system C compiler on first use; for a ``"registers"``
  spec (the hardware-RNG models) its twin :mod:`.streams`, which runs the registers forward
  in C (bit-identical to the numpy model and the torch path);
* otherwise the torch reference (:mod:`.reference`): ``z`` made piece by piece with
  ``sample`` (at most :data:`~edgezo.directions.base.CHUNK` values alive), or, for a
  ``"pool"`` spec, the pool scaled a chunk at a time and added to every weight range
  that reads the chunk by one ``foreach`` call (no eps-scaled copy of the pool is kept).

Both executors cut the work into operations that can be taken back; :func:`apply_`
runs them in order and, if one fails (an exception, Ctrl-C), takes back the ones
done, in reverse order, before the exception propagates: the passes are all or nothing.

The Triton path is taken when all of these hold:

* the source returns a counter or pool kernel spec (:class:`~edgezo.directions.Gaussian`,
  :class:`~edgezo.directions.Rademacher`, :class:`~edgezo.directions.Uniform` and
  :class:`~edgezo.directions.Pool` do; the hardware-RNG models' ``"registers"`` spec has no
  Triton kernel, and momentum-guided sampling has no spec: both take the paths below);
* every tensor of the pass is float32, float16 or bfloat16 and has no mask;
* every tensor is on a CUDA device (or :data:`mode` is ``"on"``);
* ``triton`` can be imported (``pip install triton``, or ``pip install edgezo[gpu]``).

When the Triton path is not taken, the compiled path is, tensor by tensor (so a tensor's
numbers never depend on the other tensors of a call), if all of these hold, else the torch
path (:data:`last_executor` says which ran):

* the kernel spec's kind is ``"gaussian"``, ``"rademacher"``, ``"uniform"`` or ``"pool"``
  (:mod:`.compiled`), or ``"registers"`` (:mod:`.streams`);
* the tensor is on the CPU, float32, float16 or bfloat16, contiguous, and has no mask;
* :data:`mode` is not ``"off"``;
* a C compiler builds the library (``$CC``, ``cc``, ``gcc`` or ``clang``; without one the
  torch path runs: the pool, Rademacher and Uniform give the same bits, Gaussian within
  :data:`edgezo.passes.compiled.ERFINV_ULPS` float32 ulps of ``z``).

:data:`mode` (initially from the environment variable ``EDGEZO_KERNELS``):
``"auto"`` (the rules above), ``"off"`` (always torch) or ``"on"`` (Triton kernels also
for CPU tensors, through Triton's interpreter: set ``TRITON_INTERPRET=1`` before
triton is imported; slow, for tests).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from . import compiled, fused, reference, streams

if TYPE_CHECKING:
    from ..directions import Directions
    from ..params import Segment

MODES = fused.MODES

#: ``"auto"``, ``"on"`` or ``"off"`` (see the module docstring).
mode: str = os.environ.get("EDGEZO_KERNELS", "auto")

#: The executor of the last :func:`operations` call: ``"triton"``, ``"compiled"``, ``"torch"``
#: or ``"compiled+torch"`` (some tensors of the call compiled, the others on torch).
last_executor: str = ""

#: ``(step, query, multiples)``: one multiple per segment.
Pass = tuple[int, int, Sequence[float]]
#: One piece of work: ``op(False)`` applies it, ``op(True)`` takes it back.
Operation = Callable[[bool], None]


def apply_(
    source: Directions, segments: Sequence[Segment], eps: float, passes: Sequence[Pass]
) -> None:
    """``w_i += k_i round(eps z(step, query))`` for every pass, in order, all or nothing.

    Args:
        source: the direction source (what ``z`` is).
        segments: the tensors, as :class:`~edgezo.params.Segment` (contiguous, with
            their global offsets and masks: where a mask is 0 nothing changes).
        eps: the perturbation scale.
        passes: ``(step, query, multiples)`` with one multiple per segment; the
            optimizer issues a step's restores and update as one call, so a fused
            kernel reads and writes the weights once for all of them.
    """
    live = [p for p in passes if any(k != 0.0 for k in p[2])]  # all-zero passes are no-ops
    if live:
        run_all_or_nothing(operations(source, segments, eps, live))


def operations(
    source: Directions, segments: Sequence[Segment], eps: float, passes: Sequence[Pass]
) -> Iterable[Operation]:
    """The executor's operations for ``passes``: the one place where the path is chosen."""
    global last_executor
    spec = source.kernel_spec()
    registers = spec is not None and spec.kind == "registers"  # hardware RNGs: no Triton kernel
    groups = None if spec is None or registers else fused.plan(segments, mode)
    if groups is not None:
        last_executor = "triton"
        return fused.operations(spec, groups, segments, eps, passes)
    native = streams if registers else compiled
    chosen = [False] * len(segments)
    if spec is not None and mode != "off" and native.available(spec):
        chosen = [compiled.eligible(seg) for seg in segments]
    last_executor = {(True,): "compiled", (False,): "torch"}.get(
        tuple(set(chosen)), "compiled+torch"
    )
    if not any(chosen):
        return reference.operations(source, spec, segments, eps, passes)
    mine = [
        (s, q, [k if c else 0.0 for k, c in zip(ks, chosen, strict=True)]) for s, q, ks in passes
    ]
    rest = [
        (s, q, [0.0 if c else k for k, c in zip(ks, chosen, strict=True)]) for s, q, ks in passes
    ]
    return itertools.chain(
        native.operations(spec, segments, eps, mine),
        reference.operations(source, spec, segments, eps, rest),
    )


def numerics(source: Directions) -> str | None:
    """How this process computes ``z`` on the CPU where executors differ in the last bits
    (``None`` where they agree bit for bit): only a Gaussian counter source, whose compiled
    loop uses Giles' ``erfinv`` and whose torch path uses torch's. A checkpoint records it,
    so that a resume on the other path warns instead of silently changing the numbers."""
    spec = source.kernel_spec()
    if spec is None or spec.kind != "gaussian":
        return None
    if mode != "off" and compiled.available(spec):
        return "the compiled CPU loop (Giles' erfinv)"
    return "torch (torch.erfinv)"


def run_all_or_nothing(ops: Iterable[Operation]) -> None:
    """Apply every operation in order; if one fails, take back those done (newest first)."""
    done: list[Operation] = []
    try:
        for op in ops:
            op(False)
            done.append(op)
    except BaseException:
        for op in reversed(done):
            op(True)
        raise
