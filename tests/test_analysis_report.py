"""edgezo report: claims beside the results files' numbers, Markdown + self-contained HTML.

The fake results are written by the tools' own writers (StudyWriter, write_memory_report,
the landscape and hardware Markdown functions) from distinctive made-up numbers; every
number the claims table shows is recomputed here by a plain reference and looked up.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import re
import shutil
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.analysis import claims as C
from edgezo.analysis import report as R
from edgezo.analysis.cost import write_cost_report
from edgezo.analysis.memory import MemoryRow, write_memory_report
from edgezo.analysis.report import build_report, demote
from edgezo.cli import report as report_cli
from edgezo.studies.common import Outcome
from edgezo.studies.results import StudyWriter, within

NUMBER = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?")  # not the digits of a name (fp32, w8a)
METHODS = ("zero-shot", "backprop", "zo", "pezo", "qzo-ff 16w8a", "sparse zo")
STUDY_CELLS = {
    "fewshot": (("backbone", "regime"), [("resnet", "ft"), ("resnet", "lp"), ("vit", "ft"), ("vit", "lp")]),
    "cross-domain": (("target", "regime"), [("fashion-mnist", "lp"), ("fashion-mnist", "vpt"), ("digits", "lp"), ("digits", "vpt")]),
    "ood": (("severity", "regime"), [("easy", "lp"), ("easy", "vpt"), ("hard", "lp"), ("hard", "vpt")]),
}  # fmt: skip
MEMORY = {  # model -> (batch, {row: (weights, scratch, gradients, state)})
    "vit-tiny": (3, {"BP fp32": (22_801_451, 23_456_789, 22_745_612, 0),
                     "BP fp16": (11_400_726, 11_728_395, 11_372_806, 0),
                     "ZO fp32": (22_801_451, 7_654_321, 0, 0),
                     "QZO-FF 16w8a": (11_400_914, 1_913_583, 0, 0),
                     "QZO-FF 16w8a + 90% sparse": (11_400_914, 1_913_583, 0, 710_801)}),
    "crnn": (5, {"BP fp32": (232_876, 4_567_890, 232_101, 0), "ZO fp32": (232_876, 301_517, 0, 0)}),
}  # fmt: skip
HW_ROWS = {  # key -> (luts, ffs, energy)
    "boxmuller": (653, 271, 2231.7), "clt": (1861, 2043, 4219.3),
    "pezo-pool": (11, 17, 251.9), "pezo-array": (243, 259, 633.1),
}  # fmt: skip
COST = {  # regime -> seconds per round of (zo, backprop); lp is left out of the claim
    "ft": ([0.5, 0.5, 0.4], [0.9, 1.0, 0.8]), "vpt": ([0.5, 0.6, 0.5], [0.6, 0.6, 0.7]),
    "lp": ([0.5, 0.5, 0.5], [0.1, 0.1, 0.1]),
}  # fmt: skip
LANDSCAPE = {  # (regime, method) -> (test_error, distance_moved)
    ("lp", "backprop"): (0.4417, 1.0613), ("lp", "zo"): (0.4462, 0.7057),
    ("lp", "qzo-ff 16w8a"): (0.4553, 0.05213), ("lp", "qzo-ff 8w8a"): (0.4497, 0.0),
    ("vpt", "backprop"): (0.3961, 1.7579), ("vpt", "zo"): (0.4391, 3.9613),
    ("vpt", "qzo-ff 16w8a"): (0.4089, 0.1031), ("vpt", "qzo-ff 8w8a"): (0.5347, 0.00291),
}  # fmt: skip


# -- fake results, written by the tools' own writers ------------------------------------------
def accuracies(study: str) -> dict[tuple, dict[str, float]]:
    rng = random.Random(study)
    return {
        cell: {m: round(rng.uniform(0.55, 0.95), 5) for m in METHODS}
        for cell in STUDY_CELLS[study][1]
    }


def write_study(results: Path, study: str) -> None:
    keys, _ = STUDY_CELLS[study]
    writer = StudyWriter(study, results / study, keys=keys, methods=METHODS)
    rng = random.Random(study + "t")
    for i, (cell, accs) in enumerate(accuracies(study).items()):
        for method, acc in accs.items():
            steps = 0 if method == "zero-shot" else 150 if method == "backprop" else 1000
            history = [{"step": s, "loss": 2.0 / s, "eval/val/accuracy": acc} for s in (1, 2, 3)]
            outcome = Outcome(method, 1e-3, acc, steps=steps, forwards=2 * steps,
                              seconds=round(rng.uniform(20.0, 200.0), 3),
                              history=history if i == 0 and study == "fewshot" else [])  # fmt: skip
            writer.add(outcome, **dict(zip(keys, cell, strict=True)))
    writer.finish(config={"budget": "fake"}, quick=True, seed=0)


def write_memory(results: Path, model: str) -> None:
    batch, rows = MEMORY[model]
    meta = {"model": f"{model} (a fake)", "regime": "ft", "batch": batch}
    table = [MemoryRow(name, *parts) for name, parts in rows.items()]
    out = results / C.Source("memory", model).directory
    write_memory_report(out, table, meta, title=f"Training memory: {model}")


def write_cost(results: Path) -> None:
    cells = [{"regime": r, "trained": 970, "seconds": {"two forwards": zo, "zo": zo, "pezo": zo,
              "backprop": bp}} for r, (zo, bp) in COST.items()]  # fmt: skip
    meta = {"model": "vit-tiny (a fake)", "batch": 4, "rounds": 3, "warmup": 1, "threads": 1,
            "load_average_start": [0.3, 0.2, 0.1], "load_average_end": [0.4, 0.2, 0.1],
            "environment": {"cpu_count": 2}}  # fmt: skip
    write_cost_report(results / C.COST_VIT.directory, {"meta": meta, "cells": cells})


def test_the_cost_claim_reads_the_run_in_the_folder_it_names(tmp_path):
    write_cost(tmp_path)  # cost/: the claim's
    other = json.loads((tmp_path / "cost" / "cost.json").read_text())
    for cell in other["cells"]:
        cell["seconds"]["backprop"] = [9.0, 9.0, 9.5]
    write_cost_report(tmp_path / "batch32", other)  # sorts first, same model
    found = R.by_source(R.collect(tmp_path))
    assert found[C.COST_VIT].directory.name == "cost"
    md = build_report(tmp_path, tmp_path / "out")[0].read_text()
    ours = claims_table(md)["an FF iteration is cheaper than a BP iteration"][3]
    assert ours.startswith(ref_cost()[0])  # cost/'s 1.93x in ft, not batch32/'s 18-19x
    assert md.count("\n## Time per iteration\n") == 1 and "| 9000.0 |" in md  # both shown


def write_landscape(results: Path) -> None:
    from edgezo.studies.landscape import QUICK, markdown, plain_config

    rows = [
        {"regime": r, "method": m, "test_error": e, "distance_moved": d, "lr": 1e-3, "steps": 200,
         "trained_weights": 970, "path_length": 2 * d, "plane": "pca", "surface_seconds": 0.5,
         "surface": {"losses": [[1.5, 2.5], [2.5, 3.5]]}}
        for (r, m), (e, d) in LANDSCAPE.items()
    ]  # fmt: skip
    out = results / "landscape"
    out.mkdir(parents=True)
    payload = {"quick": True, "seed": 0, "config": {"grid": 15, "directions": "pca", "test": 2000},
               "panels": rows, "figure": "landscape.png"}  # fmt: skip
    (out / "landscape.json").write_text(json.dumps(payload))
    (out / "landscape.md").write_text(markdown(rows, plain_config(QUICK), True, "landscape.png"))
    (out / "landscape.png").write_bytes(b"\x89PNG\r\n\x1a\nfake landscape")


def write_hw(results: Path) -> None:
    from edgezo.hw.report import Row, markdown
    from edgezo.hw.synth import Resources

    rows = [
        Row(
            key,
            "family",
            key,
            12,
            Resources("xilinx", luts, ffs, 0, 0.0, 0, 0.0),
            energy,
            True,
            1.0,
        )
        for key, (luts, ffs, energy) in HW_ROWS.items()
    ]
    out = results / "hw"
    out.mkdir(parents=True)
    payload = {"throughput": 12, "bits": 7, "target": "xilinx", "cycles": 256,
               "rows": [asdict(r) for r in rows]}  # fmt: skip
    (out / "report.json").write_text(json.dumps(payload))
    (out / "report.md").write_text(markdown(rows, 12, 7, "xilinx", 256))
    (out / "report.png").write_bytes(b"\x89PNG\r\n\x1a\nfake hardware chart")


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """``results/`` with every result but the audio studies; the report in ``out/``."""
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    for study in STUDY_CELLS:
        write_study(results, study)
    for model in MEMORY:
        write_memory(results, model)
    write_cost(results)
    write_landscape(results)
    write_hw(results)
    return root


@pytest.fixture(scope="module")
def built(fake: Path) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(fake)  # relative paths: the commands in the report carry no temporary path
        md, page = build_report("results", "out")
    return {"md": fake / md, "html": fake / page, "root": fake}


def claims_table(md: str) -> dict[str, list[str]]:
    """claim text -> the cells of its row (paper, claim, number, ours, verdict, why, command)."""
    section = md.split("## The papers' claims", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return {c[1]: c for c in cells}


# -- the reference: what each claim's row must show, computed from the fake numbers --------------
def ref_within(studies, method, reference, points):
    """(hits, counted cells, largest shortfall, vacuous cells) by explicit cell loops over the
    fake accuracies (one seed: every interval is a point). A cell is vacuous when the
    reference or backprop is not above zero-shot, or zero-shot is within ``points`` too."""
    hits = counted = vacuous = 0
    worst = -float("inf")
    for s in studies:
        for a in accuracies(s).values():
            gap = 100 * (a[reference] - a[method])
            worst = max(worst, gap)
            zero = a["zero-shot"]
            if (a[reference] <= zero or a["backprop"] <= zero
                    or 100 * (a[reference] - zero) <= points + 1e-9):  # fmt: skip
                vacuous += 1
                continue
            counted += 1
            hits += gap <= points + 1e-9
    return hits, counted, worst, vacuous


def within_strings(studies, method, reference, points):
    hits, n, worst, vacuous = ref_within(studies, method, reference, points)
    share = hits / n if n else 0.0
    return [f"{method}: {hits}/{n} cells", f"({share:.0%})", f"(0 inconclusive, {n - hits} not)",
            f"{vacuous} vacuous cells left out", f"{worst:.2f} points"]  # fmt: skip


def ref_cost():
    """BP over ZO seconds per round, per whole-network regime: the mean ratio and its t-interval
    over the three rounds, worked by hand (t(0.975, 2) = 4.3027)."""
    out = []
    for regime in ("ft", "vpt"):
        ratios = [b / z for z, b in zip(*COST[regime], strict=True)]
        mean = sum(ratios) / 3
        half = 4.3027 * math.sqrt(sum((r - mean) ** 2 for r in ratios) / 2) / math.sqrt(3)
        out.append(f"{regime}: {mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]x")
    return out + ["batch 4, 1 thread(s), 3 paired rounds (load average 0.3 at the start)",
                  "--regimes ft,vpt,lp --batch 4 --rounds 3 --threads 1"]  # fmt: skip


def error_difference(regime: str) -> str:
    """The landscape's 16w8a minus 8w8a test error (points) with its two-proportion interval on
    the fake's 2,000 test examples, worked by hand (z = 1.95996)."""
    a, b = LANDSCAPE[(regime, "qzo-ff 16w8a")][0], LANDSCAPE[(regime, "qzo-ff 8w8a")][0]
    half = 1.95996 * math.sqrt((a * (1 - a) + b * (1 - b)) / 2000)
    d = 100 * (a - b)
    return f"{regime}: qzo-ff 16w8a minus qzo-ff 8w8a {d:.2f} [{d - 100 * half:.2f}, {d + 100 * half:.2f}]"


