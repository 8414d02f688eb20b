"""Fused perturbation passes: ``w += sum_p k_p round(eps z_p)`` over many tensors in one launch.

A pass of the torch path (:mod:`edgezo.passes.reference`) makes
``z`` piece by piece and adds it tensor by tensor. Here one launch per weight
dtype covers every tensor of the pass and several passes at once (the restore
fused with the update, momentum replay's history), reading and writing each
weight once. For every element and every pass ``p``, in order::

    a = round_dtype(eps * z_p)                  # as the torch path: rounded before adding
    w = round_dtype(fma(k_p[t], a, w))           # float32 multiple, float32 FMA

which is what sequential torch passes do on float32 weights (``add_(alpha=)``
is an FMA there), bit for bit. On float16/bfloat16 weights the CPU's ``add_``
first rounds the multiple ``k`` itself to the weight dtype; the kernel keeps it
in float32 (as CUDA's ``add_`` does), so the two agree exactly for the
perturbation multiples (1, -2, ...) and within an ulp of the weight for an
update's multiple.

Tensors are addressed through a pointer table (one int64 address per tensor)
rather than by concatenating them: the weights stay where the model keeps them.
Each program handles ``BLOCK`` elements of one tensor; a table maps program ids
to tensors (4 bytes per program: 13 MB for 13B parameters). Full blocks load and
store without a mask, so the loads vectorise (a mask whose bound is read from
memory would stop that); alignment of the tensors is checked on the host.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor

if TYPE_CHECKING:
    from ..directions.base import KernelSpec

from .triton_hash import counter_value, hash_word, interpreted, key_table, kind_code, on_device

#: Elements per program: a multiple of 16 (aligned vector loads), large enough that
#: the per-program table look-ups are amortised.
BLOCK = 2048
#: Warps per program: 8 elements per thread; the Gaussian kernel then needs 76 registers
#: per thread on sm_90 (135 with 4 warps), no spills (``cuobjdump --dump-resource-usage``).
NUM_WARPS = 8

#: Weight dtypes with a kernel; others (float64) take the torch path.
DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}

Pass = tuple[int, int, Sequence[float]]  # (step, query, one multiple per segment)


@dataclass
class Group:
    """The tensors of one dtype on one device, as the kernels address them."""

    dtype: torch.dtype
    indices: list[int]  #: positions of these tensors in the pass's segment list
    ptrs: Tensor  #: int64 data addresses
    numels: Tensor  #: int64 element counts
    offsets: Tensor  #: int64 global index of each tensor's first element
    first_block: Tensor  #: int64 first program id of each tensor
    block_tensor: Tensor  #: int32 tensor index of each program
    programs: int
    aligned: bool  #: every address is a multiple of 16 bytes
    block: int  #: elements per program


def _table(values: list[int], device: torch.device, dtype: torch.dtype = torch.int64) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def plan(segments: Sequence, block: int = BLOCK) -> list[Group]:
    """Pointer and program tables of ``segments``, one :class:`Group` per dtype and device."""
    by_kind: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, seg in enumerate(segments):
        by_kind.setdefault((seg.flat().dtype, seg.flat().device), []).append(i)
    groups = []
    for (dtype, device), indices in by_kind.items():
        flats = [segments[i].flat() for i in indices]
        counts = [triton.cdiv(f.numel(), block) for f in flats]
        starts = [0, *itertools.accumulate(counts)][:-1]
        addresses = [f.data_ptr() for f in flats]
        groups.append(
            Group(
                dtype=dtype,
                indices=indices,
                ptrs=_table(addresses, device),
                numels=_table([f.numel() for f in flats], device),
                offsets=_table([segments[i].offset for i in indices], device),
                first_block=_table(starts, device),
                block_tensor=torch.repeat_interleave(
                    torch.arange(len(flats), dtype=torch.int32), torch.tensor(counts)
                ).to(device),
                programs=sum(counts),
                aligned=all(a % 16 == 0 for a in addresses),
                block=block,
            )
        )
    return groups


@triton.jit
def _locate(
    ptrs,
    numels,
    offsets,
    first_block,
    block_tensor,
    W_DTYPE: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """This program's tensor ``t``, base pointer, size, first local and first global index."""
    pid = tl.program_id(0)
    t = tl.load(block_tensor + pid)
    base = tl.load(ptrs + t).to(tl.pointer_type(W_DTYPE))
    if ALIGNED:
        base = tl.multiple_of(base, 16)
    numel = tl.load(numels + t)
    start = (pid - tl.load(first_block + t)).to(tl.int64) * BLOCK
    return t, base, numel, start, tl.load(offsets + t) + start


