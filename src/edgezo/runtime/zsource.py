"""A direction source as the C step sees it: a pool table, or register seeds and taps.

The C step makes ``z_q`` itself, bit-identical to
:meth:`edgezo.formats.fixedpoint.ZFormat.integers`. Python computes once, at
setup, what needs floats: the pool's quantized table ``sat(round(pool / dz))``,
or, for a hardware source whose outputs are wider than ``z``'s bits, the lookup
``u -> z_q`` (``2**bits`` int8 values, ``bits <= 12``). Native odd integers
``v = 2u + 1 - 2**bits`` need no table; Rademacher's ``z = +/-1`` is hashed in C
from ``(seed, step, query, i)`` with edgezo's integer hash, and only its two
``z_q`` come from Python. Gaussian and Uniform ``z`` are float functions of the
hash's 24 bits ``v``, but their ``z_q = sat(round(z / dz))`` is a non-decreasing
step function of ``v`` with at most ``2 * qmax`` steps: Python evaluates the float
map once on all ``2**24`` values of ``v`` (as :meth:`ZFormat.integers` does) and
hands C the ``v`` where ``z_q`` goes up (254 words for 8-bit ``z``), so the device
hashes and counts, in integers, and gets the same ``z_q``. What cannot be
bit-exact in integers (a float factor per perturbation; MomentumGuided's float
history) is refused with the reason.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ..directions import (
    LFSR,
    Directions,
    Gaussian,
    Pool,
    Rademacher,
    RNGArray,
    Uniform,
    Xorshift,
)
from ..formats.fixedpoint.integer import ZFormat
from ..formats.fixedpoint.quant import saturate
from .clib import INDEX_SHIFT, Cursor, Source, Work

KINDS = {"pool": 0, "lfsr": 1, "xorshift": 2, "array lfsr": 3, "array xorshift": 4,
         "rademacher": 5, "steps": 6}  # fmt: skip

#: Widest hardware output that gets a lookup table (``2**12`` bytes) when not native.
TABLE_BITS = 12


class UnsupportedSource(ValueError):
    """A direction source the C step cannot reproduce bit for bit (the message says why)."""


@dataclass
class DeviceSource:
    """The ``ez_source`` of a bound direction source, with the arrays it points into."""

    source: Source
    seeds: np.ndarray
    table: np.ndarray | None
    edges: np.ndarray | None = None  #: a step function's edges (``EZ_STEPS``)
    index: np.ndarray | None = None  #: their bucket index (``EZ_STEPS``, optional)
    work_terms: dict = field(default_factory=dict)  #: slot -> terms its work area holds
    keep: dict = field(default_factory=dict)  #: slot -> (work area, the arrays it points into)

    @classmethod
    def of(cls, directions: Directions, zf: ZFormat) -> DeviceSource:
        """Describe ``directions`` (bound) for the C step, or raise :class:`UnsupportedSource`."""
        if isinstance(directions, Pool):
            return cls.pool(directions, zf)
        if isinstance(directions, (LFSR, Xorshift, RNGArray)):
            return cls.hardware(directions, zf)
        if type(directions) is Rademacher:
            return cls.rademacher(directions, zf)
        if type(directions) is Gaussian or (
            type(directions) is Uniform and directions.scale == "unit"
        ):
            return cls.steps(directions, zf)
        raise UnsupportedSource(refusal(directions))

    @classmethod
    def pool(cls, pool: Pool, zf: ZFormat) -> DeviceSource:
        if pool.scale == "perturbation":
            raise UnsupportedSource(
                "Pool(scale='perturbation') multiplies every window by its own float factor "
                "sqrt(d / ||z_t||^2), which the integer device step cannot reproduce bit for bit; "
                "use scale='pool' (the default) or 'unit'."
            )
        check_int8(zf, "a pool")
        z = pool.values(torch.float32, torch.device("cpu"))
        table = saturate(torch.round(z / zf.dz), zf.bits).to(torch.int8).numpy().copy()
        src = Source(kind=KINDS["pool"], n_regs=1, size=pool.size)
        src.table = table.ctypes.data
        return cls(src, np.zeros(1, dtype=np.uint32), table)

    @classmethod
    def hardware(cls, rng: LFSR | Xorshift | RNGArray, zf: ZFormat) -> DeviceSource:
        first = rng.generators[0] if isinstance(rng, RNGArray) else rng
        lfsr = isinstance(first, LFSR)
        name = ("array " if isinstance(rng, RNGArray) else "") + ("lfsr" if lfsr else "xorshift")
        seeds = np.array(rng.seeds if isinstance(rng, RNGArray) else [rng.seed], dtype=np.uint32)
        src = Source(
            kind=KINDS[name], bits=rng.bits, width=first.width, n_regs=len(seeds),
            taps=first.taps if lfsr else 0, steps=first.steps_per_cycle if lfsr else 0,
        )  # fmt: skip
        src.seeds = seeds.ctypes.data
        table = None if zf.native else lookup(rng, zf)
        if table is not None:
            src.table = table.ctypes.data
        return cls(src, seeds, table)

    @classmethod
    def rademacher(cls, rad: Rademacher, zf: ZFormat) -> DeviceSource:
        """The counter source: C hashes ``(seed, step, query, i)``; ``z_q`` of +1 and -1 here."""
        check_int8(zf, "Rademacher's +/-1")
        z = torch.tensor([1.0, -1.0])  # bit 31 of the hash word: 0 -> +1, 1 -> -1
        table = saturate(torch.round(z / zf.dz), zf.bits).to(torch.int8).numpy().copy()
        seeds = np.array([rad.seed & 0xFFFFFFFF, rad.seed >> 32], dtype=np.uint32)
        src = Source(kind=KINDS["rademacher"], n_regs=1)
        src.seeds, src.table = seeds.ctypes.data, table.ctypes.data
        return cls(src, seeds, table)

    @classmethod
    def steps(cls, source: Gaussian | Uniform, zf: ZFormat) -> DeviceSource:
        """A counter source whose ``z_q`` is a step function of the hash's 24 bits."""
        edges, z_min = step_edges(type(source), zf.dz, zf.bits)
        seeds = np.array([source.seed & 0xFFFFFFFF, source.seed >> 32], dtype=np.uint32)
        src = Source(kind=KINDS["steps"], n_regs=1, n_edges=edges.size, z_min=z_min)
        src.seeds, src.edges = seeds.ctypes.data, edges.ctypes.data
        return cls(src, seeds, None, edges)

    def indexed(self) -> DeviceSource:
        """This source with the bucket index of its edges (``EZ_STEPS``; others unchanged):
        ``index[b] = #{edges < b 2**12}``, 16 KB that make a Gaussian ``z_q`` a look-up and a
        short scan instead of a binary search (the CPU executor's choice; a device may keep
        the 1 KB of edges alone)."""
        if self.edges is None or self.index is not None:
            return self
        buckets = np.arange(1 << (24 - INDEX_SHIFT), dtype=np.uint64) << np.uint64(INDEX_SHIFT)
        self.index = np.searchsorted(self.edges, buckets, side="left").astype(np.uint32)
        self.source.index = self.index.ctypes.data
        return self

    @property
    def counter(self) -> bool:
        """Whether ``z`` is hashed from the global index (not read from a stream)."""
        return self.source.kind in (KINDS["rademacher"], KINDS["steps"])

    def term(self, directions: Directions, step: int, query: int, offset: int, net: int) -> tuple:
        """``(base, step, query, net)`` of a tensor starting at global index ``offset``."""
        base = offset if self.counter else directions.position(step, query, offset)
        if not 0 <= base < 1 << 64:
            raise ValueError(f"stream position {base} of step {step} exceeds 64 bits")
        return (base, step, query, net)

    def work(self, terms: int, slot: int = 0) -> Work:
        """A work area for ``terms`` terms (grown as needed, kept between calls); one per
        ``slot``, so that threads running disjoint ranges at once never share cursors."""
        terms = max(1, terms)
        if terms > self.work_terms.get(slot, 0):
            cursors = (Cursor * terms)()
            words = np.zeros(max(1, terms * self.source.n_regs), dtype=np.uint32)
            area = Work(ctypes.cast(cursors, ctypes.c_void_p), words.ctypes.data, terms, words.size)
            self.keep[slot] = (area, cursors, words)
            self.work_terms[slot] = terms
        return self.keep[slot][0]


