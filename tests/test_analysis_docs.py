"""edgezo.analysis.docs: generated blocks filled from results files, and the repository's own
docs held to its committed results/ (every generated number recomputed here from the JSON)."""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections.abc import Mapping
from pathlib import Path

import pytest

import edgezo.studies as studies
from edgezo.analysis import claims as C
from edgezo.analysis import docs as D
from edgezo.analysis.report import build_report
from edgezo.analysis.stats import t_interval
from edgezo.studies import seeds as seeds_mod
from edgezo.studies.common import Outcome
from edgezo.studies.results import StudyWriter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DOCS = (ROOT / "README.md", ROOT / "docs" / "studies.md", ROOT / "docs" / "hw.md")
#: The engine reports (``edgezo hw report --engine``) that docs/hw.md's engine blocks read.
ENGINE = ROOT / "docs" / "hw_engine"
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


def test_the_provenance_line_names_each_commit_and_the_untimed_seeds():
    prov = {"commit": "a" * 40, "dirty": False}
    data = {"seeds": [0, 1, 2], "provenance": prov, "seconds": {"1": 60.0, "2": 180.0},
            "runs": {"0": {"commit": "b" * 40, "dirty": False}, "1": prov, "2": prov}}  # fmt: skip
    assert D.commits_text(data) == f"seed 0 at commit {'b' * 10}, seeds 1, 2 at commit {'a' * 10}"
    assert D.timing_text(data) == "4 min for seeds 1, 2 (the others not timed)"
    data["runs"]["0"] = {**prov, "dirty": True}
    assert D.commits_text(data).startswith(f"seed 0 at commit {'a' * 10} (dirty), seeds 1, 2")
    data["runs"], data["seconds"]["0"] = {"0": prov, "1": prov, "2": prov}, 120.0
    assert (D.commits_text(data), D.timing_text(data)) == (
        f"at commit {'a' * 10}",
        "6 min for all seeds",
    )
    data["provenance"] = {**prov, "threads": 2}  # the merge's threads: it trains nothing
    data["runs"] = {s: {**prov, "threads": 1} for s in "012"}
    assert D.threads_text(data) == "1 thread(s)"
    data["runs"]["2"] = {**prov, "threads": 2}
    assert D.threads_text(data) == "seeds 0, 1 on 1 thread(s), seed 2 on 2 thread(s)"
    del data["runs"]  # a file merged before seeds kept their own provenance: the merge's
    assert D.commits_text(data) == f"at commit {'a' * 10}"
    assert D.timing_text({"seeds": [0], "seconds": {}}) == "time not recorded"
    assert D.backbones_text(data) == "backbones not recorded (run before edgezo recorded them)"
    vit, cnn = ({"name": n, "format": 2, "sha256": n * 8} for n in ("vit", "cnn"))
    data["runs"] = {"0": {**prov, "backbones": [vit]}, "1": {**prov, "backbones": [vit, cnn]},
                    "2": prov}  # fmt: skip
    assert (
        D.backbones_text(data) == "2 backbones' SHA-256 recorded (seeds 0, 1: `runs` in the JSON)"
    )
    data["runs"]["2"] = {**prov, "backbones": [cnn]}
    assert D.backbones_text(data).endswith("(every seed: `runs` in the JSON)")
    data["runs"] = {"0": {**prov, "backbones": [cnn]}, "1": {**prov, "backbones": [cnn]}}
    assert D.backbones_text(data).startswith("1 backbone's SHA-256 recorded (every seed")


def test_bad_blocks_and_files_are_refused_with_what_to_do(fake_results, tmp_path):
    with pytest.raises(ValueError, match="unknown generated block 'tables'"):
        D.regenerate("<!-- edgezo:generated tables -->\n<!-- edgezo:end -->", fake_results)
    with pytest.raises(ValueError, match=r"edgezo run fewshot --seeds 0,1,2"):
        D.regenerate("<!-- edgezo:generated study fewshot -->\n<!-- edgezo:end -->", fake_results)
    plain = tmp_path / "plain.md"
    plain.write_text("no blocks here\n")
    with pytest.raises(ValueError, match="no <!-- edgezo:generated"):
        D.update_docs([plain], fake_results)


def demo_run(seed: int, afters: tuple[float, float]) -> dict:
    methods = {
        name: {
            "before": 0.4481,
            "after": after,
            "steps": 800,
            "forwards": forwards,
            "seconds": 7.25,
        }
        for name, after, forwards in zip(
            ("mezo", "qzo-ff 16w8a"), afters, (1600, 4800), strict=True
        )
    }
    return {"config": {"seed": seed}, "methods": methods, "seconds": 100.4 + seed,
            "loadavg_at_start": 1.25 + seed, "pretrain": {"cached": seed > 0, "seconds": 11.04}}  # fmt: skip


