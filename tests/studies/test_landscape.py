"""edgezo.studies.landscape: Figure 6's training (the panels' paths, the files it writes) and
the ``edgezo landscape`` command's options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.studies.common import Budget
from edgezo.studies.landscape import QUICK, Config, path_window, run


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=20))
def test_the_path_window_holds_the_path_and_the_final_point(points):
    xy = torch.tensor(points + [(0.0, 0.0)], dtype=torch.float64)
    (x0, x1), (y0, y1) = path_window(xy)
    assert x0 <= float(xy[:, 0].min()) and float(xy[:, 0].max()) <= x1
    assert y0 <= float(xy[:, 1].min()) and float(xy[:, 1].max()) <= y1
    if xy.abs().max() > 0:  # no axis collapses: each is at least 5% as long as the other
        assert min(x1 - x0, y1 - y0) >= 0.05 * max(x1 - x0, y1 - y0) - 1e-12


def test_the_cli_writes_its_figure_table_and_json(tmp_path, monkeypatch):
    from edgezo.models.cnn import SmallCNN
    from edgezo.studies import landscape

    def untrained(arch, dataset, **kwargs):  # pretraining is tested in test_models_pretrain
        assert (arch, dataset, kwargs["steps"]) == ("cnn", "mnist", 5)
        torch.manual_seed(0)
        return SmallCNN(width=4, hidden=16).eval()

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(landscape, "backbone", untrained)
    cfg = Config(
        arch="cnn", regimes=("lp",), train=64, test=64, pretrain_steps=5,
        budget=Budget(steps=4, zo_steps=6, batch=16), snapshots=3, grid=4, eval_samples=32,
        eval_batch=32,
    )  # fmt: skip
    summary = run(False, tmp_path / "out", seed=0, progress=False, config=cfg)
    payload = json.loads((tmp_path / "out" / "landscape.json").read_text())
    assert payload["provenance"]["edgezo"] and len(payload["provenance"]["commit"]) == 40
    panels = {p["method"]: p for p in payload["panels"]}
    assert set(panels) == set(QUICK.methods) and len(summary["panels"]) == 4
    for p in panels.values():
        assert 0.0 <= p["test_error"] <= 1.0
        assert np.asarray(p["surface"]["losses"]).shape == (4, 4)
        assert len(p["trajectory_xy"]) == len(p["trajectory_steps"]) >= 4
        assert p["trajectory_steps"][-1] == p["steps"]
        assert p["trajectory_xy"][-1] == [0.0, 0.0]  # the surface is centred on the final weights
    assert panels["backprop"]["plane"] == "pca"
    md = (tmp_path / "out" / "landscape.md").read_text()
    assert "![landscapes](landscape.png)" in md and "| lp | qzo-ff 8w8a |" in md
    assert (tmp_path / "out" / "landscape.png").stat().st_size > 0
    # from the JSON alone (what results/ keeps): the same Markdown, the figure drawn again
    (tmp_path / "again").mkdir()
    assert landscape.rebuild_report(tmp_path / "again", payload) == md
    assert (tmp_path / "again" / "landscape.png").stat().st_size > 0


def test_the_command_line_passes_its_options_to_run(monkeypatch, capsys, tmp_path):
    import argparse

    from edgezo.cli import landscape as landscape_cli
    from edgezo.studies import landscape

    calls = []
    monkeypatch.chdir(tmp_path)  # the command creates its default --out, results/landscape
    monkeypatch.setattr(landscape, "run", lambda *a: calls.append(a) or {"panels": []})
    parser = argparse.ArgumentParser()
    landscape_cli.add_cli(parser.add_subparsers())
    args = parser.parse_args(["landscape", "--quick", "--grid", "8", "--directions", "random"])
    assert args.handler(args) == 0
    quick, out, seed, progress, cfg = calls[0]
    assert (quick, seed, progress, cfg.grid, cfg.directions) == (True, 0, True, 8, "random")
    assert cfg.budget == QUICK.budget and str(out) == "results/landscape"
    with pytest.raises(SystemExit):
        parser.parse_args(["landscape", "--grid", "1"])
    assert "must be >= 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methods": ("adam",)}, "Unknown method 'adam'; choose from backprop, zo, qzo-ff 16w8a"),
        ({"regimes": ("ft",)}, "Unknown regime 'ft'; choose from lp, vpt"),
        ({"directions": "hessian"}, "choose pca or random"),
    ],
)
def test_a_bad_config_is_refused_before_any_training(change, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run(True, tmp_path, config=Config(**change))
