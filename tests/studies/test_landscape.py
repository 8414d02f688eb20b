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


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Config:
    """A small untrained CNN instead of the pretrained ViT, and a config that runs in seconds."""
    from edgezo.models.cnn import SmallCNN
    from edgezo.studies import landscape

    def untrained(arch, dataset, **kwargs):  # pretraining is tested in test_models_pretrain
        assert (arch, dataset, kwargs["steps"]) == ("cnn", "mnist", 5)
        torch.manual_seed(0)
        return SmallCNN(width=4, hidden=16).eval()

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(landscape, "backbone", untrained)
    return Config(
        arch="cnn", regimes=("lp",), train=64, test=64, pretrain_steps=5,
        budget=Budget(steps=4, zo_steps=6, batch=16), snapshots=3, grid=4, eval_samples=32,
        eval_batch=32,
    )  # fmt: skip


def test_the_cli_writes_its_figure_table_and_json(tmp_path, tiny):
    from edgezo.studies import landscape

    cfg = tiny
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


def test_seeds_merge_into_one_landscape_with_every_seeds_numbers(tmp_path, tiny):
    from edgezo.studies.landscape import merge_seeds

    out = tmp_path / "out"
    for seed in (3, 1):
        run(False, out / f"seed-{seed}", seed=seed, progress=False, config=tiny)
    merge_seeds(out, [3, 1])
    merged = json.loads((out / "landscape.json").read_text())
    first = json.loads((out / "seed-3" / "landscape.json").read_text())
    other = json.loads((out / "seed-1" / "landscape.json").read_text())
    assert merged["seeds"] == [3, 1] and merged["panels"] == first["panels"]  # the figure's seed
    for seed, data in (("3", first), ("1", other)):
        got = [(p["method"], p["test_error"], p["distance_moved"])
               for p in merged["runs"][seed]["panels"]]  # fmt: skip
        assert got == [(p["method"], p["test_error"], p["distance_moved"]) for p in data["panels"]]
    assert merged["runs"]["1"]["provenance"] == other["provenance"]
    assert first["panels"] != other["panels"]  # the seeds differ: their data and perturbations
    md = (out / "landscape.md").read_text()
    assert "| lp | qzo-ff 8w8a |" in md and "Seeds 3, 1 (`--seeds 3,1`): the table and the " in md
    assert (out / "landscape.png").stat().st_size > 0
    other["config"]["grid"] = 5  # a seed made with another config is refused, with the fix
    (out / "seed-1" / "landscape.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="another config than seed 3's: delete .*seed-1"):
        merge_seeds(out, [3, 1])


def test_the_command_line_runs_each_missing_seed_and_merges(monkeypatch, capsys, tmp_path):
    import argparse

    from edgezo.cli import landscape as landscape_cli
    from edgezo.studies import landscape

    calls, merged = [], []
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / "landscape.json").write_text("{}")  # finished: kept
    monkeypatch.setattr(landscape, "run", lambda *a: calls.append(a) or {"panels": []})
    monkeypatch.setattr(landscape, "merge_seeds", lambda out, seeds: merged.append(seeds) or {})
    parser = argparse.ArgumentParser()
    landscape_cli.add_cli(parser.add_subparsers())
    args = parser.parse_args(["landscape", "--quick", "--seeds", "0,1,2", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    assert [(c[1].name, c[2]) for c in calls] == [("seed-0", 0), ("seed-2", 2)]
    assert merged == [(0, 1, 2)]
    assert "landscape seed 1: kept" in capsys.readouterr().out


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
