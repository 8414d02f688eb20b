"""The compiled CPU executor of :mod:`edgezo.passes`: counter and pool passes in one C loop.

For CPU tensors and a ``"gaussian"``, ``"rademacher"``, ``"uniform"`` or ``"pool"`` kernel
spec (PeZO's pool: ``z = pool[(start + i) mod P]``, read in place, never scaled into a copy),
``c/hash_pass.c`` does, in one loop over the elements, what :mod:`.reference` does with
a dozen numpy/torch operations per piece: hash, map, ``a = round(eps z)`` and
``w = round(w + k a)`` for every pass given, each weight read and written once, nothing of
the model's size allocated. All tensors of a call go to C at once, their elements cut into
one range per thread (:func:`pieces`): one C call per thread, whatever the model's tensor
count (per-tensor calls from Python cost as much as the arithmetic on a ViT's 152 tensors).
The library is built with the system C compiler on first use and cached like the device step
(:func:`edgezo.runtime.clib.load`); without a compiler :func:`library` is ``None``
and :mod:`edgezo.passes` uses the torch reference.

What is exact, against the torch reference (``tests/test_passes_compiled.py``):

* the pool, Rademacher and Uniform on float32: bit for bit, any multiples and factors,
  several passes at once, across the ``2**32`` key blocks (the pool's ``a`` is
  ``float32(pool) * float32(eps * factor)``, as ``torch.mul(pool, eps * factor)``);
* on float16/bfloat16: bit for bit when the products ``k a`` are exact (the optimizer's
  perturbation multiples 1, -2, ...); otherwise within one rounding of the weight dtype
  per pass, because torch's own ``add_`` is not one function there: its vector body does
  ``round(fma(round_dtype(k), a, w))`` in float32 (what this loop does), its scalar tail
  (the last elements of each piece and thread) rounds differently;
* Gaussian: ``erfinv`` is Giles' single-precision polynomial, the one the Triton
  kernels use (:mod:`.triton_hash`), with a branch-free ``log`` (Cephes' ``logf``), not
  torch's (MKL's) ``erfinv``; over all ``2**24`` possible ``u``, ``z`` is within
  :data:`ERFINV_ULPS` float32 ulps of the reference's (about half of them differ), so
  ``a = round(eps z)`` is a few float32 ulps apart at most (one ulp of a 16-bit weight).

Every element is computed alone from its global index, so the bits do not depend on
tensor boundaries or on how a tensor is cut into pieces for threads. Taking an operation
back applies its passes in reverse order with negated multiples, as the reference takes
back its own: the same arithmetic, so the same bits.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..directions.hashing import keys
from ..runtime import clib

if TYPE_CHECKING:
    from ..directions.base import KernelSpec
    from ..params import Segment

#: The C source, and its flags: the device step's, no FMA contraction (the float32
#: roundings must be the reference's, one per operation; FMAs are written as ``fmaf``)
#: and neither ``errno`` from ``sqrtf`` nor floating-point traps, so that the loops with
#: selects vectorise (values are unchanged: the tests compare bits).
SOURCE = Path(__file__).resolve().parent / "c" / "hash_pass.c"
FLAGS = (*clib.FLAGS, "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")

#: The C codes of the kernel-spec kinds and of the weight dtypes.
KINDS = {"gaussian": 1, "rademacher": 2, "uniform": 3, "pool": 4}
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

#: Tensors of at least this many elements per thread are cut into ``torch.get_num_threads()``
#: pieces run in parallel (each element is computed alone: the same bits for any cut).
SPLIT = 1 << 16

#: How many times :data:`SPLIT` a kind needs per thread before a cut pays: handing a piece to
#: another thread costs about 0.1 ms, what the cheap kinds' loop does on some 10**5 weights
#: (a SmallCNN's pool pass: 1.75x a memory pass in two pieces, 1.0x in one).
CHEAP = {"rademacher": 4, "uniform": 4, "pool": 4}

#: Largest difference, in float32 ulps, between this Gaussian ``z = sqrt(2) erfinv(u)`` and
#: the reference's (``torch.erfinv``) over every ``u`` the hash can produce (checked by the
#: tests; torch's CPU ``erfinv`` is not the rational guess of ``ATen/native/Math.h`` here).
ERFINV_ULPS = 5

#: Seconds the last compilation took (``None``: from the cache or not built), its path,
#: and why the library is unavailable (``None`` when it loaded).
BUILD: dict = {"seconds": None, "path": None, "error": None}


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded C passes, compiled on the first call; ``None`` without a working compiler."""
    text = SOURCE.read_bytes() + (SOURCE.parent / "floats.h").read_bytes()  # what it includes
    lib, built = clib.load_optional(SOURCE, text, "hash_pass", FLAGS, "compiled CPU passes")
    BUILD.update(built)
    if lib is None:
        return None
    ptr, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
    lib.ezh_apply.argtypes = [ctypes.POINTER(Source), size, ptr, ptr, ptr, ptr, ptr, size, u64, u64]
    lib.ezh_apply.argtypes += [ptr]
    lib.ezh_convert.argtypes = [ctypes.c_int, ptr, ptr, ptr, ptr, size]
    lib.ezh_values.argtypes = [ctypes.c_int, ptr, ptr, size]
    for name in ("ezh_apply", "ezh_convert", "ezh_values"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def available(spec: KernelSpec) -> bool:
    """Whether the compiled path can run this spec: a counter kind, and the library built."""
    return spec.kind in KINDS and library() is not None


def eligible(seg: Segment) -> bool:
    """Whether a tensor can take the compiled path: CPU, float32/16/bf16, contiguous, no mask."""
    p = seg.param
    return p.device.type == "cpu" and p.dtype in DTYPES and seg.mask is None and p.is_contiguous()


@lru_cache(maxsize=256)
def multiple(k: float, dtype: torch.dtype) -> float:
    """The multiple as torch's CPU ``add_(alpha=k)`` uses it: float32, and first rounded to
    the weight dtype for float16/bfloat16 weights."""
    if dtype == torch.float32:
        return float(np.float32(k))
    return float(torch.tensor(k, dtype=torch.float32).to(dtype).float())


class Source(ctypes.Structure):
    """``ezh_source``: what the passes of a call read (see ``c/hash_pass.c``)."""

    _fields_ = [
        ("kind", ctypes.c_int32), ("eps", ctypes.c_float), ("keys", ctypes.c_void_p),
        ("first_block", ctypes.c_uint64), ("nblocks", ctypes.c_uint64),
        ("scales", ctypes.c_void_p), ("pool", ctypes.c_void_p), ("size", ctypes.c_uint64),
        ("starts", ctypes.c_void_p),
    ]  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """The tensors of one call and their passes, as the C function takes them (one C call per
    thread for all tensors: no per-tensor Python work, whatever the model's tensor count)."""

    kind: int
    tensors: list[Tensor]  # flat views; they keep the weights alive while C writes them
    dtypes: np.ndarray  # int32 [T]
    offsets: np.ndarray  # uint64 [T], global index of each tensor's element 0
    counts: np.ndarray  # uint64 [T]
    ks: np.ndarray  # float64 [T, P]: the optimizer's multiples (0: pass leaves the tensor)
    keys: np.ndarray  # uint32 [P, blocks, 2] (counter kinds)
    first_block: int
    scales: np.ndarray  # float32 [P]: factors (counter kinds) or eps times factor (pool)
    eps: float
    starts: np.ndarray  # uint64 [P]: the pool positions of the passes (pool)
    pool: Tensor | None = None  # the pool's float32 numbers (pool)

    @property
    def split(self) -> int:
        """Elements per thread from which the call is cut for threads (see :data:`CHEAP`)."""
        name = next(k for k, v in KINDS.items() if v == self.kind)
        return SPLIT * CHEAP.get(name, 1)

    def arguments(self, undo: bool) -> tuple:
        """The C call's arguments but the range: passes in order, or reversed with ``-k``."""
        ks, keys, scales, starts = self.ks, self.keys, self.scales, self.starts
        if undo:  # the passes in reverse order, with their keys
            ks, keys, scales, starts = -ks[:, ::-1], keys[::-1], scales[::-1], starts[::-1]
        mults = multiples(ks, self.tensors)
        ptrs = np.array([t.data_ptr() for t in self.tensors], dtype=np.uint64)
        keep = [np.ascontiguousarray(a) for a in (keys, scales, starts)]
        source = Source(
            self.kind, self.eps, keep[0].ctypes.data, self.first_block, keep[0].shape[1],
            keep[1].ctypes.data, 0 if self.pool is None else self.pool.data_ptr(),
            0 if self.pool is None else self.pool.numel(), keep[2].ctypes.data,
        )  # fmt: skip
        return (source, keep, len(self.tensors), ptrs, self.dtypes, self.offsets, self.counts,
                mults, ks.shape[1])  # fmt: skip


def operations(
    spec: KernelSpec,
    segments: Sequence[Segment],
    eps: float,
    passes: Sequence[tuple[int, int, Sequence[float]]],
) -> Iterator:
    """One operation for every tensor with a nonzero multiple, all passes fused."""
    tensors = tensor_arrays(segments, passes)
    if tensors is None:
        return
    if spec.kind == "pool":
        reads = pool_reads(spec, eps, passes)
    else:
        reads = counter_reads(spec, eps, passes, tensors["segments"])
    yield partial(_apply_, Batch(kind=KINDS[spec.kind], **tensors["arrays"], **reads))


def tensor_arrays(segments: Sequence[Segment], passes: Sequence) -> dict | None:
    """The tensors that ``passes`` move (a nonzero multiple) as a batch's arrays: flat views,
    dtypes, global offsets, counts and multiples ``ks[tensor, pass]`` (``None``: no tensor)."""
    chosen = [
        (i, seg) for i, seg in enumerate(segments) if seg.numel and any(ks[i] for *_, ks in passes)
    ]
    if not chosen:
        return None
    return {
        "segments": [seg for _, seg in chosen],
        "arrays": {
            "tensors": [seg.flat() for _, seg in chosen],
            "dtypes": np.array([DTYPES[seg.param.dtype] for _, seg in chosen], dtype=np.int32),
            "offsets": np.array([seg.offset for _, seg in chosen], dtype=np.uint64),
            "counts": np.array([seg.numel for _, seg in chosen], dtype=np.uint64),
            "ks": np.array([[float(ks[i]) for *_, ks in passes] for i, _ in chosen], np.float64),
        },
    }


def multiples(ks: np.ndarray, tensors: Sequence[Tensor]) -> np.ndarray:
    """``ks[tensor, pass]`` as the C loops take them (float32, rounded as torch's ``add_``)."""
    rows = [[multiple(k, t.dtype) for k in row] for row, t in zip(ks, tensors, strict=True)]
    return np.array(rows, dtype=np.float32).reshape(ks.shape)


def counter_reads(spec: KernelSpec, eps: float, passes: Sequence, chosen: list) -> dict:
    """A counter source's part of a batch: the keys of every pass and 2**32 block, factors."""
    first = min(seg.offset >> 32 for seg in chosen)
    last = max((seg.offset + seg.numel - 1) >> 32 for seg in chosen)
    table = [
        [keys(spec.seed, step, query, block) for block in range(first, last + 1)]
        for step, query, _ in passes
    ]
    return {
        "keys": np.array(table, dtype=np.uint32).reshape(len(passes), -1, 2),
        "first_block": first,
        "scales": np.array([spec.factor(step, query) for step, query, _ in passes], np.float32),
        "eps": float(np.float32(eps)),
        "starts": np.zeros(len(passes), dtype=np.uint64),
    }


def pool_reads(spec: KernelSpec, eps: float, passes: Sequence) -> dict:
    """A pool's part of a batch: its numbers, where each pass reads, and each pass's float32
    ``eps * factor`` (what ``torch.mul(pool, eps * factor)`` multiplies by)."""
    return {
        "keys": np.zeros((len(passes), 0, 2), dtype=np.uint32),
        "first_block": 0,
        "scales": np.array(
            [eps * spec.factor(step, query) for step, query, _ in passes], np.float32
        ),
        "eps": 0.0,
        "starts": np.array(
            [spec.start(step, query) % spec.size for step, query, _ in passes], np.uint64
        ),
        "pool": spec.values(torch.device("cpu")).contiguous(),
    }


def _apply_(batch: Batch, undo: bool) -> None:
    """``w += k round(eps z)`` for each pass in order (reversed, ``-k``, to undo), the
    concatenated elements cut into one piece per thread; all or nothing."""
    args = batch.arguments(undo)
    cut = pieces(int(batch.counts.sum()), torch.get_num_threads(), batch.split)
    if len(cut) == 1:
        _call(args, *cut[0])  # one C call: an interrupt waits for it to return
        return
    done = np.zeros(len(cut), dtype=np.uint8)  # set by C when a piece is written
    stop = in_parallel(
        [
            partial(_call, args, start, end, done[i:].ctypes.data)
            for i, (start, end) in enumerate(cut)
        ]
    )
    if stop is None:
        return
    back = batch.arguments(not undo)  # all or nothing: take back the finished pieces
    for (start, end), finished in zip(cut, done, strict=True):
        if finished:
            _call(back, start, end)
    raise stop


def _call(args: tuple, start: int, stop: int, done: int | None = None) -> None:
    """The C loop over elements ``start:stop`` of the batch's concatenated tensors; ``done``:
    address of a byte the C code sets when it has written every weight of the range."""
    source, _, ntensors, ptrs, dtypes, offsets, counts, mults, npass = args
    arrays = (ptrs, dtypes, offsets, counts, mults)
    status = library().ezh_apply(
        ctypes.byref(source), ntensors, *(a.ctypes.data for a in arrays), npass, start, stop, done
    )
    if status:
        raise RuntimeError(f"The compiled pass refused its arguments (status {status})")


def pieces(n: int, threads: int, split: int | None = None) -> list[tuple[int, int]]:
    """``[0, n)`` cut for ``threads`` threads (whole tiles of 512; one piece when small:
    fewer than ``split``, default :data:`SPLIT`, elements per thread)."""
    count = max(1, min(threads, n // (SPLIT if split is None else split)))
    per = -(-n // count)  # ceil(n / count)
    size = (per + 511) // 512 * 512
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def in_parallel(calls: Sequence[Callable[[], object]]) -> BaseException | None:
    """Run ``calls[0]`` on the caller's thread and the others on the pool, and wait for every
    one (through Ctrl-C); returns the first exception (an interrupt first), or ``None``."""
    futures, stop = [], None
    try:
        pool = _pool(max(1, len(calls) - 1))
        futures = [pool.submit(call) for call in calls[1:]]
        calls[0]()
    except BaseException as err:  # an interrupt around a call, or a refused call
        stop = err
    stop = _wait_all(futures) or stop
    return stop or next((f.exception() for f in futures if f.exception() is not None), None)


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads for the pieces after the first (which the caller's thread runs)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgezo-pass")


def _wait_all(futures: list) -> BaseException | None:
    """Wait until every future is done, through KeyboardInterrupt (returned, not raised)."""
    interrupted = None
    while not all(f.done() for f in futures):
        try:
            wait(futures)
        except KeyboardInterrupt as err:
            interrupted = err
    return interrupted
