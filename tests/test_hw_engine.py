"""The ZO engine RTL vs edgezo's fixed-point training path, bit for bit.

A real run (a quantized linear classifier, sign-3-SPSA with every generator's
integers) is recorded step by step, its losses fed to the simulated engine, and after
every step the engine's block RAM must equal the Python integers, and every perturbed
row it streamed must equal what the layers read. The long runs (the demo's
classifier head, a >= 50k-weight layer stack, >= 100 steps) are ``-m slow``.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("amaranth", reason="edgezo.hw needs the 'hw' extra")

from edgezo import ZO
from edgezo.hw.engine import Engine, EngineConfig
from edgezo.hw.engine_cosim import RecordingFormat, loss_word, mismatches, record, replay
from edgezo.hw.zsources import KEYS, z_source


def _run(record_classifier, key, lanes, steps, **kw):
    """A recorded fixed-point run of a small classifier and the engine's replay of it."""
    rec, src = record_classifier(key, lanes, steps, **kw)
    return rec, replay(Engine(rec.config, src), rec)


@pytest.mark.parametrize("key", KEYS)
def test_engine_matches_fixed_point_run(record_classifier, key):
    rec, run = _run(record_classifier, key, lanes=4, steps=3)
    assert mismatches(rec, run) == []
    init = np.array(rec.config.init)
    assert all((s.after != init).any() for s in rec.steps)  # the run does train
    assert run.cycles == [rec.config.cycles_per_step()] * 3


def test_engine_central_coefficients_and_per_channel_scales(record_classifier):
    """Central SPSA (n_i and the step's m_u/k_u on the ports) with one scale per output row."""
    rec, run = _run(
        record_classifier,
        "pezo-array",
        lanes=2,
        steps=3,
        estimator="central",
        queries=1,
        per_channel=True,
    )
    assert len(rec.config.groups) == 5  # 4 output channels + the bias
    assert len({tuple(s.upd) for s in rec.steps}) > 1  # the coefficient changes every step
    assert mismatches(rec, run) == []


def test_loss_word_orders_like_the_floats():
    xs = [-3.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 2.0, 1e30]
    words = [loss_word(x) for x in xs]
    assert words == sorted(words) and loss_word(-0.0) == loss_word(0.0) == 0


def test_hand_worked_saturation_and_rounding():
    """One step on four 8-bit weights, every number worked out by hand below.

    z: LFSR-32 (seed 1, 7 bits) codes -121 -123 -17 81 (window 0, the only query).
    requant_dz = 1/2 (m 1, k 1): (acc + 1) >> 1, round half up; eps_q = 3, 1_q = 2.
    + pass: acc = 2 w + 3 z:
      w=126: 252 - 363 = -111 -> (-110) >> 1 = -55
      w=-126: -252 - 369 = -621 -> -310 (floor of -310.0)
      w=5: 10 - 51 = -41 -> -20 (-40 >> 1)
      w=-3: -6 + 243 = 237 -> 119
    - pass: acc = 2 w - 3 z:
      w=126: 252 + 363 = 615 -> 308 -> saturates to 127
      w=-126: -252 + 369 = 117 -> 59
      w=5: 10 + 51 = 61 -> 31
      w=-3: -6 - 243 = -249 -> -124
    then -310 saturates to -127 in the + pass.
    Losses L+ = 2.0 > L- = 1.0: n = +1, g = z. Update m_u 3, k_u 2: change = (3 z + 2) >> 2:
      z=-121: -361 >> 2 = -91 -> 126 + 91 = 217 -> 127 (saturated)
      z=-123: -367 >> 2 = -92 -> -126 + 92 = -34
      z=-17: -49 >> 2 = -13 -> 5 + 13 = 18
      z=81: 245 >> 2 = 61 -> -3 - 61 = -64
    """
    from edgezo.hw.engine_cosim import Record, Step

    src = z_source("lfsr", 2)
    assert src.directions.signed(0, 4).tolist() == [-121, -123, -17, 81]
    cfg = EngineConfig((126, -126, 5, -3), 8, 2, 1, one=2, dz_m=1, dz_k=1, groups=((0, 3),))
    step = Step([2.0, 1.0], [], [0], [(3, 2)], np.array([127, -34, 18, -64]))
    rec = Record(cfg, [step])
    run = replay(Engine(cfg, src), rec)
    assert run.memory[0].tolist() == [127, -34, 18, -64]
    assert run.streamed[0].tolist() == [-55, -127, -20, 119, 127, 59, 31, -124]


def test_engine_refuses_bad_configurations():
    with pytest.raises(ValueError, match="divisor of the weight count"):
        EngineConfig((1, 2, 3), 8, 2, 1, 2, 1, 1, ((0, 3),))
    with pytest.raises(ValueError, match="starts must increase"):
        EngineConfig((1, 2), 8, 2, 1, 2, 1, 1, ((1, 3),))
    with pytest.raises(ValueError, match="Invalid z source"):
        z_source("gauss", 4)