def expected_rows() -> dict[str, list[str]]:
    """claim text -> strings its row must contain (numbers formatted from the fake data)."""
    vit, crnn = MEMORY["vit-tiny"][1], MEMORY["crnn"][1]
    bp, zo = vit["BP fp32"][1], vit["ZO fp32"][1]
    sparse = vit["QZO-FF 16w8a + 90% sparse"]
    w, s = crnn["BP fp32"][:2]
    lp = accuracies("cross-domain")
    hw = {}
    for design in ("pezo-pool", "pezo-array"):
        for i, metric in enumerate(("luts", "ffs", "energy")):
            new = HW_ROWS[design][i]
            hw[(design, metric)] = [f"{100 * (new - HW_ROWS[b][i]) / HW_ROWS[b][i]:+.1f}% vs {name}"
                                    for b, name in (("boxmuller", "Box-Muller"), ("clt", "CLT"))]  # fmt: skip
    land = {key: (f"{100 * e:.2f}%", f"moved {d:.3g}") for key, (e, d) in LANDSCAPE.items()}
    text = {c.text: c for c in C.CLAIMS}

    def find(start: str) -> str:
        return next(t for t in text if t.startswith(start))

    out = {
        find("FF within 5% of BP in few-shot vision"): within_strings(["fewshot"], "zo", "backprop", 5.0),
        find("quantized FF (16w8a) close"): within_strings(list(STUDY_CELLS), "qzo-ff 16w8a", "zo", 5.0),
        find("random-number reuse"): within_strings(list(STUDY_CELLS), "pezo", "zo", 1.0),
        find("sparse FF"): within_strings(["ood"], "sparse zo", "zo", 5.0),
        find("VWW"): [f"lp {t}: {100 * (a['backprop'] - a['qzo-ff 16w8a']):.2f} points"
                      for (t, r), a in lp.items() if r == "lp"],
        find("an FF iteration"): ref_cost(),
        find("8-bit weights"): [land[(r, m)][1] for r in ("lp", "vpt") for m in ("qzo-ff 8w8a", "qzo-ff 16w8a")] + ["--grid 15"],
        find("16-bit weights needed"): [error_difference(r) for r in ("lp", "vpt")]
        + ["the 95% interval", "one run each, 2000 test examples", "holds 0 in lp", "--grid 15"],
        find("FF takes more conservative"): [land[(r, m)][1] for r in ("lp", "vpt") for m in ("zo", "backprop")] + ["--grid 15"],
        find("ViT-tiny full fine-tuning"): [f"BP {bp / 1e6:.3g} MB -> ZO {zo / 1e6:.3g} MB",
                                            f"({bp / zo:.2f}x less)", "batch 3", "--batch 3"],
        find("sparse (90%)"): [f"scratch {sparse[1] / 1e6:.3g} MB", f"total {sum(sparse) / 1e6:.3g} MB", "batch 3"],
        find("CRNN"): [f"weights {w / 1e3:.3g} kB", f"{s / 1e6:.3g} MB", f"{s / w:.3g}x", "--batch 5"],
        **{find(f"{what}: RNG {label}"): hw[(design, metric)] + ["--throughput 12 --bits 7"]
           + (["xilinx, 12 numbers per cycle"] if metric != "energy" else [])
           for design, what in C.PEZO_DESIGNS.items()
           for metric, label in (("luts", "LUTs"), ("ffs", "flip-flops"), ("energy", "power"))},
    }  # fmt: skip
    return out


