"""The hardware tables of docs/hw.md, rendered from report and engine JSON alone (no yosys):
:func:`edgezo.hw.engine_report.cost_table`, ``energy_table``, ``savings_table``,
``cxxrtl_table`` and :func:`edgezo.hw.report.targets_table`, ``gaussian_accuracy_table``, on
small hand-made files worked by hand."""

from __future__ import annotations

import pytest

from edgezo.hw.engine_report import cost_table, cxxrtl_table, energy_table, rows_of, savings_table
from edgezo.hw.report import gaussian_accuracy_table, gaussian_models, targets_table


def res(target: str, luts: int, ffs: int, bram: float, dsp: int) -> dict:
    """A ``Resources`` as the JSON holds it."""
    return {"target": target, "luts": luts, "ffs": ffs, "carry": 0, "bram": bram, "dsp": dsp,
            "lutram": 0.0, "cells": {}}  # fmt: skip


def engine_json(target: str = "ecp5", lanes: int = 4, **extra) -> dict:
    """An ``engine.json`` as the report's first version wrote it (no energy, script, yosys,
    seconds, utilization or pnr_error): z on ports 150 LUTs, 30 FFs, 2 block RAMs, 2 DSPs."""
    base = res(target, 150, 30, 2.0, 2)
    rows = [
        {"key": key, "family": family, "lanes": lanes, "engine": res(target, *amounts),
         "baseline": base, "cycles_per_step": 1000, "energy_per_step": None, "fmax_mhz": None}
        for key, family, amounts in (("boxmuller", "Gaussian", (200, 50, 4.0, 4)),
                                     ("clt", "Gaussian", (180, 80, 2.0, 2)),
                                     ("pezo-pool", "PeZO", (155, 34, 3.5, 2)))
    ]  # fmt: skip
    return {"target": target, "dim": 8000, "queries": 1, "rows": rows, **extra}


def test_the_cost_table_shows_counts_and_the_generators_share_worked_by_hand():
    body = cost_table(engine_json(), "docs/hw_engine/x.json")
    # shares (engine - baseline) / engine: LUTs 50/200, 30/180, 5/155; FFs 20/50, 50/80, 4/34
    assert body == (
        "From `docs/hw_engine/x.json`: ECP5 (`synth_ecp5 -top top`, yosys version not recorded), "
        "8,000 weights, sign-1-SPSA, 4 lanes. Without generator: 150 LUT4, 30 FF, 2 DP16KD, "
        "2 MULT18X18D; a step is 1,000 cycles.\n"
        "\n"
        "| generator | family | LUT4 | FF | DP16KD | MULT18X18D | generator's LUT share "
        "| FF share |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
        "| Box-Muller | Gaussian | 200 | 50 | 4 | 4 | 25.0% | 40.0% |\n"
        "| CLT | Gaussian | 180 | 80 | 2 | 2 | 16.7% | 62.5% |\n"
        "| PeZO pool | PeZO | 155 | 34 | 3.5 | 2 | 3.2% | 11.8% |\n"
    )


def test_the_cost_table_of_a_placed_engine_without_dsps():
    data = engine_json("ice40", lanes=1, script="synth_ice40 -top top",
                       yosys="Yosys 0.23 (git sha1 7ce5011c24b)")  # fmt: skip
    for r in data["rows"]:
        for part in ("engine", "baseline"):
            r[part] = {**r[part], "dsp": 0}
    bm, clt, pool = data["rows"]
    bm["pnr_error"] = (
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_RAM'"
    )
    clt.update(fmax_mhz=9.46, utilization={"ICESTORM_LC": [4111, 5280], "ICESTORM_RAM": [4, 30]})
    pool.update(fmax_mhz=11.34, utilization={"ICESTORM_LC": [2977, 5280]})
    lines = cost_table(data, "f.json").splitlines()
    assert lines[0].startswith("From `f.json`: iCE40 (`synth_ice40 -top top`, Yosys 0.23), ")
    assert lines[0].endswith("1 lane. Without generator: 150 SB_LUT4, 30 FF, 2 SB_RAM40_4K; "
                             "a step is 1,000 cycles.")  # fmt: skip
    assert lines[2] == (
        "| generator | family | SB_LUT4 | FF | SB_RAM40_4K | generator's LUT share | FF share "
        "| fmax (MHz) | logic cells used (of 5280) |"
    )
    assert lines[4:] == [
        "| Box-Muller | Gaussian | 200 | 50 | 4 | 25.0% | 40.0% "
        "| does not place (out of ICESTORM_RAM) | - |",
        "| CLT | Gaussian | 180 | 80 | 2 | 16.7% | 62.5% | 9.5 | 4111 |",
        "| PeZO pool | PeZO | 155 | 34 | 3.5 | 3.2% | 11.8% | 11.3 | 2977 |",
    ]


