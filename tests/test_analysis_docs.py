"""edgezo.analysis.docs: generated blocks filled from results files, and the repository's own
docs held to its committed results/ (every generated number recomputed here from the JSON)."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest

import edgezo.studies as studies
from edgezo.analysis import docs as D
from edgezo.analysis.report import build_report
from edgezo.studies import seeds as seeds_mod
from edgezo.studies.common import Outcome
from edgezo.studies.results import StudyWriter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DOCS = (ROOT / "README.md", ROOT / "docs" / "studies.md")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")  # not the digits of a name (16w8a)
#: Two-sided 95% quantiles of Student's t from a printed table (4 decimals), by degrees of freedom.
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706}


def fake_run(quick, out, seed=0, progress=True, jobs=1, config=None, pretrain_seed=None):
    writer = StudyWriter("ood", out, ("target",), ("zero-shot", "backprop", "zo"))
    for cell, accs in {"a": (0.5, 0.8, 0.78), "b": (0.6, 0.9, 0.7)}.items():
        for method, acc in zip(("zero-shot", "backprop", "zo"), accs, strict=True):
            writer.add(Outcome(method, 1e-3, acc + 0.01 * seed * (method == "zo")), target=cell)
    return writer.finish(config={"steps": 1}, quick=quick, seed=seed)


@pytest.fixture
def fake_results(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "study_runner", lambda name: fake_run)
    seeds_mod.run_seeds("ood", True, tmp_path / "results", (0, 1, 2), progress=False)
    return tmp_path / "results"


def test_a_block_is_filled_from_the_results_and_the_rest_is_untouched(fake_results):
    text = "intro 1.5\n<!-- edgezo:generated study ood -->\nstale 99.99\n<!-- edgezo:end -->\nend\n"
    new = D.regenerate(text, fake_results)
    assert new.startswith("intro 1.5\n<!-- edgezo:generated study ood -->\n")
    assert new.endswith("<!-- edgezo:end -->\nend\n") and "99.99" not in new
    assert "quick run, seeds 0, 1, 2" in new and "| a | 50.00 [50.00, 50.00] |" in new
    assert D.regenerate(new, fake_results) == new  # idempotent
    ((what, body),) = D.blocks(new)
    assert what == "study ood"
    # the vision studies' claims; the fake has no pezo: not comparable
    assert "| pezo within 5 points of backprop | 0/0 | 0 | 0 | 0% | 80% | not comparable |" in body


def test_bad_blocks_and_files_are_refused_with_what_to_do(fake_results, tmp_path):
    with pytest.raises(ValueError, match="unknown generated block 'tables'"):
        D.regenerate("<!-- edgezo:generated tables -->\n<!-- edgezo:end -->", fake_results)
    with pytest.raises(ValueError, match=r"edgezo run fewshot --seeds 0,1,2"):
        D.regenerate("<!-- edgezo:generated study fewshot -->\n<!-- edgezo:end -->", fake_results)
    plain = tmp_path / "plain.md"
    plain.write_text("no blocks here\n")
    with pytest.raises(ValueError, match="no <!-- edgezo:generated"):
        D.update_docs([plain], fake_results)


# -- the repository's docs against its committed results ----------------------------------------
def committed_studies() -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in RESULTS.glob("*/results.json")}


def reference_numbers(data: dict) -> list[float]:
    """Every number a study block may show, recomputed from its JSON: per cell and method the
    mean accuracy (%) over seeds and its t-interval bounds (printed t table), the claims'
    counts and shares, the seeds, the provenance, the minutes."""
    cells: dict[tuple, list[float]] = {}
    for r in data["rows"]:
        key = (*(r[k] for k in data["keys"]), r["method"])
        cells.setdefault(key, []).append(100 * r["accuracy"])
    out = []
    for values in cells.values():
        mean = statistics.fmean(values)
        half = T_TABLE[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
        out += [mean, mean - half, mean + half]
    for c in data["claims"]:
        out += [c["hits"], c["cells"], c["inconclusive"], c["vacuous"], c["points"]]
        out += [round(100 * c["share"]), round(100 * c["wanted"])]
    prov = data["provenance"]
    out += [*data["seeds"], prov["threads"], round(sum(map(float, data["seconds"].values())) / 60)]
    out += [float(x) for x in NUMBER.findall(f"{prov['edgezo']} {prov['torch']}")]
    return out


def test_results_are_committed_for_the_generated_blocks():
    wanted = {what.split()[1] for doc in DOCS for what, _ in D.blocks(doc.read_text())
              if what.startswith("study ")}  # fmt: skip
    assert wanted, "no generated study block in the docs"
    assert wanted <= set(committed_studies())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_generated_number_is_in_the_results(doc):
    studies_found = committed_studies()
    for what, body in D.blocks(doc.read_text()):
        if not what.startswith("study "):
            continue
        allowed = reference_numbers(studies_found[what.split()[1]])
        commit = studies_found[what.split()[1]]["provenance"]["commit"][:10]
        text = body.replace(commit, "").replace("results.json", "").replace("95%", "")
        for number in NUMBER.findall(text):
            value = float(number)
            assert any(abs(value - a) <= 0.006 for a in allowed), (doc.name, what, number)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_are_what_the_committed_results_regenerate(doc):
    text = doc.read_text()
    assert D.regenerate(text, RESULTS, "results") == text, (
        f"{doc.name} is out of date: run `edgezo report --results results --out docs/report "
        "--docs README.md docs/studies.md` and commit"
    )


def test_the_committed_report_is_the_one_the_results_make(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    md, _ = build_report("results", tmp_path)
    assert md.read_text() == (ROOT / "docs" / "report" / "report.md").read_text()


def test_hand_written_result_tables_are_marked_as_not_regenerated():
    """Every table of numbers in docs/studies.md outside a generated block is in a section
    that says it is not regenerated yet."""
    text = D.BLOCK.sub("", (ROOT / "docs" / "studies.md").read_text())
    for section in re.split(r"\n(?=## )", text):
        tables = [line for line in section.splitlines() if line.startswith("| ")]
        if any(re.search(r"\d+\.\d+", line) for line in tables):
            assert D.NOT_REGENERATED in section, section.splitlines()[0]


# -- the language-model probe block ---------------------------------------------------------------
def probe_results(root: Path) -> Path:
    """A hand-made ``results/lm/results.json`` of benchmarks/lm_probe.py: two methods, 3 seeds."""
    row = {"variant": "probe", "model_bytes": 90_864_136}
    rows = [{**row, "method": "zero-shot", "seed": s, "accuracy": a, "steps": 0, "forwards": 0}
            for s, a in enumerate((0.50, 0.52, 0.48))]  # fmt: skip
    rows += [{**row, "method": "mezo", "seed": s, "accuracy": a, "steps": 6000, "forwards": 12000,
              "lr": 0.01, "eps": 0.001, "cpu_seconds_per_step": t, "training_state_bytes": 0}
             for s, a, t in zip(range(3), (0.70, 0.74, 0.75), (0.001, 0.002, 0.003), strict=True)]  # fmt: skip
    lora = {"settings": {"curve_window": 50}, "runs": [{
        "method": "mezo", "variant": "prompt", "trained_parameters": 73728, "seed": 0, "lr": 1e-4,
        "eps": 1e-2, "steps": 640, "cpu_seconds_per_step": 0.94, "zero_shot_accuracy": 0.528,
        "accuracy": 0.541, "train_loss_curve": [0.71, 0.69]}]}  # fmt: skip
    data = {"seeds": [0, 1, 2], "rows": rows, "lora": lora,
            "provenance": {"edgezo": "0.1.0", "commit": "abcdef1234567", "threads": 1},
            "cpu_seconds_per_review": {"float": 0.031, "16w8a": 0.052}}  # fmt: skip
    (root / "lm").mkdir(parents=True)
    (root / "lm" / "results.json").write_text(json.dumps(data))
    return root


def test_a_probe_block_shows_each_methods_interval_budget_time_and_memory(tmp_path):
    body = D.render("probe lm", probe_results(tmp_path / "results"), "results")
    mezo = [70.0, 74.0, 75.0]  # the interval by hand: mean ± t(0.975, 2) s / sqrt(3)
    mean, half = statistics.fmean(mezo), T_TABLE[2] * statistics.stdev(mezo) / math.sqrt(3)
    assert f"| mezo | {mean:.2f} [{mean - half:.2f}, {mean + half:.2f}] | 0.01 | 0.001 " in body
    assert "| 6000 x 2 | 2.00 | 0 | 90.9 |" in body  # mean ms per step over the seeds
    zero = [50.0, 52.0, 48.0]
    half = T_TABLE[2] * statistics.stdev(zero) / math.sqrt(3)
    assert f"| zero-shot | 50.00 [{50 - half:.2f}, {50 + half:.2f}] | - | - | 0 x 0 |" in body
    assert body.index("| zero-shot |") < body.index("| mezo |")
    assert "seeds 0, 1, 2, edgezo 0.1.0 at commit abcdef1234, 1 thread(s)" in body
    assert "31 CPU ms per review (float), 52 ms (16w8a)" in body
    assert "(73,728 numbers), seed 0, lr 0.0001, eps 0.01, 640 steps (0.94 CPU s/step)" in body
    assert "52.8% zero-shot -> 54.1%; train loss, mean of each 50 steps: 0.710 -> 0.690." in body


def test_a_probe_block_without_its_results_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"python benchmarks/lm_probe.py --out results/lm"):
        D.render("probe lm", tmp_path, "results")
