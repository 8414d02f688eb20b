"""edgezo.studies.seeds: a study run once per seed and merged; the merged table's intervals and
claims recomputed by hand from the per-seed files."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest

import edgezo.studies as studies
from edgezo.analysis import stats as S
from edgezo.cli import run as run_cli
from edgezo.studies import seeds as seeds_mod
from edgezo.studies.common import Outcome
from edgezo.studies.results import StudyWriter

#: (cell, method) -> accuracy of seed 0; seed s adds OFFSETS[s] to zo and pezo.
BASE = {("a", "zero-shot"): 0.50, ("a", "backprop"): 0.80, ("a", "zo"): 0.78, ("a", "pezo"): 0.77,
        ("b", "zero-shot"): 0.79, ("b", "backprop"): 0.80, ("b", "zo"): 0.79, ("b", "pezo"): 0.79}  # fmt: skip
OFFSETS = {0: 0.0, 1: 0.01, 2: -0.005}


def fake_run(quick, out, seed=0, progress=True, jobs=1, config=None, pretrain_seed=None):
    writer = StudyWriter("ood", out, ("target",), ("zero-shot", "backprop", "zo", "pezo"))
    for (cell, method), acc in BASE.items():
        shift = OFFSETS[seed] if method in ("zo", "pezo") else 0.0
        writer.add(Outcome(method, 1e-3, acc + shift, steps=10, seconds=1.0), target=cell)
    return writer.finish(config={"steps": 10, "quick": quick}, quick=quick, seed=seed)


@pytest.fixture
def merged(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "study_runner", lambda name: fake_run)
    summary = seeds_mod.run_seeds("ood", True, tmp_path, (0, 1, 2), progress=False)
    return tmp_path / "ood", summary


def test_every_seed_runs_into_its_folder_and_the_merge_keeps_every_row(merged):
    folder, summary = merged
    payload = json.loads((folder / "results.json").read_text())
    assert payload["seeds"] == [0, 1, 2] and payload["keys"] == ["target"]
    for s in (0, 1, 2):
        per_seed = json.loads((folder / f"seed-{s}" / "results.json").read_text())
        mine = [{k: v for k, v in r.items() if k != "seed"} for r in payload["rows"]
                if r["seed"] == s]  # fmt: skip
        assert mine == per_seed["rows"]
    assert set(payload["seconds"]) == {"0", "1", "2"}
    prov = payload["provenance"]
    assert prov["edgezo"] and re.fullmatch(r"[0-9a-f]{40}", prov["commit"] or "")
    assert summary["out"] == str(folder)
    # the chart of the merged cells, linked from results.md
    assert (folder / "cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![cells](cells.png)" in (folder / "results.md").read_text()


def test_the_merged_table_is_each_cells_mean_and_t_interval(merged):
    folder, summary = merged
    md = (folder / "results.md").read_text()
    for cell in ("a", "b"):
        zo = [BASE[(cell, "zo")] + OFFSETS[s] for s in (0, 1, 2)]
        mean = sum(zo) / 3
        sd = math.sqrt(sum((v - mean) ** 2 for v in zo) / 2)
        half = 4.303 * sd / math.sqrt(3)  # t(0.975, 2) from a printed table
        text = S.t_interval(zo).text()
        assert text.startswith(f"{100 * mean:.2f} [")
        low, high = map(float, re.findall(r"[\d.]+", text)[1:])
        assert (low, high) == pytest.approx((100 * (mean - half), 100 * (mean + half)), abs=0.01)
        zero = 100 * BASE[(cell, "zero-shot")]  # the same in every seed: a zero-width interval
        assert f"| {cell} | {zero:.2f} [{zero:.2f}, {zero:.2f}] |" in md
        assert text in md
    assert summary["table"] in md


def test_the_merged_claims_leave_out_vacuous_cells(merged):
    _, summary = merged
    claims = {c["claim"]: c for c in summary["claims"]}
    # cell b: zero-shot 79 is within 5 points of backprop 80: vacuous; cell a: zo is 2 below
    # backprop in seed 0, 1 below in seed 1, 2.5 below in seed 2: reproduced on its interval
    c = claims["pezo within 5 points of backprop"]
    assert (c["hits"], c["cells"], c["vacuous"], c["verdict"]) == (1, 1, 1, "reproduced")
    # pezo vs zo within 1: pezo is exactly 1 below zo in every seed of a: the interval is a
    # point at -1: reproduced; b vacuous (zo not above zero-shot beyond its interval)
    c = claims["pezo within 1 points of zo"]
    assert (c["hits"], c["cells"], c["vacuous"]) == (1, 1, 1)


def test_seeds_run_with_other_configs_are_refused(merged):
    folder, _ = merged
    path = folder / "seed-1" / "results.json"
    data = json.loads(path.read_text())
    data["config"]["steps"] = 11
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="seed-1 was run with another study or config"):
        seeds_mod.merge(folder, (0, 1, 2))


@pytest.mark.parametrize("text", ["0,x", "1,1", "-1,2", ""])
def test_bad_seed_lists_are_refused_with_the_form_wanted(text):
    with pytest.raises(ValueError, match="--seeds"):
        seeds_mod.parse_seeds(text)
    with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
        run_cli.seed_list(text)


def test_the_cli_runs_the_seeds_and_prints_the_interval_counts(tmp_path, monkeypatch, capsys):
    from edgezo import cli

    monkeypatch.setattr(studies, "study_runner", lambda name: fake_run)
    assert cli.main(["run", "ood", "--quick", "--seeds", "0,1,2", "--out", str(tmp_path),
                     "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "claim: pezo within 5 points of backprop: 1/1 cells (100%, wanted 80%, " in out
    assert "0 inconclusive, 1 vacuous): reproduced" in out
    assert (tmp_path / "ood" / "seed-2" / "results.json").is_file()


def test_a_pretrain_seed_gives_every_seed_one_backbone(tmp_path, monkeypatch):
    from edgezo.studies.common import Options

    seen = []

    def recording_run(quick, out, seed=0, progress=True, jobs=1, config=None, pretrain_seed=None):
        seen.append(Options(quick, out, seed, pretrain_seed=pretrain_seed).backbone_seed)
        return fake_run(quick, out, seed)

    monkeypatch.setattr(studies, "study_runner", lambda name: recording_run)
    seeds_mod.run_seeds("ood", True, tmp_path, (1, 2), progress=False, pretrain_seed=0)
    assert seen == [0, 0]
    assert json.loads((tmp_path / "ood" / "results.json").read_text())["pretrain_seed"] == 0
    seen.clear()
    seeds_mod.run_seeds("ood", True, tmp_path, (1, 2), progress=False)
    assert seen == [1, 2]


def test_a_stopped_run_resumes_at_its_first_unfinished_seed(tmp_path, monkeypatch):
    ran = []

    def stopping_run(quick, out, seed=0, progress=True, jobs=1, config=None, pretrain_seed=None):
        ran.append(seed)
        if seed == 2 and ran.count(2) == 1:
            raise KeyboardInterrupt  # stopped during seed 2: seeds 0 and 1 are finished
        return fake_run(quick, out, seed)

    monkeypatch.setattr(studies, "study_runner", lambda name: stopping_run)
    with pytest.raises(KeyboardInterrupt):
        seeds_mod.run_seeds("ood", True, tmp_path, (0, 1, 2), progress=False)
    folder = tmp_path / "ood"
    assert not (folder / "results.json").exists() and not (folder / "seed-2" / "seed.json").exists()
    seeds_mod.run_seeds("ood", True, tmp_path, (0, 1, 2), progress=False)
    assert ran == [0, 1, 2, 2]
    payload = json.loads((folder / "results.json").read_text())
    assert sorted({r["seed"] for r in payload["rows"]}) == [0, 1, 2]
    assert set(payload["seconds"]) == {"0", "1", "2"}


def test_a_seed_is_kept_only_when_it_finished_with_the_same_flags(tmp_path, monkeypatch):
    ran = []

    def counting_run(quick, out, seed=0, progress=True, jobs=1, config=None, pretrain_seed=None):
        ran.append((quick, seed))
        return fake_run(quick, out, seed)

    monkeypatch.setattr(studies, "study_runner", lambda name: counting_run)
    seeds_mod.run_seeds("ood", True, tmp_path, (0, 1), progress=False)
    seeds_mod.run_seeds("ood", True, tmp_path, (0, 1), progress=False)
    assert ran == [(True, 0), (True, 1)]
    seeds_mod.run_seeds("ood", False, tmp_path, (0, 1), progress=False)  # other flags: rerun
    assert ran[2:] == [(False, 0), (False, 1)]
    (tmp_path / "ood" / "seed-1" / "seed.json").unlink()  # no record: not known to be finished
    seeds_mod.run_seeds("ood", False, tmp_path, (0, 1), progress=False)
    assert ran[4:] == [(False, 1)]


def test_the_merge_keeps_each_seeds_provenance_and_leaves_out_untimed_seeds(merged):
    folder, _ = merged
    path = folder / "seed-0" / "results.json"
    data = json.loads(path.read_text())
    data["provenance"]["commit"] = "0" * 40
    path.write_text(json.dumps(data))
    (folder / "seed-0" / "seed.json").unlink()
    seeds_mod.merge(folder, (0, 1, 2))
    payload = json.loads((folder / "results.json").read_text())
    assert payload["runs"]["0"]["commit"] == "0" * 40
    assert (
        payload["runs"]["1"]
        == json.loads((folder / "seed-1" / "results.json").read_text())["provenance"]
    )
    assert set(payload["seconds"]) == {"1", "2"}
