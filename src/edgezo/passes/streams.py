"""The compiled CPU executor of :mod:`edgezo.passes` for the hardware-RNG models, and their generator.

For a ``"registers"`` kernel spec (:class:`~edgezo.directions.LFSR`,
:class:`~edgezo.directions.Xorshift`, :class:`~edgezo.directions.RNGArray`), ``c/stream_pass.c``
runs the registers forward in C and does, tile by tile, what :mod:`.reference` does with
``sample``: ``v = 2u + 1 - 2**bits``, ``z = float32(v) * scale``, ``a = round(eps z)`` and
``w = round(w + k a)`` for every pass given, each weight read and written once, nothing of the
model's size allocated. All tensors of a call go to C at once, cut into one range per thread
(:func:`edgezo.passes.compiled.pieces`); each range starts its registers by a jump over GF(2)
(the byte tables of ``M**(2**i)`` from :class:`~edgezo.directions.hwrng.GF2Map`), so the bits
do not depend on the cut. :func:`raw` gives the unsigned outputs ``u`` of any window the same
way (:meth:`HardwareRNG.raw <edgezo.directions.hwrng.HardwareRNG.raw>` uses it).

What is exact, against the numpy model and the torch reference
(``tests/test_passes_streams.py``):

* :func:`raw`: bit for bit, any window, register width, taps, steps, output bits, array size;
* the pass on float32: bit for bit, any multiples, several passes at once;
* on float16/bfloat16: bit for bit when the products ``k a`` are exact (the optimizer's
  perturbation multiples); otherwise within one rounding of the weight dtype per pass, for
  the reason :mod:`.compiled` gives (torch's ``add_`` rounds its scalar tail differently).

The library is built with the system C compiler on first use and cached
(:func:`edgezo.runtime.clib.load`); without a compiler :func:`library` is ``None``, the
passes take the torch reference and :func:`raw` returns ``None`` (the numpy model runs).
A cursor holds ``ceil(LANES / n)`` consecutive cycles of the ``n`` registers and advances
them together (:data:`LANES`), so even a single register is not one serial chain of
dependent look-ups: with AVX-512, 16 words per step of eight in-register nibble-table
permutations; elsewhere (``library(simd=False)``, also tested) one word at a time by byte
tables, one look-up (a Galois LFSR's steps) or xorshift's shifts.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..runtime import clib
from .compiled import FLAGS, in_parallel, multiples, pieces, tensor_arrays

if TYPE_CHECKING:
    from ..directions.base import KernelSpec
    from ..directions.hwrng import Registers
    from ..params import Segment

#: The C source and the header it includes (both name the cached library); the flags are
#: those of :mod:`.compiled` (one float32 rounding per operation, loops vectorised).
SOURCE = Path(__file__).resolve().parent / "c" / "stream_pass.c"
HEADER = SOURCE.parent / "floats.h"

#: Register words a cursor advances at once (at least): ``ceil(LANES / n)`` cycles of ``n``
#: registers, independent look-ups the CPU overlaps (and, with AVX-512, whole vectors of
#: words per instruction). Any value gives the same bits.
LANES = 128

#: Cycle counts the C code jumps take 64-bit words; from this stream position on, Python
#: first jumps the registers itself (:func:`origin`).
LIMIT = 1 << 61

#: Passes per C call (its cursors live on the C stack); more go in several operations.
MAX_PASSES = 64

#: What the C functions' status codes mean.
STATUS = {
    1: "the generator refused its machine (registers, lanes, bits or tables)",
    2: "a weight dtype is not float32, float16 or bfloat16",
    3: "a stream position or tensor offset is out of the C code's range",
}

#: Seconds the last compilation took (``None``: from the cache or not built), its path,
#: and why the library is unavailable (``None`` when it loaded).
BUILD: dict = {"seconds": None, "path": None, "error": None}


class Machine(ctypes.Structure):
    """``ezs_machine`` of ``stream_pass.c``: registers, lanes, output bits, byte tables."""

    _fields_ = [
        ("n", ctypes.c_uint32), ("lanes", ctypes.c_uint32), ("bits", ctypes.c_uint32),
        ("shift", ctypes.c_uint32), ("rule", ctypes.c_uint32), ("chunk", ctypes.c_uint32),
        ("cycle", ctypes.c_void_p), ("round", ctypes.c_void_p), ("powers", ctypes.c_void_p),
        ("nibbles", ctypes.c_void_p),
    ]  # fmt: skip


@lru_cache(maxsize=2)
def library(simd: bool = True) -> ctypes.CDLL | None:
    """The loaded C generator and pass, compiled on the first call; ``None`` without a compiler.

    ``simd=False``: the build without the AVX-512 path (``-DEZS_SCALAR``), what a CPU without
    AVX-512 runs; the tests check it gives the same bits.
    """
    text = SOURCE.read_bytes() + HEADER.read_bytes()
    flags, stem = (FLAGS, "stream_pass") if simd else ((*FLAGS, "-DEZS_SCALAR"), "stream_scalar")
    lib, built = clib.load_optional(SOURCE, text, stem, flags, "compiled hardware-RNG passes")
    BUILD.update(built)
    if lib is None:
        return None
    ptr, size, u32, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64
    lib.ezs_raw.argtypes = [ctypes.POINTER(Machine), ptr, u32, u64, ptr, size, ptr]
    lib.ezs_apply.argtypes = [ctypes.POINTER(Machine), size, ptr, ptr, ptr, ptr, ptr, size]
    lib.ezs_apply.argtypes += [ptr, ptr, ptr, ctypes.c_float, ctypes.c_float, u64, u64, ptr, ptr]
    lib.ezs_raw.restype = lib.ezs_apply.restype = ctypes.c_int
    return lib


def available(spec: KernelSpec) -> bool:
    """Whether this executor can run the spec: a ``"registers"`` kind, and the library built."""
    return spec.kind == "registers" and library() is not None


@dataclass(frozen=True)
class Prepared:
    """A bank's C machine and the arrays it points to (kept alive with it)."""

    machine: Machine
    tables: tuple[np.ndarray, ...]
    words: int  # work words per cursor: 2 * lanes * n


