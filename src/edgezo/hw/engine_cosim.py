"""Co-simulation of the ZO engine against a real fixed-point training run, bit for bit.

:func:`record` trains with edgezo's fixed-point path (:class:`RecordingFormat`, a
:class:`~edgezo.formats.FixedPointFormat` that writes down what it applies) and
keeps, per step: the losses of every forward (what the inference accelerator
would send), the perturbed weights each forward read, the update's
multiply-and-shift per scale group, the coefficients, and the integer weights
after the step. :func:`replay` feeds those losses to the simulated
:class:`~.engine.Engine` and compares, after every step, the engine's block RAM
with the Python integers, and every perturbed row it streamed with what the
layers read. Amaranth's simulator is the reference and slow (about 90 cycles a second
on a 64-lane engine): :func:`edgezo.hw.engine_cxxrtl.replay_compiled` gives the same
:class:`Replay` from the engine compiled with yosys's CXXRTL, for long runs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from edgezo.formats.fixedpoint import FixedPointFormat, Requant, integer_coefficients

from ..extras import require
from .engine import COEF_BITS, K_BITS, M_BITS, Engine, EngineConfig

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.sim import Simulator  # noqa: E402


def loss_word(loss: float) -> int:
    """A float32 loss as the signed 32-bit word the engine compares: order-preserving.

    Non-negative floats keep their bit pattern; negative ones flip their magnitude bits,
    so ``a < b`` exactly when ``loss_word(a) < loss_word(b)`` (``-0.0`` maps to ``0``).
    """
    (bits,) = struct.unpack("<i", struct.pack("<f", float(loss)))
    return bits if bits >= 0 else (bits ^ 0x7FFFFFFF) + 1


class RecordingFormat(FixedPointFormat):
    """:class:`~edgezo.formats.FixedPointFormat` that records each update's integers.

    ``updates[s]`` is ``(numerators, {segment: (m, k)})`` of step ``s``: the ``n_i`` of the
    terms and the ``Requant`` of ``lr * delta * dz / dw`` per segment (per row when scales
    are per channel), exactly the arithmetic :meth:`subtract_terms` then applies.
    """

    def prepare(self) -> None:
        super().prepare()
        self.updates: list[tuple[list[int], dict[int, tuple[list[int], list[int]]]]] = []

    def update(self, terms, weights, lrs) -> None:
        self.updates.append((integer_coefficients([w[self.indices[0]] for w in weights])[0], {}))
        super().update(terms, weights, lrs)

    def subtract_terms(self, k: int, lr: float, delta: float, live) -> None:
        factor = self.update_factor(self.segments[k], lr, delta)
        rq = Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1))
        self.updates[-1][1][k] = (rq.m.tolist(), rq.k.tolist())
        super().subtract_terms(k, lr, delta, live)


@dataclass
class Step:
    """What one training step did, as the engine sees it."""

    losses: list[float]  #: ``L+_0, L-_0, L+_1, ...``
    reads: list[np.ndarray]  #: the flat perturbed integers each forward read
    numerators: list[int]  #: ``n_i``
    upd: list[tuple[int, int]]  #: ``(m_u, k_u)`` per scale group
    after: np.ndarray  #: the flat integer weights after the step


@dataclass
class Record:
    """A recorded run: the engine's configuration and every step."""

    config: EngineConfig
    steps: list[Step] = field(default_factory=list)


def flat_weights(fmt: FixedPointFormat) -> np.ndarray:
    """The integer weights of every segment of ``fmt``, flat in the fixed-point path's order."""
    return np.concatenate([s.param.data.reshape(-1).numpy().astype(np.int64) for s in fmt.segments])


def engine_config(fmt: FixedPointFormat, lanes: int, queries: int, estimator: str) -> EngineConfig:
    """The :class:`~.engine.EngineConfig` of a prepared format's segments (one group per scale)."""
    if not fmt.zf.native:
        raise ValueError(
            "the engine multiplies the generator's codes: use a hardware direction source whose "
            "codes fit z_bits (edgezo.hw.zsources), so the fixed-point path uses them as z_q"
        )
    groups: list[tuple[int, int]] = []
    for seg, eps_q in zip(fmt.segments, fmt.eps_q, strict=True):
        if seg.mask is not None:
            raise ValueError("the engine trains whole tensors: remove the parameter's mask")
        eps = eps_q.reshape(-1).tolist()
        cols = seg.param.numel() // len(eps)
        groups += [(seg.offset + r * cols, int(e)) for r, e in enumerate(eps)]
    return EngineConfig(
        init=tuple(int(v) for v in flat_weights(fmt)),
        weight_bits=fmt.segments[0].param.fixed.bits,
        lanes=lanes,
        queries=queries,
        one=fmt.zf.one,
        dz_m=int(fmt.requant_dz.m),
        dz_k=int(fmt.requant_dz.k),
        groups=tuple(groups),
        estimator=estimator,
    )


def _reads(fmt: FixedPointFormat) -> np.ndarray:
    """The flat integers the layers read now (perturbed, or plain when nothing is set)."""
    parts = []
    for seg in fmt.segments:
        p, read = seg.param, seg.param.fixed.perturbation
        parts.append((p.data if read is None else read.read(p)).reshape(-1).numpy())
    return np.concatenate(parts).astype(np.int64)