# -- tests ------------------------------------------------------------------------------
def test_every_claim_is_a_row_with_the_papers_text_and_number(built):
    table = claims_table(built["md"].read_text())
    assert list(table) == [c.text for c in C.CLAIMS]
    for claim in C.CLAIMS:
        assert table[claim.text][:3] == [claim.paper, claim.text, claim.number]


def test_claims_table_shows_each_fake_number_and_no_other(built, monkeypatch):
    monkeypatch.chdir(built["root"])
    table = claims_table(built["md"].read_text())
    expected = expected_rows()
    claims = {c.text: c for c in C.CLAIMS}
    for text, row in table.items():
        joined = " | ".join(row)
        for s in expected.get(text, []):
            assert s in joined, (text, s, joined)
        allowed = set(NUMBER.findall(" ".join(expected.get(text, []))))
        allowed |= set(NUMBER.findall(f"{claims[text].text} {claims[text].number}"))
        stray = set(NUMBER.findall(" ".join(row[3:]))) - allowed
        assert not stray, (text, stray, joined)


def test_verdicts_follow_the_fake_numbers(built):
    table = claims_table(built["md"].read_text())
    verdict = {text: row[4].strip("*") for text, row in table.items()}
    by = {c.text.split(" (")[0].split(":")[0]: c.text for c in C.CLAIMS if c.sources != (C.HW,)}
    hits, n, _, _ = ref_within(["fewshot"], "zo", "backprop", 5.0)
    assert verdict[by["FF within 5% of BP in few-shot vision"]] == (
        C.VACUOUS if not n else C.REPRODUCED if hits / n >= 26 / 30 else C.NOT_REPRODUCED
    )
    bp, zo = MEMORY["vit-tiny"][1]["BP fp32"][1], MEMORY["vit-tiny"][1]["ZO fp32"][1]
    assert verdict[by["ViT-tiny full fine-tuning scratch"]] == (
        C.REPRODUCED if bp / zo >= 31.64 / 11.43 else C.NOT_REPRODUCED
    )
    # fake hardware: the pool beats -48.6% / -12.7% against both; the array's FFs do not vs
    # Box-Muller (259 vs 271: -4.4%), its power is -85.0% at best (not "up to -86%")
    for metric in ("LUTs", "flip-flops", "power"):
        assert verdict[f"pre-generated pool: RNG {metric} vs a Gaussian generator"] == C.REPRODUCED
    assert (
        verdict["on-the-fly RNG array: RNG flip-flops vs a Gaussian generator"] == C.NOT_REPRODUCED
    )
    assert verdict["on-the-fly RNG array: RNG power vs a Gaussian generator"] == C.NOT_REPRODUCED
    assert verdict["on-the-fly RNG array: RNG LUTs vs a Gaussian generator"] == C.REPRODUCED
    # 8w8a moved less than 16w8a in both regimes; its error is above 16w8a's beyond the interval
    # in vpt (12.6 points), while lp's 0.56 points are inside it (+-3.1 on 2,000 examples)
    assert verdict[by["8-bit weights"]] == C.REPRODUCED
    assert verdict[by["16-bit weights needed"]] == C.INCONCLUSIVE
    assert verdict[by["sign-m-SPSA"]] == C.NOT_RUN  # the fake has no ablations study