def test_the_demo_block_quotes_the_printed_table_and_the_seeds_interval(fake_results):
    record = {"demo": "edgezo demo --seeds 0,1", "seeds": [0, 1], "methods": ["mezo", "qzo-ff 16w8a"],
              "provenance": {"edgezo": "9.9", "commit": "c0ffee" * 5, "torch": "7.7",
                             "threads": 2, "machine": "x86_64"},
              "runs": {"0": demo_run(0, (0.80, 0.5)), "1": demo_run(1, (0.90, 0.5))}}  # fmt: skip
    (fake_results / "demo").mkdir()
    (fake_results / "demo" / "demo.json").write_text(json.dumps(record))
    text = "<!-- edgezo:generated demo -->\n<!-- edgezo:end -->\n"
    ((what, body),) = D.blocks(D.regenerate(text, fake_results, "results"))
    # seeds' afters 80 and 90: mean 85, s = 7.0711, half-width t(0.975, 1) 12.7062 * s / sqrt(2)
    # = 63.531, cut at 100; qzo-ff: 50 twice, s = 0, the interval is the point
    assert (
        body
        == """\
Generated by `edgezo report --docs` from `results/demo/demo.json` (`edgezo demo --seeds 0,1`: \
edgezo 9.9 at commit c0ffeec0ff, torch 7.7, 2 threads, x86_64; backbone pretrained in 11.0 s, \
load average 1.2, 2.2 at the start of each seed; seed 0 took 100 s in all). Seed 0, as \
`edgezo demo` prints it:

```
method        before   after  steps  forwards  wall s
------------  ------  ------  -----  --------  ------
mezo          44.81%  80.00%    800      1600     7.2
qzo-ff 16w8a  44.81%  50.00%    800      4800     7.2
```

Shifted-test accuracy (%) over the seeds (the backbone is the same for every seed; the seed \
changes the batches and the directions):

| method | before | after, seed 0 | after, seed 1 | after: mean [95% t-interval, cut to 0-100] |
|---|---:|---:|---:|---|
| mezo | 44.81 | 80.00 | 90.00 | 85.00 [21.47, 100.00] |
| qzo-ff 16w8a | 44.81 | 50.00 | 50.00 | 50.00 [50.00, 50.00] |
"""
    )


def test_a_missing_demo_or_benchmark_says_what_to_run(fake_results):
    with pytest.raises(ValueError, match=r"edgezo demo --seeds 0,1,2 --out results/demo"):
        D.regenerate("<!-- edgezo:generated demo -->\n<!-- edgezo:end -->", fake_results)
    with pytest.raises(ValueError, match=r"unknown benchmark 'nope'; use one of: step_overhead"):
        D.regenerate("<!-- edgezo:generated benchmark nope -->\n<!-- edgezo:end -->", fake_results)
    with pytest.raises(ValueError, match=r"python benchmarks/runtime.py --out"):
        D.regenerate("<!-- edgezo:generated benchmark runtime -->\n<!-- edgezo:end -->",
                     fake_results)  # fmt: skip
    with pytest.raises(ValueError, match=r"use one of: step_overhead, .*, hw_engine_cxxrtl"):
        D.regenerate("<!-- edgezo:generated benchmark nope -->\n<!-- edgezo:end -->", fake_results)
    with pytest.raises(ValueError, match=r"python benchmarks/hw_engine_cxxrtl.py --out"):
        D.regenerate("<!-- edgezo:generated benchmark hw_engine_cxxrtl -->\n<!-- edgezo:end -->",
                     fake_results)  # fmt: skip


# -- the repository's docs against its committed results ----------------------------------------
def committed_studies() -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in RESULTS.glob("*/results.json")}


def reference_numbers(data: dict) -> list[float]:
    """Every number a study block may show, recomputed from its JSON: per cell and method the
    mean accuracy (%) over seeds and its t-interval bounds (printed t table), the claims'
    counts and shares, the seeds, the provenance, the minutes, the backbones recorded."""
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
    runs = (data.get("runs") or {}).values()
    out.append(len({b["sha256"] for run in runs for b in run.get("backbones", [])}))
    return out


def test_results_are_committed_for_the_generated_blocks():
    wanted = {what.split()[1] for doc in DOCS for what, _ in D.blocks(doc.read_text())
              if what.startswith("study ")}  # fmt: skip
    wanted |= {(what.split() + ["convergence"])[1] for doc in DOCS
               for what, _ in D.blocks(doc.read_text()) if what.split()[0] == "convergence"}  # fmt: skip
    assert wanted, "no generated study block in the docs"
    assert wanted <= set(committed_studies())


