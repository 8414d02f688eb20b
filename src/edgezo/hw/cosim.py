"""Co-simulation: run a generator in Amaranth's simulator and read its lanes cycle by cycle.

The simulator is Amaranth's own (pure Python, no external tool); the result is
compared with the Python model bit for bit by the tests and by
:func:`check_against`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..extras import require
from ._rtl import Generator

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.sim import Simulator  # noqa: E402

#: ``drive(cycle) -> {port_name: value}``: inputs to set before the clock edge of ``cycle``.
Drive = Callable[[int], dict[str, int]]


def unpack(words: list[int], lanes: int, width: int) -> np.ndarray:
    """Split packed ``out`` words into signed lane values, shape ``(len(words), lanes)`` (int64)."""
    raw = np.array(
        [[(w >> (j * width)) & ((1 << width) - 1) for j in range(lanes)] for w in words],
        dtype=np.int64,
    ).reshape(len(words), lanes)
    raw[raw >= 1 << (width - 1)] -= 1 << width
    return raw


def simulate(gen: Generator, cycles: int, drive: Drive | None = None) -> np.ndarray:
    """``out`` of ``gen`` at clock cycles ``0 .. cycles-1`` after reset, shape ``(cycles, lanes)``.

    Cycle ``c`` is read after the inputs of ``drive(c)`` are applied and before the
    ``c``-th rising clock edge (so combinational paths from inputs are visible).
    """
    words: list[int] = []
    ports = {name: getattr(gen, name) for name in gen.signature.members if name != "out"}

    async def bench(ctx) -> None:
        for c in range(cycles):
            if drive is not None:
                for name, value in drive(c).items():
                    ctx.set(ports[name], value)
            words.append(ctx.get(gen.out))
            await ctx.tick()

    sim = Simulator(gen)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return unpack(words, gen.lanes, gen.lane_width)
