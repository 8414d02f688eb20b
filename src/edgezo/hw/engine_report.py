"""Cost of the ZO engine per generator: synthesis, the generator's share, energy per step.

For each generator of :mod:`.zsources` the same :class:`~.engine.Engine` (one layer
of ``dim`` 16-bit weights, sign-3-SPSA) is synthesized twice: with the generator,
and with :class:`PortSource`, whose ``z`` comes from input ports (no logic). The
difference is what the generator costs inside the engine (its ``2 + m`` cursors
and what synthesis shares with them); its share is that difference over the
engine's total. Energy per step is the gate-level activity estimate of
:mod:`.power` per cycle, on :class:`Harness` (the engine with a tiny host that
starts steps and answers the loss handshakes), times the step's cycles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from ..extras import require
from ._rtl import Generator
from .engine import K_BITS, M_BITS, Engine, EngineConfig
from .power import activity, has_sim
from .synth import Resources, synthesize
from .zsources import Z_BITS, ZSource, z_source

require("amaranth", "hw", needed_by="edgezo.hw")  # first: a missing extra names itself
from amaranth.hdl import Const, Module, Mux, Signal  # noqa: E402
from amaranth.lib.wiring import In  # noqa: E402


class PortSource(Generator):
    """``z`` from an input port: the engine without a generator (the cost baseline).

    The :class:`~.engine.Engine` brings each cursor's ``z`` out as a top-level input
    ``z_in<i>``, so synthesis cannot take ``z`` for a constant.
    """

    def __init__(self, lanes: int) -> None:
        super().__init__(lanes, Z_BITS, {"z": In(lanes * Z_BITS)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.out.eq(self.z)
        return m


def port_source(lanes: int) -> ZSource:
    """A :class:`~.zsources.ZSource` whose cursors are :class:`PortSource` (no direction source)."""
    return ZSource("ports", "none", "z on input ports", None, lambda: PortSource(lanes))  # type: ignore[arg-type]


def cost_config(lanes: int, dim: int = 16384, queries: int = 3) -> EngineConfig:
    """The engine of the cost table: ``dim`` 16-bit weights, one scale, QZO-FF-like constants."""
    return EngineConfig(
        init=(0,) * dim,
        weight_bits=16,
        lanes=lanes,
        queries=queries,
        one=74,
        dz_m=28379,
        dz_k=21,
        groups=((0, 100),),
    )


class Harness(Generator):
    """The engine with a minimal host: starts a step whenever ready, answers every handshake.

    Losses follow a Weyl sequence (so the signs vary); ``out`` is the engine's ``w_out``
    (``lanes`` weights of ``weight_bits``), zero off the stream. Used for gate-level
    simulation, where every input is tied low. ``fold=True`` XORs the lanes into one
    ``weight_bits`` output (every bit stays observable), for place and route on few pins.
    """

    def __init__(self, config: EngineConfig, source: ZSource, fold: bool = False) -> None:
        self.engine, self.fold = Engine(config, source), fold
        super().__init__(1 if fold else config.lanes, config.weight_bits)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.engine = e = self.engine
        count = Signal(16, name="count")
        with m.If(e.loss_ready):
            m.d.sync += count.eq(count + 1)
        groups = len(e.config.groups)
        m.d.comb += [
            e.start.eq(e.ready),
            e.upd_m.eq(Const(sum(7 << (g * M_BITS) for g in range(groups)), groups * M_BITS)),
            e.upd_k.eq(Const(sum(3 << (g * K_BITS) for g in range(groups)), groups * K_BITS)),
            e.loss.eq((count * 0x9E37)[:16]),
            e.loss_valid.eq(e.loss_ready),
            e.coef_valid.eq(e.coef_ready),
        ]
        stream = Mux(e.w_valid, e.w_out, 0)  # rows off the stream are don't-care
        if self.fold:
            b = e.config.weight_bits
            lanes = [stream[j * b : (j + 1) * b] for j in range(e.config.lanes)]
            stream = lanes[0]
            for lane in lanes[1:]:
                stream = stream ^ lane
        m.d.comb += self.out.eq(stream)
        return m


@dataclass
class EngineRow:
    """One generator's engine: resources with and without it, energy per step."""

    key: str
    family: str
    lanes: int
    engine: Resources
    baseline: Resources
    cycles_per_step: int
    energy_per_step: float | None
    fmax_mhz: float | None = None  #: after place and route (``pnr=True``, ECP5 / iCE40)

    def share(self, what: str) -> float | None:
        """The generator's share of the engine's ``what`` (``"luts"``, ``"ffs"``, ...)."""
        total = getattr(self.engine, what)
        return None if not total else (total - getattr(self.baseline, what)) / total

    def as_dict(self) -> dict:
        out = asdict(self)
        out["share"] = {w: self.share(w) for w in ("luts", "ffs", "bram", "dsp")}
        return out


