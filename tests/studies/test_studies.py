"""The studies' shared parts against hand computations, and each study end to end on a tiny config."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo.directions import Gaussian, Pool, RNGArray
from edgezo.fixedpoint import FixedPointParameter
from edgezo.studies import cross_domain, fewshot, ood, run_study
from edgezo.studies.common import PROBES, Budget, prototype_head, run_method, subsets
from edgezo.studies.fewshot import mean_ci, proto_loss
from edgezo.studies.methods import FORWARD_ONLY, METHODS, Settings, make_optimizer, prepare
from edgezo.studies.ood import corrupted_mixture
from edgezo.studies.results import check_claims, pivot, within


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 5), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_prototype_head_is_the_nearest_class_mean_classifier(classes, dim, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat(4)
    feats = torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    head = prototype_head(nn.Linear(dim, classes).double(), feats, labels)
    queries = torch.randn(50, dim, generator=g, dtype=torch.float64)
    means = torch.stack([feats[labels == c].mean(0) for c in range(classes)])
    nearest = ((queries[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(head(queries).argmax(1), nearest)


def test_proto_loss_matches_a_written_out_loop():
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(10, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    means = [feats[labels == c].mean(0) for c in range(3)]
    total = 0.0
    for f, y in zip(feats, labels, strict=True):
        logits = torch.stack([-((f - m) ** 2).sum() for m in means])
        total += -torch.log_softmax(logits, 0)[y]
    assert proto_loss(feats, labels).item() == pytest.approx(total.item() / 10, rel=1e-5)


def test_mean_ci_is_196_standard_errors():
    values = [0.5, 0.7, 0.6, 0.9, 0.4]
    mean, ci = mean_ci(values)
    assert mean == pytest.approx(0.62)
    assert ci == pytest.approx(1.96 * statistics.stdev(values) / math.sqrt(5))


def _rows(table: dict[str, dict[str, float]]) -> list[dict]:
    return [
        {"cell": c, "method": m, "accuracy": a} for c, ms in table.items() for m, a in ms.items()
    ]


def test_claims_count_the_cells_within_the_margin():
    rows = _rows({
        "a": {"backprop": 0.90, "zo": 0.86, "pezo": 0.855, "qzo-ff 16w8a": 0.84},
        "b": {"backprop": 0.80, "zo": 0.70, "pezo": 0.72, "qzo-ff 16w8a": 0.79},
    })  # fmt: skip
    assert within(rows, ["cell"], "pezo", "backprop", 5.0) == (1, 2)  # 4.5 and 8 points below
    assert within(rows, ["cell"], "pezo", "zo", 1.0) == (2, 2)  # 0.5 below, 2 above
    verdicts = {c["claim"]: c["verdict"] for c in check_claims(rows, ["cell"])}
    assert verdicts["qzo-ff 16w8a within 5 points of backprop"] == "not met"  # 6 below in a
    assert "| a | 90.00 |" in pivot(rows, ["cell"], ["backprop"])


def test_methods_build_the_papers_configurations():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    calibration = [torch.randn(16, 4)]
    for name in METHODS:
        net, params = prepare(name, model, calibration)
        opt = make_optimizer(name, params, Settings(lr=1e-3), seed=0)
        if name == "zero-shot":
            assert opt is None
        elif name == "backprop":
            assert isinstance(opt, torch.optim.Adam)
        elif name == "qzo-ff 16w8a":
            assert all(
                isinstance(p, FixedPointParameter) and p.dtype == torch.int16 for p in params
            )
            assert opt.estimator.name == "sign" and opt.queries == 3
        else:
            assert net is not model and all(p.dtype == torch.float32 for p in params)
            kind = {"pezo": Pool, "pezo array": RNGArray}.get(name, Gaussian)
            assert isinstance(opt.directions, kind)
    # PeZO's on-the-fly reuse: the array of 16 8-bit LFSRs, seeded by the run's seed
    array = make_optimizer("pezo array", list(model.parameters()), Settings(lr=1e-3), seed=7)
    reference = RNGArray(n=16, rng="lfsr", bits=8, seed=7)
    assert array.estimator.name == "central" and array.queries == 1
    assert array.directions.config() == reference.config()
    assert array.directions.config() != RNGArray(n=16, rng="lfsr", bits=8, seed=8).config()
    sparse = make_optimizer("sparse zo", list(model.parameters()), Settings(lr=1e-3), seed=0)
    kept = sum(m.ones for g in sparse.param_groups for m in g["masks"])
    assert kept == sum(p.numel() - round(0.9 * p.numel()) for p in model.parameters())
    with pytest.raises(ValueError, match="choose from"):
        prepare("adam", model)


def test_run_method_picks_the_lr_that_wins_on_validation():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g)
    x = torch.randn(600, 5, generator=g)
    y = (x @ w).argmax(1)
    train, val, test = (x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])
    budget = Budget(steps=60, zo_steps=60, batch=32, grid=True, eval_points=2)
    model = nn.Linear(5, 3)
    outcome, net = run_method(
        "backprop", model, train, val, test, (1e-6, 3e-2), Settings(lr=1e-6), budget
    )
    assert outcome.lr == 3e-2 and outcome.val_accuracy > 0.8 and outcome.accuracy > 0.8
    assert not torch.equal(net.weight, model.weight)  # a copy trained; the model is untouched


def test_corrupted_mixture_sends_image_i_through_corruption_i_mod_k():
    from edgezo.data.corruptions import corrupt
    from edgezo.data.images import as_input

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8, generator=g)
    x, y = corrupted_mixture(images, torch.arange(7), ("fog", "rotate"), 2, seed=3)
    assert torch.equal(x[1::2], as_input(corrupt(images[1::2], "rotate", 2, seed=3)))
    assert torch.equal(x[0::2], as_input(corrupt(images[0::2], "fog", 2, seed=3)))


def test_subsets_are_disjoint_and_seeded():
    x = torch.arange(100)
    a, b = subsets(x, x, (30, 20), seed=1)
    assert len(set(a[0].tolist()) | set(b[0].tolist())) == 50
    assert torch.equal(a[0], subsets(x, x, (30,), seed=1)[0][0])


TINY = Budget(steps=4, zo_steps=6, batch=16, grid=False, eval_points=2)
TINY_PROBE = Budget(steps=5, zo_steps=8, batch=16, grid=False, eval_points=2)


@pytest.mark.parametrize(
    "study, config",
    [
        ("cross-domain", cross_domain.Config(
            arch="vit", targets=("digits",), train=64, val=32, test=64, pretrain_steps=10,
            budget=TINY, probe_budget=TINY_PROBE)),
        ("ood", ood.Config(
            arch="cnn", severities=(3,), corruptions=("fog", "rotate"), regimes=("lp", "lp3"),
            train=64, val=32, test=32, pretrain_steps=10, budget=TINY, probe_budget=TINY_PROBE)),
        ("fewshot", fewshot.Config(
            backbones=("cnn",), episodes=3, val_episodes=2, pretrain_steps=10,
            budget=Budget(steps=2, zo_steps=4, batch=25, grid=False, eval_points=2))),
    ],
)  # fmt: skip
def test_each_study_runs_end_to_end_and_writes_its_files(study, config, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    module = {"cross-domain": cross_domain, "ood": ood, "fewshot": fewshot}[study]
    summary = module.run(False, tmp_path / study, seed=0, progress=False, config=config)
    payload = json.loads((tmp_path / study / "results.json").read_text())
    assert {r["method"] for r in payload["rows"]} == set(config.methods)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in payload["rows"])
    assert (
        len(payload["claims"]) == 3
        and summary["table"] in (tmp_path / study / "results.md").read_text()
    )
    assert payload["figures"] and all(
        (tmp_path / study / f).stat().st_size > 0 for f in payload["figures"]
    )
    for row in payload["rows"]:  # probes train on their own budget
        if study != "fewshot" and row["method"] != "zero-shot":
            budget = config.probe_budget if row["regime"] in PROBES else config.budget
            wanted = budget.zo_steps if row["method"] in FORWARD_ONLY else budget.steps
            assert row["steps"] == wanted, row


def test_unknown_study_is_named():
    with pytest.raises(
        ValueError,
        match="choose from ablations, convergence, cross-domain, fewshot, kws-fewshot, kws-personalize, ood",
    ):
        run_study("imagenet", quick=True, out="unused")


@pytest.mark.slow
@pytest.mark.parametrize("study", ["cross-domain", "ood", "fewshot"])
def test_quick_study_runs_end_to_end(study, tmp_path):
    summary = run_study(study, quick=True, out=tmp_path, progress=False)
    assert (tmp_path / study / "results.md").is_file() and summary["claims"]


@pytest.mark.parametrize(
    "module, config, rows",
    [
        (ood, ood.Config(
            arch="cnn", severities=(1, 3), corruptions=("fog", "rotate"), regimes=("lp",),
            methods=("zero-shot", "backprop", "zo", "qzo-ff 16w8a"), train=64, val=32, test=32,
            pretrain_steps=10, budget=TINY, probe_budget=TINY), 8),  # cells in processes
        (fewshot, fewshot.Config(
            backbones=("cnn",), methods=("zero-shot", "zo", "qzo-ff 16w8a"), episodes=3,
            ft_episodes=2, val_episodes=2, pretrain_steps=10,
            budget=Budget(steps=2, zo_steps=4, batch=25, grid=True, eval_points=2)), 6),  # episodes
    ],
)  # fmt: skip
def test_a_study_spread_over_two_processes_equals_one_process(
    module, config, rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 workers: the same float sums
    try:
        payloads = []
        for jobs in (1, 2):
            module.run(False, tmp_path / str(jobs), progress=False, config=config, jobs=jobs)
            payloads.append(json.loads((tmp_path / str(jobs) / "results.json").read_text()))
    finally:
        torch.set_num_threads(threads)
    for payload in payloads:
        for row in payload["rows"]:
            row.pop("seconds")
    assert payloads[0]["rows"] == payloads[1]["rows"]
    assert payloads[0].get("per_corruption") == payloads[1].get("per_corruption")
    assert len(payloads[0]["rows"]) == rows


def test_ood_rows_hold_every_corruptions_test_flags_in_turn(tmp_path, monkeypatch):
    """An OOD row's ``correct`` is each corruption's test images in the config's order: its
    slices give the per-corruption accuracies and their mean the row's accuracy, so the claims
    bootstrap over seeds x images (a wrong order or size would break the slices)."""
    from edgezo.analysis.stats import unpack_correct

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    config = ood.Config(
        arch="cnn", severities=(3,), corruptions=("fog", "rotate", "contrast"), regimes=("lp",),
        methods=("zero-shot", "zo"), train=64, val=32, test=24, pretrain_steps=10,
        budget=TINY, probe_budget=TINY_PROBE,
    )  # fmt: skip
    ood.run(False, tmp_path / "ood", progress=False, config=config)
    payload = json.loads((tmp_path / "ood" / "results.json").read_text())
    for row in payload["rows"]:
        flags = unpack_correct(row["correct"], row["examples"]).reshape(3, 24)
        assert row["accuracy"] == pytest.approx(flags.mean(), abs=1e-12)
        per = [c for c in payload["per_corruption"] if c["method"] == row["method"]]
        assert [c["corruption"] for c in per] == list(config.corruptions)
        assert [c["accuracy"] for c in per] == pytest.approx(flags.mean(axis=1).tolist())


def test_tested_flags_are_evaluates_accuracy_example_by_example():
    from edgezo.analysis.stats import unpack_correct
    from edgezo.studies.common import tested
    from edgezo.train import evaluate

    torch.manual_seed(0)
    model, x, y = nn.Linear(5, 3), torch.randn(2500, 5), torch.randint(0, 3, (2500,))
    out = tested(model, (x, y), batch=1000)
    flags = unpack_correct(out["correct"], out["examples"])
    assert flags.tolist() == (model(x).argmax(1) == y).tolist()
    assert out["accuracy"] == pytest.approx(evaluate(model, x, y)["accuracy"], abs=1e-12)
    assert math.isnan(tested(model, None)["accuracy"])


def test_provenance_names_the_cpu_and_torchs_kernel_level_on_it(tmp_path):
    """A result's last digits follow the CPU: its model (the first of /proc/cpuinfo's, where
    there is one) and torch's kernel level are recorded, never a path or host name."""
    import platform

    from edgezo.models.portable import cpu_model
    from edgezo.studies.results import provenance

    made = provenance()
    assert made["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert made["cpu"] == cpu_model() and made["cpu"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Chip A @ 2GHz\n\nmodel name\t: Chip B\n")
    assert cpu_model(cpuinfo) == "Chip A @ 2GHz"
    cpuinfo.write_text("processor\t: 0\n")
    assert (
        cpu_model(cpuinfo) == cpu_model(tmp_path / "missing") == (platform.processor() or "unknown")
    )
    assert platform.node() not in json.dumps(made)