BENCH = ROOT / "benchmarks" / "results"
#: The kinds of block of docs/hw.md: the hardware report, the engine reports and the Gaussian
#: generators' exact accuracy (computed from the models).
HW_KINDS = ("hw", "hw-targets", "engine", "engine-energy", "engine-savings", "gaussian-accuracy")
#: The JSON files each ``benchmark NAME`` block reads (this test's own list).
BENCH_FILES = {
    "step_overhead": ("step_overhead", "step_overhead_kernels_off", "mezo_side_by_side"),
    "fixedpoint_step": ("fixedpoint_step",),
    "runtime": ("runtime",),
    "fixedpoint": ("fixedpoint",),
    "peft_memory": ("peft_memory",),
    "distributed": ("distributed",),
    "drift": ("drift",),
    "memory": ("memory",),
    "scale_rules": ("scale_rules",),
    "fewshot_lr": ("fewshot_lr",),
    "backbone_determinism": ("backbone_determinism",),
    "hw_engine_cxxrtl": ("hw_engine_cxxrtl",),
}
SIGNED = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?!\w)")
#: A small number in scientific notation, ``3.0e-5`` (negative powers only: ``2e484`` is hex).
POWER = re.compile(r"(?<![\w.])(\d+)(?:\.(\d+))?e-(\d+)(?!\w)")


def as_decimal(m: re.Match) -> str:
    """``3.0e-5`` as ``0.000030``: the same value, with as many printed digits."""
    whole, frac, power = m.group(1), m.group(2) or "", int(m.group(3))
    return f"{float(f'{whole}.{frac}e-{power}'):.{len(frac) + power}f}"


def leaves(obj) -> list[float]:
    """Every number of a JSON value: its numbers and the numbers written in its strings and keys
    (a version, a label such as "sign-3", a source named "pool 1021")."""
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in (*leaves(k), *leaves(v))]
    if isinstance(obj, list):
        return [x for v in obj for x in leaves(v)]
    if isinstance(obj, str):
        return [float(n) for n in NUMBER.findall(obj)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []


def t_bounds(values: list[float]) -> list[float]:
    """The mean and the 95% t-interval's bounds of ``values`` (printed t table)."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return [mean]
    half = T_TABLE[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return [mean, mean - half, mean + half]


def fixedpoint_numbers(data: dict) -> list[float]:
    """What the fixedpoint block computes: differences to fp32 ZO (zero-shot: to its mean; runs:
    per seed, with their t-interval), the seed count, the minutes."""
    ref = data["rows"]["zo_fp32"]
    out = [100 * (z - ref["mean"]) for z in data["zero_shot"].values()]
    for row in data["rows"].values():
        out += t_bounds([100 * (a - r) for a, r in zip(row["accs"], ref["accs"], strict=True)])
    return [*out, len(data["config"]["seeds"]), data["seconds"] / 60]


def scale_rules_numbers(data: dict) -> list[float]:
    """What the scale_rules block computes: each rule's (and backprop's) test accuracy (%) over
    the seeds with its t-interval."""
    runs = [rule["training"] for rule in data["rules"].values()]
    runs.append(data["backprop_sgd_reference"]["per_seed"])
    return [x for seeds in runs for x in t_bounds([100 * r["test_accuracy"] for r in seeds])]


def fewshot_lr_numbers(data: dict) -> list[float]:
    """What the fewshot_lr block computes: each (method, lr)'s validation accuracy (%) over the
    seeds with its t-interval, and the bounds it is cut to."""
    runs: dict[tuple, list[float]] = {}
    for r in data["rows"]:
        runs.setdefault((r["method"], r["lr"]), []).append(r["accuracy"])
    return [0.0, 100.0] + [x for accs in runs.values() for x in t_bounds(accs)]


def demo_numbers(data: dict) -> list[float]:
    """What the demo block computes: each method's mean after adaptation over the seeds, with
    its t-interval (%)."""
    runs = [data["runs"][str(s)] for s in data["seeds"]]
    return [x for name in runs[0]["methods"]
            for x in t_bounds([100 * r["methods"][name]["after"] for r in runs])]  # fmt: skip


def convergence_numbers(data: dict) -> list[float]:
    """What the convergence block computes, by hand from its JSON: per cell and method the test
    accuracy (%) at its budget, at each mark and at its last step (mean and t bounds over the
    seeds), its lr, budget and last step; ZO - BP per seed at the budgets and at the ends and
    the change (t bounds); the marks; the provenance line's numbers."""
    runs: dict[tuple, list[dict]] = {}
    for r in data["rows"]:
        runs.setdefault((r["cell"], r["method"]), []).append(r)
    marks = data["config"]["marks"]
    out = [*marks]

    def at(r: dict, step) -> float | None:
        if "curve" not in r:
            return r["accuracy"]
        c = r["curve"]
        step = r["budget"] if step == "budget" else step
        return c["test"][-1] if step == "end" else (
            c["test"][c["step"].index(step)] if step in c["step"] else None)  # fmt: skip

    for (cell, method), rows in runs.items():
        rows = sorted(rows, key=lambda r: r["seed"])
        for step in ("budget", *marks, "end"):
            values = [at(r, step) for r in rows]
            if None not in values:
                out += t_bounds([100 * v for v in values])
        if method != "zero-shot":
            out += [rows[0]["lr"], rows[0]["budget"], rows[0]["curve"]["step"][-1]]
        if method == "zo":
            bp = sorted(runs[cell, "backprop"], key=lambda r: r["seed"])
            gaps = {s: [100 * (at(z, s) - at(b, s)) for z, b in zip(rows, bp, strict=True)]
                    for s in ("budget", "end")}  # fmt: skip
            out += t_bounds(gaps["budget"]) + t_bounds(gaps["end"])
            out += t_bounds([e - b for e, b in zip(gaps["end"], gaps["budget"], strict=True)])
            out += [bp[0]["budget"], bp[0]["curve"]["step"][-1]]
    prov = data["provenance"]
    out += [*data["seeds"], prov["threads"], round(sum(map(float, data["seconds"].values())) / 60)]
    out += [float(x) for x in NUMBER.findall(f"{prov['edgezo']} {prov['torch']}")]
    return out + [5.0]  # the margin checked at the end


