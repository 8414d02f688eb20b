"""The perturbation sources of the ZO engine: one RTL generator and the direction source it implements.

The engine (:mod:`.engine`) takes ``z`` from any generator :mod:`edgezo.hw` has; the
fixed-point training path (:class:`~edgezo.formats.FixedPointFormat`) must read the
very same integers, so every :class:`ZSource` pairs a fresh-RTL factory with the
:class:`~edgezo.directions.Directions` whose :meth:`integers` are the generator's
codes (stream position ``p`` = lane ``p % lanes`` of clock ``p // lanes``). All
sources give 8-bit codes (``z_q`` on the fixed-point path: used as is, "native"):

=============  ==============================================================
key            source
=============  ==============================================================
``lfsr``       one leap-forward LFSR-32, 7 bits per number
``xorshift``   one xorshift32, 7 bits per number
``pezo-array`` PeZO on the fly: ``lanes`` LFSR-16 rotated every cycle
``pezo-pool``  PeZO pre-generation: a 4096-entry ROM of 7-bit codes
``clt``        CLT: sum of 4 LFSR-32 uniforms of 5 bits per lane
``boxmuller``  Box-Muller by table look-up (7-bit output codes)
=============  ==============================================================

:class:`CodeStream` makes a Gaussian model (CLT, Box-Muller) or the ROM pool a
direction source whose integers are the codes, as the fixed-point path reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edgezo.directions import Directions
from edgezo.directions.base import StreamDirections, as_device
from edgezo.directions.hwrng import LFSR, RNGArray, Xorshift

from ._rtl import Generator
from .gaussian import CLT, BoxMuller, BoxMullerGen, CLTGen, GaussianModel
from .pool import PoolGen, ROMPool
from .uniform import LFSRGen, RNGArrayGen, XorshiftGen

#: bits of every source's codes (two's complement), the ``z_q`` width of the engine
Z_BITS = 8
#: entries of the PeZO pool's ROM
POOL_SIZE = 4096


class CodeStream(StreamDirections):
    """A stream of hardware codes as a direction source: ``S[p] = codes(p, 1) * scale``.

    ``bits`` is the code width minus one, as for the uniform hardware sources
    (:class:`~edgezo.directions.hwrng.HardwareRNG`), so the fixed-point path uses the
    codes as ``z_q`` directly, with ``dz = scale``.

    Args:
        codes: ``codes(start, n)``: the codes of stream positions ``start .. start + n - 1``.
        code_bits: bits of a code (two's complement).
        scale: the value of code 1.
        name: what the codes come from (for ``config``).
    """

    def __init__(
        self, codes: Callable[[int, int], np.ndarray], code_bits: int, scale: float, name: str
    ) -> None:
        super().__init__()
        self.codes, self.bits, self.scale, self.name = codes, int(code_bits) - 1, float(scale), name

    @classmethod
    def of_model(cls, model: GaussianModel, code_bits: int) -> CodeStream:
        """A Gaussian model's stream: position ``p`` is lane ``p % lanes`` of cycle ``p // lanes``."""

        def codes(start: int, n: int) -> np.ndarray:
            first, skip = divmod(int(start), model.lanes)
            cycles = -(-(skip + n) // model.lanes)
            return model.codes(first, cycles).reshape(-1)[skip : skip + n]

        return cls(codes, code_bits, model.scale, type(model).__name__)

    @classmethod
    def of_pool(cls, pool: ROMPool) -> CodeStream:
        """The ROM pool read cyclically from 0 (:class:`~.pool.ROMPool`'s codes and float values)."""
        scale = float(pool.pool[0] / float(pool.codes[0]))
        return cls(
            lambda start, n: pool.codes[(start + np.arange(n)) % pool.size].astype(np.int64),
            pool.bits + 1,
            scale,
            f"ROMPool({pool.size})",
        )

    def stream(self, start, n, *, dtype, device) -> Tensor:
        z = torch.from_numpy(self.codes(start, n).astype(np.float64) * self.scale)
        return z.to(device=device, dtype=dtype)

    def integers(self, step: int, query: int, offset: int, n: int, *, device: Any = None) -> Tensor:
        """The codes of ``z(step, query)[offset : offset + n]`` (int32)."""
        v = self.codes(self.position(step, query, offset), n).astype(np.int32)
        return torch.from_numpy(v).to(as_device(device))

    def config(self) -> dict[str, Any]:
        return {"type": f"CodeStream({self.name})", "bits": self.bits, "scale": self.scale}


@dataclass(frozen=True)
class ZSource:
    """One generator of the engine.

    Attributes:
        key: identifier (as in :mod:`.designs`).
        family: ``"Gaussian"``, ``"uniform"`` or ``"PeZO"``.
        label: the configuration in words.
        directions: the direction source the training run uses (not yet bound).
        make: a fresh RTL generator of ``lanes`` codes per clock (one per engine cursor).
    """

    key: str
    family: str
    label: str
    directions: Directions
    make: Callable[[], Generator]


def _uniform(key: str, lanes: int, seed: int) -> ZSource:
    b = Z_BITS - 1
    if key == "lfsr":
        lfsr = LFSR(32, seed=seed, bits=b)
        return ZSource(
            key, "uniform", "1 LFSR-32 (leap-forward)", lfsr, lambda: LFSRGen(lfsr, lanes)
        )
    if key == "xorshift":
        xs = Xorshift(seed, b)
        return ZSource(key, "uniform", "1 xorshift32", xs, lambda: XorshiftGen(xs, lanes))
    arr = RNGArray(lanes, "lfsr", b, seed, width=16)
    return ZSource(key, "PeZO", f"{lanes} LFSR-16, rotated", arr, lambda: RNGArrayGen(arr))


def z_source(key: str, lanes: int, seed: int = 1) -> ZSource:
    """The source ``key`` (see the module table) at ``lanes`` codes per clock.

    ``pezo-pool`` needs ``lanes`` a power of two (at most 4096); ``boxmuller`` an even ``lanes``.
    """
    lanes, seed = int(lanes), int(seed)
    if key in ("lfsr", "xorshift", "pezo-array"):
        return _uniform(key, lanes, seed)
    if key == "pezo-pool":
        pool = ROMPool(POOL_SIZE, seed, Z_BITS - 1)
        return ZSource(
            key,
            "PeZO",
            f"ROM pool {POOL_SIZE} x 7 bit",
            CodeStream.of_pool(pool),
            lambda: PoolGen(pool, 1, lanes),
        )
    if key == "clt":
        clt = CLT(lanes, 4, Z_BITS - 3, 32, seed)
        return ZSource(
            key,
            "Gaussian",
            "CLT, 4 x LFSR-32 per lane",
            CodeStream.of_model(clt, clt.code_bits),
            lambda: CLTGen(clt),
        )
    if key == "boxmuller":
        if lanes % 2:
            raise ValueError(f"Invalid lanes={lanes} for Box-Muller: use an even number")
        bm = BoxMuller(lanes // 2, Z_BITS - 1, seed=seed)
        return ZSource(
            key,
            "Gaussian",
            "Box-Muller tables 2^12 + 2^10",
            CodeStream.of_model(bm, bm.bits + 1),
            lambda: BoxMullerGen(bm),
        )
    raise ValueError(f"Invalid z source {key!r}; choose one of {list(KEYS)}")


#: every source of the engine, in report order
KEYS = ("boxmuller", "clt", "lfsr", "xorshift", "pezo-array", "pezo-pool")
