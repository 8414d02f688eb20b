"""Where perturbations come from: every source is a pure function of (seed, step, query, index).

See :mod:`edgezo.directions.base` for the contract: a source says what ``z`` is
(``sample``, optionally a :class:`KernelSpec`); :mod:`edgezo.passes` applies it. Sources:

* :class:`Gaussian`, :class:`Rademacher`, :class:`Uniform` — hashed per element;
* :class:`Pool` — PeZO pre-generation (a reused pool, no RNG per step);
* :class:`RNGArray` — PeZO on-the-fly (an array of small hardware RNGs, rotated);
* :class:`LFSR`, :class:`Xorshift` — bit-exact models of hardware generators;
* :class:`MomentumGuided` — QZO-FF's momentum-guided sampling around any source.
"""

from .base import CHUNK, Directions, KernelSpec, StreamDirections
from .counter import Gaussian, Rademacher, Uniform
from .guided import MomentumGuided, Ramp
from .hwrng import LFSR, RNGArray, Xorshift
from .pool import Pool

__all__ = [
    "CHUNK",
    "Directions",
    "KernelSpec",
    "StreamDirections",
    "Gaussian",
    "Rademacher",
    "Uniform",
    "Pool",
    "RNGArray",
    "LFSR",
    "Xorshift",
    "MomentumGuided",
    "Ramp",
]
