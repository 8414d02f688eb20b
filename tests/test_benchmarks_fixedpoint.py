"""Smoke test of ``benchmarks/fixedpoint.py --quick``: it runs, prints JSON of the expected shape.

About 20 s on two shared cores once the demo's quick backbone is cached (the
first run pretrains it: 200 Adam steps, a few seconds more). The numbers of a
quick run (one seed, 150 steps, small sets) are not the benchmark's results;
only their structure and sanity are checked here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fixedpoint.py"

ROWS = {
    "bp_fp32": "fp32",
    "zo_fp32": "fp32",
    "q16": "16w8a",
    "q8": "8w8a",
    "q16_sparse": "16w8a",
    "q16_sparse_random": "16w8a",
    "zo_fp32_sparse": "fp32",
    "q16_headroom": "16w8a",
    "q16_headroom_sparse": "16w8a",
    "q16_guided": "16w8a",
    "q16_sharpness": "16w8a",
    "q16_kernel": "16w8a",
    "q16_kernel_own_lr": "16w8a",
}


def numbers(obj, path=""):
    """Every (path, number) in a JSON value (booleans excluded)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixedpoint")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--quiet",
            "--out",
            str(out / "r.json"),
            "--markdown",
            str(out / "r.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout), out


def test_quick_json_structure_and_finiteness(quick):
    result, out = quick
    assert json.loads((out / "r.json").read_text()) == result  # --out writes the same JSON
    assert result["benchmark"] == "fixedpoint" and result["quick"] is True
    bad = [(p, v) for p, v in numbers(result) if not math.isfinite(v)]
    assert not bad, bad
    assert set(result["zero_shot"]) == {"fp32", "16w8a", "8w8a", "16w8a_headroom"}
    assert result["backbone"]["adapted"] == ["head.weight", "head.bias"]
    assert result["feature_cache_max_abs_diff"] < 1e-3  # cached features = the demo's forward
    assert set(ROWS) <= set(result["rows"])
    steps = result["config"]["steps"]
    for key, precision in ROWS.items():
        row = result["rows"][key]
        assert row["precision"] == precision, key
        assert row["steps"] == steps and row["skipped"] == 0, key
        assert len(row["accs"]) == len(result["config"]["seeds"]), key
        assert all(0.0 <= a <= 1.0 for a in row["accs"]), key
        assert row["std"] >= 0.0
        assert row["curves"][0][-1] == [steps, row["accs"][0]], key
        assert (row["saturated"] is None) == (precision == "fp32"), key
    assert result["rows"]["q16"]["forwards_per_step"] == 6  # sign-3-SPSA: two per query
    assert result["rows"]["q16_sharpness"]["forwards_per_step"] == 8  # + the ascent's two
    for k in ("q16", "zo_fp32", "bp_fp32"):  # every method learns, even in a quick run
        assert result["rows"][k]["mean"] > result["zero_shot"]["fp32"] + 0.2, k


def test_quick_timing_targets_and_tool(quick):
    result, _ = quick
    for where in ("full_model", "head_only"):
        t = result["timing"][where]
        assert t["float_step_ms"] > 0 and t["int_step_ms"] > 0 and t["ratio_median"] > 0
        assert len(t["ratios"]) == t["repeats"]
    targets = result["targets"]
    for name in (
        "q16_within_1pt_of_fp32_zo",
        "q8_fails_and_tool_warned",
        "sparse90_within_2pt_of_dense",
    ):
        assert isinstance(targets[name]["met"], bool), name
    assert set(targets["enhancements_points_vs_16w8a"]) >= {
        "q16_sparse",
        "q16_guided",
        "q16_sharpness",
        "q16_kernel",
    }
    tool = result["tool"]
    assert tool["8w8a"]["warned"] == (tool["8w8a"]["message"] is not None)
    assert tool["16w8a"]["message"] is None  # 16-bit weights can train at these settings


def test_quick_markdown(quick):
    result, out = quick
    text = (out / "r.md").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("| run |") and lines[1].startswith("|---")
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + 4 + len(result["rows"])  # header, four zero-shot rows, the runs
    assert any(line.startswith("| QZO-FF 16w8a |") for line in table)
    assert "Step time" in text and "Targets:" in text