def test_missing_results_are_not_run_with_the_command_that_makes_them(built):
    md = built["md"].read_text()
    row = claims_table(md)["FF within 5% of BP in few-shot audio (5-way 1-shot)"]
    assert row[4] == f"**{C.NOT_RUN}**" and row[3] == "n/a"
    assert row[6] == "`edgezo run kws-fewshot --quick --out results`"
    not_run = md.split("## Not run", 1)[1].split("\n## ", 1)[0]
    assert "- `edgezo run kws-fewshot --quick --out results`" in not_run
    assert (
        "kws-personalize" in not_run and "`edgezo run fewshot --quick --out results`" not in not_run
    )
    # a claim with some studies present says which are missing
    pool = claims_table(md)[next(c.text for c in C.CLAIMS if c.text.startswith("random-number"))]
    assert "not run: kws-personalize, kws-fewshot" in pool[5]


def test_commands_are_read_from_the_results_files(built):
    table = claims_table(built["md"].read_text())
    vit = next(t for t in table if t.startswith("ViT-tiny"))
    assert table[vit][6] == "`edgezo memory vit-tiny --regime ft --batch 3 --out results/memory`"
    hw = next(t for t in table if t.startswith("pre-generated pool: RNG LUTs"))
    assert (
        table[hw][6]
        == "`edgezo hw report --throughput 12 --bits 7 --target xilinx --out results/hw`"
    )


