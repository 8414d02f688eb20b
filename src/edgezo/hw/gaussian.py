"""Gaussian baselines in fixed point: bit-exact Python models and their RTL.

PeZO (PAPERS.md A) measures its savings against Gaussian generators; these are
the two classic ones, built here so the comparison uses real numbers:

* :class:`CLT` — central limit theorem: each lane sums ``k`` uniform numbers from
  ``k`` leap-forward Galois LFSRs (edgezo's :class:`~edgezo.directions.hwrng.LFSR`,
  odd-signed outputs ``v = 2u + 1 - 2**b``). Output: the exact sum (no rounding),
  ``b + 1 + ceil(log2 k)`` bits; value ``code * scale`` with
  ``scale = 1 / sqrt(k (4**b - 1) / 3)`` (unit variance, exactly).
* :class:`BoxMuller` — Box-Muller by table look-up: one LFSR per unit gives
  ``m + a`` bits per cycle; the top ``m`` bits ``i`` address a radius table
  ``R[i] = round(2**fr sqrt(-2 ln((i + 1/2) / 2**m)))`` and the low ``a`` bits ``j``
  a sine table ``SIN[j] = round(2**fs sin(2 pi (j + 1/2) / 2**a))``, read twice
  (the cosine is ``SIN[j + 2**(a-2)]``, so one dual-port table serves both). Two
  products ``p = R[i] * COS[j]`` and ``R[i] * SIN[j]`` give two numbers per cycle, each
  mapped to the odd code ``2 * floor(p / 2**sh) + 1`` (``sh = fr + fs - F``), value
  ``code * 2**-(F + 1)``: symmetric, like the uniform outputs. ``F = bits - 4``
  fraction bits leave room for the largest radius (``sqrt(2 (m + 1) ln 2)``, 4.25
  for ``m = 12``) in ``bits + 1`` bits.

Accuracy (exact, by enumerating every table pair, :meth:`GaussianModel.exact_pmf`;
the tests check these bounds). ``ks`` is the largest gap between the output's CDF
and the standard normal's, taken at the boundaries between adjacent output codes
(a quantized output cannot be closer to a continuous CDF than its grid allows, so
the comparison is made where the grid allows it). For ``bits = 8``:

==============================  ===========  ===========  ==========  ===========
generator                       mean         variance     ks          max abs(z)
==============================  ===========  ===========  ==========  ===========
CLT, k = 4                      0 exactly    1 exactly    0.0074      3.45
Box-Muller, m = 12, a = 10      1.1e-5       1.00017      3.0e-5      4.22
==============================  ===========  ===========  ==========  ===========

The CLT's error is its shape (Irwin-Hall, tails cut at ``sqrt(3k)``); Box-Muller's
is the tail cut at 4.25 sigma (mass 2.7e-5 lost) and its output grid (steps of 1/16 at
``bits = 8``); its mean is not exactly 0 because ``floor`` is not symmetric on the
products that are exact multiples of ``2**sh``. See :data:`ACCURACY`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from edgezo.directions.hwrng import LFSR, derive_seed

from ..extras import require
from ._rtl import Generator
from .uniform import LFSRGen

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Cat, Const, Module, Signal, Value, signed, unsigned  # noqa: E402
from amaranth.lib.memory import Memory  # noqa: E402

#: Documented accuracy of the default configurations at ``bits = 8`` (see the module
#: docstring): bounds on ``|mean|``, ``|variance - 1|`` and the grid KS distance to N(0, 1).
ACCURACY: dict[str, dict[str, float]] = {
    "clt": {"mean": 1e-12, "variance": 1e-12, "ks": 0.0075},
    "boxmuller": {"mean": 2e-5, "variance": 3e-4, "ks": 1e-4},
}


class GaussianModel(ABC):
    """A fixed-point Gaussian generator: ``lanes`` integer codes per cycle, value ``code * scale``."""

    lanes: int
    scale: float
    latency: int

    @abstractmethod
    def codes(self, first_cycle: int, cycles: int) -> np.ndarray:
        """Output codes of cycles ``first_cycle ..``, shape ``(cycles, lanes)`` (int64)."""

    @abstractmethod
    def exact_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, probabilities)`` of one output, assuming ideal uniform inputs."""

    def stats(self) -> dict[str, float]:
        """Exact mean, variance, grid KS distance to N(0, 1) and largest ``|z|`` of one output."""
        codes, p = self.exact_pmf()
        z = codes * self.scale
        mean = float(np.sum(p * z))
        return {
            "mean": mean,
            "variance": float(np.sum(p * (z - mean) ** 2)),
            "ks": grid_ks(codes, p, self.scale),
            "max_abs": float(np.max(np.abs(z))),
        }


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (float64)."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))