def record(
    opt, closure: Callable[[], Tensor], steps: int, lanes: int, keep_reads: bool = True
) -> Record:
    """Train ``steps`` steps of ``opt`` (built with ``formats=RecordingFormat(...)``) and record them.

    ``keep_reads=False`` leaves out the perturbed weights of every forward (``2m`` copies of
    the weights per step), for long runs of large layers: only the memory is compared then.
    """
    found = [f for f in opt.formats if isinstance(f, RecordingFormat) and f.segments]
    if len(found) != 1:
        raise ValueError(
            "record needs one RecordingFormat that owns the trained integer weights: build the "
            "optimizer with formats=RecordingFormat(z_bits=8)"
        )
    fmt = found[0]
    rec = Record(engine_config(fmt, lanes, opt.queries, opt.estimator.name))
    for _ in range(steps):
        losses, reads = [], []

        def wrapped(losses: list = losses, reads: list = reads) -> Tensor:
            if keep_reads:
                reads.append(_reads(fmt))
            loss = closure()
            losses.append(float(loss.detach().float()))
            return loss

        opt.step(wrapped)
        numerators, per_seg = fmt.updates[-1] if fmt.updates else ([0] * opt.queries, {})
        rec.steps.append(
            Step(losses, reads, numerators, _group_updates(fmt, per_seg), flat_weights(fmt))
        )
    return rec


def _group_updates(fmt: FixedPointFormat, per_seg: dict) -> list[tuple[int, int]]:
    """``(m_u, k_u)`` per scale group; ``(0, 0)`` (no change) for a segment that was skipped."""
    out = []
    for k, eps_q in enumerate(fmt.eps_q):
        ms, ks = per_seg.get(k, ([0], [0]))
        rows = eps_q.numel()
        out += [(ms[r if len(ms) > 1 else 0], ks[r if len(ks) > 1 else 0]) for r in range(rows)]
    return out


def _field(values: Sequence[int], width: int) -> int:
    return sum((int(v) & ((1 << width) - 1)) << (i * width) for i, v in enumerate(values))


def _rows(words: list[int], lanes: int, bits: int) -> np.ndarray:
    """Packed rows of signed ``bits``-bit lanes, flat (int64)."""
    mask, top = (1 << bits) - 1, 1 << (bits - 1)
    vals = [((w >> (j * bits)) & mask) for w in words for j in range(lanes)]
    return np.array([v - (1 << bits) if v >= top else v for v in vals], dtype=np.int64)


@dataclass
class Replay:
    """What the simulated engine did: per step, its memory and the rows it streamed."""

    memory: list[np.ndarray] = field(default_factory=list)
    streamed: list[np.ndarray] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)
    #: seconds: ``run_s`` (the simulation), ``compile_s`` (the compiled simulator's build)
    timing: dict[str, float] = field(default_factory=dict)


def replay(engine: Engine, rec: Record, steps: int | None = None) -> Replay:
    """Run ``engine`` over the recorded steps (the losses and update factors as a host gives them)."""
    c, out = engine.config, Replay()
    todo = rec.steps[: len(rec.steps) if steps is None else steps]

    async def bench(ctx) -> None:
        for step in todo:
            await _one_step(ctx, engine, step, out)
            words = [ctx.get(engine.memory.data[r]) for r in range(c.rows)]
            out.memory.append(_rows(words, c.lanes, c.weight_bits))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    start = time.perf_counter()
    sim.run()
    out.timing["run_s"] = time.perf_counter() - start
    return out


async def _one_step(ctx, engine: Engine, step: Step, out: Replay) -> None:
    """Start one step, answer the handshakes, collect the streamed rows until the engine is idle."""
    c = engine.config
    ctx.set(engine.upd_m, _field([m for m, _ in step.upd], M_BITS))
    ctx.set(engine.upd_k, _field([k for _, k in step.upd], K_BITS))
    ctx.set(engine.coef, _field(step.numerators, COEF_BITS))
    while not ctx.get(engine.ready):
        await ctx.tick()
    ctx.set(engine.start, 1)
    await ctx.tick()
    ctx.set(engine.start, 0)
    losses, words, cycles = iter(step.losses), [], 1
    while ctx.get(engine.busy):
        if ctx.get(engine.w_valid):
            words.append(ctx.get(engine.w_out))
        ctx.set(engine.loss_valid, ctx.get(engine.loss_ready))
        if ctx.get(engine.loss_ready):
            ctx.set(engine.loss, loss_word(next(losses)))
        ctx.set(engine.coef_valid, ctx.get(engine.coef_ready))
        await ctx.tick()
        cycles += 1
    ctx.set(engine.loss_valid, 0)
    out.streamed.append(_rows(words, c.lanes, c.weight_bits))
    out.cycles.append(cycles)


def step_mismatches(rec: Record, run: Replay) -> list[list[str]]:
    """Per recorded step, its differences between the engine and the Python path, in words
    (an empty list: that step is bit-exact)."""
    problems = []
    for s, (step, mem, streamed) in enumerate(
        zip(rec.steps, run.memory, run.streamed, strict=True)
    ):
        found = []
        if not np.array_equal(mem, step.after):
            bad = np.flatnonzero(mem != step.after)
            found.append(
                f"step {s}: {bad.size} weights differ, first at {bad[0]}: engine "
                f"{mem[bad[0]]}, Python {step.after[bad[0]]}"
            )
        if step.reads and not np.array_equal(streamed, np.concatenate(step.reads)):
            found.append(f"step {s}: the perturbed stream differs from the layers' reads")
        problems.append(found)
    return problems


def mismatches(rec: Record, run: Replay) -> list[str]:
    """Every difference between the engine and the Python path, in words (empty: bit-exact)."""
    return [p for step in step_mismatches(rec, run) for p in step]