def test_every_section_and_figure_is_in_the_report(built):
    md = built["md"].read_text()
    out = built["md"].parent
    for title in (
        "## Studies",
        "## Memory",
        "## Loss landscape",
        "## Hardware",
        "### fewshot (quick)",
    ):
        assert title in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"fewshot/curves-resnet-ft.png", "memory/memory.png", "memory-crnn/memory.png",
            "landscape/landscape.png", "hw/report.png"} <= set(links)  # fmt: skip
    results = built["root"] / "results"
    for link in links:  # copied next to the report, byte for byte
        assert (out / link).read_bytes() == (results / link).read_bytes()


class Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [(k, v or "") for k, v in attrs if k in ("src", "href", "srcset", "data")]


def test_html_is_one_self_contained_file(built):
    page = built["html"].read_text()
    parser = Sources()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object"} & set(parser.tags)
    srcs = [v for k, v in parser.urls if k == "src"]
    assert len(srcs) == 6 and all(v.startswith("data:image/png;base64,") for v in srcs)
    assert all(k == "src" for k, _ in parser.urls)  # no links out either
    landscape = (built["root"] / "results" / "landscape" / "landscape.png").read_bytes()
    assert any(base64.b64decode(v.split(",", 1)[1]) == landscape for v in srcs)
    assert "<table>" in page and "<td><strong>reproduced</strong></td>" in page