def grid_ks(codes: np.ndarray, p: np.ndarray, scale: float) -> float:
    """Largest ``|F(t) - Phi(t)|`` over the midpoints ``t`` between adjacent codes (sorted)."""
    order = np.argsort(codes)
    codes, cdf = codes[order], np.cumsum(p[order])
    mids = (codes[:-1] + codes[1:]) / 2.0 * scale
    return float(np.max(np.abs(cdf[:-1] - normal_cdf(mids))))


def _odd_uniform_pmf(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The odd codes ``2u + 1 - 2**bits`` of a uniform ``bits``-bit ``u``, with probabilities."""
    codes = 2 * np.arange(1 << bits, dtype=np.int64) + 1 - (1 << bits)
    return codes, np.full(1 << bits, 2.0**-bits)


# -- CLT -------------------------------------------------------------------------------
class CLT(GaussianModel):
    """``lanes`` sums of ``k`` uniform numbers, each from its own leap-forward LFSR.

    Args:
        lanes: outputs per cycle.
        k: uniforms summed per output.
        bits: bits of each uniform (``1..24``).
        width: LFSR register width (3..32, at least ``bits``).
        seed: master seed; register ``lane * k + i`` is seeded with
            :func:`~edgezo.directions.hwrng.derive_seed` ``(seed, lane * k + i, width)``.

    Example:
        >>> clt = CLT(lanes=2, k=4, bits=8)
        >>> clt.codes(0, 3).shape, round(clt.stats()["max_abs"], 3)  # largest |z|: sqrt(3k) nearly
        ((3, 2), 3.451)
    """

    latency = 0

    def __init__(self, lanes: int = 1, k: int = 4, bits: int = 8, width: int = 32, seed: int = 0):
        if int(k) < 1 or int(lanes) < 1:
            raise ValueError(f"Invalid CLT: need lanes >= 1 and k >= 1, got lanes={lanes}, k={k}")
        self.lanes, self.k, self.bits, self.width, self.seed = int(lanes), int(k), bits, width, seed
        self.registers = [
            LFSR(width, seed=derive_seed(seed, r, width), bits=bits)
            for r in range(self.lanes * self.k)
        ]
        self.scale = 1.0 / math.sqrt(self.k * (4.0**bits - 1) / 3.0)
        #: bits of one output code (two's complement).
        self.code_bits = bits + 1 + math.ceil(math.log2(self.k))

    def codes(self, first_cycle: int, cycles: int) -> np.ndarray:
        v = np.stack([g.signed(first_cycle, cycles) for g in self.registers], axis=1)
        return v.astype(np.int64).reshape(cycles, self.lanes, self.k).sum(axis=2)

    def exact_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        base, p1 = _odd_uniform_pmf(self.bits)
        p = p1
        for _ in range(self.k - 1):
            p = np.convolve(p, p1)
        # the sum of k odd codes in steps of 2, from k * base[0] to k * base[-1]
        codes = self.k * int(base[0]) + 2 * np.arange(len(p), dtype=np.int64)
        return codes, p


class CLTGen(Generator):
    """RTL of :class:`CLT`: ``lanes * k`` LFSRs (one number each per cycle) and an adder tree per lane."""

    def __init__(self, model: CLT) -> None:
        self.model = model
        super().__init__(model.lanes, model.code_bits)

    def elaborate(self, platform) -> Module:
        m = Module()
        model = self.model
        lanes = []
        for lane in range(model.lanes):
            terms = []
            for i in range(model.k):
                r = lane * model.k + i
                m.submodules[f"lfsr{r}"] = gen = LFSRGen(model.registers[r], 1)
                v = Signal(signed(model.bits + 1), name=f"v{r}")
                m.d.comb += v.eq(gen.out)
                terms.append(v)
            while len(terms) > 1:  # balanced adder tree
                pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
                terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
            total = Signal(signed(model.code_bits), name=f"sum{lane}")
            m.d.comb += total.eq(terms[0])
            lanes.append(total)
        self.drive_lanes(m, lanes)
        return m


# -- Box-Muller ---------------------------------------------------------------------------
class BoxMuller(GaussianModel):
    """Box-Muller by table look-up: ``units`` units, two numbers each per cycle (see module docs).

    Args:
        units: Box-Muller units; ``lanes = 2 * units`` (lane ``2q`` is unit ``q``'s cosine
            output, lane ``2q + 1`` its sine output).
        bits: output code bits minus one (codes are odd, ``bits + 1`` bits signed); ``>= 5``.
        m: radius table address bits (tail cut at ``sqrt(2 (m + 1) ln 2)``).
        a: angle table address bits (``>= 2``); ``m + a <= 24``.
        frac: fraction bits of both tables (default ``bits + 2``).
        width: width of each unit's LFSR (``>= m + a``); unit ``q`` is seeded with
            :func:`~edgezo.directions.hwrng.derive_seed` ``(seed, q, width)`` and steps
            ``m + a`` times per cycle.

    Example:
        >>> bm = BoxMuller(units=1, bits=8)
        >>> bm.lanes, bm.scale, bm.codes(0, 2).shape
        (2, 0.03125, (2, 2))
    """

    latency = 2  # table read (block RAM output register), then the product register

    def __init__(
        self,
        units: int = 1,
        bits: int = 8,
        m: int = 12,
        a: int = 10,
        frac: int | None = None,
        width: int = 32,
        seed: int = 0,
    ) -> None:
        if bits < 5 or a < 2 or m < 1 or m + a > min(24, width) or units < 1:
            raise ValueError(
                f"Invalid Box-Muller settings units={units}, bits={bits}, m={m}, a={a}, "
                f"width={width}: need units >= 1, bits >= 5, a >= 2, m >= 1, m + a <= min(24, width)"
            )
        self.units, self.bits, self.m, self.a, self.width, self.seed = (
            units,
            bits,
            m,
            a,
            width,
            seed,
        )
        self.lanes = 2 * units
        self.frac = bits + 2 if frac is None else int(frac)
        self.out_frac = bits - 4  # F: fraction bits of floor(p / 2**sh)
        self.shift = 2 * self.frac - self.out_frac
        if self.shift < 1:
            raise ValueError(f"frac={self.frac} too small for bits={bits}: need 2*frac > bits - 4")
        self.scale = 2.0 ** -(self.out_frac + 1)
        self.registers = [
            LFSR(width, seed=derive_seed(seed, q, width), bits=m + a) for q in range(units)
        ]
        i = np.arange(1 << m, dtype=np.float64)
        j = np.arange(1 << a, dtype=np.float64)
        #: radius table, unsigned, ``3 + frac`` bits
        self.radius = np.round(np.sqrt(-2.0 * np.log((i + 0.5) / 2**m)) * 2**self.frac).astype(
            np.int64
        )
        #: sine table, signed, ``2 + frac`` bits
        self.sine = np.round(np.sin(2 * np.pi * (j + 0.5) / 2**a) * 2**self.frac).astype(np.int64)
        self.radius_bits = int(self.radius.max()).bit_length()
        self.sine_bits = int(np.abs(self.sine).max()).bit_length() + 1

    def _products(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R * COS, R * SIN)`` for LFSR outputs ``u`` (any shape, int64)."""
        i, j = u >> self.a, u & ((1 << self.a) - 1)
        quarter = 1 << (self.a - 2)
        r = self.radius[i]
        return r * self.sine[(j + quarter) % (1 << self.a)], r * self.sine[j]

    def _code(self, p: np.ndarray) -> np.ndarray:
        return 2 * (p >> self.shift) + 1

    def codes(self, first_cycle: int, cycles: int) -> np.ndarray:
        u = np.stack([g.raw(first_cycle, cycles) for g in self.registers], axis=1).astype(np.int64)
        c, s = self._products(u)
        out = np.empty((cycles, self.lanes), dtype=np.int64)
        out[:, 0::2], out[:, 1::2] = self._code(c), self._code(s)
        return out

    def exact_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        codes = self._code(self._products(np.arange(1 << (self.m + self.a), dtype=np.int64))[0])
        values, counts = np.unique(codes, return_counts=True)
        return values, counts / counts.sum()


_BLOCK = {"ram_style": "block"}  # tables in block RAM on every target


class BoxMullerGen(Generator):
    """RTL of :class:`BoxMuller`: per unit one LFSR, a radius ROM, a dual-port sine ROM, two multipliers.

    Pipeline: clock ``c`` addresses the ROMs with the LFSR's cycle-``c`` output (synchronous
    read, so the tables map to block RAM), clock ``c + 1`` multiplies into a product
    register, clock ``c + 2`` shows the codes (``latency = 2``).
    """

    latency = 2

    def __init__(self, model: BoxMuller) -> None:
        self.model = model
        super().__init__(model.lanes, model.bits + 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        bm = self.model
        lanes = []
        for q in range(bm.units):
            m.submodules[f"lfsr{q}"] = gen = LFSRGen(bm.registers[q], 1)
            # the unsigned m+a bit output u, recovered from the odd-signed lane (v = 2u+1-2**b)
            u = Signal(bm.m + bm.a, name=f"u{q}")
            m.d.comb += u.eq(gen.out[1:] ^ (1 << (bm.m + bm.a - 1)))
            m.submodules[f"rtab{q}"] = rtab = Memory(
                shape=unsigned(bm.radius_bits),
                depth=1 << bm.m,
                init=bm.radius.tolist(),
                attrs=_BLOCK,
            )
            m.submodules[f"stab{q}"] = stab = Memory(
                shape=signed(bm.sine_bits), depth=1 << bm.a, init=bm.sine.tolist(), attrs=_BLOCK
            )
            r_port, cos_port, sin_port = rtab.read_port(), stab.read_port(), stab.read_port()
            m.d.comb += [
                r_port.addr.eq(u[bm.a :]),
                cos_port.addr.eq(u[: bm.a] + (1 << (bm.a - 2))),  # wraps modulo 2**a
                sin_port.addr.eq(u[: bm.a]),
            ]
            width = bm.radius_bits + bm.sine_bits + 1
            for name, port in (("cos", cos_port), ("sin", sin_port)):
                prod = Signal(signed(width), name=f"{name}{q}")
                m.d.sync += prod.eq(r_port.data * port.data)
                lanes.append(odd_signed_shift(prod, bm.shift, bm.bits))
        self.drive_lanes(m, lanes)
        return m


def odd_signed_shift(p: Value, shift: int, bits: int) -> Value:
    """``2 * floor(p / 2**shift) + 1`` as ``bits + 1`` wires: a constant 1 below the kept bits of ``p``."""
    return Cat(Const(1, 1), p[shift : shift + bits])