@triton.jit
def _round(x, W_DTYPE: tl.constexpr):
    """float32 to the weight dtype, rounding to nearest even (as torch's ``.to``).

    bfloat16 by integer ops (torch's own formula): Triton's interpreter truncates
    in ``.to(tl.bfloat16)``, the GPU rounds; the integer version is exact on both.
    """
    if W_DTYPE == tl.bfloat16:  # noqa: SIM300 (W_DTYPE is an argument)
        bits = x.to(tl.uint32, bitcast=True)
        bits += 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(W_DTYPE)


@triton.jit
def _axpy(w, k, a, W_DTYPE: tl.constexpr):
    """``round(fma(k, a, w))`` in the weight dtype; ``k == 0`` leaves ``w`` as it is (also -0.0)."""
    moved = _round(tl.fma(k, a.to(tl.float32), w.to(tl.float32)), W_DTYPE)
    return tl.where(k != 0.0, moved, w)


@triton.jit
def _counter_block(
    base,
    r,
    g,
    first,
    t,
    numel,
    keys,
    nkeys,
    scales,
    mults,
    npass,
    ntensors,
    eps,
    MASKED: tl.constexpr,
    KIND: tl.constexpr,
    W_DTYPE: tl.constexpr,
    PRECISE_LOG: tl.constexpr,
):
    inside = r < numel
    w = tl.load(base + r, mask=inside) if MASKED else tl.load(base + r)
    for p in range(npass):
        z = counter_value(hash_word(g, first, keys + 2 * nkeys * p), KIND, PRECISE_LOG)
        a = _round(z * tl.load(scales + p) * eps, W_DTYPE)
        w = _axpy(w, tl.load(mults + p * ntensors + t), a, W_DTYPE)
    if MASKED:
        tl.store(base + r, w, mask=inside)
    else:
        tl.store(base + r, w)