def test_the_default_output_is_the_results_directory_without_copies(fake, monkeypatch):
    monkeypatch.chdir(fake)
    md, _ = build_report("results")
    assert md == Path("results/report.md")
    assert "](fewshot/curves-resnet-ft.png)" in md.read_text()
    md.unlink()
    Path("results/report.html").unlink()


def test_missing_or_foreign_results_are_refused_with_advice(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist: run studies into it .*--run-quick"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "r" / "odd").mkdir(parents=True)
    (tmp_path / "r" / "odd" / "results.json").write_text('{"rows": []}')
    with pytest.raises(
        ValueError, match=r"odd/results.json is not a study results file \(no 'study'\)"
    ):
        build_report(tmp_path / "r")
    (tmp_path / "c" / "cost").mkdir(parents=True)  # timed cells without what timed them
    (tmp_path / "c" / "cost" / "cost.json").write_text('{"cells": []}')
    with pytest.raises(ValueError, match=r"cost.json is not a cost results file \(no 'meta'\)"):
        build_report(tmp_path / "c")


def test_empty_results_make_a_report_of_not_run_claims(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("r").mkdir()
    table = claims_table(build_report("r")[0].read_text())
    for claim in C.CLAIMS:
        assert table[claim.text][4].strip("*") == (C.NOT_RUN if claim.sources else C.NOT_COMPARABLE)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12),
       st.sampled_from([0.5, 1.0, 5.0]))  # fmt: skip
def test_cell_gaps_count_as_the_studies_own_claims_do(pairs, points):
    rows = [
        {"cell": f"c{i}", "regime": "lp", "method": m, "accuracy": acc, "steps": 3}
        for i, (a, b) in enumerate(pairs) for m, acc in (("zo", a), ("backprop", b))
    ]  # fmt: skip
    hits = sum(g <= points + 1e-9 for _, g in C.gaps(rows, "zo", "backprop"))
    assert (hits, len(pairs)) == within(rows, ("cell", "regime"), "zo", "backprop", points)


