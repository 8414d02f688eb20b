"""The designs compared by ``edgezo hw report``, all at the same throughput and output width.

:func:`build` returns one :class:`Design` per row of the report: the RTL generator
and the stream its Python model says it must produce, so synthesis, power and
co-simulation all run over one list with one contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgezo.directions.hwrng import LFSR, RNGArray, Xorshift

from ._rtl import Generator
from .gaussian import CLT, BoxMuller, BoxMullerGen, CLTGen
from .pool import PoolGen, ROMPool
from .uniform import LFSRGen, RNGArrayGen, XorshiftGen

FAMILIES = ("Gaussian", "uniform", "PeZO")

#: parameter count used for the pool's offset step (a ~1M-parameter model)
DIM = 1_000_000


@dataclass
class Design:
    """One design of the comparison.

    Attributes:
        key: short identifier (``"clt"``, ``"pezo-pool"``, ...).
        family: ``"Gaussian"``, ``"uniform"`` or ``"PeZO"``.
        label: the configuration in words.
        gen: the RTL generator (``gen.lanes`` numbers per clock).
        expected: ``cycles -> (cycles, lanes)`` int64: what the Python model says lanes
            ``0..lanes-1`` show at clock cycles ``latency .. latency + cycles - 1`` when the
            design runs freely (control inputs low).
        power: whether the streaming power estimate represents the design (see :mod:`.power`).
    """

    key: str
    family: str
    label: str
    gen: Generator
    expected: Callable[[int], np.ndarray]
    power: bool = True

    @property
    def latency(self) -> int:
        return self.gen.latency


def _stream(model, lanes: int) -> Callable[[int], np.ndarray]:
    """Lanes filled from consecutive stream positions of a hardware model (``signed``)."""
    return lambda cycles: model.signed(0, cycles * lanes).astype(np.int64).reshape(cycles, lanes)


def _pool_dim(throughput: int, size: int, aligned: bool) -> int:
    """A parameter count near :data:`DIM`: a multiple of ``throughput`` or not; never a multiple of ``size``."""
    d = throughput * math.ceil(DIM / throughput) if aligned else DIM + 3
    while d % size == 0 or (d % throughput == 0) != aligned:
        d += throughput if aligned else 2
    return d


def build(
    throughput: int = 16,
    bits: int = 8,
    seed: int = 1,
    pool_size: int = 4096,
    clt_k: int = 4,
    pezo_width: int = 16,
) -> list[Design]:
    """All designs of the report at ``throughput`` numbers per cycle of ``bits`` (+1 sign) bits.

    Args:
        throughput: numbers per clock cycle, even (Box-Muller units make two); a power of two
            for the pool rows (which are left out otherwise).
        bits: uniform bits per number (outputs are ``bits + 1``-bit odd codes), 5..16.
        seed: master seed of every generator.
        pool_size: PeZO pool entries ``P`` (a multiple of ``throughput``).
        clt_k: uniforms summed per CLT output.
        pezo_width: register width of PeZO's on-the-fly array ("small RNGs"; at least ``bits``).
    """
    n, b = int(throughput), int(bits)
    _check_build(n, b)
    designs = _gaussian_designs(n, b, seed, clt_k) + _uniform_designs(n, b, seed)
    designs.append(_pezo_array_design(n, b, seed, pezo_width))
    if n & (n - 1) == 0 and pool_size % n == 0:
        designs += _pool_designs(n, b, seed, pool_size)
    return designs


def _check_build(n: int, b: int) -> None:
    """Refuse a throughput or bit width the report cannot build, saying what to use."""
    if n < 2 or n % 2:
        raise ValueError(
            f"Invalid throughput {n}: use an even number >= 2 (Box-Muller makes pairs)"
        )
    if not 5 <= b <= 16:
        raise ValueError(f"Invalid bits {b}: the report supports 5..16")


def _gaussian_designs(n: int, b: int, seed: int, clt_k: int) -> list[Design]:
    """Box-Muller and CLT: ``n`` Gaussian codes per cycle."""
    clt, bm = CLT(n, clt_k, b, 32, seed), BoxMuller(n // 2, b, seed=seed)
    return [
        Design(
            "boxmuller",
            "Gaussian",
            f"Box-Muller, {n // 2} units, tables 2^{bm.m} + 2^{bm.a}",
            BoxMullerGen(bm),
            lambda c: bm.codes(0, c),
        ),
        Design(
            "clt",
            "Gaussian",
            f"CLT, {n} x sum of {clt_k} LFSR-32 uniforms",
            CLTGen(clt),
            lambda c: clt.codes(0, c),
        ),
    ]


def _uniform_designs(n: int, b: int, seed: int) -> list[Design]:
    """One LFSR or xorshift stepped ``n`` times per cycle, and ``n`` LFSRs side by side."""
    lfsr, xs = (
        LFSR(32, seed=(seed % (2**32 - 1)) + 1, bits=b),
        Xorshift((seed % (2**32 - 1)) + 1, b),
    )
    plain = RNGArray(n, "lfsr", b, seed, width=32)
    return [
        Design(
            "lfsr",
            "uniform",
            f"1 LFSR-32, {n} outputs/cycle (leap-forward)",
            LFSRGen(lfsr, n),
            _stream(lfsr, n),
        ),
        Design(
            "xorshift",
            "uniform",
            f"1 xorshift32, {n} steps/cycle",
            XorshiftGen(xs, n),
            _stream(xs, n),
        ),
        Design(
            "lfsr-array",
            "uniform",
            f"{n} LFSR-32, no rotation",
            RNGArrayGen(plain, rotate=False),
            lambda c: np.stack([g.signed(0, c) for g in plain.generators], 1).astype(np.int64),
        ),
    ]


def _pezo_array_design(n: int, b: int, seed: int, pezo_width: int) -> Design:
    """PeZO on the fly: ``n`` small LFSRs whose outputs rotate every cycle."""
    pezo = RNGArray(n, "lfsr", b, seed, width=max(pezo_width, b))
    return Design(
        "pezo-array",
        "PeZO",
        f"on-the-fly: {n} LFSR-{pezo.width}, rotated every cycle",
        RNGArrayGen(pezo),
        _stream(pezo, n),
    )


def _pool_designs(n: int, b: int, seed: int, pool_size: int) -> list[Design]:
    """PeZO pre-generation: a ROM pool read at an aligned ``d`` and at any ``d``."""
    pool = ROMPool(pool_size, seed, b)
    designs = []
    for aligned in (True, False):
        d = _pool_dim(n, pool_size, aligned)
        designs.append(
            Design(
                "pezo-pool" if aligned else "pezo-pool-anyd",
                "PeZO",
                f"pre-generation: ROM {pool_size} x {b} bit, d = {d}"
                + ("" if aligned else " (funnel shifter)"),
                PoolGen(pool, d, n),
                lambda c, pool=pool: (
                    pool.codes[np.arange(c * n) % pool_size].astype(np.int64).reshape(c, n)
                ),
                power=aligned,
            )
        )
    return designs
