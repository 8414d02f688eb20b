"""edgezo.analysis.ablations on hand-made results (means, t-intervals and decisions by hand),
its docs block, and the repository's block held to the committed results/ablations JSON."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgezo.analysis import ablations as A
from edgezo.analysis import claims as C
from edgezo.analysis import docs as D

ROOT = Path(__file__).resolve().parents[1]
#: Two-sided 95% quantiles of Student's t from a printed table, by degrees of freedom.
T_TABLE = {1: 12.7062, 2: 4.3027, 4: 2.7764}
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w])")


def payload(accuracies: dict[str, list[float]], comparisons) -> dict:
    rows = []
    for name, accs in accuracies.items():
        family, row = name.split("/")
        for seed, acc in enumerate(accs):
            rows.append({"family": family, "row": row, "method": "zo", "start": "head fp32",
                         "seed": seed, "accuracy": acc, "lr": 1e-3, "steps": 10,
                         "forwards": 60})  # fmt: skip
    return {"rows": rows, "config": {"comparisons": [list(c) for c in comparisons]}}


def test_rows_and_differences_by_hand():
    data = payload(
        {"f/a": [0.50, 0.52, 0.54], "f/b": [0.48, 0.489, 0.498], "f/c": [0.50, 0.53, 0.56]},
        [("f/a", "f/b"), ("f/b", "f/a"), ("f/c", "f/a")],
    )
    body = "\n".join(A.ablation_body(data))
    half = T_TABLE[2] * 2.0 / math.sqrt(3)  # a: mean 52, sd 2 points
    assert (
        f"| f | a | head fp32 | 52.00 [{52 - half:.2f}, {52 + half:.2f}] | 0.001 | 10 | 60 |"
        in (body)
    )
    # a - b per seed: 2.0, 3.1, 4.2 points: mean 3.1, sd 1.1
    half = T_TABLE[2] * 1.1 / math.sqrt(3)
    assert f"| f/a | f/b | 3.10 [{3.1 - half:.2f}, {3.1 + half:.2f}] | better |" in body
    assert f"| f/b | f/a | -3.10 [{-3.1 - half:.2f}, {-3.1 + half:.2f}] | worse |" in body
    # c - a: 0, 1, 2 points: the interval [-1.48, 3.48] holds 0
    assert "| f/c | f/a | 1.00 [-1.48, 3.48] | inconclusive |" in body


def test_a_lr_at_its_grids_edge_is_starred_and_an_inner_or_single_one_is_not():
    data = payload({"f/a": [0.5, 0.5, 0.5], "f/b": [0.5, 0.5, 0.5]}, [])
    for r, lr in zip(data["rows"][:3], (1e-3, 1e-2, 1e-1), strict=True):
        r.update(lr=lr, grid=[1e-3, 1e-2, 1e-1])  # lowest, inner, highest
    for r in data["rows"][3:]:
        r.update(lr=1e-2, grid=[1e-2])  # a one-value grid has no edge to widen past
    body = "\n".join(A.ablation_body(data))
    assert "| f | a | head fp32 | 50.00 [50.00, 50.00] | 0.001*, 0.01, 0.1* | 10 | 60 |" in body
    assert "| f | b | head fp32 | 50.00 [50.00, 50.00] | 0.01 | 10 | 60 |" in body
    assert not A.at_edge({"lr": 1e-3})  # rows run before rows kept their grid: not judged


def test_a_comparison_of_a_missing_row_names_it():
    data = payload({"f/a": [0.5, 0.6]}, [("f/a", "f/zz")])
    with pytest.raises(ValueError, match="no row 'f/zz'"):
        A.ablation_body(data)


@given(st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=5).filter(
    lambda d: statistics.pstdev(d) > 1e-6))  # fmt: skip
def test_swapping_the_rows_mirrors_the_interval_and_the_decision(diffs):
    runs = {"f/a": {s: {"accuracy": 0.5 + d} for s, d in enumerate(diffs)},
            "f/b": {s: {"accuracy": 0.5} for s in range(len(diffs))}}  # fmt: skip
    ab, ba = A.difference(runs, "f/a", "f/b"), A.difference(runs, "f/b", "f/a")
    assert ab.mean == pytest.approx(-ba.mean, abs=1e-9)
    assert ab.low == pytest.approx(-ba.high, abs=1e-9)
    flip = {A.BETTER: A.WORSE, A.WORSE: A.BETTER, A.INCONCLUSIVE: A.INCONCLUSIVE}
    assert A.decision(ba) == flip[A.decision(ab)]
    assert (A.decision(ab) == A.BETTER) == (ab.low > 0)


def test_the_docs_block_is_made_from_a_results_folder(tmp_path):
    data = payload({"f/a": [0.5, 0.52, 0.54], "f/b": [0.4, 0.41, 0.42]}, [("f/a", "f/b")])
    data.update(study="ablations", quick=True, seeds=[0, 1, 2], keys=["family", "row"],
                claims=[], seconds={"0": 60.0, "1": 60.0, "2": 60.0},
                provenance={"edgezo": "0.1.0", "commit": "abc", "threads": 1})  # fmt: skip
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "results.json").write_text(json.dumps(data))
    text = "<!-- edgezo:generated ablations -->\nstale 99.99\n<!-- edgezo:end -->\n"
    new = D.regenerate(text, tmp_path, "results")
    assert "from `results/ablations/results.json`: quick run, seeds 0, 1, 2" in new
    assert "| f/a | f/b | 11.00 " in new and "| better |" in new and "99.99" not in new


def reference_numbers(data: dict) -> list[float]:
    """Every number the repository's ablations block may show, recomputed from its JSON."""
    runs: dict[str, list[dict]] = {}
    for r in data["rows"]:
        runs.setdefault(f"{r['family']}/{r['row']}", []).append(r)
    out: list[float] = []

    def interval(values: list[float]) -> None:
        mean = statistics.fmean(values)
        half = T_TABLE[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
        out.extend([mean, mean - half, mean + half])

    for rs in runs.values():
        interval([100 * r["accuracy"] for r in rs])
        out += [float(r[k]) for r in rs for k in ("steps", "forwards") if r[k] is not None]
        out += [float(r["lr"]) for r in rs if r["lr"] is not None]
    for a, b in data["config"]["comparisons"]:
        by_seed = {r["seed"]: r["accuracy"] for r in runs[b]}
        interval([100 * (r["accuracy"] - by_seed[r["seed"]]) for r in runs[a]])
    prov = data["provenance"]
    out += [*data["seeds"], prov["threads"], round(sum(map(float, data["seconds"].values())) / 60)]
    shas = {b["sha256"] for run in data.get("runs", {}).values() for b in run.get("backbones", [])}
    out.append(float(len(shas)))  # "1 backbone's SHA-256 recorded"
    out += [float(x) for x in re.findall(r"\d+", prov["edgezo"])]
    # the numbers of the rows' names (sign-3, q=3, 90%, fp32, 16w8a's parts)
    names = " ".join(runs) + " ".join(f"{a} {b}" for a, b in data["config"]["comparisons"])
    return out + [float(x) for x in re.findall(r"\d+", names)] + [32.0, 95.0, 0.0]


def test_the_repository_block_holds_only_numbers_of_the_committed_results():
    path = ROOT / "results" / "ablations" / "results.json"
    data = json.loads(path.read_text())
    bodies = [b for what, b in D.blocks((ROOT / "docs" / "studies.md").read_text())
              if what.split()[0] == "ablations"]  # fmt: skip
    assert len(bodies) == 1, "docs/studies.md should have one ablations block"
    allowed = reference_numbers(data)
    text = bodies[0].replace(data["provenance"]["commit"][:10], "").replace("results.json", "")
    text = text.replace("cut to 0-100", "").replace("SHA-256", "")  # a range and a hash's name
    for number in NUMBER.findall(text):
        assert any(abs(float(number) - a) <= 0.006 * max(1.0, abs(a)) for a in allowed), number


def test_the_m_claim_is_decided_on_the_paired_interval():
    def found(sign3, sign1):
        data = payload({"m/sign-1": sign1, "m/sign-3": sign3}, [])
        return {C.study("ablations"): data}

    claim = next(c for c in C.CLAIMS if c.text.startswith("sign-m-SPSA"))
    assert claim.sources == (C.study("ablations"),)
    better = claim.check(found([0.90, 0.91, 0.92], [0.88, 0.89, 0.90]))  # +2 points every seed
    assert better.verdict == C.REPRODUCED and better.ours.startswith("sign-3 - sign-1: 2.00 [2.00")
    assert claim.check(found([0.88, 0.89, 0.90], [0.90, 0.91, 0.92])).verdict == C.NOT_REPRODUCED
    assert claim.check(found([0.90, 0.88, 0.92], [0.89, 0.89, 0.90])).verdict == C.INCONCLUSIVE
    missing = claim.check({C.study("ablations"): payload({"z/gaussian": [0.9]}, [])})
    assert missing.verdict == C.NOT_COMPARABLE and "no row 'm/sign-3'" in missing.why
