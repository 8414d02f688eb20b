"""The torch reference executor of :mod:`edgezo.passes`: ``z`` from ``sample``, or pool views.

Two ways, both bit-exact definitions of a pass (the fused kernels are checked
against them):

* any source: per tensor, ``z`` is made piece by piece with
  :meth:`~edgezo.directions.Directions.sample` (at most
  :data:`~edgezo.directions.base.CHUNK` values alive), ``a = round(eps z)`` in the
  tensor's dtype, then ``w += k a`` (``w += k a mask`` with a mask);
* a ``"pool"`` kernel spec: ``a`` is a slice of the source's pre-scaled table
  ``round(eps * pool)`` (one or two per tensor, as views: nothing is allocated),
  and the tensors of a pass are grouped by (dtype, device, multiple, masked) into
  one ``torch._foreach_*`` call each; unmasked adjacent tensors of one dtype whose
  window does not wrap take one call over ``torch.split`` views of the table.

Each yielded operation takes a flag: ``False`` applies it, ``True`` takes it back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..directions.base import CHUNK, work_dtype

if TYPE_CHECKING:
    from ..directions.base import Directions, KernelSpec
    from ..params import Segment

#: Cached contiguous-path plans, keyed by the id of the segment sequence.
_plans: dict[int, tuple[Sequence, Any]] = {}


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
    flat, mask = seg.flat(), seg.flat_mask()
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
        axpy_(flat[start:stop], a, multiple, None if mask is None else mask[start:stop])


def cyclic_slices(start: int, n: int, size: int) -> list[tuple[int, int, int]]:
    """``table[(start + j) mod size]`` for ``j < n`` as ``(target_start, table_start, length)``."""
    pieces, done = [], 0
    k = start % size
    while done < n:
        length = min(n - done, size - k)
        pieces.append((done, k, length))
        done += length
        k = 0
    return pieces


def _pool_pass(
    spec: KernelSpec,
    segments: Sequence[Segment],
    step: int,
    query: int,
    eps: float,
    multiples: Sequence[float],
) -> Iterator:
    """One pass of a pool as a few foreach operations over views of the scaled table."""
    eps = eps * spec.factor(step, query)
    start = spec.start(step, query)
    contiguous = _contiguous(spec, segments, start, eps, multiples)
    if contiguous is not None:
        yield contiguous
        return
    batches: dict[tuple, tuple[list, list, list]] = {}
    for seg, k in zip(segments, multiples, strict=True):
        if k == 0.0:
            continue
        flat, mask = seg.flat(), seg.flat_mask()
        scaled = spec.table(eps, flat.dtype, flat.device)
        targets, sources, masks = batches.setdefault(
            (flat.dtype, flat.device, k, mask is not None), ([], [], [])
        )
        for t0, p0, length in cyclic_slices(start + seg.offset, seg.numel, spec.size):
            whole = length == seg.numel
            targets.append(flat if whole else flat[t0 : t0 + length])
            sources.append(scaled[p0 : p0 + length])
            if mask is not None:
                masks.append(mask if whole else mask[t0 : t0 + length])
    for (_, _, k, _), (targets, sources, masks) in batches.items():
        yield partial(_foreach_axpy_, targets, sources, masks, k)


def _foreach_axpy_(
    targets: list[Tensor], sources: list[Tensor], masks: list[Tensor], k: float, undo: bool
) -> None:
    """``targets[i] += k sources[i] (masks[i])`` in one foreach call (``-k`` to undo)."""
    k = -k if undo else k
    if masks:
        torch._foreach_addcmul_(targets, sources, masks, value=k)
    else:
        torch._foreach_add_(targets, sources, alpha=k)


def _contiguous(
    spec: KernelSpec, segments: Sequence[Segment], start: int, eps: float, multiples
) -> partial | None:
    """The common case as one operation: unmasked tensors of one dtype, adjacent in the flat
    vector, one multiple, a window that does not wrap: the table slice is split into
    per-tensor views by ``torch.split`` (one C++ call) and added by one foreach call.
    ``None`` when the case does not apply.
    """
    plan = _plan(segments)
    if plan is None or len(set(multiples)) != 1 or multiples[0] == 0.0:
        return None
    flats, sizes, first = plan
    begin = (start + first) % spec.size
    if begin + sum(sizes) > spec.size:
        return None
    scaled = spec.table(eps, flats[0].dtype, flats[0].device)
    sources = scaled[begin : begin + sum(sizes)].split(sizes)
    return partial(_foreach_axpy_, flats, list(sources), [], multiples[0])


def _plan(segments: Sequence[Segment]) -> tuple[list, list, int] | None:
    """Flat views, sizes and first offset of ``segments`` if the contiguous case applies (cached)."""
    key = id(segments)
    cached = _plans.get(key)
    if cached is not None and cached[0] is segments:
        return cached[1]
    flats = [seg.flat() for seg in segments]
    adjacent = all(a.end == b.offset for a, b in zip(segments[:-1], segments[1:], strict=True))
    uniform = len({(f.dtype, f.device) for f in flats}) == 1
    unmasked = all(seg.mask is None for seg in segments)
    plan = None
    if segments and adjacent and uniform and unmasked:
        plan = (flats, [seg.numel for seg in segments], segments[0].offset)
    if len(_plans) > 32:
        _plans.clear()
    _plans[key] = (segments, plan)
    return plan