def hw_numbers(data: dict) -> list[float]:
    """What the hw block computes, by hand: each PeZO design's change (%) of LUTs, FFs and energy
    against each Gaussian; and the constants ``edgezo hw report`` prints beside them: PeZO's
    published numbers, its arXiv id and the energy weights."""
    from edgezo.hw.power import WEIGHTS
    from edgezo.hw.report import PEZO_PUBLISHED

    rows = {r["key"]: r for r in data["rows"]}
    out = []
    for pezo in ("pezo-pool", "pezo-pool-anyd", "pezo-array"):
        for gauss in ("clt", "boxmuller"):
            p, g = rows[pezo], rows[gauss]
            for new, base in ((p["resources"]["luts"], g["resources"]["luts"]),
                              (p["resources"]["ffs"], g["resources"]["ffs"]),
                              (p["energy"], g["energy"])):  # fmt: skip
                if new is not None and base:
                    out.append(100 * (new - base) / base)
    return [*out, *PEZO_PUBLISHED.values(), *WEIGHTS.values(), 2504.20314]


def engine_numbers(data: dict) -> list[float]:
    """What an engine block computes, by hand: the generator's share (%) of each row's LUTs and
    FFs, its energy per step in millions; PeZO's cheapest design against the cheapest Gaussian
    (%), generators alone and engines; and the numbers in the generators' names (LFSR-32)."""
    from edgezo.hw.engine_report import NAMES

    out = []
    for lanes in {r["lanes"] for r in data["rows"]}:
        rows = [r for r in data["rows"] if r["lanes"] == lanes]
        for r in rows:
            out += [
                100 * (r["engine"][w] - r["baseline"][w]) / r["engine"][w] for w in ("luts", "ffs")
            ]
            if r.get("energy_per_step"):
                out.append(r["energy_per_step"] / 1e6)
        for w in ("luts", "ffs"):
            gauss = [r for r in rows if r["family"] == "Gaussian"]
            pezo = [r for r in rows if r["family"] == "PeZO"]
            if gauss and pezo:
                g, p = (min(rs, key=lambda r: r["engine"][w]) for rs in (gauss, pezo))
                gen = [r["engine"][w] - r["baseline"][w] for r in (g, p)]
                out += [100 * (p["engine"][w] - g["engine"][w]) / g["engine"][w],
                        100 * (gen[1] - gen[0]) / gen[0]]  # fmt: skip
    return out + [float(n) for name in NAMES.values() for n in NUMBER.findall(name)]


