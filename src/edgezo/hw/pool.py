"""PeZO pre-generation in hardware: a pool in ROM / block RAM, read cyclically from an offset counter.

:class:`ROMPool` is the Python model: edgezo's :class:`~edgezo.directions.Pool`
(same numbers, same offsets ``o_{t+1} = (o_t + d) mod P``) with every entry
quantized to a ``bits``-bit code, exactly as the ROM stores it. Entry ``k`` is
``u_k = x_k >> (32 - bits)``, where ``x_k`` is the hash word from which
:class:`~edgezo.directions.Uniform` (``seed``, perturbation ``(0, 0)``) makes
the float pool, mapped like every hardware source to the odd code
``v_k = 2 u_k + 1 - 2**bits``. At ``bits = 24`` the float pool of
``Pool(scale="unit")`` is exactly ``float32(v / 2**24) * float32(sqrt 3)``; at
fewer bits the ROM keeps the top bits of the same numbers. The floats used in
training are ``v * scale`` (rounded once to float32), with the pool's scale rule.

:class:`PoolGen` is the RTL: ``lanes`` entries per clock from a ROM of ``P / lanes``
rows (one row = ``lanes`` consecutive entries), an offset register ``o`` and a row
pointer. Controls (sampled at the clock edge):

* ``restart``: this cycle reads from ``o`` (the start of perturbation ``t``'s window);
  afterwards the pointer advances one row (``lanes`` entries) per cycle, wrapping at ``P``;
* ``advance``: ``o <= (o + d) mod P`` (the next perturbation); the read address of this
  cycle is unaffected.

A pass over perturbation ``t`` asserts ``restart`` on its first cycle and reads
``ceil(d / lanes)`` cycles; lane ``j`` of the ``c``-th cycle of the pass is
``z_t[c * lanes + j]`` (lanes past ``d`` in the last cycle are to be ignored).
Output is one cycle after the read address (synchronous ROM, ``latency = 1``).
When ``d`` is not a multiple of ``lanes`` a window starts inside a row: two
adjacent rows are read (dual-port) and a funnel shifter picks the ``lanes``
entries; when it is, the shifter and the second port are left out.
Requirements: ``lanes`` a power of two dividing ``P``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from edgezo.directions import Pool
from edgezo.directions.counter import hash_words

from ..extras import require
from ._rtl import Generator, odd_signed, reject

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Cat, Module, Mux, Signal  # noqa: E402
from amaranth.lib.memory import Memory  # noqa: E402
from amaranth.lib.wiring import In  # noqa: E402


class ROMPool(Pool):
    """A :class:`~edgezo.directions.Pool` whose entries are ``bits``-bit ROM codes (see module docs).

    Args:
        size: pool length ``P``.
        seed: seed of the pool's numbers (as :class:`~edgezo.directions.Pool`).
        bits: bits per stored entry (1..24).
        scale: ``"pool"`` (divide by the codes' RMS), ``"unit"``
            (``sqrt(3 / (4**bits - 1))``) or ``"perturbation"`` (as ``"unit"``, then
            the pool's per-window rescaling).

    Example:
        >>> pool = ROMPool(size=8, seed=0, bits=4).bind(dim=5)
        >>> pool.integers(1, 0, 0, 5).tolist() == [int(pool.codes[k % 8]) for k in range(5, 10)]
        True
    """

    def __init__(self, size: int = 4096, seed: int | None = 0, bits: int = 8, scale: str = "pool"):
        super().__init__(size, seed, "uniform", scale)
        if not 1 <= int(bits) <= 24:
            raise ValueError(f"Invalid bits={bits}: a ROM entry has 1..24 bits")
        self.bits = int(bits)
        #: the unsigned ROM contents ``u`` (uint32, ``bits`` bits each)
        self.rom = hash_words(self.seed, 0, 0, 0, self.size) >> np.uint32(32 - self.bits)
        #: the odd codes ``v = 2u + 1 - 2**bits`` (int32)
        self.codes = (2 * self.rom.astype(np.int64) + 1 - (1 << self.bits)).astype(np.int32)
        v = torch.from_numpy(self.codes.astype(np.float32))
        if scale == "pool":
            self.pool = v / v.double().square().mean().sqrt().float()
        else:
            self.pool = v * torch.tensor(math.sqrt(3.0 / (4.0**self.bits - 1)), dtype=torch.float32)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "type": "ROMPool", "bits": self.bits}

    def integers(self, step: int, query: int, offset: int, n: int) -> np.ndarray:
        """The codes ``v`` of ``z(step, query)[offset : offset + n]`` (int32): what the ROM outputs."""
        out = np.empty(n, dtype=np.int32)
        for t0, p0, length in self.slices(self.position(step, query, offset), n):
            out[t0 : t0 + length] = self.codes[p0 : p0 + length]
        return out


class PoolGen(Generator):
    """RTL of :class:`ROMPool` for a parameter count ``d``: ``lanes`` entries per clock (see module docs).

    Args:
        model: the pool (its ``size``, ``bits`` and ROM contents).
        dim: the parameter count ``d`` (the offset step).
        lanes: entries per clock, a power of two dividing ``model.size``.
    """

    latency = 1

    def __init__(self, model: ROMPool, dim: int, lanes: int = 1) -> None:
        lanes, dim = int(lanes), int(dim)
        if lanes < 1 or lanes & (lanes - 1) or model.size % lanes:
            raise reject(
                self,
                ValueError(
                    f"Invalid lanes={lanes} for a pool of {model.size}: use a power of two that "
                    "divides the pool size"
                ),
            )
        if dim < 1:
            raise reject(self, ValueError(f"Invalid dim={dim}: use the parameter count (>= 1)"))
        self.model, self.dim = model, dim
        self.shifted = dim % lanes != 0  # windows can start inside a row
        super().__init__(lanes, model.bits + 1, {"restart": In(1), "advance": In(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        t, bits, size = self.lanes, self.model.bits, self.model.size
        rows, lane_bits = size // t, t.bit_length() - 1
        contents = self.model.rom.astype(np.int64).reshape(rows, t)
        m.submodules.rom = rom = Memory(
            shape=t * bits,
            depth=rows,
            init=[sum(int(e) << (k * bits) for k, e in enumerate(row)) for row in contents],
            attrs={
                "ram_style": "block"
            },  # a pool lives in block RAM (yosys may otherwise pick LUTs)
        )
        step = self.dim % size
        offset = Signal(range(size), name="offset")  # o_t
        with m.If(self.advance):
            wrapped = offset + (step - size)
            m.d.sync += offset.eq(Mux(offset >= size - step, wrapped, offset + step))
        row = Signal(range(rows), name="row")
        addr = Signal(range(rows), name="addr")
        m.d.comb += addr.eq(Mux(self.restart, offset >> lane_bits, row))
        m.d.sync += row.eq(Mux(addr == rows - 1, 0, addr + 1))
        port = rom.read_port()
        m.d.comb += port.addr.eq(addr)
        data = port.data
        if self.shifted:
            skip, skip_now = Signal(lane_bits, name="skip"), Signal(lane_bits, name="skip_now")
            skip_d = Signal(lane_bits, name="skip_d")
            m.d.comb += skip_now.eq(Mux(self.restart, offset[:lane_bits], skip))
            m.d.sync += [skip.eq(skip_now), skip_d.eq(skip_now)]
            nxt = rom.read_port()
            m.d.comb += nxt.addr.eq(Mux(addr == rows - 1, 0, addr + 1))
            data = (Cat(port.data, nxt.data) >> (skip_d * bits))[: t * bits]
        self.drive_lanes(m, [odd_signed(data[k * bits : (k + 1) * bits], bits) for k in range(t)])
        return m


def pass_schedule(
    model: ROMPool, lanes: int, cycles: int, passes: int = 3
) -> tuple[list[dict[str, int]], dict[int, np.ndarray]]:
    """Controls and expected outputs of a ZO run on :class:`PoolGen`, for co-simulation.

    Every perturbation ``t = step * queries + query`` (``model`` must be bound) is read
    ``passes`` times back to back (perturb ``+eps z``, ``-2 eps z``, restore/update), each pass
    with ``restart`` on its first cycle; ``advance`` is raised on the last cycle of the last pass.

    Returns:
        ``(controls, expected)``: ``controls[c]`` are the inputs of cycle ``c`` (``cycles``
        entries); ``expected[c]`` the codes lanes must show at cycle ``c`` (``-1 << 40`` marks
        lanes past ``d`` in a pass's last cycle, which are not checked).
    """
    d, per_pass = model.dim, -(-model.dim // lanes)
    controls: list[dict[str, int]] = []
    expected: dict[int, np.ndarray] = {}
    t = 0
    while len(controls) < cycles:
        codes = np.full(per_pass * lanes, -1 << 40, dtype=np.int64)
        codes[:d] = model.integers(t // model.queries, t % model.queries, 0, d)
        for p in range(passes):
            for k in range(per_pass):
                last = p == passes - 1 and k == per_pass - 1
                expected[len(controls) + PoolGen.latency] = codes[k * lanes : (k + 1) * lanes]
                controls.append({"restart": int(k == 0), "advance": int(last)})
        t += 1
    return controls[:cycles], {c: e for c, e in expected.items() if c < cycles}