@lru_cache(maxsize=4)
def step_edges(kind: type, dz: float, bits: int) -> tuple[np.ndarray, int]:
    """The ``v`` (24-bit, ascending, repeated for a jump of several) where ``z_q`` of a
    counter source goes up, and ``z_q(v = 0)``: ``z_q(v) = z_min + #{edges <= v}``.

    ``z_q`` is computed for every ``v`` exactly as :meth:`ZFormat.integers` computes it
    (the source's float map of the hash word ``v << 8``, then ``sat(round(z / dz))``).
    """
    words = np.arange(1 << 24, dtype=np.uint32) << np.uint32(8)
    z = kind(seed=0).map_words(words).to(torch.float32)  # the map does not read the seed
    z_q = saturate(torch.round(z / dz), bits).to(torch.int32).numpy()
    jumps = np.diff(z_q)
    if (jumps < 0).any():
        raise UnsupportedSource(
            f"{kind.__name__}'s quantized z is not monotone in its hash bits here, so the "
            "device step cannot count it; use Pool, Rademacher or a hardware source"
        )
    up = np.flatnonzero(jumps)
    edges = np.repeat(up + 1, jumps[up]).astype(np.uint32)
    return edges, int(z_q[0])


def check_int8(zf: ZFormat, what: str) -> None:
    """Tables hold int8 ``z_q``: ``z_bits`` must be at most 8."""
    if zf.bits > 8:
        raise UnsupportedSource(
            f"The device step keeps the z_q of {what} as an int8 table, but z_bits={zf.bits}; "
            "use FixedPointFormat's z_bits <= 8 (QZO-FF uses 8)."
        )


