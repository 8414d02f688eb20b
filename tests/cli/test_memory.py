"""``edgezo memory`` (edgezo.cli.memory): its files, its argument checks, its model and regime tables."""

from __future__ import annotations

import argparse
import json

import pytest
from torch import nn

from edgezo.analysis.memory import ROWS, forward_peak_activation_bytes
from edgezo.cli import memory as memory_cli


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgezo")
    memory_cli.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_writes_table_chart_and_json(tmp_path, capsys):
    out = tmp_path / "mem"
    assert run_cli(["memory", "cnn", "--regime", "lp", "--batch", "2", "--rss-steps", "0",
                    "--out", str(out)]) == 0  # fmt: skip
    data = json.loads((out / "memory.json").read_text())
    assert len(data["meta"]["provenance"]["commit"]) == 40  # what made it, for the report
    assert [r["name"] for r in data["rows"]] == [
        "BP fp32",
        "BP fp16",
        "ZO fp32",
        "QZO-FF 16w8a",
        "QZO-FF 16w8a + 90% sparse",
    ]
    assert len(data["rows"]) == len(ROWS)
    model, x = memory_cli.build("cnn", "lp", batch=2)
    head = sum(p.numel() for p in model.head.parameters())
    assert data["meta"]["trained parameters"] == head
    assert data["rows"][0]["gradients"] == 4 * head
    assert data["rows"][2]["scratch"] == forward_peak_activation_bytes(model, x)
    assert (out / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ZO fp32 |" in (out / "memory.md").read_text()
    assert "wrote" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        run_cli(["memory", "cnn", "--batch", "0"])
    assert "must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"Unknown model 'alexnet'; choose from"):
        memory_cli.build("alexnet", "ft", 1)


def test_regimes_are_the_models_regimes():
    model = memory_cli.REGIMES["vpt"](memory_cli.MODELS["vit-small"].build())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"prompts", "vit.head.weight", "vit.head.bias"}
    with pytest.raises(TypeError, match=r"has no 'features'; use an edgezo backbone"):
        memory_cli.REGIMES["lp"](nn.Sequential(nn.Conv2d(1, 2, 3)))
