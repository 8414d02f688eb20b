"""The torch reference executor of :mod:`edgezo.passes`: ``z`` from ``sample``, or pool views.

Two ways, both bit-exact definitions of a pass (the fused kernels are checked
against them):

* any source: per tensor, ``z`` is made piece by piece with
  :meth:`~edgezo.directions.Directions.sample` (at most
  :data:`~edgezo.directions.base.CHUNK` values alive), ``a = round(eps z)`` in the
  tensor's dtype, then ``w += k a`` (``w += k a mask`` with a mask, the mask
  unpacked from its bits for that piece only);
* a ``"pool"`` kernel spec: the tensors of a pass are grouped by (dtype, device,
  multiple, masked), and the pool is read a chunk of at most :data:`POOL_CHUNK`
  numbers at a time: ``a = round(eps * pool[chunk])`` is formed once into a scratch
  buffer and added, by one ``torch._foreach_*`` call, to every piece of weights that
  reads that chunk (the window is ``d`` long and the pool ``P``, so a chunk serves
  about ``d / P`` ranges of weights). No eps-scaled copy of the pool is kept, and
  the bits are those of scaling the whole pool: each element is one float32 product
  rounded alone.

Each yielded operation takes a flag: ``False`` applies it, ``True`` takes it back.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..directions.base import CHUNK, work_dtype

if TYPE_CHECKING:
    from ..directions.base import Directions, KernelSpec
    from ..params import Segment

#: Pool numbers scaled at once: the pool path's only temporary (``a`` of this many values,
#: 512 KiB of float32, cache-sized, kept per thread), and a pass costs about
#: ``min(d, P) / POOL_CHUNK`` operations.
POOL_CHUNK = 1 << 17

#: Per thread, the pool path's scratch buffers (:func:`scratch`).
_scratch = threading.local()

#: Cached pool groups, keyed by the id of the segment sequence and the multiples' pattern,
#: and the groups' chunk plans, keyed by the group's id and the pool offset.
_plans: dict[tuple, tuple[Sequence, Any]] = {}
_chunk_plans: dict[tuple, tuple[Any, list]] = {}


def operations(
    source: Directions,
    spec: KernelSpec | None,
    segments: Sequence[Segment],
    eps: float,
    passes: Sequence[tuple[int, int, Sequence[float]]],
) -> Iterator:
    """Operations of ``passes``, in order: per tensor, or per foreach group for a pool."""
    for step, query, multiples in passes:
        if spec is not None and spec.kind == "pool":
            yield from _pool_pass(spec, segments, step, query, eps, multiples)
            continue
        for seg, k in zip(segments, multiples, strict=True):
            if k != 0.0:
                yield partial(_add_sampled_, source, seg, step, query, eps, k)


def axpy_(target: Tensor, a: Tensor, multiple: float, mask: Tensor | None) -> None:
    """``target += multiple * a`` (times ``mask`` where given), without a temporary."""
    if mask is None:
        target.add_(a, alpha=multiple)
    else:
        target.addcmul_(a, mask, value=multiple)


def _add_sampled_(
    source: Directions, seg: Segment, step: int, query: int, eps: float, k: float, undo: bool
) -> None:
    """``w += k round(eps z)`` on one tensor, ``z`` sampled piece by piece (``-k`` to undo)."""
    flat = seg.flat()
    multiple = -k if undo else k
    n = flat.numel()
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        z = source.sample(
            step,
            query,
            seg.offset + start,
            stop - start,
            dtype=work_dtype(flat.dtype),
            device=flat.device,
        )
        a = z.mul_(eps).to(flat.dtype)
        axpy_(flat[start:stop], a, multiple, seg.mask_piece(start, stop, flat.dtype))


@dataclass(frozen=True)
class PoolGroup:
    """Tensors of a pool pass that one operation per pool chunk updates: one dtype, device,
    multiple (that of segment ``k_index``) and maskedness, sorted by global offset."""

    segments: tuple[Segment, ...]
    k_index: int
    starts: tuple[int, ...]  #: the segments' global offsets (for bisection)
    low: int  #: first global index of the group
    high: int  #: one past its last

    @classmethod
    def of(cls, segments: list[Segment], k_index: int) -> PoolGroup:
        segments.sort(key=lambda s: s.offset)
        starts = tuple(s.offset for s in segments)
        return cls(tuple(segments), k_index, starts, starts[0], max(s.end for s in segments))

    def pieces(self, first: int, n: int) -> Iterator[tuple[Segment, int, int, int]]:
        """``(segment, start, stop, at)``: the group's weights among global ``[first, first+n)``
        (local ``start:stop``), ``at`` their place in that range."""
        i = max(0, bisect.bisect_right(self.starts, first) - 1)
        end = first + n
        for seg in self.segments[i:]:
            if seg.offset >= end:
                break
            lo, hi = max(first, seg.offset), min(end, seg.end)
            if lo < hi:
                yield seg, lo - seg.offset, hi - seg.offset, lo - first


def _pool_groups(segments: Sequence[Segment], multiples: Sequence[float]) -> list[PoolGroup]:
    """The groups of a pool pass (cached per segment sequence and pattern of multiples)."""
    first: dict[float, int] = {}
    pattern = tuple(-1 if k == 0.0 else first.setdefault(k, i) for i, k in enumerate(multiples))
    key = (id(segments), pattern)
    cached = _plans.get(key)
    if cached is not None and cached[0] is segments:
        return cached[1]
    members: dict[tuple, list[Segment]] = {}
    for seg, k_index in zip(segments, pattern, strict=True):
        if k_index >= 0 and seg.numel:
            flat = seg.flat()
            members.setdefault((flat.dtype, flat.device, k_index, seg.mask is not None), [])
            members[(flat.dtype, flat.device, k_index, seg.mask is not None)].append(seg)
    groups = [PoolGroup.of(segs, key[2]) for key, segs in members.items()]
    if len(_plans) > 32:
        _plans.clear()
    _plans[key] = (segments, groups)
    return groups


def pool_chunks(start: int, low: int, high: int, size: int) -> Iterator[tuple[int, int, list]]:
    """``(p, c, firsts)``: pool chunk ``[p, p + c)`` and the global indices ``j`` in
    ``[low, high)`` where a run of ``c`` weights reading it begins (``(start + j) mod size
    == p``; the last run may be cut at ``high``). Every ``j`` is covered exactly once."""
    n = high - low
    touched = min(n, size)
    done = 0
    while done < touched:
        p = (start + low + done) % size
        c = min(POOL_CHUNK, touched - done, size - p)
        yield p, c, list(range(low + done, high, size))
        done += c


def _pool_pass(
    spec: KernelSpec,
    segments: Sequence[Segment],
    step: int,
    query: int,
    eps: float,
    multiples: Sequence[float],
) -> Iterator:
    """One pass of a pool: per group, one operation per pool chunk (see the module doc)."""
    eps = eps * spec.factor(step, query)
    start = spec.start(step, query) % spec.size
    for group in _pool_groups(segments, multiples):
        k = multiples[group.k_index]
        for chunk in _chunk_plan(group, start, spec.size):
            yield partial(_pool_chunk_, spec, group, chunk, eps, k)


@dataclass(frozen=True)
class ChunkPlan:
    """The weights of a group that read pool chunk ``[p, p + c)``: flat views, where each
    starts in the chunk, and ``(segment, start, stop)`` for their mask pieces."""

    p: int
    c: int
    targets: list[Tensor]
    at: list[int]
    pieces: list[tuple[Segment, int, int]]


def _chunk_plan(group: PoolGroup, start: int, size: int) -> list[ChunkPlan]:
    """The chunk plans of a group for pool offset ``start``; the last few are cached (a step
    makes its perturbation, restore and update passes at one offset)."""
    key = (id(group), start, size)
    cached = _chunk_plans.get(key)
    if cached is not None and cached[0] is group:
        return cached[1]
    plans = []
    for p, c, firsts in pool_chunks(start, group.low, group.high, size):
        targets, at, pieces = [], [], []
        for first in firsts:
            for seg, lo, hi, where in group.pieces(first, c):
                targets.append(seg.flat()[lo:hi])
                at.append(where)
                pieces.append((seg, lo, hi))
        if targets:  # a group's span may have gaps (other groups' tensors)
            plans.append(ChunkPlan(p, c, targets, at, pieces))
    if len(_chunk_plans) >= 8:
        _chunk_plans.pop(next(iter(_chunk_plans)))
    _chunk_plans[key] = (group, plans)
    return plans


def pool_steps(pool: Tensor, p: int, c: int, eps: float, dtype: torch.dtype) -> Tensor:
    """``a = round(eps * pool[p : p + c])`` in ``dtype``: ``eps * z`` in float32 (float64 for
    float64 weights), then rounded to the dtype, as the whole-pool table was (each element
    is computed alone). Written into this thread's scratch buffers (:func:`scratch`): valid
    until the next call."""
    work = work_dtype(dtype)
    a = scratch(work, pool.device, c)
    if work == pool.dtype:
        torch.mul(pool[p : p + c], eps, out=a)
    else:  # the same product, after an exact widening
        a.copy_(pool[p : p + c]).mul_(eps)
    return a if work == dtype else scratch(dtype, pool.device, c).copy_(a)


def scratch(dtype: torch.dtype, device: torch.device, n: int) -> Tensor:
    """``n`` elements (at most :data:`POOL_CHUNK`) of this thread's buffer of ``dtype`` on
    ``device``: allocated once, because a fresh cache-sized tensor per chunk costs page
    faults that slow a pass down by half."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get((dtype, device))
    if buffer is None or buffer.numel() < n:
        buffer = buffers[(dtype, device)] = torch.empty(POOL_CHUNK, dtype=dtype, device=device)
    return buffer[:n]


def _pool_chunk_(
    spec: KernelSpec, group: PoolGroup, chunk: ChunkPlan, eps: float, k: float, undo: bool
) -> None:
    """``w += k round(eps z)`` on every weight of ``group`` that reads pool chunk ``[p, p+c)``,
    in one foreach call (``-k`` to undo)."""
    flat = group.segments[0].flat()
    a = pool_steps(spec.values(flat.device), chunk.p, chunk.c, eps, flat.dtype)
    sources = [a[at : at + t.numel()] for at, t in zip(chunk.at, chunk.targets, strict=True)]
    k = -k if undo else k
    if group.segments[0].mask is None:
        torch._foreach_add_(chunk.targets, sources, alpha=k)
        return
    masks = [seg.mask_piece(lo, hi, flat.dtype) for seg, lo, hi in chunk.pieces]
    torch._foreach_addcmul_(chunk.targets, sources, masks, value=k)
