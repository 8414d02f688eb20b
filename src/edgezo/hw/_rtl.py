"""Building blocks shared by the RTL generators: the generator interface and the bit-level steps.

Every generator is an Amaranth :class:`~amaranth.lib.wiring.Component` with one
output port ``out``: ``lanes`` two's-complement numbers of ``lane_width`` bits
each, packed little-end first (lane ``j`` is ``out[j*lane_width : (j+1)*lane_width]``).
The numbers at clock cycle ``c`` belong to the generator's stream at cycle
``c - latency``; a generator with control inputs (the pool) documents them itself.
"""

from __future__ import annotations

from ..extras import require

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Cat, Const, Module, Signal, Value  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import Out  # noqa: E402


class Generator(wiring.Component):
    """Base of all RTL generators: ``lanes`` signed numbers of ``lane_width`` bits per cycle.

    Attributes:
        lanes: numbers produced per clock cycle (the throughput).
        lane_width: bits per number (two's complement).
        latency: clock cycles between a number's stream cycle and the cycle it is on ``out``.
    """

    lanes: int
    lane_width: int
    latency: int = 0

    def __init__(self, lanes: int, lane_width: int, extra: dict | None = None) -> None:
        self.lanes, self.lane_width = int(lanes), int(lane_width)
        super().__init__({"out": Out(self.lanes * self.lane_width), **(extra or {})})

    def drive_lanes(self, m: Module, values: list[Value]) -> None:
        """Connect ``values`` (one per lane, each ``lane_width`` bits) to ``out``."""
        if len(values) != self.lanes:
            raise ValueError(f"expected {self.lanes} lane values, got {len(values)}")
        m.d.comb += self.out.eq(Cat(*[v[: self.lane_width] for v in values]))


def reject(gen: wiring.Component, err: Exception) -> Exception:
    """``err``, after marking ``gen`` (whose constructor is failing) as used.

    Amaranth warns about every design that is built and never elaborated; one that was
    never finished is not worth that warning.
    """
    gen._MustUse__used = True
    return err


def odd_signed(u: Value, bits: int) -> Value:
    """The output mapping ``v = 2u + 1 - 2**bits`` as ``bits + 1`` wires (no logic).

    ``2u + 1`` puts a constant 1 below ``u``; subtracting ``2**bits`` modulo
    ``2**(bits+1)`` inverts the top bit. Read as a ``(bits+1)``-bit two's-complement
    number this is exactly :meth:`edgezo.directions.hwrng.HardwareRNG.signed`.
    """
    return Cat(Const(1, 1), u[: bits - 1], ~u[bits - 1])


# -- linear registers, executed symbolically ------------------------------------------
# A state bit of a linear register is an XOR of the bits of the register it started
# from. ``Sym`` holds, per bit, that set as an int mask (bit k set: register bit k
# takes part). Executing the model's step on masks gives each output bit as one flat
# XOR, which simulates fast and is what synthesis would make of the unrolled chain.
Sym = list[int]


def sym_identity(width: int) -> Sym:
    """The symbolic state of an untouched ``width``-bit register."""
    return [1 << k for k in range(width)]


def sym_lfsr_step(s: Sym, taps: int) -> Sym:
    """:func:`~edgezo.directions.hwrng.lfsr_step` on masks: ``lsb = s & 1; s >>= 1; if lsb: s ^= taps``."""
    lsb, out = s[0], [*s[1:], 0]
    return [b ^ lsb if taps >> i & 1 else b for i, b in enumerate(out)]


def _sym_xor_shift(s: Sym, shift: int) -> Sym:
    """``s ^ (s << shift)`` (``shift > 0``) or ``s ^ (s >> -shift)``, modulo ``2**len(s)``."""
    n = len(s)
    return [b ^ (s[i - shift] if 0 <= i - shift < n else 0) for i, b in enumerate(s)]


def sym_xorshift_step(s: Sym) -> Sym:
    """:func:`~edgezo.directions.hwrng.xorshift32_step` on masks: ``x ^= x<<13; x ^= x>>17; x ^= x<<5``."""
    return _sym_xor_shift(_sym_xor_shift(_sym_xor_shift(s, 13), -17), 5)


def realize(m: Module, reg: Value, state: Sym, name: str) -> Signal:
    """A named wire equal to the symbolic ``state`` of ``reg`` (one XOR per bit)."""
    wire = Signal(len(state), name=name)
    for i, mask in enumerate(state):
        terms = [reg[k] for k in range(len(reg)) if mask >> k & 1]
        m.d.comb += wire[i].eq(Cat(*terms).xor() if terms else Const(0, 1))
    return wire