# -- long runs (-m slow) ----------------------------------------------------------------
def _demo_head_run(key, steps, lanes=2):
    """The demo's 16w8a model (pretrained SmallCNN, shifted MNIST) with its head trained by
    QZO-FF's integer sign-3-SPSA on ``key``'s integers: 1290 weights (2 lanes divide 1290)."""
    from edgezo.studies import demo

    config = demo.DemoConfig()
    backbone, _, _ = demo.pretrain(config, progress=False)
    x, y = demo.load_data(config)["train"]
    model, params = demo.starting_model(backbone, "qzo-ff 16w8a", x, config)
    src = z_source(key, lanes)
    opt = ZO(
        params,
        lr=config.qzo_lr,
        eps=config.qzo_eps,
        estimator="sign",
        queries=config.qzo_queries,
        directions=src.directions,
        formats=RecordingFormat(z_bits=8),
    )
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(x), (config.batch,), generator=gen) for _ in range(steps)]
    it = iter(batches)
    state = {"idx": next(it)}

    def closure():
        return torch.nn.functional.cross_entropy(model(x[state["idx"]]), y[state["idx"]])

    rec = record(opt, closure, 1, lanes)
    for idx in it:  # one recorded step per batch
        state["idx"] = idx
        rec.steps += record(opt, closure, 1, lanes).steps
    return rec, replay(Engine(rec.config, src), rec)


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_engine_demo_head_100_steps(key):
    rec, run = _demo_head_run(key, steps=100)
    assert len(rec.config.init) == 1290 and len(rec.steps) == 100
    assert mismatches(rec, run) == []


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_engine_layer_stack_50k_weights(key):
    """51,712 weights for 100 steps, in the compiled simulator (yosys CXXRTL + g++: Amaranth's
    would take about 1.5 hours per generator); prints compile time, cycles and wall time
    (benchmarks/hw_engine_cxxrtl.py records them)."""
    from edgezo.hw.engine_stack import STACK_LANES, run_stack

    run = run_stack(key, 100)
    rec = run.record
    assert len(rec.config.init) == 51_712 and len(rec.steps) == 100
    assert run.replay.cycles == [rec.config.cycles_per_step()] * 100
    init = np.array(rec.config.init)
    assert all((s.after != init).any() for s in rec.steps)  # the stack does train
    problems = mismatches(rec, run.replay)
    print(
        f"\n50k stack {key}: {STACK_LANES} lanes, compile {run.replay.timing['compile_s']:.0f} s, "
        f"{sum(run.replay.cycles):,} cycles in {run.replay.timing['run_s']:.1f} s, "
        f"{'bit-exact' if not problems else problems[:3]}"
    )
    assert problems == [] and run.exact_steps == 100


@pytest.mark.slow
def test_the_cxxrtl_benchmark_records_each_generators_run(tmp_path):
    """``benchmarks/hw_engine_cxxrtl.py`` on the cheapest generator and 2 steps (about 15 s: it
    compiles the design afresh): its JSON says what ran, how long and that it was bit-exact."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "hw_engine_cxxrtl.py"
    out = tmp_path / "cxx.json"
    done = subprocess.run(
        [sys.executable, str(script), "--generators", "pezo-pool", "--steps", "2", "--out", out],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    data = json.loads(done.stdout)
    assert json.loads(out.read_text()) == data  # --out writes what it prints
    assert data["config"] == {"lanes": 8, "steps": 2, "estimator": "sign", "queries": 3,
                              "compiled_fresh": True}  # fmt: skip
    (row,) = data["rows"]
    assert row["key"] == "pezo-pool" and row["weights"] == 51_712
    assert row["exact_steps"] == row["steps"] == 2 and row["first_problems"] == []
    assert row["cycles_as_predicted"] and row["cycles"] == 2 * row["cycles_per_step"]
    assert row["compile_s"] > 0 and row["total_s"] > row["compile_s"] + row["run_s"]
    # run_s is rounded to milliseconds in the JSON, cycles_per_s computed before rounding
    assert row["cycles_per_s"] == pytest.approx(row["cycles"] / row["run_s"], rel=0.01)
    assert data["env"]["git_head"] and len(data["env"]["loadavg_at_start"]) == 3
    assert not re.search(r"/(work|tmp|root|home)/", done.stdout)  # no machine paths


def test_engine_netlist_matches_rtl():
    """The yosys netlist of an 8-weight engine (LFSR, 1 lane, 1 query) streams what the RTL does."""
    from edgezo.hw.cosim import simulate
    from edgezo.hw.engine_report import Harness, cost_config
    from edgezo.hw.power import activity, has_sim

    if not has_sim():
        pytest.skip("needs a yosys with `sim` (the Debian package)")
    cfg, cycles = cost_config(1, 8, queries=1), 80  # two steps (31 cycles each) and more
    net = activity(Harness(cfg, z_source("lfsr", 1)), cycles, gate_multipliers=True)
    rtl = simulate(Harness(cfg, z_source("lfsr", 1)), cycles)
    assert (rtl != 0).any(axis=1).sum() > 2 * 2 * 8 // 2  # the passes' rows were streamed
    assert np.array_equal(net.outputs, rtl)
