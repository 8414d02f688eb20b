"""Bit-exact models of hardware random number generators, used as perturbation streams.

An FPGA/ASIC cannot afford a Gaussian generator per ZO query (PAPERS.md A); it
runs a few cheap registers instead. This module models them bit for bit, so that
training in Python uses exactly the numbers the RTL will produce, and the RTL
can be checked against :meth:`HardwareRNG.raw` / :meth:`HardwareRNG.integers`.
All three sources are stream sources (:class:`~edgezo.directions.base.StreamDirections`):
``S[k]`` is the value output at clock cycle ``k = 0, 1, 2, ...`` and perturbation
``t = step * queries + query`` reads ``S[t*d : (t+1)*d]``.

Bit-level definition (every register holds an unsigned word; ``^`` is XOR,
shifts are logical, everything modulo ``2**width``):

* :class:`LFSR` — Galois LFSR, right-shifting form. One *step* is::

      lsb = s & 1;  s >>= 1;  if lsb: s ^= taps

  One clock cycle performs ``steps_per_cycle`` steps (default ``bits``: a
  leap-forward LFSR, an unrolled XOR network in hardware, so consecutive outputs
  share no bits), then outputs ``u = s & (2**bits - 1)`` (the low ``bits`` bits
  of the new state). The register starts at ``seed`` (``1 <= seed < 2**width``;
  0 is the lock-up state). ``taps`` defaults to :data:`MAXIMAL_TAPS` ``[width]``.
* :class:`Xorshift` — Marsaglia's xorshift32 with shifts (13, 17, 5). One cycle::

      x ^= x << 13;  x ^= x >> 17;  x ^= x << 5        (modulo 2**32)

  then outputs ``u = x >> (32 - bits)`` (the high ``bits`` bits). Starts at
  ``seed`` (``1 <= seed < 2**32``).
* :class:`RNGArray` — PeZO on-the-fly generation: ``n`` such registers (all LFSR
  or all Xorshift, same parameters, register ``r`` seeded with
  :func:`derive_seed` ``(seed, r, width)``) run in lockstep, one number each per
  cycle. After every cycle the register that fed position 0 moves to the end of
  the array, so at cycle ``c`` position ``j`` is fed by register
  ``(j + c) mod n``: ``S[c*n + j] = u_{(j + c) mod n}(c)``, where ``u_r(c)`` is
  register ``r``'s output at its cycle ``c`` (as defined above).

Output mapping, identical for all sources. The ``b``-bit unsigned ``u``
(``b = bits``, ``1 <= b <= 24``) becomes the odd signed integer::

    v = 2*u + 1 - 2**b        in {-(2**b - 1), ..., -1, 1, ..., 2**b - 1}

(in hardware: ``u`` shifted left by one with a constant 1 as new LSB, MSB
inverted, read as a ``(b+1)``-bit two's-complement number). ``v`` is zero-mean
and symmetric when ``u`` is uniform; its variance is ``(4**b - 1) / 3``. The
float value is::

    z = v * scale,     scale = sqrt(3 / (4**b - 1))     (unit variance)

computed as ``float32(v) * float32(scale)`` rounded to float32 (all in
float64 when ``float64`` is asked for), then cast to the requested dtype. :meth:`HardwareRNG.integers`
returns ``v`` (int32) for the fixed-point path; ``scale`` is an attribute.
``b <= 24`` keeps every ``v`` exact in float32.

Implementation: every generator is a linear map ``M`` over GF(2) on its state
word, so the state after ``k`` cycles is ``M**k s0``. ``M`` is a bit matrix
(``width`` column words); powers ``M**(2**i)`` are cached, a jump to any
``start`` costs ``O(log start)`` vectorised matrix-vector products, and a window
of ``n`` values is filled by doubling (``S[K:2K] = M**K S[0:K]``), each product
being four 256-entry table look-ups per word. Cost: ``O(n)`` vectorised work plus
``O(log(start + n))`` small matrix work. That numpy model (:meth:`HardwareRNG.numpy_raw`)
is the reference; where a C compiler is found, :meth:`HardwareRNG.raw` and the
perturbation passes run the registers forward in C instead (:mod:`edgezo.passes.streams`,
the same bits, several times faster), from the same byte tables: the sources describe
their registers as data (:class:`Registers`, in a ``"registers"`` kernel spec).
"""