def block_sources(what: str) -> tuple[list[dict], list[float]]:
    """The JSON a block is made from, and the numbers it computes from them."""
    kind, _, arg = what.partition(" ")
    if kind == "gaussian-accuracy":  # computed from the models: their parameters and stats
        from edgezo.hw.gaussian import CLT, BoxMuller

        clt, bm = CLT(k=4, bits=8), BoxMuller(bits=8)
        stats = [x for model in (clt, bm) for x in model.stats().values()]
        return [], [*stats, clt.k, bm.m, bm.a, 0.0, 1.0]  # 0 and 1 of N(0,1)
    if kind == "hw":
        data = json.loads((RESULTS / (arg or "hw") / "report.json").read_text())
        return [data], hw_numbers(data)
    if kind == "hw-targets":
        return [
            json.loads((RESULTS / name / "report.json").read_text()) for name in arg.split()
        ], []
    if kind.startswith("engine"):
        files = [json.loads((ENGINE / f"{name}.json").read_text()) for name in arg.split()]
        return files, [x for f in files for x in engine_numbers(f)]
    if kind == "study":
        data = committed_studies()[arg]
        return [data], reference_numbers(data)
    if kind == "convergence":
        data = committed_studies()[arg or "convergence"]
        return [data], convergence_numbers(data)
    if kind == "demo":
        data = json.loads((RESULTS / "demo" / "demo.json").read_text())
        return [data], demo_numbers(data)
    files = [json.loads((BENCH / f"{name}.json").read_text()) for name in BENCH_FILES[arg]]
    computed = {"fixedpoint": fixedpoint_numbers, "scale_rules": scale_rules_numbers,
                "fewshot_lr": fewshot_lr_numbers}  # fmt: skip
    return files, computed[arg](files[0]) if arg in computed else []


def commits(obj) -> list[str]:
    """Every commit named in a JSON value (``commit``, ``git_head``; printed to 10 digits)."""
    if isinstance(obj, dict):
        own = [str(v)[:10] for k, v in obj.items() if k in ("commit", "git_head") and v]
        return own + [c for v in obj.values() for c in commits(v)]
    return []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_generated_number_is_in_the_results(doc):
    """Each number of a generated block (code spans, commits, "95%" and "SHA-256" aside) is one of its
    JSON's numbers, as is, in percent or in milliseconds, or one this test recomputes from
    them, to the digits printed."""
    for what, body in D.blocks(doc.read_text()):
        if what.split()[0] not in ("study", "demo", "benchmark", "convergence", *HW_KINDS):
            continue  # claims, verdicts: the report's (tests/test_analysis_report.py)
        files, derived = block_sources(what)
        allowed = derived  # a study or convergence block prints only numbers it computes
        if what.split()[0] not in ("study", "convergence"):
            allowed = [k * x for f in files for x in leaves(f) for k in (1, 100, 1000)] + derived
        text = re.sub(r"`[^`]*`", "", body).replace("results.json", "").replace("95%", "")
        text = text.replace("SHA-256", "")
        for commit in (c for f in files for c in commits(f)):
            text = text.replace(commit, "")
        text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 10,000
        text = POWER.sub(as_decimal, text)  # 3.0e-5
        for number in SIGNED.findall(text):
            value, digits = float(number), len(number.partition(".")[2])
            tol = 0.6 * 10**-digits  # the printed rounding, and t's 4-digit table
            assert any(abs(value - a) <= tol or abs(abs(value) - abs(a)) <= tol
                       for a in allowed), (doc.name, what, number)  # fmt: skip


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_are_what_the_committed_results_regenerate(doc):
    text = doc.read_text()
    assert D.regenerate(text, RESULTS, "results") == text, (
        f"{doc.name} is out of date: run `edgezo report --results results --out docs/report "
        "--docs README.md docs/studies.md docs/hw.md` and commit"
    )


