"""Cost of the ZO engine per generator: synthesis, the generator's share, energy per step.

For each generator of :mod:`.zsources` the same :class:`~.engine.Engine` (one layer
of ``dim`` 16-bit weights, sign-3-SPSA) is synthesized twice: with the generator,
and with :class:`PortSource`, whose ``z`` comes from input ports (no logic). The
difference is what the generator costs inside the engine (its ``2 + m`` cursors
and what synthesis shares with them); its share is that difference over the
engine's total.

Energy per step (:func:`step_energy`) is the gate-level activity estimate of
:mod:`.power` on :class:`Harness` (the engine with a tiny host that starts steps at
once and answers the loss handshakes). A step's passes repeat the same per-row work, so
the estimate simulates a short engine (``sim_rows`` rows, seeded random weights, so the
datapath toggles as with trained weights, not zeros), skips its first step (the
cursors' priming, a warm-up), averages the energy per cycle over whole steps after it,
and multiplies by the full engine's cycles per step. The generator's part is the energy
of the cells of its ``2 + m`` cursors (each module mapped apart, see
:func:`.power.activity`'s ``parts``).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from ..extras import require
from ._rtl import Generator
from .engine import K_BITS, M_BITS, Engine, EngineConfig
from .pnr import place_and_route
from .power import SIM_HINT, SimUnavailable, activity, has_sim
from .synth import CELL_NAMES, TARGET_NAMES, TARGETS, Resources, synthesize
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


def cost_config(
    lanes: int, dim: int = 16384, queries: int = 3, seed: int | None = None
) -> EngineConfig:
    """The engine of the cost table: ``dim`` 16-bit weights, one scale, QZO-FF-like constants.

    Weights start at 0, or (``seed``) drawn from a normal of standard deviation 2**12
    (a quarter of the 16-bit range's half, as weights scaled to their max-abs are),
    clipped to the range.
    """
    init = (0,) * dim
    if seed is not None:
        w = np.random.default_rng(seed).normal(0.0, 2.0**12, dim).round()
        init = tuple(int(v) for v in np.clip(w, -(2**15 - 1), 2**15 - 1))
    return EngineConfig(
        init=init,
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


#: the module pattern of the engine's generator copies (``Harness`` > ``engine`` > ``cursor<i>``)
CURSORS = "top.engine.cursor*"


@dataclass(frozen=True)
class StepEnergy:
    """Energy of one step, estimated on a short engine (see the module docstring).

    Attributes:
        per_cycle: mean energy per cycle (units of :data:`.power.WEIGHTS`) over whole steps.
        generator_per_cycle: the part of it in the generator's ``2 + m`` cursors.
        sim_rows: rows of the simulated engine; ``sim_steps``: whole steps averaged over;
        warmup: cycles simulated before counting (reset, priming and one step).
    """

    per_cycle: float
    generator_per_cycle: float
    sim_rows: int
    sim_steps: int
    warmup: int


def step_energy(
    key: str, lanes: int, queries: int = 3, sim_rows: int = 64, sim_steps: int = 2, seed: int = 0
) -> StepEnergy:
    """Energy per cycle of the engine with generator ``key`` in steady state (whole steps)."""
    if sim_rows < 2 or sim_steps < 1:
        raise ValueError(f"Invalid sim_rows={sim_rows}, sim_steps={sim_steps}: use >= 2 and >= 1")
    config = cost_config(lanes, sim_rows * lanes, queries, seed)
    warmup = config.cycles_per_step()
    cycles = warmup + sim_steps * config.cycles_per_step()
    act = activity(
        Harness(config, z_source(key, lanes)),
        cycles,
        gate_multipliers=True,
        since=warmup,
        parts={"generator": CURSORS},
    )
    return StepEnergy(act.energy["total"], act.parts["generator"], sim_rows, sim_steps, warmup)


@dataclass
class EngineRow:
    """One generator's engine: resources with and without it, energy per step."""

    key: str
    family: str
    lanes: int
    engine: Resources
    baseline: Resources
    cycles_per_step: int
    energy: StepEnergy | None = None
    fmax_mhz: float | None = None  #: after place and route (``pnr=True``, ECP5 / iCE40)
    utilization: dict[str, tuple[int, int]] | None = None  #: nextpnr's (used, available)
    seconds: float | None = None  #: wall time of this row's measurements
    pnr_error: str | None = None  #: why place and route failed (e.g. the device is too small)

    @property
    def energy_per_step(self) -> float | None:
        """The engine's energy per step: energy per cycle times the step's cycles."""
        return None if self.energy is None else self.energy.per_cycle * self.cycles_per_step

    @property
    def generator_energy_per_step(self) -> float | None:
        """The generator's (its cursors') part of :attr:`energy_per_step`."""
        e = self.energy
        return None if e is None else e.generator_per_cycle * self.cycles_per_step

    def share(self, what: str) -> float | None:
        """The generator's share of the engine's ``what`` (``"luts"``, ..., or ``"energy"``)."""
        total, gen = amounts(self, what)
        return None if not total or gen is None else gen / total

    def as_dict(self) -> dict:
        out = asdict(self)
        out["energy_per_step"] = self.energy_per_step
        out["generator_energy_per_step"] = self.generator_energy_per_step
        out["share"] = {w: self.share(w) for w in ("luts", "ffs", "bram", "dsp", "energy")}
        return out


def amounts(row: EngineRow, what: str) -> tuple[float | None, float | None]:
    """``(engine, generator)`` amounts of ``what``: a resource (generator = engine minus the
    engine without it) or ``"energy"`` per step (generator = its cursors' cells)."""
    if what == "energy":
        return row.energy_per_step, row.generator_energy_per_step
    total = getattr(row.engine, what)
    return total, total - getattr(row.baseline, what)


def measure(
    key: str,
    lanes: int,
    target: str,
    dim: int = 16384,
    cycles: int = 0,
    queries: int = 3,
    pnr: bool = False,
    sim_rows: int = 64,
) -> EngineRow:
    """Synthesize the engine with generator ``key`` and without.

    ``cycles > 0`` adds the energy per step (simulated over whole steps of a ``sim_rows``-row
    engine, at least ``cycles`` cycles counted); ``pnr`` the fmax and utilization of the
    placed and routed engine (:data:`.pnr.DEVICES`).
    """
    t0 = time.time()
    config = cost_config(lanes, dim, queries)
    source = z_source(key, lanes)
    engine = synthesize(Engine(config, source), target)
    baseline = _baseline(lanes, dim, queries, target)
    row = EngineRow(key, source.family, lanes, engine, baseline, config.cycles_per_step())
    if cycles > 0:
        if not has_sim():
            raise SimUnavailable(SIM_HINT)
        per_step = cost_config(lanes, sim_rows * lanes, queries).cycles_per_step()
        row.energy = step_energy(key, lanes, queries, sim_rows, -(-cycles // per_step))
    if pnr:
        try:
            placed = place_and_route(Harness(config, source, fold=True), target)
            row.fmax_mhz, row.utilization = placed.fmax_mhz, placed.utilization
        except RuntimeError as err:  # nextpnr refuses a design that does not fit
            lines = [ln for ln in str(err).splitlines() if "ERROR" in ln] or [str(err)]
            row.pnr_error = lines[0][-300:]
    row.seconds = round(time.time() - t0, 1)
    print(f"{key} at {lanes} lanes ({target}): {row.seconds} s", file=sys.stderr, flush=True)
    return row


@lru_cache(maxsize=16)
def _baseline(lanes: int, dim: int, queries: int, target: str) -> Resources:
    """The engine with ``z`` on ports (the same for every generator: synthesized once)."""
    return synthesize(Engine(cost_config(lanes, dim, queries), port_source(lanes)), target)


def cheapest(rows: list[EngineRow], family: str, what: str) -> EngineRow | None:
    """The row of ``family`` whose engine needs the least ``what`` (``None``: no such row)."""
    have = [r for r in rows if r.family == family and amounts(r, what)[0] is not None]
    return min(have, key=lambda r: amounts(r, what)[0]) if have else None


def pezo_saving(rows: list[EngineRow], what: str) -> dict[str, float]:
    """PeZO's change vs the cheapest Gaussian in ``what``, engine and generator only, in percent.

    The cheapest of each family by the engine's amount (``what``: a resource or ``"energy"``).
    """
    gauss, pezo = cheapest(rows, "Gaussian", what), cheapest(rows, "PeZO", what)
    if gauss is None or pezo is None:
        return {}
    (g_eng, g_gen), (p_eng, p_gen) = amounts(gauss, what), amounts(pezo, what)
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
        "| cycles/step | energy/step | gen. energy share | fmax (MHz) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, sl, sf, se = r.engine, r.share("luts"), r.share("ffs"), r.share("energy")
        energy = "-" if r.energy_per_step is None else f"{r.energy_per_step:.4g}"
        fmax = "-" if r.fmax_mhz is None else f"{r.fmax_mhz:.1f}"
        fmax = "did not place" if r.pnr_error else fmax
        lines.append(
            f"| {r.key} | {r.family} | {r.lanes} | {e.luts} | {e.ffs} | {e.bram:g} | {e.dsp} "
            f"| {100 * (sl or 0):.1f}% | {100 * (sf or 0):.1f}% | {r.cycles_per_step} | {energy} "
            f"| {'-' if se is None else f'{100 * se:.1f}%'} | {fmax} |"
        )
    for lanes in sorted({r.lanes for r in rows}):
        group = [r for r in rows if r.lanes == lanes]
        for what in ("luts", "ffs", "energy"):
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
    sim_rows: int = 64,
):
    """Measure every ``(key, lanes)`` and write ``engine.md``, ``engine.png``, ``engine.json``."""
    import json
    from pathlib import Path

    from .synth import TARGETS, yosys_version

    t0 = time.time()
    rows = [measure(k, n, target, dim, cycles, queries, pnr, sim_rows) for n in lanes for k in keys]
    path = Path(out) / "engine.md"
    path.write_text(_table(rows, target, dim, queries))
    _chart(rows, path.with_suffix(".png"))
    data = {
        "target": target,
        "script": TARGETS[target],
        "yosys": yosys_version(),
        "dim": dim,
        "queries": queries,
        "energy_model": None if cycles <= 0 else ENERGY_NOTE.format(sim_rows=sim_rows),
        "seconds": round(time.time() - t0, 1),
        "rows": [r.as_dict() for r in rows],
        "pezo_saving": {
            str(n): {
                w: pezo_saving([r for r in rows if r.lanes == n], w)
                for w in ("luts", "ffs", "energy")
            }
            for n in lanes
        },
    }
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    return path, rows


ENERGY_NOTE = (
    "edgezo.hw.power activity model (relative units: one LUT-output toggle), generic 6-LUT "
    "netlist with multipliers in LUTs, each module mapped apart; a {sim_rows}-row engine "
    "with seeded random weights (std 2**12) simulated from reset, the first step not "
    "counted, energy per cycle averaged over whole steps after it, times cycles_per_step "
    "of the full engine; generator = cells of the 2 + m cursors"
)


# -- the docs' tables, rendered from a committed engine.json ---------------------------------
#: The generators' names in the docs' tables.
NAMES = {"boxmuller": "Box-Muller", "clt": "CLT", "lfsr": "LFSR-32", "xorshift": "xorshift32",
         "pezo-array": "PeZO array", "pezo-pool": "PeZO pool"}  # fmt: skip
#: nextpnr's name of the logic cells whose use the table shows, per target.
LOGIC_CELLS = {"ice40": "ICESTORM_LC", "ice40up": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def rows_of(data: Mapping) -> list[EngineRow]:
    """The rows of an ``engine.json``. Files of the report's first version have no ``energy``,
    ``utilization``, ``seconds`` or ``pnr_error``: those are ``None``."""

    def row(r: Mapping) -> EngineRow:
        energy, used = r.get("energy"), r.get("utilization")
        return EngineRow(
            r["key"],
            r["family"],
            r["lanes"],
            Resources(**r["engine"]),
            Resources(**r["baseline"]),
            r["cycles_per_step"],
            StepEnergy(**energy) if energy else None,
            r.get("fmax_mhz"),
            {k: (int(v[0]), int(v[1])) for k, v in used.items()} if used else None,
            r.get("seconds"),
            r.get("pnr_error"),
        )

    return [row(r) for r in data["rows"]]


def by_lanes(rows: Sequence[EngineRow]) -> Iterator[tuple[int, list[EngineRow]]]:
    """``(lanes, rows)`` per lane count, in the rows' order."""
    for lanes in dict.fromkeys(r.lanes for r in rows):
        yield lanes, [r for r in rows if r.lanes == lanes]


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _cells(res: Resources, dsp: bool) -> list[str]:
    """``res``'s LUTs, flip-flops, block RAMs (and DSPs) as table cells."""
    return [str(res.luts), str(res.ffs), f"{res.bram:g}", *([str(res.dsp)] if dsp else [])]


def _placed(row: EngineRow) -> str:
    """The fmax cell: MHz, or why nextpnr refused the design (its ``cell type``)."""
    if row.pnr_error:
        kind = re.search(r"cell type '(\w+)'", row.pnr_error)
        return f"does not place (out of {kind.group(1)})" if kind else "does not place"
    return "-" if row.fmax_mhz is None else f"{row.fmax_mhz:.1f}"


def cost_table(data: Mapping, source: str) -> str:
    """The engine's cost per generator from an ``engine.json`` (``source``: its path, named in
    the first line), one table per lane count: the engine's LUTs, flip-flops, block RAMs and DSPs
    (no DSP column on a target that has none), the generator's share of the LUTs and flip-flops
    and, for placed designs (``--pnr``), fmax and the logic cells used. The first line says what
    was synthesized and what the engine without generator needs."""
    target, rows = data["target"], rows_of(data)
    names = CELL_NAMES[target]
    dsp = any(r.engine.dsp or r.baseline.dsp for r in rows)
    yosys = data.get("yosys", "yosys version not recorded").split(" (")[0]
    out = []
    for lanes, group in by_lanes(rows):
        base = group[0].baseline  # z on ports: the same engine for every generator
        without = ", ".join(f"{n} {names[k]}" for n, k in zip(
            _cells(base, dsp), ("luts", "ffs", "bram", "dsp"), strict=False))  # fmt: skip
        out += [
            f"From `{source}`: {TARGET_NAMES[target]} (`{data.get('script', TARGETS[target])}`, "
            f"{yosys}), {data['dim']:,} weights, sign-{data['queries']}-SPSA, {lanes} "
            f"lane{'s' if lanes != 1 else ''}. "
            f"Without generator: {without}; a step is {group[0].cycles_per_step:,} cycles.",
            "",
        ]
        head = ["generator", "family", names["luts"], "FF", names["bram"]]
        head += [names["dsp"]] if dsp else []
        head += ["generator's LUT share", "FF share"]
        logic = LOGIC_CELLS.get(target)
        placed = [r.utilization[logic] for r in group if r.utilization and logic in r.utilization]
        pnr = any(r.fmax_mhz is not None or r.pnr_error for r in group)
        if pnr:
            total = f" (of {placed[0][1]})" if placed else ""
            head += ["fmax (MHz)", f"logic cells used{total}"]
        out += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        for r in group:
            cells = [NAMES.get(r.key, r.key), r.family, *_cells(r.engine, dsp)]
            cells += [_share(r.share("luts")), _share(r.share("ffs"))]
            if pnr:
                used = r.utilization.get(logic) if r.utilization and logic else None
                cells += [_placed(r), "-" if used is None else str(used[0])]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out[:-1]) + "\n"


def energy_table(data: Mapping, source: str) -> str:
    """The engine's energy per step per generator from an ``engine.json`` made with ``--cycles``
    (:func:`step_energy`): per step (millions of the activity model's units), per cycle, the
    generator's part per cycle and its share; one table per lane count."""
    rows = [r for r in rows_of(data) if r.energy is not None]
    if not rows:
        raise ValueError(
            f"{source} has no energy per step: make it with `edgezo hw report --engine "
            "--cycles N` (N > 0)"
        )
    out = []
    for lanes, group in by_lanes(rows):
        e = group[0].energy
        out += [
            f"From `{source}` ({lanes} lanes): the activity model's energy per cycle "
            f"(`edgezo.hw.power`, relative units) of a {e.sim_rows}-row engine over "
            f"{e.sim_steps} whole steps after a {e.warmup}-cycle warm-up, times the full "
            f"engine's {group[0].cycles_per_step:,} cycles per step; the generator's part is "
            "the energy of its cursors' cells.",
            "",
            "| generator | energy / step (millions) | per cycle | generator's part "
            "| generator's share |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in group:
            assert r.energy is not None and r.energy_per_step is not None
            out.append(
                f"| {NAMES.get(r.key, r.key)} | {r.energy_per_step / 1e6:.1f} "
                f"| {r.energy.per_cycle:.0f} | {r.energy.generator_per_cycle:.0f} "
                f"| {_share(r.share('energy'))} |"
            )
        out.append("")
    return "\n".join(out[:-1]) + "\n"


def savings_table(files: Sequence[tuple[str, Mapping]]) -> str:
    """PeZO against the Gaussians across ``engine.json`` files (``(path, data)`` each): per file
    and lane count the change of LUTs and flip-flops of the cheapest PeZO design against the
    cheapest Gaussian (:func:`pezo_saving`, each by the engine's count), as generators alone and
    as whole engines. A row of a target other than the first file's names it."""
    first = files[0][1]["target"]
    lines, pairs = [], {}
    for _, data in files:
        target, rows = data["target"], rows_of(data)
        for lanes, group in by_lanes(rows):
            s = {w: pezo_saving(group, w) for w in ("luts", "ffs")}
            for w in s:
                pezo, gauss = cheapest(group, "PeZO", w), cheapest(group, "Gaussian", w)
                if pezo and gauss:
                    pairs[pezo.key, gauss.key] = True
            cells = [
                f"{s[w][k]:+.1f}%" if s[w] else "-" for w in s for k in ("generator", "engine")
            ]
            label = f"{lanes}" if target == first else f"{lanes} ({TARGET_NAMES[target]})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    which = "; ".join(f"{NAMES.get(p, p)} against {NAMES.get(g, g)}" for p, g in pairs)
    sources = ", ".join(f"`{path}`" for path, _ in files)
    return "\n".join([
        f"From {sources}: PeZO's cheapest design against the cheapest Gaussian, each by the "
        f"engine's count ({which or 'none'}{' in every row' if len(pairs) == 1 else ''}):",
        "",
        "| lanes | LUTs, generators alone | LUTs, engine | FFs, generators alone | FFs, engine |",
        "|---:|---:|---:|---:|---:|",
        *lines,
    ]) + "\n"  # fmt: skip


def _stack_result(row: Mapping) -> str:
    """The result cell of :func:`cxxrtl_table`: bit-exact steps of steps, and whether every
    step took the cycles ``cycles_per_step`` predicts."""
    exact, steps = row["exact_steps"], row["steps"]
    text = f"bit-exact, {exact} of {steps} steps" if exact == steps else (
        f"{exact} of {steps} steps bit-exact")  # fmt: skip
    return text if row["cycles_as_predicted"] else f"{text}; cycles differ from the prediction"


def cxxrtl_table(data: Mapping, source: str) -> str:
    """The compiled engine's long run per generator from ``benchmarks/hw_engine_cxxrtl.py``'s
    JSON (``source``: where it comes from, in Markdown): the load when the generator began, the
    compile, run and whole-run seconds, cycles per second and the bit-exact steps."""
    config, rows = data["config"], data["rows"]
    first = rows[0]
    compiled = ("every design compiled afresh" if config["compiled_fresh"]
                else "designs from the compile cache (compile 0: cached)")  # fmt: skip
    lines = [
        f"From {source}: per generator, {config['steps']} steps of "
        f"sign-{config['queries']}-SPSA on {first['weights']:,} weights recorded with the "
        f"fixed-point path and replayed by the {config['lanes']}-lane engine compiled with yosys "
        f"CXXRTL and g++ ({compiled}), {first['cycles_per_step']:,} cycles a step, "
        f"{first['cycles']:,} in all; one generator after the other. *Whole run*: recording, "
        "RTLIL, yosys, compiling, running and comparing; *load*: the one-minute load average "
        "when the generator began.",
        "",
        "| generator | load | compile (s) | run (s) | cycles / s | whole run (s) | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {NAMES.get(r['key'], r['key'])} (`{r['key']}`) | {r['loadavg_at_start']:.1f} "
            f"| {r['compile_s']:.0f} | {r['run_s']:.1f} | {r['cycles_per_s']:,} "
            f"| {r['total_s']:.0f} | {_stack_result(r)} |"
        )
    return "\n".join(lines) + "\n"