@pytest.mark.parametrize("hits, verdict", [(26, C.REPRODUCED), (25, C.NOT_REPRODUCED)])
def test_a_share_claim_needs_the_papers_share(hits, verdict):
    rows = [{"cell": f"c{i}", "method": m, "accuracy": a}
            for i in range(30) for m, a in (("backprop", 0.9), ("zo", 0.88 if i < hits else 0.8))]  # fmt: skip
    check = C.within_check(["fewshot"], "zo", "backprop", 5.0, 26 / 30)
    finding = check({C.study("fewshot"): {"rows": rows}})
    assert finding.verdict == verdict and f"{hits}/30 cells" in finding.ours


def test_demote_shifts_headings_but_not_code():
    text = "## Title\n\ntext # not a heading\n```\n# code\n```\n### Sub\n"
    assert demote(text, top=3) == "### Title\n\ntext # not a heading\n```\n# code\n```\n#### Sub"


def test_cli_writes_the_report(fake, monkeypatch, capsys):
    monkeypatch.chdir(fake)
    parser = argparse.ArgumentParser()
    report_cli.add_cli(parser.add_subparsers())
    args = parser.parse_args(["report", "--results", "results", "--out", "cli-out"])
    assert args.handler(args) == 0
    assert "wrote cli-out/report.md and cli-out/report.html" in capsys.readouterr().out


def test_run_quick_runs_only_what_is_missing_and_goes_on_after_a_failure(
    fake, monkeypatch, tmp_path
):
    results = tmp_path / "results"
    results.mkdir()
    (results / "fewshot").symlink_to(fake / "results" / "fewshot")
    ran: list[list[str]] = []

    def fake_run(argv: list[str]) -> int:
        ran.append(argv)
        if argv[0] == "landscape":
            raise RuntimeError("out of memory")
        return 0

    monkeypatch.setattr(report_cli, "run_edgezo", fake_run)
    monkeypatch.setattr(report_cli, "unavailable", lambda s: "no yosys" if s == C.HW else None)
    outcomes = report_cli.run_quick(results, progress=False)
    label = str(results)
    assert ["run", "fewshot", "--quick", "--out", label] not in ran
    assert ["run", "ood", "--quick", "--out", label] in ran
    assert ["memory", "vit-tiny", "--out", f"{label}/memory"] in ran
    assert outcomes[f"edgezo landscape --quick --out {label}/landscape"].startswith(
        "failed: RuntimeError: out of memory"
    )
    assert outcomes[f"edgezo hw report --out {label}/hw"] == "skipped: no yosys"


def test_run_edgezo_parses_with_the_subcommands_own_parser(monkeypatch):
    import edgezo.cli.run as run_cli

    seen = {}
    monkeypatch.setattr(run_cli, "run", lambda args: seen.update(vars(args)) or 0)
    assert report_cli.run_edgezo(["run", "ood", "--quick", "--out", "somewhere"]) == 0
    assert seen["study"] == "ood" and seen["quick"] and str(seen["out"]) == "somewhere"


@pytest.mark.slow
def test_report_from_real_quick_runs(tmp_path, monkeypatch):
    """``edgezo report --run-quick`` end to end; the claims' numbers re-read from the files."""
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    report_cli.add_cli(parser.add_subparsers())
    args = parser.parse_args(["report", "--results", "results", "--run-quick"])
    assert args.handler(args) == 0
    md = Path("results/report.md").read_text()
    table = claims_table(md)
    fewshot = json.loads(Path("results/fewshot/results.json").read_text())
    hits, n = within(fewshot["rows"], ("backbone", "regime"), "zo", "backprop", 5.0)
    assert f"zo: {hits}/{n} cells" in table[C.CLAIMS[0].text][3]
    memory = {
        r["name"]: r for r in json.loads(Path("results/memory/memory.json").read_text())["rows"]
    }
    vit = next(t for t in table if t.startswith("ViT-tiny"))
    assert (
        f"({memory['BP fp32']['scratch'] / memory['ZO fp32']['scratch']:.2f}x less)"
        in table[vit][3]
    )
    # every number outside the claims table is in one of the results files' Markdown
    sources = " ".join(p.read_text() for p in Path("results").glob("*/*.md"))
    head, tail = md.split("## The papers' claims", 1)
    rest = head + tail.split("\n## ", 1)[1]
    assert set(NUMBER.findall(rest)) <= set(NUMBER.findall(sources))
    page = Path("results/report.html").read_text()
    parser_ = Sources()
    parser_.feed(page)
    assert all(v.startswith("data:") for k, v in parser_.urls if k == "src")


