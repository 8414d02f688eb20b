"""RTL of the uniform generators, built from the bit-exact models of :mod:`edgezo.directions.hwrng`.

Each generator takes the Python model it implements as its specification (the
same object trains the network), so its reset state, taps, seeds and output
mapping come from the model and cannot drift from it:

* :class:`LFSRGen` — one leap-forward Galois LFSR; ``throughput`` model cycles per
  clock (an unrolled XOR network), lane ``j`` at clock ``c`` = model stream
  position ``c * throughput + j`` (:meth:`LFSR.signed <edgezo.directions.hwrng.HardwareRNG.signed>`);
* :class:`XorshiftGen` — one xorshift32 register, ``throughput`` steps per clock;
* :class:`RNGArrayGen` — PeZO's on-the-fly array: ``n`` registers and the
  per-cycle rotation, or a plain array of ``n`` independent registers
  (``rotate=False``) as the baseline without PeZO's reuse.

The rotation costs no logic: instead of a barrel shifter that re-routes ``n``
outputs every cycle, the *register states* move one slot down every cycle
(slot ``j`` loads the next state of the register in slot ``j + 1``), so slot ``j``
always feeds lane ``j``. Slot ``j`` holds register ``(j + c) mod n`` at cycle ``c``,
which is :class:`~edgezo.directions.hwrng.RNGArray`'s definition
``S[c*n + j] = u_{(j + c) mod n}(c)``.
"""

from __future__ import annotations

from edgezo.directions.hwrng import LFSR, Register, RNGArray, Xorshift

from ..extras import require
from ._rtl import (
    Generator,
    odd_signed,
    realize,
    reject,
    sym_identity,
    sym_lfsr_step,
    sym_xorshift_step,
)

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Module, Signal, Value  # noqa: E402


def _check_throughput(gen: Generator, throughput: int) -> int:
    throughput = int(throughput)
    if throughput < 1:
        raise reject(
            gen, ValueError(f"Invalid throughput {throughput}: use at least 1 number per cycle")
        )
    return throughput


def _cycles(m: Module, model: Register, reg: Value, count: int, name: str) -> list[Signal]:
    """Wires holding ``reg`` advanced by ``1 .. count`` model clock cycles of ``model``."""
    out, s = [], sym_identity(model.width)
    for k in range(count):
        if isinstance(model, LFSR):
            for _ in range(model.steps_per_cycle):
                s = sym_lfsr_step(s, model.taps)
        else:
            s = sym_xorshift_step(s)
        out.append(realize(m, reg, s, f"{name}_c{k + 1}"))
    return out


def _extract(model: Register, state: Value) -> Value:
    """The model's ``bits``-bit output ``u`` of a register state (LFSR: low bits; xorshift: high bits)."""
    if isinstance(model, LFSR):
        return state[: model.bits]
    return state[32 - model.bits :]


class _SingleRegisterGen(Generator):
    """One register of ``model``, advanced ``throughput`` model cycles per clock."""

    def __init__(self, model: Register, throughput: int = 1) -> None:
        self.model = model
        self.throughput = _check_throughput(self, throughput)
        super().__init__(self.throughput, model.bits + 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        model, t = self.model, self.throughput
        # state after model cycle c*t (the model's register is "post-step": state(0) is
        # the state after the first cycle); lane j needs j more model cycles.
        reg = Signal(model.width, init=model.state(0), name="state")
        later = _cycles(m, model, reg, t, "leap")
        m.d.sync += reg.eq(later[-1])
        states = [reg, *later[:-1]]
        self.drive_lanes(m, [odd_signed(_extract(model, s), model.bits) for s in states])
        return m


class LFSRGen(_SingleRegisterGen):
    """A leap-forward Galois LFSR producing ``throughput`` numbers per clock.

    Args:
        model: the :class:`~edgezo.directions.hwrng.LFSR` to implement (width, taps,
            seed, bits, steps per cycle).
        throughput: numbers per clock cycle; the register advances
            ``throughput * steps_per_cycle`` LFSR steps per clock.

    Lane ``j`` at clock ``c`` is ``model.signed(c * throughput + j, 1)`` (``bits + 1``
    bits, two's complement). Cost: ``width`` flip-flops and an XOR network.
    """

    def __init__(self, model: LFSR, throughput: int = 1) -> None:
        if not isinstance(model, LFSR):
            raise reject(
                self, TypeError(f"LFSRGen implements an LFSR model, got {type(model).__name__}")
            )
        super().__init__(model, throughput)


class XorshiftGen(_SingleRegisterGen):
    """One xorshift32 register producing ``throughput`` numbers per clock (steps unrolled).

    Lane ``j`` at clock ``c`` is ``model.signed(c * throughput + j, 1)``. Cost: 32
    flip-flops and ``throughput`` chained xorshift steps of XOR logic.
    """

    def __init__(self, model: Xorshift, throughput: int = 1) -> None:
        if not isinstance(model, Xorshift):
            raise reject(
                self,
                TypeError(f"XorshiftGen implements a Xorshift model, got {type(model).__name__}"),
            )
        super().__init__(model, throughput)


class RNGArrayGen(Generator):
    """``n`` registers in lockstep, one number each per clock, rotated every cycle (PeZO).

    Args:
        model: the :class:`~edgezo.directions.hwrng.RNGArray` to implement.
        rotate: ``True`` (PeZO): lane ``j`` at clock ``c`` is stream position
            ``c * n + j`` of ``model``. ``False``: a plain array without reuse
            scheme, lane ``j`` is register ``j``'s own stream
            (``model.generators[j].signed(c, 1)``).

    Cost: ``n * width`` flip-flops and ``n`` XOR networks; the rotation is wiring
    (see the module docstring).
    """

    def __init__(self, model: RNGArray, rotate: bool = True) -> None:
        self.model, self.rotate = model, bool(rotate)
        super().__init__(model.n, model.bits + 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        gens = self.model.generators
        n = len(gens)
        slots = [Signal(g.width, init=g.state(0), name=f"slot{j}") for j, g in enumerate(gens)]
        for j, slot in enumerate(slots):
            src = (j + 1) % n if self.rotate else j
            (nxt,) = _cycles(m, gens[src], slots[src], 1, f"r{src}_to{j}")
            m.d.sync += slot.eq(nxt)
        self.drive_lanes(
            m, [odd_signed(_extract(g, s), g.bits) for g, s in zip(gens, slots, strict=True)]
        )
        return m