def test_the_committed_report_is_the_one_the_results_make(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    md, _ = build_report("results", tmp_path)
    assert md.read_text() == (ROOT / "docs" / "report" / "report.md").read_text()


#: A quoted interval, ``mean [low, high]`` (a line break may fall anywhere inside it).
QUOTED = re.compile(r"([-+]?\d+\.\d+)\s*\[\s*([-+]?\d+\.\d+),\s*([-+]?\d+\.\d+)\]")


def quoted(text: str) -> list[tuple[str, tuple[float, float, float]]]:
    """Every ``mean [low, high]`` of ``text``: its words and its three numbers."""
    return [(m.group(0), tuple(map(float, m.groups()))) for m in QUOTED.finditer(text)]


def same_interval(q: tuple[float, ...], c: tuple[float, ...], digits: int) -> bool:
    """``q`` is ``c`` (or ``c`` negated: "8-bit minus 16-bit" read the other way) to ``digits``."""
    tol = 0.6 * 10**-digits
    flipped = (-c[0], -c[2], -c[1])
    return any(all(abs(a - b) <= tol for a, b in zip(q, x, strict=True)) for x in (c, flipped))


def cell_pairs(path: Path) -> list[tuple[float, list[Mapping], list[Mapping]]]:
    """Every two methods of one cell of a committed study's ``results.json``: the mean over the
    seeds of their accuracy difference (points), and their rows."""
    rows = json.loads(path.read_text()).get("rows", []) if path.exists() else []
    if not rows or "accuracy" not in rows[0]:
        return []
    out = []
    for methods in C.runs_by_cell(rows).values():
        for a, b in itertools.combinations(methods, 2):
            by_seed = {r.get("seed", 0): float(r["accuracy"]) for r in methods[b]}
            diffs = [100 * (float(r["accuracy"]) - by_seed[r.get("seed", 0)])
                     for r in methods[a] if r.get("seed", 0) in by_seed]  # fmt: skip
            if diffs:
                out.append((statistics.fmean(diffs), methods[a], methods[b]))
    return out


def pair_intervals(mean: float, tol: float) -> list[tuple[float, float, float]]:
    """The intervals (points) of every difference of two methods in one cell of a committed
    study whose mean is ``±mean``, and of every two landscape methods (test error in points,
    distance moved) over the seeds: what the prose can quote beyond the generated blocks. Only
    pairs whose mean matches are bootstrapped (about a second each)."""
    out = []
    for path in sorted(RESULTS.glob("*/results.json")):
        for diff, runs, reference in cell_pairs(path):
            if abs(abs(diff) - abs(mean)) <= tol:
                iv = C.difference(runs, reference)
                out.append((iv.mean, iv.low, iv.high))
    land = json.loads((RESULTS / "landscape" / "landscape.json").read_text())
    names = {p["method"] for p in land["panels"]}
    for a, b in itertools.combinations(sorted(names), 2):
        for field, scale in (("test_error", 100.0), ("distance_moved", 1.0)):
            for d in C.seed_differences(land, a, b, field).values():
                iv = t_interval([scale * x for x in d])
                out.append((iv.mean, iv.low, iv.high))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_interval_quoted_in_the_prose_is_one_the_results_give(doc):
    """An interval the prose quotes (outside the generated blocks) is printed in a generated
    block or is the interval of two methods' difference in a committed study cell or in the
    landscape's seeds, to the digits quoted: prose cannot keep a number the results dropped."""
    generated = [iv for f in DOCS for _, body in D.blocks(f.read_text()) for _, iv in quoted(body)]
    generated += [iv for _, iv in quoted((ROOT / "docs" / "report" / "report.md").read_text())]
    for words, q in quoted(D.BLOCK.sub("", doc.read_text())):
        digits = max(len(w.rpartition(".")[2]) for w in re.findall(r"\d+\.\d+", words))
        if any(same_interval(q, c, digits) for c in generated):
            continue
        candidates = pair_intervals(q[0], 0.6 * 10**-digits)
        assert any(same_interval(q, c, digits) for c in candidates), (doc.name, words)


#: A signed number of the prose ("-34.21 points"; quoted intervals are cut out first).
SIGNED_PROSE = re.compile(r"(?<![\w.])[-+]\d+\.\d+(?![\d.])")


def sections(text: str) -> list[str]:
    """``text`` cut before each ``## `` heading."""
    return re.split(r"\n(?=## )", text)


def study_sections(text: str) -> list[tuple[str, str, str]]:
    """``(study, prose, generated)`` for each ``## `` section of ``text`` whose heading names
    ``edgezo run STUDY``: its text outside and inside the generated blocks."""
    out = []
    for section in sections(text):
        named = re.search(r"`edgezo run ([\w-]+)", section.partition("\n")[0])
        if named:
            generated = " ".join(body for _, body in D.blocks(section))
            out.append((named.group(1), QUOTED.sub("", D.BLOCK.sub("", section)), generated))
    return out


def test_every_signed_difference_in_a_studys_prose_is_one_its_results_give():
    """A signed number in a study's section of docs/studies.md (a gap, "-34.21 points") is the
    mean difference of two methods in one cell of that study's committed results, or a number
    its generated block prints, to the two decimals the tables print (one decimal would match
    one of a study's hundreds of pairs by chance): a rerun cannot leave a stale gap behind."""
    sections = study_sections((ROOT / "docs" / "studies.md").read_text())
    assert {study for study, *_ in sections} == set(studies.STUDIES)  # each heading names it
    for study, prose, generated in sections:
        known = [d for d, *_ in cell_pairs(RESULTS / study / "results.json")]
        known += [float(x) for x in SIGNED.findall(generated)]
        for number in SIGNED_PROSE.findall(prose):
            assert len(number.partition(".")[2]) >= 2, (study, number, "quote two decimals")
            assert any(abs(abs(float(number)) - abs(x)) <= 0.006 for x in known), (study, number)


@pytest.mark.parametrize("doc", ("studies.md", "hw.md"))
def test_hand_written_result_tables_are_marked_as_not_regenerated(doc):
    """Every table of numbers in docs/studies.md and docs/hw.md outside a generated block (also
    one indented in a list) is in a section that says it is not regenerated yet."""
    text = D.BLOCK.sub("", (ROOT / "docs" / doc).read_text())
    for section in sections(text):
        tables = [line for line in section.splitlines() if line.lstrip().startswith("| ")]
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
    data = {"seeds": [0, 1, 2], "rows": rows,
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


def test_a_probe_block_without_its_results_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"python benchmarks/lm_probe.py --out results/lm"):
        D.render("probe lm", tmp_path, "results")


# -- the language-model fine-tuning block ---------------------------------------------------------
def finetune_results(root: Path) -> Path:
    """A hand-made ``results/ft/results.json`` of benchmarks/lm_reviews.py: zero-shot, a ZO
    method that learned nothing and backprop, in two variants, 3 seeds (no per-review bits:
    the paired difference is a t-interval over seeds)."""
    rows = []
    for variant, trained in (("prompt full", 22_744_506), ("prompt lora", 73_728)):
        base = {"variant": variant, "examples": 1000}
        rows += [{**base, "method": "zero-shot", "seed": s, "accuracy": a, "steps": 0, "forwards": 0}
                 for s, a in enumerate((0.50, 0.52, 0.48))]  # fmt: skip
        for method, accs, lr, eps in (("mezo", (0.51, 0.52, 0.47), 1e-5, 1e-3),
                                      ("backprop", (0.70, 0.75, 0.71), 2e-5, None)):  # fmt: skip
            rows += [{**base, "method": method, "seed": s, "accuracy": a, "steps": 300,
                      "forwards": 600, "forwards_per_step": 2, "lr": lr, "eps": eps,
                      "cpu_seconds_per_step": 0.4 + 0.1 * s, "trained_parameters": trained}
                     for s, a in enumerate(accs)]  # fmt: skip
    data = {"seeds": [0, 1, 2], "rows": rows, "total_seconds": 3600.0,
            "config": {"forwards": 600, "batch": 16, "per_class": 512},
            "provenance": {"edgezo": "0.1.0", "commit": "abcdef1234567", "threads": 1}}  # fmt: skip
    (root / "ft").mkdir(parents=True)
    (root / "ft" / "results.json").write_text(json.dumps(data))
    return root


def test_a_finetune_block_shows_each_variants_methods_against_zero_shot(tmp_path):
    body = D.render("finetune ft", finetune_results(tmp_path / "results"), "results")
    lines = [line for line in body.splitlines() if line.startswith("| prompt")]
    assert [line.split(" | ")[:2] for line in lines] == [
        ["| prompt full", m] for m in ("zero-shot", "mezo", "backprop")
    ] + [["| prompt lora", m] for m in ("zero-shot", "mezo", "backprop")]
    diffs = {"mezo": [1.0, 0.0, -1.0], "backprop": [20.0, 23.0, 23.0]}  # points, by seed
    for method, learned in (("mezo", "no"), ("backprop", "yes")):
        d = diffs[method]
        mean, half = statistics.fmean(d), T_TABLE[2] * statistics.stdev(d) / math.sqrt(3)
        assert f"| {method} | " in body
        row = next(line for line in lines if line.startswith(f"| prompt full | {method} |"))
        assert f"| {mean:.2f} [{mean - half:.2f}, {mean + half:.2f}] | {learned} |" in row
    assert "| 1e-05 | 0.001 | 300 x 2 | 0.50 | 22,744,506 |" in lines[1]
    assert "| 2e-05 | - | 300 x 2 | 0.50 | 73,728 |" in lines[5]
    assert "600 forward passes of a batch of 16 per run, 512 training reviews per class" in body
    assert "commit abcdef1234, 1 thread(s), 60 min in all. Test accuracy over 1,000 reviews" in body
    assert '"minus zero-shot": a t-interval of the per-seed differences' in body


def test_a_finetune_block_without_its_results_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"python benchmarks/lm_reviews.py --out results/ft"):
        D.render("finetune ft", tmp_path, "results")