def test_a_results_file_without_a_needed_row_is_not_comparable_and_says_which(tmp_path):
    write_memory(tmp_path, "crnn")  # has no "QZO-FF 16w8a + 90% sparse" row; store it as vit-tiny
    (tmp_path / "crnn").mkdir()
    data = json.loads((tmp_path / "memory-crnn" / "memory.json").read_text())
    data["meta"]["model"] = "vit-tiny"
    (tmp_path / "crnn" / "memory.json").write_text(json.dumps(data))
    table = claims_table(build_report(tmp_path, tmp_path / "out")[0].read_text())
    row = table["sparse (90%) + fixed point (16w8a) FF scratch, ViT-tiny"]
    assert row[4] == f"**{C.NOT_COMPARABLE}**"
    assert "the results lack 'QZO-FF 16w8a + 90% sparse'" in row[5]


def test_a_study_command_carries_its_seed_and_quick_flag():
    source = C.study("ood")
    assert source.command({"quick": False, "seed": 4}, "r") == "edgezo run ood --seed 4 --out r"
    assert source.command({"quick": True, "seed": 0}, "r") == "edgezo run ood --quick --out r"
    assert source.command(None, "r") == "edgezo run ood --quick --out r"


def test_the_verdicts_are_counted_under_the_claims_table(built):
    md = built["md"].read_text()
    table = claims_table(md)
    verdicts = [row[4].strip("*") for row in table.values()]
    line = next(x for x in md.splitlines() if x.startswith("Verdicts of "))
    assert line.startswith(f"Verdicts of {len(verdicts)} claims: ")
    for v in set(verdicts):
        assert f"{verdicts.count(v)} {v}" in line
    assert sum(int(n) for n in re.findall(r"(\d+) [a-z]", line.split(": ", 1)[1])) == len(verdicts)


def test_a_section_whose_folder_keeps_only_its_json_is_rebuilt_with_its_figure(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    write_memory(results, "vit-tiny")
    folder = results / "memory"
    written = (folder / "memory.md").read_text()
    for name in ("memory.md", "memory.png"):  # what a committed results folder lacks
        (folder / name).unlink()
    (artifact,) = [a for a in R.collect(results) if a.source.kind == "memory"]
    assert artifact.markdown == ""
    rebuilt = R.rebuilt(artifact).markdown
    assert rebuilt.startswith("## Training memory: vit-tiny, ft, batch ")  # from the meta
    assert rebuilt.split("\n", 1)[1] == written.split("\n", 1)[1]  # the command's own text
    text = R.report_markdown([artifact], [], "results", out)
    assert "![memory](memory/memory.png)" in text
    assert (out / "memory" / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_merged_study_keeping_only_its_json_gets_its_table_and_chart(tmp_path):
    from edgezo.studies import seeds as seeds_mod

    folder = tmp_path / "results" / "ood"
    for seed in (0, 1):  # two runs of the fake ood study, merged as `edgezo run --seeds` does
        write_study(tmp_path / f"run-{seed}", "ood")
        folder.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"run-{seed}" / "ood").rename(folder / f"seed-{seed}")
    seeds_mod.merge(folder, (0, 1))
    for extra in folder.iterdir():  # what a commit keeps: the merged JSON alone
        if extra.name != "results.json":
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    out = tmp_path / "report"
    text = R.report_markdown(R.collect(tmp_path / "results"), [], "results", out)
    assert "ood (quick), seeds 0, 1" in text and "![cells](ood/cells.png)" in text
    assert (out / "ood" / "cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