@lru_cache(maxsize=32)
def prepare(bank: Registers) -> Prepared:
    """The machine of a register bank (cached per bank object): its tables, built once per map,
    and the fastest exact rule for the round map ``M**lanes`` (see ``stream_pass.c``)."""
    n = len(bank.seeds)
    lanes = -(-LANES // n)
    steps = bank.cycle.power(lanes)
    rule, chunk, round_ = 0, 0, steps.tables()  # EZS_TABLES
    if bank.xorshift and lanes == 1:
        rule = 2  # EZS_XORSHIFT
    elif (c := shift_chunk(steps.columns())) is not None:
        rule, chunk = 1, c  # EZS_CHUNK: M**lanes x = (x >> c) ^ table[x mod 2**c]
        round_ = steps.jump(np.arange(1 << c, dtype=np.uint32), 1)
    cycle, powers = bank.cycle.tables(), bank.cycle.power_tables(64)
    nibble = np.arange(16, dtype=np.uint32)[None, :] << (4 * np.arange(8, dtype=np.uint32)[:, None])
    nibbles = np.ascontiguousarray(steps.jump(nibble, 1))  # M**lanes of each nibble's values
    arrays = (cycle, round_, powers, nibbles)
    machine = Machine(
        n, lanes, bank.bits, bank.shift, rule, chunk, *(a.ctypes.data for a in arrays)
    )
    return Prepared(machine, arrays, 2 * lanes * n)


def shift_chunk(columns: list[int]) -> int | None:
    """``c <= 8`` if the map sends bit ``j >= c`` to bit ``j - c`` (a Galois LFSR's ``c``
    steps): then ``M x = (x >> c) ^ M(x mod 2**c)``, one look-up in ``2**c`` values."""
    for c in range(1, min(8, len(columns) - 1) + 1):
        if all(columns[j] == 1 << (j - c) for j in range(c, len(columns))):
            return c
    return None


def origin(bank: Registers, position: int) -> tuple[np.ndarray, int, int]:
    """``(states, relative position, phase)`` from which C reads stream ``position`` on.

    Below :data:`LIMIT` the seeds themselves; beyond, the registers jumped by ``c`` cycles
    in Python (``M**c seeds``, exact for any integer), the position less ``c n`` and the
    rotation ``c mod n``, so that every count the C code forms fits 64 bits.
    """
    if position < LIMIT:
        return bank.seeds, position, 0
    n = len(bank.seeds)
    cycles = (position - LIMIT // 2) // n
    return bank.cycle.jump(bank.seeds, cycles), position - cycles * n, cycles % n


def raw(bank: Registers, start: int, n: int) -> np.ndarray | None:
    """``u`` of stream positions ``start .. start+n-1`` (uint32), or ``None`` without the library."""
    lib = library()
    if lib is None:
        return None
    out = np.empty(n, dtype=np.uint32)
    if n == 0:
        return out
    prep = prepare(bank)
    seeds, pos, phase = origin(bank, start)
    work = np.empty(prep.words, dtype=np.uint32)
    status = lib.ezs_raw(
        ctypes.byref(prep.machine), seeds.ctypes.data, phase, pos, out.ctypes.data, n,
        work.ctypes.data,
    )  # fmt: skip
    check(status)
    return out


def check(status: int) -> None:
    """Raise with the reason if a C function returned an error status."""
    if status:
        raise RuntimeError(f"The compiled stream pass refused its arguments: {STATUS[status]}")


@dataclass(frozen=True)
class Batch:
    """The tensors of one call and up to :data:`MAX_PASSES` passes, as the C function takes them."""

    prep: Prepared  # made by the caller's thread: workers never build tables
    tensors: list[Tensor]  # flat views; they keep the weights alive while C writes them
    dtypes: np.ndarray  # int32 [T]
    offsets: np.ndarray  # uint64 [T], global index of each tensor's element 0
    counts: np.ndarray  # uint64 [T]
    ks: np.ndarray  # float64 [T, P]: the optimizer's multiples (0: the pass leaves the tensor)
    seeds: np.ndarray  # uint32 [P, n]: the registers at each pass's origin
    starts: np.ndarray  # uint64 [P]: relative stream position of global index 0
    phases: np.ndarray  # uint32 [P]
    scale: float  # float32(sqrt(3 / (4**bits - 1)))
    eps: float

    def arguments(self, undo: bool) -> tuple:
        """The C call's arguments but the range: passes in order, or reversed with ``-k``."""
        ks, seeds, starts, phases = self.ks, self.seeds, self.starts, self.phases
        if undo:
            ks, seeds, starts, phases = -ks[:, ::-1], seeds[::-1], starts[::-1], phases[::-1]
        mults = multiples(ks, self.tensors)
        ptrs = np.array([t.data_ptr() for t in self.tensors], dtype=np.uint64)
        arrays = (ptrs, self.dtypes, self.offsets, self.counts, mults)
        passes = tuple(np.ascontiguousarray(a) for a in (seeds, starts, phases))
        return (len(self.tensors), *arrays, ks.shape[1], *passes)


def operations(
    spec: KernelSpec,
    segments: Sequence[Segment],
    eps: float,
    passes: Sequence[tuple[int, int, Sequence[float]]],
) -> Iterator:
    """One operation per :data:`MAX_PASSES` passes for all tensors with a nonzero multiple."""
    bank = spec.registers
    for first in range(0, len(passes), MAX_PASSES):
        group = passes[first : first + MAX_PASSES]
        tensors = tensor_arrays(segments, group)
        if tensors is None:
            continue
        origins = [origin(bank, spec.start(step, query)) for step, query, _ in group]
        yield partial(
            _apply_,
            Batch(
                prep=prepare(bank),
                **tensors["arrays"],
                seeds=np.stack([np.asarray(s, dtype=np.uint32) for s, _, _ in origins]),
                starts=np.array([pos for _, pos, _ in origins], dtype=np.uint64),
                phases=np.array([phase for _, _, phase in origins], dtype=np.uint32),
                scale=float(np.float32(bank.scale)),
                eps=float(np.float32(eps)),
            ),
        )


def _apply_(batch: Batch, undo: bool) -> None:
    """``w += k round(eps z)`` for each pass in order (reversed, ``-k``, to undo), the
    concatenated elements cut into one piece per thread (:func:`.compiled.in_parallel`);
    all or nothing: the pieces written are taken back if one fails or Ctrl-C arrives."""
    args = batch.arguments(undo)
    cut = pieces(int(batch.counts.sum()), torch.get_num_threads())
    if len(cut) == 1:
        _call(batch, args, *cut[0])  # one C call: an interrupt waits for it to return
        return
    done = np.zeros(len(cut), dtype=np.uint8)  # set by C when a piece is written
    calls = [
        partial(_call, batch, args, a, b, done[i:].ctypes.data) for i, (a, b) in enumerate(cut)
    ]
    stop = in_parallel(calls)
    if stop is None:
        return
    back = batch.arguments(not undo)
    for (start, end), finished in zip(cut, done, strict=True):
        if finished:
            _call(batch, back, start, end)
    raise stop


def _call(batch: Batch, args: tuple, start: int, stop: int, done: int | None = None) -> None:
    """The C pass over elements ``start:stop`` of the batch's concatenated tensors, with its
    own work area; ``done``: address of a byte the C code sets when the range is written."""
    prep = batch.prep
    ntensors, *arrays, npass, seeds, starts, phases = args
    work = np.empty(npass * prep.words, dtype=np.uint32)
    status = library().ezs_apply(
        ctypes.byref(prep.machine), ntensors, *(a.ctypes.data for a in arrays), npass,
        seeds.ctypes.data, starts.ctypes.data, phases.ctypes.data,
        batch.scale, batch.eps, start, stop, work.ctypes.data, done,
    )  # fmt: skip
    check(status)