def test_one_table_per_lane_count():
    data = engine_json()
    data["rows"] += [{**r, "lanes": 16, "cycles_per_step": 250} for r in engine_json()["rows"]]
    body = cost_table(data, "f.json")
    assert body.count("| generator |") == 2 and body.count("| Box-Muller |") == 2
    assert "4 lanes. Without generator" in body and "16 lanes. Without generator" in body
    assert "a step is 250 cycles." in body


def test_the_savings_table_names_the_cheapest_designs_and_other_targets():
    xilinx = engine_json("xilinx")
    body = savings_table([("a.json", engine_json()), ("b.json", xilinx)])
    # LUTs: the cheapest Gaussian engine is the CLT (180 < 200): generators 5 vs 30 -> -83.3%,
    # engines 155 vs 180 -> -13.9%; FFs: Box-Muller (50 < 80): 4 vs 20 -> -80.0%, 34 vs 50 -> -32.0%
    assert body.splitlines()[0] == (
        "From `a.json`, `b.json`: PeZO's cheapest design against the cheapest Gaussian, each by "
        "the engine's count (PeZO pool against CLT; PeZO pool against Box-Muller):"
    )
    assert body.splitlines()[-2:] == [
        "| 4 | -83.3% | -13.9% | -80.0% | -32.0% |",
        "| 4 (Xilinx) | -83.3% | -13.9% | -80.0% | -32.0% |",
    ]
    no_gauss = engine_json()
    no_gauss["rows"] = no_gauss["rows"][2:]
    assert savings_table([("c.json", no_gauss)]).splitlines()[-1] == "| 4 | - | - | - | - |"


def test_the_energy_table_per_step_and_share_and_old_files_without_energy():
    data = engine_json()
    data["rows"] = data["rows"][:2]
    for r, (per, gen) in zip(data["rows"], ((100.0, 25.0), (80.0, 8.0)), strict=True):
        energy = {"per_cycle": per, "generator_per_cycle": gen, "sim_rows": 4, "sim_steps": 2,
                  "warmup": 19}  # fmt: skip
        r.update(cycles_per_step=100_000, energy=energy)
    assert rows_of(data)[0].energy_per_step == pytest.approx(1e7)
    # 100 x 100,000 = 10.0 million per step, its cursors 25 of 100; 80 -> 8.0 million, 8 of 80
    assert energy_table(data, "e.json").splitlines()[-2:] == [
        "| Box-Muller | 10.0 | 100 | 25 | 25.0% |",
        "| CLT | 8.0 | 80 | 8 | 10.0% |",
    ]
    assert "of a 4-row engine over 2 whole steps after a 19-cycle warm-up, times the full " \
           "engine's 100,000 cycles per step" in energy_table(data, "e.json")  # fmt: skip
    with pytest.raises(ValueError, match=r"old.json has no energy per step: .*--cycles N"):
        energy_table(engine_json(), "old.json")


def report(target: str, counts: dict[str, tuple]) -> dict:
    """A ``report.json`` of ``edgezo hw report --target T`` with these designs' counts."""
    rows = [{"key": key, "resources": res(target, *c)} for key, c in counts.items()]
    return {"target": target, "rows": rows}


