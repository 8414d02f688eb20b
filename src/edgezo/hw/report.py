"""``edgezo hw report``: cost of Gaussian, uniform and PeZO generators at equal throughput.

For every design of :func:`edgezo.hw.designs.build`: synthesis with yosys for the
chosen target (cell counts from ``stat -json``), a gate-level activity estimate of
dynamic power (:mod:`edgezo.hw.power`), and a check that the synthesized netlist
produces the Python model's numbers during that simulation. Writes
``report.md`` (Markdown tables), ``report.png`` (bar chart) and ``report.json``
(every number, with the tools' raw cell counts) to ``out``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..extras import require
from ..figures import save_png
from . import designs as designs_mod
from .gaussian import CLT, BoxMuller, GaussianModel
from .power import SIM_HINT, WEIGHTS, Activity, activity, has_sim
from .synth import CELL_NAMES, TARGET_NAMES, TARGETS, Resources, synthesize, yosys_command

#: PeZO's published reductions of RNG logic vs a Gaussian generator (PAPERS.md A)
PEZO_PUBLISHED = {"luts": -48.6, "ffs": -12.7, "power": -86.0}


@dataclass
class Row:
    """One design's measured numbers."""

    key: str
    family: str
    label: str
    lanes: int
    resources: Resources
    energy: float | None
    netlist_matches: bool | None
    seconds: float


def _measure(design: designs_mod.Design, target: str, cycles: int) -> Row:
    """Synthesize one design and (when meaningful) simulate its netlist for power."""
    start = time.perf_counter()
    res = synthesize(design.gen, target)
    energy, match = None, None
    if design.power and has_sim():
        act: Activity = activity(design.gen, cycles)
        lat = design.latency
        match = bool(np.array_equal(act.outputs[lat:], design.expected(cycles - lat)))
        energy = act.energy["total"]
    return Row(
        design.key,
        design.family,
        design.label,
        design.gen.lanes,
        res,
        energy,
        match,
        time.perf_counter() - start,
    )


def measure(
    throughput: int = 16,
    bits: int = 8,
    target: str = "xilinx",
    cycles: int = 256,
    jobs: int = 2,
    **build_args,
) -> list[Row]:
    """Measure every design (``jobs`` yosys runs at a time)."""
    todo = designs_mod.build(throughput, bits, **build_args)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda d: _measure(d, target, cycles), todo))


def _pct(new: float | None, base: float | None) -> str:
    if new is None or base is None or base == 0:
        return "n/a"
    return f"{100.0 * (new - base) / base:+.1f}%"


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}" if digits or x != int(x) else f"{int(x)}"