def measure(
    key: str,
    lanes: int,
    target: str,
    dim: int = 16384,
    cycles: int = 0,
    queries: int = 3,
    pnr: bool = False,
) -> EngineRow:
    """Synthesize the engine with generator ``key`` and without; ``cycles > 0`` adds energy,
    ``pnr`` the fmax of the placed and routed engine (ECP5 / iCE40 only)."""
    config = cost_config(lanes, dim, queries)
    source = z_source(key, lanes)
    engine = synthesize(Engine(config, source), target)
    baseline = _baseline(lanes, dim, queries, target)
    energy = None
    if cycles > 0 and has_sim():
        act = activity(Harness(config, source), cycles, gate_multipliers=True)
        energy = act.energy["total"] * config.cycles_per_step()
    return EngineRow(key, source.family, lanes, engine, baseline, config.cycles_per_step(), energy)


@lru_cache(maxsize=16)
def _baseline(lanes: int, dim: int, queries: int, target: str) -> Resources:
    """The engine with ``z`` on ports (the same for every generator: synthesized once)."""
    return synthesize(Engine(cost_config(lanes, dim, queries), port_source(lanes)), target)


def pezo_saving(rows: list[EngineRow], what: str) -> dict[str, float]:
    """PeZO's change vs the best Gaussian, engine-level and generator-only, in percent."""
    gauss = [r for r in rows if r.family == "Gaussian"]
    pezo = [r for r in rows if r.family == "PeZO"]
    if not gauss or not pezo:
        return {}
    g = min(gauss, key=lambda r: getattr(r.engine, what))
    p = min(pezo, key=lambda r: getattr(r.engine, what))
    g_eng, p_eng = getattr(g.engine, what), getattr(p.engine, what)
    g_gen = g_eng - getattr(g.baseline, what)
    p_gen = p_eng - getattr(p.baseline, what)
    return {
        "engine": 100.0 * (p_eng - g_eng) / g_eng if g_eng else 0.0,
        "generator": 100.0 * (p_gen - g_gen) / g_gen if g_gen else 0.0,
    }


def _table(rows: list[EngineRow], target: str, dim: int, queries: int) -> str:
    """The engine table in Markdown: resources, the generator's share, cycles and energy per step."""
    lines = [
        f"## ZO engine per generator ({target}, sign-{queries}-SPSA, {dim} 16-bit weights)",
        "",
        "| generator | family | lanes | LUT | FF | BRAM | DSP | gen. LUT share | gen. FF share "
        "| cycles/step | energy/step | fmax (MHz) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, sl, sf = r.engine, r.share("luts"), r.share("ffs")
        energy = "-" if r.energy_per_step is None else f"{r.energy_per_step:.3g}"
        fmax = "-" if r.fmax_mhz is None else f"{r.fmax_mhz:.1f}"
        lines.append(
            f"| {r.key} | {r.family} | {r.lanes} | {e.luts} | {e.ffs} | {e.bram:g} | {e.dsp} "
            f"| {100 * (sl or 0):.1f}% | {100 * (sf or 0):.1f}% | {r.cycles_per_step} | {energy} "
            f"| {fmax} |"
        )
    for lanes in sorted({r.lanes for r in rows}):
        group = [r for r in rows if r.lanes == lanes]
        for what in ("luts", "ffs"):
            s = pezo_saving(group, what)
            if s:
                lines.append(
                    f"\nPeZO vs the cheapest Gaussian at {lanes} lanes, {what}: engine "
                    f"{s['engine']:+.1f}%, generator only {s['generator']:+.1f}%"
                )
    return "\n".join(lines) + "\n"


def _chart(rows: list[EngineRow], path) -> None:
    """Bars: engine LUTs per generator and lane count, the generator's part hatched."""
    from ..figures import save_png

    plt = require("matplotlib.pyplot", "studies")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = [f"{r.key}\n{r.lanes}L" for r in rows]
    base = [r.baseline.luts for r in rows]
    gen = [max(r.engine.luts - r.baseline.luts, 0) for r in rows]
    ax.bar(labels, base, label="engine without generator")
    ax.bar(labels, gen, bottom=base, hatch="//", label="generator (2 + m cursors)")
    ax.set_ylabel("LUTs")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, 120)
    plt.close(fig)


def write_engine_report(
    out,
    keys: list[str],
    lanes: list[int],
    target: str,
    dim: int = 16384,
    cycles: int = 0,
    queries: int = 3,
    pnr: bool = False,
):
    """Measure every ``(key, lanes)`` and write ``engine.md``, ``engine.png``, ``engine.json``."""
    import json
    from pathlib import Path

    rows = [measure(k, n, target, dim, cycles, queries, pnr) for n in lanes for k in keys]
    path = Path(out) / "engine.md"
    path.write_text(_table(rows, target, dim, queries))
    _chart(rows, path.with_suffix(".png"))
    data = {
        "target": target,
        "dim": dim,
        "queries": queries,
        "rows": [r.as_dict() for r in rows],
        "pezo_saving": {
            str(n): {w: pezo_saving([r for r in rows if r.lanes == n], w) for w in ("luts", "ffs")}
            for n in lanes
        },
    }
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    return path, rows