def test_the_targets_table_puts_each_targets_counts_side_by_side():
    ice40 = report("ice40", {"clt": (2416, 2048, 0.0, 0), "pezo-pool": (42, 14, 8.0, 0)})
    ecp5 = report("ecp5", {"clt": (2144, 2048, 0.0, 0), "boxmuller": (597, 392, 32.0, 16)})
    assert targets_table([ice40, ecp5]) == (
        "| design | iCE40 SB_LUT4 | FF | SB_RAM40_4K | SB_MAC16 | ECP5 LUT4 | FF | DP16KD "
        "| MULT18X18D |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        "| clt | 2416 | 2048 | 0 | 0 | 2144 | 2048 | 0 | 0 |\n"
        "| pezo-pool | 42 | 14 | 8 | 0 | - | - | - | - |\n"
        "| boxmuller | - | - | - | - | 597 | 392 | 32 | 16 |\n"
    )


def stack_row(key: str, compile_s: float, run_s: float, **extra) -> dict:
    """A row of ``benchmarks/hw_engine_cxxrtl.py``'s JSON: 4 steps of 1,000 cycles, bit-exact."""
    row = {"key": key, "lanes": 2, "weights": 8000, "steps": 4, "cycles_per_step": 1000,
           "cycles_as_predicted": True, "cycles": 4000, "compile_s": compile_s, "run_s": run_s,
           "cycles_per_s": round(4000 / run_s), "record_s": 0.5, "total_s": compile_s + run_s + 3,
           "exact_steps": 4, "first_problems": [], "loadavg_at_start": 2.96}  # fmt: skip
    return {**row, **extra}


def test_the_cxxrtl_table_shows_seconds_speed_and_bit_exact_steps_worked_by_hand():
    rows = [
        stack_row("clt", 434.6, 2.45),  # 4000 / 2.45 = 1632.65 -> 1,633 cycles/s
        stack_row("pezo-pool", 4.72, 0.125, exact_steps=3, total_s=10.5),
        stack_row("lfsr", 12.0, 0.5, cycles_as_predicted=False, cycles=4004),
    ]
    config = {"lanes": 2, "steps": 4, "estimator": "sign", "queries": 3, "compiled_fresh": True}
    lines = cxxrtl_table({"config": config, "rows": rows}, "`f.json`").splitlines()
    assert lines[0].startswith(
        "From `f.json`: per generator, 4 steps of sign-3-SPSA on 8,000 weights recorded with the "
        "fixed-point path and replayed by the 2-lane engine compiled with yosys CXXRTL and g++ "
        "(every design compiled afresh), 1,000 cycles a step, 4,000 in all; "
    )
    assert lines[2:] == [
        "| generator | load | compile (s) | run (s) | cycles / s | whole run (s) | result |",
        "|---|---:|---:|---:|---:|---:|---|",
        "| CLT (`clt`) | 3.0 | 435 | 2.5 | 1,633 | 440 | bit-exact, 4 of 4 steps |",
        "| PeZO pool (`pezo-pool`) | 3.0 | 5 | 0.1 | 32,000 | 10 | 3 of 4 steps bit-exact |",
        "| LFSR-32 (`lfsr`) | 3.0 | 12 | 0.5 | 8,000 | 16 | bit-exact, 4 of 4 steps; cycles "
        "differ from the prediction |",
    ]
    cached = cxxrtl_table({"config": {**config, "compiled_fresh": False}, "rows": rows}, "x")
    assert "(designs from the compile cache (compile 0: cached))" in cached


def test_the_gaussian_accuracy_table_says_exactly_and_writes_small_numbers_as_powers():
    stats = {
        "A": {"mean": 0.0, "variance": 1.0, "ks": 0.007383975, "max_abs": 3.4505963},
        "B": {"mean": -2.96e-5, "variance": 0.999964, "ks": 0.000494, "max_abs": 4.21875},
    }
    assert gaussian_accuracy_table(stats).splitlines()[2:] == [
        "| A | 0 exactly | 1 exactly | 0.0074 | 3.45 |",
        "| B | -3.0e-5 | 0.99996 | 4.9e-4 | 4.22 |",
    ]


def test_the_gaussian_models_are_the_documented_defaults():
    models = gaussian_models(bits=8)
    assert [(label, call) for label, call, _ in models] == [
        ("CLT, k = 4", "CLT(k=4, bits=8)"),
        ("Box-Muller, m = 12, a = 10", "BoxMuller(bits=8)"),
    ]
