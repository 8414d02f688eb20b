"""``edgezo cost`` (edgezo.cli.cost): its files, what the report reads from them, its checks."""

from __future__ import annotations

import json

import pytest

from edgezo.analysis.claims import Source
from edgezo.analysis.cost import STEPS
from edgezo.analysis.report import identify
from edgezo.cli import memory as memory_cli
from edgezo.cli.report import run_edgezo  # as `edgezo report --run-quick` runs it


def test_cli_times_each_regime_and_writes_what_the_report_reads(tmp_path, capsys):
    out = tmp_path / "cost-cnn"
    argv = ["cost", "cnn", "--regimes", "lp,ft", "--batch", "2", "--rounds", "2", "--warmup", "0"]
    assert run_edgezo([*argv, "--out", str(out)]) == 0
    data = json.loads((out / "cost.json").read_text())
    assert [c["regime"] for c in data["cells"]] == ["lp", "ft"]
    for cell in data["cells"]:
        model, _ = memory_cli.build("cnn", cell["regime"], batch=2)
        assert cell["trained"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert {s: len(t) for s, t in cell["seconds"].items()} == dict.fromkeys(STEPS, 2)
        assert all(t > 0 for times in cell["seconds"].values() for t in times)
    assert len(data["meta"]["provenance"]["commit"]) == 40
    source, read = identify(out)
    assert source == Source("cost", "cnn") and read == data
    assert source.command(data, "results") == (
        "edgezo cost cnn --regimes lp,ft --batch 2 --rounds 2 --threads 1 --out results/cost-cnn"
    )
    assert "| lp |" in (out / "cost.md").read_text() and "wrote" in capsys.readouterr().out


def test_cli_names_the_known_regimes_for_an_unknown_one(capsys):
    with pytest.raises(SystemExit):
        run_edgezo(["cost", "cnn", "--regimes", "ft,full"])
    assert "unknown regime(s) ['full']; give a comma list of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_edgezo(["cost", "cnn", "--rounds", "1"])
    assert "must be >= 2, got 1" in capsys.readouterr().err
