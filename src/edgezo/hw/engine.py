"""The ZO update engine in RTL: weights in block RAM, perturbed reads, the fused integer update.

One step of sign-m-SPSA (or central SPSA with the coefficient on a port) on integer
weights, with the formulas of edgezo's fixed-point path
(:mod:`edgezo.formats.fixedpoint.integer`), bit for bit:

* perturbed read, streamed to the inference accelerator on ``w_out`` (``lanes`` weights
  per clock, ``w_valid``)::

      w_q(+/-) = sat_b(requant_dz(w_q * 1_q +/- eps_q * z_q))

  The stored ``w_q`` is not written while perturbing (as in edgezo, perturb and
  restore are exact by construction): the ``-2 eps_q z`` move of the central
  estimator is a read at net ``-1``, and "restore" costs nothing;
* the update, fused into one read-modify-write pass::

      w_q <- sat_b(w_q - ((g_q * m_u + 2**(k_u-1)) >> k_u)),   g_q = sum_i n_i z_q,i

  ``n_i = sign(L+_i - L-_i)`` from the losses on the ``loss`` port (``estimator="sign"``),
  or 8-bit coefficients on the ``coef`` port (``"central"``: the host quantizes
  ``(L+ - L-) / 2 eps`` as :func:`~edgezo.formats.fixedpoint.integer_coefficients` does);
  ``m_u, k_u`` (one pair per scale group: ``lr * delta * dz / dw`` as
  :class:`~edgezo.formats.fixedpoint.Requant`) arrive on ``upd_m`` / ``upd_k`` with ``start``.

Schedule of a step (``R = d / lanes`` rows): for each query ``i``, a ``+`` pass and a ``-``
pass of ``R`` cycles (each followed by a loss handshake: ``loss_ready`` until
``loss_valid``), then the update pass (``R`` cycles): ``(2 m + 1) R`` cycles plus the
handshakes and a few pipeline cycles.

``z`` comes from ``2 + m`` copies ("cursors") of one generator of :mod:`edgezo.hw`,
each the unmodified, verified RTL with a clock enable: the ``+`` cursor reads window
``i`` in the ``+`` pass, the ``-`` cursor the same window one pass later, and
update cursor ``i`` reads window ``i`` during the update, skipping the other
``m - 1`` windows of each step in the background. A generator that only moves
forward needs no rewind and no jump logic; the price, ``m + 1`` extra generators,
is part of what the engine-level cost measures.

Layout: flat weight ``e`` (the fixed-point path's order over all trained tensors) is lane
``e % lanes`` of memory row ``e // lanes``; ``d`` must be a multiple of ``lanes`` (then every
window starts on a clock boundary of the generator). Scale groups (a tensor, or an
output channel with per-channel scales) are contiguous ranges with their own ``eps_q``
and ``(m_u, k_u)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..extras import require
from .zsources import ZSource

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value, signed  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.memory import Memory  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

ESTIMATORS = ("sign", "central")
#: bits of each update multiplier ``m_u`` (signed; Requant's 15 bits plus sign) and shift ``k_u``
M_BITS, K_BITS = 16, 6
#: bits of a loss on the port (signed, order-preserving: see :func:`.engine_cosim.loss_word`)
LOSS_BITS = 32
#: bits of an update coefficient ``n_i`` (signed)
COEF_BITS = 8


@dataclass(frozen=True)
class EngineConfig:
    """What the engine is built for: the weights, the scales, and the step's constants.

    Attributes:
        init: the initial integer weights ``w_q`` (flat, the fixed-point path's order).
        weight_bits: ``b``; weights saturate to ``+/-(2**(b-1) - 1)``.
        lanes: weights per clock.
        queries: ``m``.
        one: ``1_q``, the constant 1.0 in z's format.
        dz_m, dz_k: ``requant_dz`` (``m / 2**k ~ dz``).
        groups: ``(start, eps_q)`` per scale group, starts increasing from 0.
        estimator: ``"sign"`` (losses on the port) or ``"central"`` (coefficients on the port).
    """

    init: tuple[int, ...]
    weight_bits: int
    lanes: int
    queries: int
    one: int
    dz_m: int
    dz_k: int
    groups: tuple[tuple[int, int], ...]
    estimator: str = "sign"

    def __post_init__(self) -> None:
        d, lanes = len(self.init), self.lanes
        if lanes < 1 or d % lanes:
            raise ValueError(
                f"Invalid lanes={lanes} for {d} weights: use a divisor of the weight count "
                "(each perturbation window must start on a clock boundary of the generator)"
            )
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"Invalid estimator {self.estimator!r}; choose one of {ESTIMATORS}")
        starts = [s for s, _ in self.groups]
        if not starts or starts[0] != 0 or sorted(set(starts)) != starts or starts[-1] >= d:
            raise ValueError(f"Invalid groups {starts}: starts must increase from 0 and be < {d}")
        if not 1 <= self.queries <= 8:
            raise ValueError(f"Invalid queries={self.queries}: use 1..8")
        qmax = (1 << (self.weight_bits - 1)) - 1
        if any(abs(w) > qmax for w in self.init):
            raise ValueError(f"an initial weight exceeds the {self.weight_bits}-bit range")

    @property
    def rows(self) -> int:
        """Memory rows ``R = d / lanes`` (clock cycles of one pass)."""
        return len(self.init) // self.lanes

    def cycles_per_step(self) -> int:
        """Clock cycles of one step when every handshake is answered at once.

        ``2m + 1`` passes of ``R + 1`` cycles (the last row drains), one cycle per loss
        handshake (``2m``), one for the update cursors' check and one for ``start``.
        """
        return (2 * self.queries + 1) * (self.rows + 1) + 2 * self.queries + 2


def _packed(values: Sequence[int], width: int) -> int:
    return sum((int(v) & ((1 << width) - 1)) << (k * width) for k, v in enumerate(values))


def _lanes_of(word: Value, lanes: int, width: int) -> list[Value]:
    return [word[j * width : (j + 1) * width].as_signed() for j in range(lanes)]


def _saturate(x: Value, bits: int) -> Value:
    qmax = (1 << (bits - 1)) - 1
    return Mux(x > qmax, qmax, Mux(x < -qmax, -qmax, x))


class Engine(wiring.Component):
    """The ZO update engine of one layer stack (see the module docstring).

    Args:
        config: weights, scales and constants (:class:`EngineConfig`).
        source: the generator (:func:`.zsources.z_source` at ``config.lanes`` lanes).

    Ports: ``start`` (with ``upd_m``/``upd_k``: one 16-bit / 6-bit field per group),
    ``busy``; ``w_out``/``w_valid``/``w_pass`` (the perturbed stream: ``w_pass`` is 0 for
    ``+``, 1 for ``-``); ``loss``/``loss_valid``/``loss_ready``; ``coef``/``coef_valid``/
    ``coef_ready`` (``central`` only: one 8-bit ``n_i`` per query).
    """

    def __init__(self, config: EngineConfig, source: ZSource) -> None:
        self.config, self.source = config, source
        self.cursors = [source.make() for _ in range(2 + config.queries)]
        self.z_bits = self.cursors[0].lane_width
        if self.cursors[0].lanes != config.lanes:
            raise ValueError(
                f"source {source.key!r} gives {self.cursors[0].lanes} lanes, not {config.lanes}"
            )
        c, g = config, len(config.groups)
        self.memory = Memory(
            shape=c.lanes * c.weight_bits,
            depth=c.rows,
            init=[
                _packed(c.init[r * c.lanes : (r + 1) * c.lanes], c.weight_bits)
                for r in range(c.rows)
            ],
            attrs={"ram_style": "block"},
        )
        # a generator fed from outside (engine_report.PortSource) gets its z from top ports
        fed = {
            f"z_in{i}": In(len(gen.z)) for i, gen in enumerate(self.cursors) if hasattr(gen, "z")
        }
        super().__init__(
            {
                **fed,
                "start": In(1),
                "upd_m": In(g * M_BITS),
                "upd_k": In(g * K_BITS),
                "ready": Out(1),
                "busy": Out(1),
                "w_out": Out(c.lanes * c.weight_bits),
                "w_valid": Out(1),
                "w_pass": Out(1),
                "loss": In(signed(LOSS_BITS)),
                "loss_valid": In(1),
                "loss_ready": Out(1),
                "coef": In(c.queries * COEF_BITS),
                "coef_valid": In(1),
                "coef_ready": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self.config
        m.submodules.memory = self.memory
        s = _State(m, c, self.z_bits, [g.latency for g in self.cursors])
        z = self._cursors(m, s)
        self._datapath(m, s, z)
        self._control(m, s)
        return m

    # -- the generators --------------------------------------------------------------
    def _cursors(self, m: Module, s: _State) -> list[list[Value]]:
        """Cursor outputs (``z`` lanes) and their enables: in use, or skipping in the background."""
        c, outs = self.config, []
        for i, gen in enumerate(self.cursors):
            en = Signal(name=f"en{i}")
            m.submodules[f"cursor{i}"] = EnableInserter(en)(gen)
            if hasattr(self, f"z_in{i}"):
                m.d.comb += gen.z.eq(getattr(self, f"z_in{i}"))
            in_use = s.valid & (s.kind == min(i, 2)) if i < 2 else s.valid & (s.kind == 2)
            m.d.comb += en.eq(in_use | (s.skip[i] != 0))
            with m.If(~in_use & (s.skip[i] != 0)):
                m.d.sync += s.skip[i].eq(s.skip[i] - 1)
            outs.append(_lanes_of(gen.out, c.lanes, self.z_bits))
        return outs

    # -- arithmetic --------------------------------------------------------------------
    def _group_values(self, s: _State, j: int) -> tuple[Value, Value, Value]:
        """``(eps_q, m_u, k_u)`` of lane ``j`` in the row being computed (``s.row_d``)."""
        c = self.config
        eps, mu, ku = Const(c.groups[0][1]), s.upd_m[0], s.upd_k[0]
        for g, (start, eps_g) in enumerate(c.groups[1:], 1):
            first_row = -(-(start - j) // c.lanes)  # rows r with r * lanes + j >= start
            here = s.row_d >= first_row
            eps, mu, ku = (
                Mux(here, eps_g, eps),
                Mux(here, s.upd_m[g], mu),
                Mux(here, s.upd_k[g], ku),
            )
        return eps, mu, ku

    def _datapath(self, m: Module, s: _State, z: list[list[Value]]) -> None:
        """Perturbed outputs (registered) and the update's write-back, lane by lane."""
        c = self.config
        read, write = s.read, s.write
        w = _lanes_of(read.data, c.lanes, c.weight_bits)
        perturbed, updated = [], []
        half_dz = 1 << (c.dz_k - 1) if c.dz_k > 0 else 0
        for j in range(c.lanes):
            eps, mu, ku = self._group_values(s, j)
            zj = Mux(s.kind == 0, z[0][j], z[1][j])
            prod = zj * eps
            acc = w[j] * c.one + Mux(s.kind == 0, prod, -prod)
            perturbed.append(_saturate((acc * c.dz_m + half_dz) >> c.dz_k, c.weight_bits))
            g = sum((s.n[i] * z[2 + i][j] for i in range(c.queries)), Const(0))
            half = (Const(1, 1) << ku) >> 1  # 2**(k-1), 0 for k = 0
            change = (g * mu + half) >> ku
            updated.append(_saturate(w[j] - change, c.weight_bits))
        m.d.sync += [
            self.w_out.eq(_packed_value(perturbed, c.weight_bits)),
            self.w_valid.eq(s.valid & (s.kind != 2)),
            self.w_pass.eq(s.kind == 1),
        ]
        m.d.comb += [
            write.addr.eq(s.row_d),
            write.data.eq(_packed_value(updated, c.weight_bits)),
            write.en.eq(Mux(s.valid & (s.kind == 2), (1 << len(write.en)) - 1, 0)),
        ]

    # -- control -------------------------------------------------------------------------
    def _control(self, m: Module, s: _State) -> None:
        """The FSM: idle, the passes with their loss handshakes, the update, back to idle."""
        c = self.config
        m.d.comb += s.read.addr.eq(s.row)
        m.d.sync += [s.valid.eq(0), s.row_d.eq(s.row)]
        with m.FSM(name="engine") as fsm:
            with m.State("IDLE"):
                primed = (s.skip[0] == 0) & (s.skip[1] == 0)
                m.d.comb += self.ready.eq(primed)
                with m.If(self.start & primed):
                    m.d.sync += [s.q.eq(0), s.kind.eq(0), s.row.eq(0)]
                    for g in range(len(c.groups)):
                        m.d.sync += [
                            s.upd_m[g].eq(self.upd_m[g * M_BITS : (g + 1) * M_BITS]),
                            s.upd_k[g].eq(self.upd_k[g * K_BITS : (g + 1) * K_BITS]),
                        ]
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.sync += [s.valid.eq(1), s.row.eq(s.row + 1)]
                with m.If(s.row == c.rows - 1):
                    m.next = "DRAIN"
            with m.State("DRAIN"):  # the last row's data is computed in this cycle
                m.d.sync += s.row.eq(0)
                m.next = "LOSS"
                with m.If(s.kind == 2):
                    m.d.sync += [k.eq((c.queries - 1) * c.rows) for k in s.skip[2:]]
                    m.next = "IDLE"
            self._handshakes(m, s)
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

    def _handshakes(self, m: Module, s: _State) -> None:
        """States that wait for the outside: a loss after each pass, coefficients, the cursors."""
        c = self.config
        with m.State("LOSS"):
            m.d.comb += self.loss_ready.eq(1)
            with m.If(self.loss_valid & (s.kind == 0)):
                m.d.sync += [s.lplus.eq(self.loss), s.kind.eq(1)]
                m.next = "PASS"
            with m.Elif(self.loss_valid):
                diff = s.lplus - self.loss
                for i, n in enumerate(s.n):
                    with m.If(s.q == i):
                        m.d.sync += n.eq(Mux(diff > 0, 1, Mux(diff < 0, -1, 0)))
                m.d.sync += [s.q.eq(s.q + 1), s.kind.eq(0)]
                m.next = "PASS"
                with m.If(s.q == c.queries - 1):
                    m.next = "COEF" if c.estimator == "central" else "CURSORS"
        with m.State("COEF"):
            m.d.comb += self.coef_ready.eq(1)
            with m.If(self.coef_valid):
                fields = [self.coef[i * COEF_BITS : (i + 1) * COEF_BITS] for i in range(c.queries)]
                m.d.sync += [n.eq(f) for n, f in zip(s.n, fields, strict=True)]
                m.next = "CURSORS"
        done = sum((k != 0 for k in s.skip[2:]), Const(0)) == 0
        with m.State("CURSORS"), m.If(done):  # the update cursors finish skipping the other windows
            m.d.sync += s.kind.eq(2)
            m.next = "PASS"


def _packed_value(values: list[Value], width: int) -> Value:
    return Cat(*[v[:width] for v in values])


class _State:
    """The engine's registers and memory ports (one place, so the parts of ``elaborate`` share them)."""

    def __init__(self, m: Module, c: EngineConfig, z_bits: int, latencies: list[int]) -> None:
        self.read = m.submodules.memory.read_port()
        self.write = m.submodules.memory.write_port()
        rows = max(c.rows, 2)
        self.row = Signal(range(rows), name="row")
        self.row_d = Signal(range(rows), name="row_d")
        self.valid = Signal(name="valid")  # read data of row_d is on the port this cycle
        self.kind = Signal(2, name="kind")  # 0: + pass, 1: - pass, 2: update
        self.q = Signal(range(c.queries + 1), name="q")
        self.lplus = Signal(signed(LOSS_BITS), name="lplus")
        self.n = [Signal(signed(COEF_BITS), name=f"n{i}") for i in range(c.queries)]
        self.upd_m = [Signal(signed(M_BITS), name=f"m_u{g}") for g in range(len(c.groups))]
        self.upd_k = [Signal(K_BITS, name=f"k_u{g}") for g in range(len(c.groups))]
        # cycles each cursor still runs in the background: its latency (priming), and
        # for update cursor i the i windows before its first one
        top = c.queries * c.rows + max(latencies) + 1
        inits = [lat + max(i - 2, 0) * c.rows for i, lat in enumerate(latencies)]
        self.skip = [Signal(range(top), init=v, name=f"skip{i}") for i, v in enumerate(inits)]