from __future__ import annotations

import math
import sys
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import checks
from ..passes import streams
from .base import KernelSpec, StreamDirections, as_device
from .hashing import splitmix64

#: Largest output width: every ``v`` (at most ``2**24 - 1`` in magnitude) is exact in float32.
MAX_BITS = 24

#: Maximal-length feedback taps (Xilinx XAPP052, Table 3) as exponents of the
#: feedback polynomial ``x**w + sum(x**t) + 1`` minus the leading term, e.g.
#: ``32: (32, 22, 2, 1)``. Every entry is checked maximal by the tests.
XAPP052_TAPS: dict[int, tuple[int, ...]] = {
    3: (3, 2),
    4: (4, 3),
    5: (5, 3),
    6: (6, 5),
    7: (7, 6),
    8: (8, 6, 5, 4),
    9: (9, 5),
    10: (10, 7),
    11: (11, 9),
    12: (12, 6, 4, 1),
    13: (13, 4, 3, 1),
    14: (14, 5, 3, 1),
    15: (15, 14),
    16: (16, 15, 13, 4),
    17: (17, 14),
    18: (18, 11),
    19: (19, 6, 2, 1),
    20: (20, 17),
    21: (21, 19),
    22: (22, 21),
    23: (23, 18),
    24: (24, 23, 22, 17),
    25: (25, 22),
    26: (26, 6, 2, 1),
    27: (27, 5, 2, 1),
    28: (28, 25),
    29: (29, 27),
    30: (30, 6, 4, 1),
    31: (31, 28),
    32: (32, 22, 2, 1),
}


def galois_mask(taps: tuple[int, ...]) -> int:
    """The right-shifting Galois LFSR mask of a tap list: bit ``t - 1`` set for each tap ``t``.

    >>> hex(galois_mask((16, 15, 13, 4)))
    '0xd008'
    """
    return sum(1 << (t - 1) for t in taps)


#: Galois masks of :data:`XAPP052_TAPS`, by width (3..32): each gives period ``2**w - 1``.
MAXIMAL_TAPS: dict[int, int] = {w: galois_mask(t) for w, t in XAPP052_TAPS.items()}

XORSHIFT_SHIFTS = (13, 17, 5)
_MASK32 = 0xFFFFFFFF
_LANES = (0, 1, 2, 3) if sys.byteorder == "little" else (3, 2, 1, 0)


# -- scalar definitions (the reference semantics; also used to build the matrices) --
def lfsr_step(state: int, taps: int) -> int:
    """One step of the right-shifting Galois LFSR."""
    lsb = state & 1
    state >>= 1
    return state ^ taps if lsb else state


def xorshift32_step(x: int) -> int:
    """One cycle of Marsaglia's xorshift32 (13, 17, 5), modulo ``2**32``."""
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    return x ^ ((x << 5) & _MASK32)


def derive_seed(seed: int, index: int, width: int) -> int:
    """Register seed of generator ``index`` of an :class:`RNGArray` with master ``seed``.

    ``h = splitmix64(splitmix64(seed mod 2**64) ^ index)``, then
    ``h mod (2**width - 1) + 1``: never 0, always below ``2**width``.
    ``splitmix64(x)`` is SplitMix64's output for state ``x`` (Steele et al. 2014):
    ``z = x + 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^ z >> 31``, all modulo ``2**64``.
    """
    h = splitmix64(splitmix64(seed & ((1 << 64) - 1)) ^ index)
    return h % ((1 << width) - 1) + 1


# -- GF(2) linear maps on words, vectorised with numpy ---------------------------------
def _byte_tables(columns: np.ndarray) -> np.ndarray:
    """``T[b][x]`` = the map applied to byte value ``x`` placed in byte ``b`` (4 x 256, uint32)."""
    cols = np.zeros(32, dtype=np.uint32)
    cols[: len(columns)] = columns
    x = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for b in range(4):
        for j in range(8):
            tables[b] ^= ((x >> np.uint32(j)) & np.uint32(1)) * cols[8 * b + j]
    return tables