def markdown(rows: list[Row], throughput: int, bits: int, target: str, cycles: int) -> str:
    """The report as Markdown: the cost table and the reductions vs the Gaussian baselines."""
    by_key = {r.key: r for r in rows}
    lines = [
        f"# RNG hardware cost: {throughput} numbers/cycle, {bits + 1}-bit outputs, target {target}",
        "",
        "Cells from yosys `stat -json` (`" + TARGETS[target] + "`); energy: gate-level toggle",
        f"estimate over {cycles} cycles, relative units (edgezo.hw.power; not a vendor power",
        "figure). *netlist = model*: the synthesized netlist's outputs equal the Python model's,",
        "bit for bit, over the simulated cycles.",
        "",
        "| family | design | LUT | FF | carry | BRAM | DSP | energy/cycle | netlist = model |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        x = r.resources
        ok = "n/a" if r.netlist_matches is None else ("yes" if r.netlist_matches else "**NO**")
        lines.append(
            f"| {r.family} | {r.label} | {x.luts} | {x.ffs} | {x.carry} | {_fmt(x.bram)} | {x.dsp} "
            f"| {_fmt(r.energy, 1)} | {ok} |"
        )
    lines += [
        "",
        "## PeZO vs the Gaussian baselines (change of LUTs / FFs / energy)",
        "",
        "| PeZO design | vs | LUT | FF | energy |",
        "|---|---|---:|---:|---:|",
    ]
    for key in ("pezo-pool", "pezo-pool-anyd", "pezo-array"):
        if key not in by_key:
            continue
        p = by_key[key]
        for base in ("clt", "boxmuller"):
            if base not in by_key:
                continue
            g = by_key[base]
            lines.append(
                f"| {p.label} | {g.label} | {_pct(p.resources.luts, g.resources.luts)} "
                f"| {_pct(p.resources.ffs, g.resources.ffs)} | {_pct(p.energy, g.energy)} |"
            )
    pub = PEZO_PUBLISHED
    lines += [
        f"| PeZO, published (arXiv 2504.20314) | a Gaussian generator | {pub['luts']:+.1f}% "
        f"| {pub['ffs']:+.1f}% | up to {pub['power']:+.0f}% |",
        "",
        "Block RAM and DSP blocks are not in the LUT/FF percentages: Box-Muller and the pool use",
        "block RAM, Box-Muller uses DSP multipliers (see the table above).",
        f"Energy weights (relative): {json.dumps(WEIGHTS)}.",
    ]
    if all(r.energy is None for r in rows):
        lines.append(f"Energy not estimated: {SIM_HINT}.")
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], path: Path, title: str) -> None:
    """Bar chart of LUTs, FFs and energy per design (log scale), coloured by family."""
    require("matplotlib", "studies", needed_by="the hardware chart").use("Agg")
    import matplotlib.pyplot as plt

    colors = {"Gaussian": "#c0504d", "uniform": "#7f7f7f", "PeZO": "#4f81bd"}
    metrics = [
        ("LUTs", [r.resources.luts for r in rows]),
        ("flip-flops", [r.resources.ffs for r in rows]),
        ("energy / cycle (rel.)", [r.energy or 0.0 for r in rows]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(19, 5.5))
    x = np.arange(len(rows))
    for ax, (name, values) in zip(axes[:3], metrics, strict=True):
        ax.bar(x, np.maximum(values, 0.5), color=[colors[r.family] for r in rows])
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xticks(x, [r.key for r in rows], rotation=45, ha="right")
        for xi, v in zip(x, values, strict=True):
            ax.text(
                xi, max(v, 0.5), f"{v:.0f}" if v else "n/a", ha="center", va="bottom", fontsize=8
            )
    hard = axes[3]
    bram, dsp = [r.resources.bram for r in rows], [r.resources.dsp for r in rows]
    hard.bar(x - 0.2, bram, 0.4, color=[colors[r.family] for r in rows], label="block RAM")
    hard.bar(x + 0.2, dsp, 0.4, color="white", edgecolor="black", hatch="//", label="DSP")
    hard.set_title("block RAM (solid), DSP (hatched)")
    hard.set_xticks(x, [r.key for r in rows], rotation=45, ha="right")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    fig.legend(handles, list(colors), loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)


def write_report(
    out: str | Path = "hw_report",
    throughput: int = 16,
    bits: int = 8,
    target: str = "xilinx",
    cycles: int = 256,
    jobs: int = 2,
) -> tuple[Path, list[Row]]:
    """Measure, then write ``report.md``, ``report.png`` and ``report.json`` to ``out``."""
    from ..studies.results import provenance

    yosys_command()  # fail fast, with the install hint, before any work
    start = time.perf_counter()
    rows = measure(throughput, bits, target, cycles, jobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, throughput, bits, target, cycles)
    md += f"\nMeasured in {time.perf_counter() - start:.0f} s (`edgezo hw report --throughput {throughput} --bits {bits} --target {target}`).\n"
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(
        json.dumps(
            {
                "throughput": throughput,
                "bits": bits,
                "target": target,
                "cycles": cycles,
                "rows": [asdict(r) for r in rows],
                "provenance": provenance(),
            },
            indent=1,
        )
    )
    chart(rows, out / "report.png", chart_title(throughput, bits, target))
    return out / "report.md", rows


def chart_title(throughput: int, bits: int, target: str) -> str:
    """The chart's title: numbers per cycle, output width, target."""
    return f"{throughput} numbers/cycle, {bits + 1}-bit, {target}"


def rows_of(data: Mapping) -> list[Row]:
    """The rows of a ``report.json``."""
    return [Row(**{**r, "resources": Resources(**r["resources"])}) for r in data["rows"]]


def rebuild_report(folder: Path, data: dict) -> str:
    """``report.md``'s tables from a ``report.json`` alone, and ``report.png`` drawn into
    ``folder`` (the report of committed results, which keep only the JSON)."""
    rows = rows_of(data)
    args = (data["throughput"], data["bits"], data["target"])
    chart(rows, Path(folder) / "report.png", chart_title(*args))
    return markdown(rows, *args, data["cycles"])


def targets_table(reports: Sequence[Mapping]) -> str:
    """Each design's LUTs, flip-flops, block RAMs and DSPs on each report's target, side by side
    (``reports``: the ``report.json`` of ``edgezo hw report --target T``, one per target); ``-``
    where a report lacks the design."""
    head, rule, by_target = ["design"], ["---"], []
    for data in reports:
        names = CELL_NAMES[data["target"]]
        head += [f"{TARGET_NAMES[data['target']]} {names['luts']}", names["ffs"], names["bram"]]
        head.append(names["dsp"])
        rule += ["---:"] * 4
        by_target.append({r["key"]: Resources(**r["resources"]) for r in data["rows"]})
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    for key in dict.fromkeys(r["key"] for data in reports for r in data["rows"]):
        cells = [key]
        for found in by_target:
            x = found.get(key)
            cells += ["-"] * 4 if x is None else [str(x.luts), str(x.ffs), _fmt(x.bram), str(x.dsp)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- the Gaussian generators' exact accuracy (docs/hw.md), computed from the models ----------
def gaussian_models(bits: int = 8) -> list[tuple[str, str, GaussianModel]]:
    """The Gaussian baselines' default models at ``bits``: ``(label, call, model)``, the label
    naming the parameters that set the accuracy (CLT's ``k``, Box-Muller's table address bits
    ``m`` and ``a``) and the call the one that makes the model."""
    clt, bm = CLT(k=4, bits=bits), BoxMuller(bits=bits)
    return [
        (f"CLT, k = {clt.k}", f"CLT(k={clt.k}, bits={bits})", clt),
        (f"Box-Muller, m = {bm.m}, a = {bm.a}", f"BoxMuller(bits={bits})", bm),
    ]


def _small(x: float) -> str:
    """Two significant digits, in scientific notation below 0.001 (``3.0e-5``)."""
    if x == 0 or abs(x) >= 1e-3:
        return f"{x:.2g}"
    mantissa, _, exponent = f"{x:.1e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def gaussian_accuracy_table(stats: Mapping[str, Mapping[str, float]]) -> str:
    """One row per generator (``stats``: its label -> :meth:`~.gaussian.GaussianModel.stats`):
    the mean and the variance ("exactly" when they are 0 and 1), the grid KS distance to
    N(0, 1) and the largest ``|z|``."""
    lines = [
        "| generator | mean | variance | KS to N(0,1) on the output grid | max abs(z) |",
        "|---|---|---|---|---|",
    ]
    for label, s in stats.items():
        mean = "0 exactly" if s["mean"] == 0 else _small(s["mean"])
        var = "1 exactly" if s["variance"] == 1 else f"{s['variance']:.5f}"
        lines.append(f"| {label} | {mean} | {var} | {_small(s['ks'])} | {s['max_abs']:.2f} |")
    return "\n".join(lines) + "\n"