@triton.jit
def _counter_kernel(
    ptrs,
    numels,
    offsets,
    first_block,
    block_tensor,
    keys,
    nkeys,
    scales,
    mults,
    npass,
    ntensors,
    eps,
    KIND: tl.constexpr,
    W_DTYPE: tl.constexpr,
    ALIGNED: tl.constexpr,
    PRECISE_LOG: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Counter sources: ``z_p`` hashed in registers from the key table of pass ``p``."""
    t, base, numel, start, first = _locate(
        ptrs, numels, offsets, first_block, block_tensor, W_DTYPE, ALIGNED, BLOCK
    )
    r = start + tl.arange(0, BLOCK)
    g = first + tl.arange(0, BLOCK)
    if start + BLOCK <= numel:
        _counter_block(
            base, r, g, first, t, numel, keys, nkeys, scales, mults, npass, ntensors, eps,
            False, KIND, W_DTYPE, PRECISE_LOG,
        )  # fmt: skip
    else:
        _counter_block(
            base, r, g, first, t, numel, keys, nkeys, scales, mults, npass, ntensors, eps,
            True, KIND, W_DTYPE, PRECISE_LOG,
        )  # fmt: skip


@triton.jit
def _pool_block(
    base,
    r,
    g0,
    t,
    numel,
    pool,
    size,
    bases,
    mults,
    npass,
    ntensors,
    MASKED: tl.constexpr,
    W_DTYPE: tl.constexpr,
    WRAP_ONCE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    inside = r < numel
    w = tl.load(base + r, mask=inside) if MASKED else tl.load(base + r)
    for p in range(npass):
        first = (tl.load(bases + p) + g0) % size  # pool index of this block's first element
        index = first + tl.arange(0, BLOCK)
        # BLOCK <= size: at most one wrap-around per block
        index = tl.where(index >= size, index - size, index) if WRAP_ONCE else index % size
        a = tl.load(pool + index, mask=inside) if MASKED else tl.load(pool + index)
        w = _axpy(w, tl.load(mults + p * ntensors + t), a, W_DTYPE)
    if MASKED:
        tl.store(base + r, w, mask=inside)
    else:
        tl.store(base + r, w)


@triton.jit
def _pool_kernel(
    ptrs,
    numels,
    offsets,
    first_block,
    block_tensor,
    pool,
    size,
    bases,
    mults,
    npass,
    ntensors,
    W_DTYPE: tl.constexpr,
    ALIGNED: tl.constexpr,
    WRAP_ONCE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Pool: ``a_p[j] = scaled_pool[(o_p + j) mod P]``, the pool already ``round(eps * pool)``."""
    t, base, numel, start, g0 = _locate(
        ptrs, numels, offsets, first_block, block_tensor, W_DTYPE, ALIGNED, BLOCK
    )
    r = start + tl.arange(0, BLOCK)
    if start + BLOCK <= numel:
        _pool_block(
            base, r, g0, t, numel, pool, size, bases, mults, npass, ntensors,
            False, W_DTYPE, WRAP_ONCE, BLOCK,
        )  # fmt: skip
    else:
        _pool_block(
            base, r, g0, t, numel, pool, size, bases, mults, npass, ntensors,
            True, W_DTYPE, WRAP_ONCE, BLOCK,
        )  # fmt: skip


def _multiples(passes: Sequence[Pass], group: Group, device: torch.device) -> Tensor:
    """``[npass, ntensors]`` float32 multiples of the group's tensors."""
    rows = [[float(multiples[i]) for i in group.indices] for _, _, multiples in passes]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def counter_passes_(
    spec: KernelSpec, groups: list[Group], dim: int, eps: float, passes: Sequence[Pass]
) -> None:
    """Apply ``passes`` of a hashed source (``spec``) to every group (one launch per group)."""
    tables = [key_table(spec.seed, step, query, dim) for step, query, _ in passes]
    scales = [spec.factor(step, query) for step, query, _ in passes]
    for group in groups:
        device = group.ptrs.device
        with on_device(device):
            _counter_kernel[(group.programs,)](
                group.ptrs,
                group.numels,
                group.offsets,
                group.first_block,
                group.block_tensor,
                torch.tensor(tables, dtype=torch.int64, device=device),
                len(tables[0]) // 2,
                torch.tensor(scales, dtype=torch.float32, device=device),
                _multiples(passes, group, device),
                len(passes),
                len(group.indices),
                eps,
                KIND=kind_code(spec),
                W_DTYPE=DTYPES[group.dtype],
                ALIGNED=group.aligned,
                PRECISE_LOG=not interpreted(),
                BLOCK=group.block,
                num_warps=NUM_WARPS,
            )


def pool_passes_(spec: KernelSpec, groups: list[Group], eps: float, passes: Sequence[Pass]) -> None:
    """Apply ``passes`` of a ``"pool"`` spec with one step size ``eps`` (factor included)."""
    bases = [spec.start(step, query) % spec.size for step, query, _ in passes]
    for group in groups:
        device = group.ptrs.device
        with on_device(device):
            _pool_kernel[(group.programs,)](
                group.ptrs,
                group.numels,
                group.offsets,
                group.first_block,
                group.block_tensor,
                spec.table(eps, group.dtype, device),
                spec.size,
                torch.tensor(bases, dtype=torch.int64, device=device),
                _multiples(passes, group, device),
                len(passes),
                len(group.indices),
                W_DTYPE=DTYPES[group.dtype],
                ALIGNED=group.aligned,
                WRAP_ONCE=group.block <= spec.size,
                BLOCK=group.block,
                num_warps=NUM_WARPS,
            )