def lookup(rng: LFSR | Xorshift | RNGArray, zf: ZFormat) -> np.ndarray:
    """``u -> z_q`` for every ``bits``-bit output ``u``, as :class:`ZFormat` maps ``v``."""
    if rng.bits > TABLE_BITS:
        raise UnsupportedSource(
            f"A {rng.bits}-bit hardware output is quantized to z_bits={zf.bits} through its "
            f"float value, which the device step does with a 2**bits-entry table: use bits <= "
            f"{TABLE_BITS}, or bits < z_bits so the source's odd integers are used as they are."
        )
    check_int8(zf, f"a {rng.bits}-bit hardware source")
    u = np.arange(1 << rng.bits, dtype=np.int64)
    v = (2 * u + 1 - (1 << rng.bits)).astype(np.float32)
    v *= np.float32(rng.scale)  # exactly HardwareRNG.stream's float32 product
    z = torch.from_numpy(v)
    return saturate(torch.round(z / zf.dz), zf.bits).to(torch.int8).numpy().copy()


def refusal(directions: Directions) -> str:
    """Why the device step does not take ``directions``, and what to use instead."""
    kind = type(directions).__name__
    if kind == "MomentumGuided":
        return (
            "MomentumGuided blends Gaussians in float (z = beta z1 + (1 - beta) z2 with a float "
            "history), which no integer device step reproduces bit for bit; train it with the "
            "Python path (FixedPointFormat), or use Pool, LFSR, Xorshift or RNGArray."
        )
    if kind == "Uniform":
        return (
            "Uniform(scale='perturbation') multiplies every perturbation by its own float "
            "factor sqrt(d / ||z||^2), which the integer device step cannot reproduce bit for "
            "bit; use scale='unit' (the default) with DeviceFormat."
        )
    return (
        f"The device step makes z from Pool, LFSR, Xorshift, RNGArray, Rademacher, Gaussian "
        f"and Uniform; {kind} is not one of them. Use one of those (PeZO's pool: "
        "Pool(size=1021)) with DeviceFormat, or FixedPointFormat for this source."
    )