# -- the hardware blocks of docs/hw.md -------------------------------------------------------------
def hw_results(root: Path) -> Path:
    """A hand-made ``results/hw/report.json``: a CLT, a Box-Muller and PeZO's pool."""

    def row(key, family, label, luts, ffs, energy):
        resources = {"target": "xilinx", "luts": luts, "ffs": ffs, "carry": 0, "bram": 0.0,
                     "dsp": 0, "lutram": 0.0, "cells": {}}  # fmt: skip
        return {"key": key, "family": family, "label": label, "lanes": 4, "resources": resources,
                "energy": energy, "netlist_matches": True, "seconds": 1.0}  # fmt: skip

    data = {"throughput": 4, "bits": 8, "target": "xilinx", "cycles": 64,
            "rows": [row("clt", "Gaussian", "the CLT", 400, 200, 80.0),
                     row("boxmuller", "Gaussian", "the Box-Muller", 100, 50, 40.0),
                     row("pezo-pool", "PeZO", "the pool", 10, 5, 10.0)],
            "provenance": {"edgezo": "0.1.0", "commit": "abcdef1234567", "dirty": False,
                           "threads": 1}}  # fmt: skip
    (root / "hw").mkdir(parents=True)
    (root / "hw" / "report.json").write_text(json.dumps(data))
    return root