def _apply(tables: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The map given by :func:`_byte_tables` applied to every word of a contiguous uint32 array."""
    flat = np.ascontiguousarray(words, dtype=np.uint32).reshape(-1)
    by = flat.view(np.uint8)
    out = tables[0][by[_LANES[0] :: 4]]
    for b in (1, 2, 3):
        out ^= tables[b][by[_LANES[b] :: 4]]
    return out.reshape(words.shape)


class GF2Map:
    """A linear map ``M`` on ``width``-bit words over GF(2), with cached powers ``M**(2**i)``.

    Args:
        columns: ``columns[j] = M(1 << j)``, the images of the unit words.
    """

    def __init__(self, columns: list[int]) -> None:
        if not 1 <= len(columns) <= 32:
            raise ValueError(f"GF2Map supports 1..32-bit words, got {len(columns)} columns")
        self.width = len(columns)
        self._columns = [np.array(columns, dtype=np.uint32)]
        self._tables = [_byte_tables(self._columns[0])]
        self._stacked: dict[int, np.ndarray] = {}
        self._powers: dict[int, GF2Map] = {}

    @classmethod
    def from_step(cls, step: Callable[[int], int], width: int, repeat: int = 1) -> GF2Map:
        """The matrix of ``repeat`` applications of a linear scalar ``step(word) -> word``."""
        columns = []
        for j in range(width):
            x = 1 << j
            for _ in range(repeat):
                x = step(x)
            columns.append(x)
        return cls(columns)

    def columns(self, i: int = 0) -> list[int]:
        """The columns of ``M**(2**i)``."""
        self._power2(i)
        return [int(c) for c in self._columns[i]]

    def tables(self, i: int = 0) -> np.ndarray:
        """Byte tables of ``M**(2**i)``, shape ``(4, 256)`` uint32: ``M x`` is the XOR of
        ``tables[b][byte b of x]`` over the four bytes (what a compiled generator looks up)."""
        return self._power2(i)

    def power_tables(self, count: int) -> np.ndarray:
        """Byte tables of ``M**(2**i)`` for ``i < count``, one contiguous ``(count, 4, 256)``
        uint32 array (cached): a jump by any ``k < 2**count`` is one table per set bit of ``k``."""
        cached = self._stacked.get(count)
        if cached is None:
            cached = np.ascontiguousarray(np.stack([self._power2(i) for i in range(count)]))
            self._stacked[count] = cached
        return cached

    def power(self, k: int) -> GF2Map:
        """The map ``M**k`` (cached): its columns are ``M**k`` of the unit words."""
        if k not in self._powers:
            units = np.left_shift(np.uint32(1), np.arange(self.width, dtype=np.uint32))
            self._powers[k] = GF2Map([int(c) for c in self.jump(units, k)])
        return self._powers[k]

    def _power2(self, i: int) -> np.ndarray:
        """Byte tables of ``M**(2**i)`` (squaring the last cached power as needed)."""
        while len(self._tables) <= i:
            squared = _apply(self._tables[-1], self._columns[-1])
            self._columns.append(squared)
            self._tables.append(_byte_tables(squared))
        return self._tables[i]

    def jump(self, words: np.ndarray, k: int) -> np.ndarray:
        """``M**k`` applied to every word (``O(log k)`` vectorised products)."""
        if k < 0:
            raise ValueError(f"jump distance must be >= 0, got {k}")
        out, i = np.array(words, dtype=np.uint32), 0
        while k:
            if k & 1:
                out = _apply(self._power2(i), out)
            k, i = k >> 1, i + 1
        return out

    def orbit(self, seeds: np.ndarray, first: int, count: int) -> np.ndarray:
        """``out[k, r] = M**(first + k) seeds[r]`` for ``k < count``, shape ``(count, len(seeds))``."""
        seeds = np.asarray(seeds, dtype=np.uint32).reshape(-1)
        out = np.empty((count, seeds.size), dtype=np.uint32)
        if count == 0:
            return out
        out[0] = self.jump(seeds, first)
        done, i = 1, 0
        while done < count:
            m = min(done, count - done)
            out[done : done + m] = _apply(self._power2(i), out[:m])
            done, i = done + m, i + 1
        return out


@lru_cache(maxsize=64)
def _lfsr_map(width: int, taps: int, steps: int) -> GF2Map:
    """Per-cycle matrix of a leap-forward LFSR (shared by all instances with these settings)."""
    return GF2Map.from_step(lambda s: lfsr_step(s, taps), width, steps)


@lru_cache(maxsize=1)
def _xorshift_map() -> GF2Map:
    return GF2Map.from_step(xorshift32_step, 32)


# -- validation helpers -----------------------------------------------------------------
def _check_bits(bits: int, width: int) -> int:
    bits = checks.integer("bits", bits)
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(
            f"Invalid bits={bits}: use 1 <= bits <= {MAX_BITS} (every output v = 2u+1-2**bits "
            "must be exact in float32)"
        )
    if bits > width:
        raise ValueError(
            f"Invalid bits={bits} for a {width}-bit register: bits must not exceed the width"
        )
    return bits


def _check_seed(seed: int, width: int) -> int:
    seed = checks.integer("seed", seed)
    if seed == 0:
        raise ValueError(
            "Invalid seed 0: the all-zero state is the lock-up state of a linear register "
            f"(it never leaves 0); use 1 <= seed < 2**{width}"
        )
    if not 0 < seed < 1 << width:
        raise ValueError(
            f"Invalid seed {seed}: a {width}-bit register needs 1 <= seed < 2**{width}"
        )
    return seed


def _check_window(start: int, n: int) -> None:
    if start < 0 or n < 0:
        raise ValueError(f"start and n must be >= 0, got start={start}, n={n}")


# -- the sources --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Registers:
    """A hardware stream as data, what a compiled generator needs (:mod:`edgezo.passes.streams`).

    ``n = len(seeds)`` registers, all stepped once per clock cycle by ``cycle`` (``M``): register
    ``r`` after cycle ``c`` is ``M**(c+1) seeds[r]``, its output ``u = (x >> shift) &
    (2**bits - 1)``, and ``S[c*n + j]`` is the output of register ``(j + c) mod n`` (a single
    register is the case ``n = 1``). Compared by identity: a source builds it once.
    """

    seeds: np.ndarray  # uint32 [n]
    cycle: GF2Map
    bits: int
    shift: int
    scale: float
    #: ``cycle`` is xorshift32 (13, 17, 5), which C may compute by its shifts.
    xorshift: bool = False


class HardwareRNG(StreamDirections):
    """Base of the hardware stream sources: the output mapping ``u -> v -> z``.

    Subclasses describe their registers (:meth:`registers`) and produce the raw ``bits``-bit
    unsigned outputs ``u`` of stream positions ``start .. start+n-1`` with numpy
    (:meth:`numpy_raw`, the reference); :meth:`raw` takes them from the compiled generator
    when it is built (the same bits), and this class maps them to ``v = 2u + 1 - 2**bits``
    (:meth:`integers`) and ``z = v * scale`` (:meth:`stream`).
    """

    def __init__(self, bits: int, width: int) -> None:
        super().__init__()
        self.bits = _check_bits(bits, width)
        #: ``sqrt(3 / (4**bits - 1))``: makes ``z = v * scale`` unit-variance.
        self.scale = math.sqrt(3.0 / (4**self.bits - 1))
        self._spec: KernelSpec | None = None

    @abstractmethod
    def _unsigned(self, start: int, n: int) -> np.ndarray:
        """``u`` for stream positions ``start .. start+n-1`` by numpy (uint32, fresh array)."""

    @abstractmethod
    def registers(self) -> Registers:
        """The registers as data (seeds, cycle map, output bits); a new object on each call."""

    def kernel_spec(self) -> KernelSpec:
        """A ``"registers"`` spec: :meth:`registers` and the window start of each perturbation.

        :mod:`edgezo.passes` then runs the compiled generator and pass on CPU tensors
        (:mod:`edgezo.passes.streams`), and ``sample`` on the others.
        """
        if self._spec is None:
            self._spec = KernelSpec("registers", registers=self.registers(), start=self.start)
        return self._spec

    def start(self, step: int, query: int) -> int:
        """Stream position of ``z(step, query)[0]``."""
        return self.position(step, query, 0)

    def numpy_raw(self, start: int, n: int) -> np.ndarray:
        """:meth:`raw` by the numpy model (GF(2) doubling, see the module docstring): the
        reference of the compiled generator, and its fallback without a C compiler."""
        _check_window(start, n)
        return self._unsigned(int(start), int(n))

    def raw(self, start: int, n: int) -> np.ndarray:
        """The unsigned hardware outputs ``u = S_u[start:start+n]`` (uint32), for RTL checks."""
        _check_window(start, n)
        u = streams.raw(self.kernel_spec().registers, int(start), int(n))
        return self._unsigned(int(start), int(n)) if u is None else u

    def signed(self, start: int, n: int) -> np.ndarray:
        """``v = 2u + 1 - 2**bits`` for stream positions ``start .. start+n-1`` (int32)."""
        u = self.raw(start, n)
        u *= np.uint32(2)
        u += np.uint32((1 - (1 << self.bits)) & _MASK32)  # wraps to the two's complement of v
        return u.view(np.int32)

    def stream(self, start, n, *, dtype, device) -> Tensor:
        work = np.float64 if dtype == torch.float64 else np.float32
        z = self.signed(start, n).astype(work)
        z *= work(self.scale)  # numpy: single-threaded, one rounding of an exact product
        return torch.from_numpy(z).to(device=device, dtype=dtype)

    def integers(self, step: int, query: int, offset: int, n: int, *, device: Any = None) -> Tensor:
        """``v`` (int32) of ``z(step, query)[offset : offset + n]``: ``sample() == v * scale``."""
        v = torch.from_numpy(self.signed(self.position(step, query, offset), n))
        return v.to(as_device(device))


class Register(HardwareRNG):
    """One linear register: state ``M**(k+1) seed`` after cycle ``k``, output ``_extract``."""

    width: int
    seed: int
    _map: GF2Map
    #: Whether the cycle is xorshift32 (13, 17, 5) (else a GF(2) map known by its tables only).
    xorshift: bool = False

    @abstractmethod
    def _extract(self, states: np.ndarray) -> np.ndarray:
        """``u`` from register states, in place where possible."""

    def cycle_outputs(self, seeds: np.ndarray, first_cycle: int, count: int) -> np.ndarray:
        """``u`` of registers like this one seeded with ``seeds`` at cycles ``first_cycle + k``.

        Shape ``(count, len(seeds))``; all registers share this one's matrix and mapping.
        """
        return self._extract(self._map.orbit(seeds, first_cycle + 1, count))

    def _unsigned(self, start: int, n: int) -> np.ndarray:
        return self.cycle_outputs(np.array([self.seed]), start, n).reshape(-1)

    def registers(self) -> Registers:
        seeds = np.array([self.seed], np.uint32)
        return Registers(seeds, self._map, self.bits, self._shift(), self.scale, self.xorshift)

    @abstractmethod
    def _shift(self) -> int:
        """Right shift of the state before the output's ``bits`` are masked."""

    def state(self, cycle: int) -> int:
        """The register's state after clock cycle ``cycle`` (``cycle = -1``: the seed)."""
        return int(self._map.jump(np.array([self.seed]), cycle + 1)[0])


class LFSR(Register):
    """A leap-forward Galois LFSR: ``steps_per_cycle`` steps per cycle, low ``bits`` bits out.

    See the module docstring for the bit-level definition. With the default
    (maximal) taps the register visits all ``2**width - 1`` non-zero states; the
    per-cycle sequence has period ``(2**width - 1) / gcd(steps_per_cycle, 2**width - 1)``
    cycles (the full period for the defaults, e.g. width 32 with 8 steps).

    Args:
        width: register width in bits, 3..32.
        taps: Galois feedback mask (bit ``width - 1`` must be set); default
            :data:`MAXIMAL_TAPS` ``[width]``. Custom taps are not checked for maximality.
        seed: initial register state, ``1 <= seed < 2**width`` (0 is the lock-up state).
        bits: output bits per cycle ``b`` (1..24, at most ``width``).
        steps_per_cycle: LFSR steps per clock cycle (default ``bits``, so consecutive
            outputs share no bits).

    Example:
        >>> lfsr = LFSR(width=16, seed=1, bits=4)
        >>> lfsr.raw(0, 4).tolist()  # low 4 bits after 4, 8, 12, 16 steps
        [1, 1, 11, 0]
        >>> lfsr.bind(dim=10).integers(step=0, query=0, offset=0, n=4).tolist()  # v = 2u + 1 - 16
        [-13, -13, 7, -15]
    """

    def __init__(
        self,
        width: int = 32,
        taps: int | None = None,
        seed: int = 1,
        bits: int = 8,
        steps_per_cycle: int | None = None,
    ) -> None:
        width = checks.integer("width", width)
        if width not in MAXIMAL_TAPS:
            raise ValueError(f"Invalid LFSR width {width}: supported widths are 3..32")
        super().__init__(bits, width)
        self.width = width
        self.taps = (
            MAXIMAL_TAPS[width]
            if taps is None
            else self._check_taps(checks.integer("taps", taps), width)
        )
        self.seed = _check_seed(seed, width)
        self.steps_per_cycle = (
            self.bits
            if steps_per_cycle is None
            else checks.integer("steps_per_cycle", steps_per_cycle, low=1)
        )
        self._map = _lfsr_map(self.width, self.taps, self.steps_per_cycle)

    @staticmethod
    def _check_taps(taps: int, width: int) -> int:
        if not (1 << (width - 1)) <= taps < (1 << width):
            raise ValueError(
                f"Invalid taps mask {taps:#x} for a {width}-bit Galois LFSR: bit {width - 1} "
                f"must be set and no bit above it (2**{width - 1} <= taps < 2**{width})"
            )
        return taps

    def _extract(self, states: np.ndarray) -> np.ndarray:
        states &= np.uint32((1 << self.bits) - 1)
        return states

    def _shift(self) -> int:
        return 0  # the low bits

    def config(self) -> dict[str, Any]:
        return {
            "type": "LFSR",
            "width": self.width,
            "taps": self.taps,
            "seed": self.seed,
            "bits": self.bits,
            "steps_per_cycle": self.steps_per_cycle,
        }


class Xorshift(Register):
    """Marsaglia's xorshift32 (13, 17, 5), one step per cycle, high ``bits`` bits out.

    Args:
        seed: initial state, ``1 <= seed < 2**32`` (0 is the lock-up state); the
            default is the example seed of Marsaglia (2003).
        bits: output bits per cycle ``b`` (1..24): ``u = x >> (32 - b)``.

    Example:
        >>> Xorshift(seed=1, bits=8).raw(0, 3).tolist()  # x = 270369, 67634689, 2647435461
        [0, 4, 157]
    """

    width = 32
    xorshift = True

    def __init__(self, seed: int = 2463534242, bits: int = 8) -> None:
        super().__init__(bits, 32)
        self.seed = _check_seed(seed, 32)
        self._map = _xorshift_map()

    def _extract(self, states: np.ndarray) -> np.ndarray:
        states >>= np.uint32(32 - self.bits)
        return states

    def _shift(self) -> int:
        return 32 - self.bits  # the high bits

    def config(self) -> dict[str, Any]:
        return {
            "type": "Xorshift",
            "shifts": list(XORSHIFT_SHIFTS),
            "seed": self.seed,
            "bits": self.bits,
        }


class RNGArray(HardwareRNG):
    """PeZO on-the-fly generation: ``n`` small registers in lockstep, rotated every cycle.

    Cycle ``c`` fills stream positions ``[c*n, (c+1)*n)``; position ``j`` is fed
    by register ``(j + c) mod n`` (the register that fed position 0 moves to the
    end after every cycle), so ``S[c*n + j] = u_{(j+c) mod n}(c)``. Register ``r``
    is an :class:`LFSR` or :class:`Xorshift` seeded with
    :func:`derive_seed` ``(seed, r, width)``; all share ``bits`` (and, for LFSRs,
    ``width``, ``taps`` and ``steps_per_cycle``).

    Args:
        n: number of registers (PeZO: much smaller than the parameter count).
        rng: ``"lfsr"`` or ``"xorshift"``.
        bits: output bits per register per cycle (1..24).
        seed: master seed, an integer in ``[0, 2**64)`` (never wrapped).
        width: register width; LFSR 3..32 (default 32), xorshift only 32.
        taps, steps_per_cycle: passed to every :class:`LFSR` (must be ``None`` for xorshift).

    Example:
        >>> arr = RNGArray(n=4, rng="xorshift", seed=0)
        >>> cycle1 = arr.raw(4, 4)  # positions 4..7 hold cycle 1, fed by registers 1, 2, 3, 0
        >>> [int(g.raw(1, 1)[0]) for g in arr.generators[1:] + arr.generators[:1]] == cycle1.tolist()
        True
    """

    RNGS = ("lfsr", "xorshift")

    def __init__(
        self,
        n: int = 16,
        rng: str = "lfsr",
        bits: int = 8,
        seed: int = 0,
        width: int | None = None,
        taps: int | None = None,
        steps_per_cycle: int | None = None,
    ) -> None:
        if rng not in self.RNGS:
            raise ValueError(f"Invalid rng {rng!r}; choose one of {self.RNGS}")
        width = 32 if width is None else checks.integer("width", width)
        if rng == "lfsr" and width not in MAXIMAL_TAPS:
            raise ValueError(f"Invalid LFSR width {width}: supported widths are 3..32")
        if rng == "xorshift" and (width != 32 or taps is not None or steps_per_cycle is not None):
            raise ValueError(
                "xorshift registers are 32 bits wide with fixed shifts: leave width, taps and "
                "steps_per_cycle unset"
            )
        n = checks.integer("n", n, low=1)  # registers
        seed = checks.seed(seed)  # never wrapped modulo 2**64
        super().__init__(bits, width)
        self.n, self.rng, self.seed, self.width = n, rng, seed, width
        seeds = self._seeds()
        if rng == "lfsr":
            self.generators: list[Register] = [
                LFSR(width, taps, s, bits, steps_per_cycle) for s in seeds
            ]
        else:
            self.generators = [Xorshift(s, bits) for s in seeds]

    def _seeds(self) -> list[int]:
        if self.n > (1 << self.width) - 1:
            raise ValueError(
                f"{self.n} registers cannot have distinct seeds in {self.width} bits; "
                "use fewer registers or a wider register"
            )
        seeds = [derive_seed(self.seed, r, self.width) for r in range(self.n)]
        if len(set(seeds)) != self.n:
            raise ValueError(
                f"Master seed {self.seed} gives two registers the same state "
                f"({self.n} registers of {self.width} bits); choose another seed or a wider register"
            )
        return seeds

    @property
    def seeds(self) -> list[int]:
        """The register seeds, by register index."""
        return [g.seed for g in self.generators]

    def registers(self) -> Registers:
        first = self.generators[0].registers()
        seeds = np.array(self.seeds, np.uint32)
        return Registers(seeds, first.cycle, self.bits, first.shift, self.scale, first.xorshift)

    def _unsigned(self, start: int, n: int) -> np.ndarray:
        if n == 0:
            return np.empty(0, dtype=np.uint32)
        c0, skip = divmod(start, self.n)
        cycles = (skip + n + self.n - 1) // self.n
        u = self.generators[0].cycle_outputs(np.array(self.seeds), c0, cycles)
        grid = np.empty_like(u)
        for k in range(min(self.n, cycles)):  # rows k, k+n, ... share the rotation (c0 + k) mod n
            shift = (c0 + k) % self.n
            grid[k :: self.n, : self.n - shift] = u[k :: self.n, shift:]
            grid[k :: self.n, self.n - shift :] = u[k :: self.n, :shift]
        return grid.reshape(-1)[skip : skip + n].copy()

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.config().items() if k not in ("type", "seeds")
        )
        return f"RNGArray({args})"

    def config(self) -> dict[str, Any]:
        first = self.generators[0]
        lfsr = first if isinstance(first, LFSR) else None
        return {
            "type": "RNGArray",
            "n": self.n,
            "rng": self.rng,
            "bits": self.bits,
            "seed": self.seed,
            "width": self.width,
            "taps": lfsr.taps if lfsr else None,
            "steps_per_cycle": lfsr.steps_per_cycle if lfsr else None,
            "seeds": self.seeds,
        }