def test_a_hw_block_is_the_reports_tables_without_title_or_chart(tmp_path):
    results = hw_results(tmp_path / "results")
    body = D.render("hw", results, "results")
    assert body.startswith(
        "Generated by `edgezo report --docs` from `results/hw/report.json` (`edgezo hw report "
        "--throughput 4 --bits 8 --target xilinx --out results/hw`: edgezo 0.1.0 at commit "
        "abcdef1234, 1 thread(s)):\n\nCells from yosys"
    )
    assert "# RNG hardware cost" not in body and "\n### PeZO vs the Gaussian baselines" in body
    # the pool against the CLT: (10 - 400) / 400, (5 - 200) / 200, (10 - 80) / 80
    assert "| the pool | the CLT | -97.5% | -97.5% | -87.5% |" in body
    assert "| the pool | the Box-Muller | -90.0% | -90.0% | -75.0% |" in body
    assert "| PeZO | the pool | 10 | 5 | 0 | 0 | 0 | 10.0 | yes |" in body
    assert not (results / "hw" / "report.png").exists()  # the chart is the report's, not the doc's


def test_engine_blocks_read_the_engine_reports_beside_the_results(tmp_path):
    base = {"target": "ecp5", "luts": 100, "ffs": 20, "carry": 0, "bram": 1.0, "dsp": 1,
            "lutram": 0.0, "cells": {}}  # fmt: skip
    rows = [{"key": key, "family": family, "lanes": 2, "engine": {**base, "luts": luts},
             "baseline": base, "cycles_per_step": 10}
            for key, family, luts in (("clt", "Gaussian", 200), ("pezo-pool", "PeZO", 110))
            ]  # fmt: skip
    (tmp_path / "docs" / "hw_engine").mkdir(parents=True)
    engine = {"target": "ecp5", "dim": 4, "queries": 1, "rows": rows}
    (tmp_path / "docs" / "hw_engine" / "e.json").write_text(json.dumps(engine))
    text = D.regenerate("<!-- edgezo:generated engine e -->\n<!-- edgezo:end -->\n",
                        tmp_path / "results")  # fmt: skip
    assert "| CLT | Gaussian | 200 | 20 | 1 | 1 | 50.0% | 0.0% |" in text
    assert "| PeZO pool | PeZO | 110 | 20 | 1 | 1 | 9.1% | 0.0% |" in text
    saving = D.render("engine-savings e", tmp_path / "results", "results")
    # engines 110 vs 200 LUTs -> -45.0%; generators 10 vs 100 -> -90.0%; FFs: none added, 0
    assert saving.splitlines()[-1] == "| 2 | -90.0% | -45.0% | +0.0% | +0.0% |"
    with pytest.raises(ValueError, match=r"has no energy per step"):
        D.render("engine-energy e", tmp_path / "results", "results")
    with pytest.raises(ValueError, match=r"engine takes one engine report"):
        D.render("engine e e", tmp_path / "results", "results")


def test_a_missing_hw_or_engine_report_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"edgezo hw report --out results/hw-ice40"):
        D.render("hw-targets hw-ice40", tmp_path / "results", "results")
    with pytest.raises(ValueError, match=r"edgezo hw report --engine --out DIR.*docs/hw_engine/x"):
        D.render("engine x", tmp_path / "results", "results")
