"""Smoke tests of the benchmark scripts: they run, print JSON with the expected keys, sane numbers.

The fast tests (about 5 s each on two shared cores) run ``--quick`` on the CNN
without the memory subprocesses, and ``scale_rules.py --quick``. The complete
``step_overhead.py --quick`` (ViTTiny, and twelve memory subprocesses that each
import torch) takes about a minute there, so it is marked ``slow``.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgezo.analysis import benchmarks as B

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def run_json(script: str, *args: str, timeout: float = 600) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def numbers(obj, path=""):
    """Every (path, number) in a JSON value (booleans excluded)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def assert_finite(obj):
    bad = [(p, v) for p, v in numbers(obj) if not math.isfinite(v)]
    assert not bad, bad


def assert_positive(obj):
    bad = [(p, v) for p, v in numbers(obj) if not (math.isfinite(v) and v > 0)]
    assert not bad, bad


def check_workload(entry: dict) -> None:
    assert entry["params"] > 0
    assert_positive(entry["forward"])
    passes = entry["passes"]
    assert_positive(passes["memory_pass"])
    for name in ("Gaussian", "Rademacher", "Uniform", "Pool", "pool_axpy_floor"):
        assert_positive(passes["sources"][name])
        assert "ratio_to_memory_pass" in passes["sources"][name]
    for name in (
        "zo_central_gaussian",
        "zo_central_pool",
        "zo_forward_pool",
        "zo_jvp_pool",
        "backprop_sgd",
    ):
        step = entry["steps"][name]
        assert_positive({k: v for k, v in step.items() if k != "decomposition"})
        assert "ratio_to_two_forwards" in step
    assert_positive(entry["steps"]["two_forwards"])
    for name in ("zo_central_pool", "zo_central_gaussian"):
        b = entry["step_breakdown"][name]
        assert b["passes_per_step"] == 3.0
        assert_positive({k: b[k] for k in ("step_s", "closure_s", "directions_add_s")})
    assert entry["pool_pass_profile"]


def check_summary(s: dict, rounds: int) -> None:
    """A timing summary: ``rounds`` samples, ordered min <= median <= max, all positive."""
    assert s["n"] == rounds
    assert 0 < s["min_s"] <= s["median_s"] <= s["max_s"]


def check_ratios(entry: dict, ref: dict, suffix: str) -> None:
    """The three ratios of ``entry`` to ``ref`` are what their timings give."""
    assert entry[f"ratio_{suffix}"] == pytest.approx(entry["median_s"] / ref["median_s"])
    assert entry[f"min_ratio_{suffix}"] == pytest.approx(entry["min_s"] / ref["min_s"])
    paired = entry[f"paired_median_ratio_{suffix}"]  # a median of per-round ratios
    assert entry["min_s"] / ref["max_s"] <= paired <= entry["max_s"] / ref["min_s"]


def check_passes_and_steps(w: dict, config: dict) -> None:
    """Every summary has the configured rounds; ratios and decompositions add up."""
    check_summary(w["forward"], config["repeats"])
    passes = w["passes"]
    check_summary(passes["memory_pass"], config["repeats"])
    for source in passes["sources"].values():
        check_summary(source, config["repeats"])
        check_ratios(source, passes["memory_pass"], "to_memory_pass")
    steps = w["steps"]
    check_summary(steps["two_forwards"], config["step_repeats"])
    for name, counted in (
        ("zo_central_gaussian", 3),
        ("zo_central_pool", 3),
        ("zo_forward_pool", 2),
    ):
        step = steps[name]
        check_summary(step, config["step_repeats"])
        check_ratios(step, steps["two_forwards"], "to_two_forwards")
        d = step["decomposition"]  # step = two forwards + passes + rest
        source = "Gaussian" if "gaussian" in name else "Pool"
        assert d["passes_counted"] == counted
        assert d["two_forwards_s"] == steps["two_forwards"]["median_s"]
        assert d["perturbation_passes_s"] == pytest.approx(
            counted * passes["sources"][source]["median_s"]
        )
        parts = d["two_forwards_s"] + d["perturbation_passes_s"] + d["rest_s"]
        assert parts == pytest.approx(step["median_s"])
    for b in w["step_breakdown"].values():  # measured inside one step: closure + passes + rest
        assert b["steps"] == config["step_repeats"]
        assert b["closure_s"] + b["directions_add_s"] + b["rest_s"] == pytest.approx(b["step_s"])
        assert 0 < b["closure_s"] < b["step_s"] and 0 < b["directions_add_s"] < b["step_s"]
        assert b["outside_closure_fraction"] == pytest.approx(1 - b["closure_s"] / b["step_s"])


def check_pool_target(res: dict) -> None:
    """The target is decided on the Pool pass's paired ratio against its limit, per workload."""
    target = res["targets"]["pool_pass_le_1.5x_memory_pass"]
    assert target["limit"] == 1.5
    for name, verdict in target["per_workload"].items():
        pool = res["workloads"][name]["passes"]["sources"]["Pool"]
        assert verdict["value"] == pool["paired_median_ratio_to_memory_pass"]
        assert verdict["value_median_of_medians"] == pool["ratio_to_memory_pass"]
        assert verdict["value_min"] == pool["min_ratio_to_memory_pass"]
        values = (verdict["value"], verdict["value_median_of_medians"], verdict["value_min"])
        assert verdict["met"] is (verdict["value"] <= 1.5)
        assert verdict["met_by_all_three"] is all(v <= 1.5 for v in values)
    assert target["met"] is all(v["met"] for v in target["per_workload"].values())


def test_step_overhead_quick_cnn(tmp_path):
    import torch

    from edgezo.models import SmallCNN, count_parameters

    out = tmp_path / "bench.json"
    res = run_json(
        "step_overhead.py", "--quick", "--workloads", "smallcnn", "--no-memory", "--out", str(out)
    )
    assert json.loads(out.read_text()) == res
    assert_finite(res)
    assert res["env"]["torch_threads"] == 2
    assert res["env"]["torch"] == torch.__version__
    assert list(res["workloads"]) == ["smallcnn"] and "memory" not in res
    w = res["workloads"]["smallcnn"]
    assert (w["params"], w["batch"], w["input_shape"]) == (
        count_parameters(SmallCNN()),
        64,
        [1, 28, 28],
    )
    check_workload(w)
    check_passes_and_steps(w, res["config"])
    hw = res["hardware_sources"]
    if not hw["missing"]:
        for name in ("LFSR", "Xorshift", "RNGArray"):
            check_summary(w["hw_passes"]["sources"][name], res["config"]["hw_repeats"])
            check_ratios(
                w["hw_passes"]["sources"][name], w["hw_passes"]["memory_pass"], "to_memory_pass"
            )
    check_pool_target(res)


@pytest.mark.slow
def test_step_overhead_quick_full():
    res = run_json("step_overhead.py", "--quick")
    assert_finite(res)
    for w in ("smallcnn", "vittiny"):
        check_workload(res["workloads"][w])
        mem = res["memory"][w]
        assert_positive(mem["peak_rss_mib"])
        assert set(mem["peak_rss_mib"]) == {
            "baseline",
            "inference",
            "inference_optimizer_built",
            "zo_pool",
            "zo_gaussian",
            "backprop",
        }
        assert_positive(mem["ratios"])
    assert res["workloads"]["vittiny"]["params"] > 5_000_000
    targets = res["targets"]
    for key in (
        "pool_pass_le_1.5x_memory_pass",
        "zo_step_pool_le_1.10x_two_forwards_vittiny",
        "zo_peak_memory_le_1.05x_inference",
    ):
        assert isinstance(targets[key]["met"], bool)


def test_scale_rules_quick(tmp_path):
    res = run_json("scale_rules.py", "--quick")
    assert_finite(res)
    (tmp_path / "scale_rules.json").write_text(json.dumps(res))  # the docs' table reads it
    rows = B.scale_rules_table(tmp_path).splitlines()[4:]
    assert [r.split(" | ")[0] for r in rows] == [f"| {n}" for n in res["rules"]] + [
        "| backprop SGD (same lr)"
    ]
    assert res["config"]["dim"] > 2**10  # the small pool is smaller than d, the large one larger
    expected = {"Gaussian", "Uniform(unit)", "Uniform(perturbation)"}
    expected |= {f"Pool(P=2**{p},{s})" for p in (10, 20) for s in ("pool", "unit", "perturbation")}
    assert set(res["rules"]) == expected
    for rule in res["rules"].values():
        s = rule["summary"]
        assert_positive({k: v for k, v in s.items() if k != "second_moment_std"})
        assert s["second_moment_std"] >= 0
        assert 0.5 < s["second_moment_mean"] < 2.0
        assert len(rule["estimator"]) == len(rule["training"]) == len(res["config"]["seeds"])
    # rescaling every perturbation makes ||z||^2 = d exactly
    assert res["rules"]["Uniform(perturbation)"]["summary"]["second_moment_std"] < 1e-6
    assert_positive({k: v for k, v in res["backprop_sgd_reference"].items() if k != "per_seed"})


@pytest.mark.slow  # pretrains (or reads the cached) MNIST ResNet of the few-shot study
def test_fewshot_lr_sweep_reports_every_method_and_lr(tmp_path):
    grid = '{"backprop": [1e-4], "zo": [1e-5, 3e-5]}'
    res = run_json(
        "fewshot_lr.py", "--episodes", "2", "--zo-steps", "3", "--seeds", "0", "--grid", grid
    )
    assert_finite({k: v for k, v in res.items() if k != "env"})
    pairs = [(r["seed"], r["method"], r["lr"]) for r in res["rows"]]
    assert pairs == [
        (0, "zero-shot", None),
        (0, "backprop", 1e-4),
        (0, "zo", 1e-5),
        (0, "zo", 3e-5),
    ]
    assert all(0 <= r["accuracy"] <= 100 for r in res["rows"])
    assert res["study_lrs"] == {"backprop": 1e-4, "zo": 3e-5}  # the study's ft settings
    (tmp_path / "fewshot_lr.json").write_text(json.dumps(res))  # the docs' table reads it
    rows = B.fewshot_lr_table(tmp_path).splitlines()[4:]
    assert [r.split(" | ")[0] for r in rows] == ["| backprop", "| zo"]


@pytest.mark.slow  # synthesizes (or reads the cached) keyword set and pretrains the DS-CNN
def test_kws_lr_sweep_reports_every_method_and_lr():
    grid = '{"zo": [3e-5, 1e-4], "qzo-ff 16w8a": [3e-4]}'
    res = run_json("kws_lr.py", "--arch", "dscnn", "--zo-steps", "3", "--grid", grid)
    pairs = [(r["method"], r["lr"]) for r in res["rows"]]
    assert pairs == [("zero-shot", None), ("zo", 3e-5), ("zo", 1e-4), ("qzo-ff 16w8a", 3e-4)]
    assert all(0 <= r["val_accuracy"] <= 100 for r in res["rows"])
    assert res["budget"]["zo_steps"] == 3


def test_peft_memory_counts_bytes_of_lora_and_full_training():
    """Tiny BERT, no peak-RSS processes: the byte counts against their formulas."""
    got = run_json("peft_memory.py", "--model", "tiny", "--batch", "2", "--length", "8", "--no-rss")
    full, lora = got["bytes"]["full"], got["bytes"]["lora"]
    assert_positive({k: v for k, v in full.items() if k != "zo_state_mb"})
    # LoRA r=8 on query and value of 2 layers of width 64, and peft's copy of the 2-way head
    assert lora["trained_params"] == lora["zo_perturbed_dim"] == 2 * 2 * (2 * 8 * 64) + 64 * 2 + 2
    assert full["trained_params"] == full["zo_perturbed_dim"] == full["params"]
    for entry in (full, lora):
        assert entry["bp_gradient_mb"] == round(4 * entry["trained_params"] / 1e6, 3)
        assert entry["zo_state_mb"] == 0.0  # MeZO: Gaussian counter directions, plain SGD
    assert lora["bp_saved_activations_mb"] < full["bp_saved_activations_mb"]
    # a ZO step's scratch is the forward's: the adapter adds a few small tensors at most
    assert lora["forward_peak_activations_mb"] == pytest.approx(
        full["forward_peak_activations_mb"], rel=0.05
    )


def test_mezo_side_by_side_times_every_step_in_the_same_rounds():
    res = run_json("mezo_side_by_side.py", "--workloads", "smallcnn", "--repeats", "2",
                   "--warmup", "0")  # fmt: skip
    assert_finite(res)
    w = res["workloads"]["smallcnn"]
    names = ["two_forwards", "mezo_style", "edgezo_gaussian", "edgezo_rademacher", "edgezo_pool"]
    assert list(w["steps"]) == names and w["executor"] == "compiled"
    for name in names[1:]:
        step = w["steps"][name]
        assert (
            step["n"] == 2
            and step["median_ms"] > 0
            and step["paired_median_ratio_to_two_forwards"] > 0
        )
    assert res["first_call_compile_s"] > 0


def test_fixedpoint_step_compares_both_integer_executors_with_the_float_step():
    res = run_json("fixedpoint_step.py", "--repeats", "2", "--warmup", "0")
    assert_finite(res)
    for case in ("whole", "head"):
        c = res["cases"][case]
        assert c["executors"]["int_compiled"] == "compiled"
        assert c["executors"]["int_python"] == "python (EDGEZO_KERNELS=off)"
        assert set(c["steps"]) == {"six_forwards", "float", "int_compiled", "int_python"}
        assert c["steps"]["float"]["paired_median_to_float_step"] == 1.0


#: A baseline -march level of this machine's architecture, which every compiler for it knows.
BASE_MARCH = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "armv8-a", "arm64": "armv8-a"}


def test_device_step_builds_for_the_march_asked_and_times_every_source():
    """``--march`` builds the C step for that level and the JSON says which; every source's
    read and update are timed against the copy."""
    march = BASE_MARCH.get(platform.machine().lower(), "native")
    res = run_json("device_step.py", "--weights", "20000", "--repeats", "3", "--march", march)
    assert res["march"] == march and res["cpu"]
    assert set(res["sources"]) == {
        "pool 1021", "lfsr 7-bit (native)", "xorshift 8-bit (table)",
        "rng array 16 x lfsr", "rademacher (hash)",
    }  # fmt: skip
    assert_positive(res["sources"])
    for r in res["sources"].values():
        assert r["c_read_vs_memcpy"] == pytest.approx(r["c_read_ms"] / r["memcpy_ms"])


def test_device_step_refuses_a_march_the_compiler_refuses():
    """No silent fallback: the JSON would time the generic build under the level's name."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "device_step.py"), "--weights", "1000", "--march", "no-such"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and not done.stdout
    assert "refused --march no-such" in done.stderr and "pass a level it knows" in done.stderr


def test_jvp_memory_on_the_mlp():
    """jvp's step holds one copy of the weights (its tangents) plus its largest tensor once;
    a central step holds no more than the forward."""
    res = run_json("jvp_memory.py", "--workloads", "mlp", "--repeats", "1")
    mem = res["mlp"]["memory"]
    assert_finite(res["mlp"])
    assert mem["central_over_weights"] == pytest.approx(mem["forward_over_weights"], abs=0.01)
    assert 1.0 <= mem["jvp_extra_over_weights"] <= 1.0 + mem["largest_tensor_over_weights"] + 0.05
    assert res["mlp"]["times"]["jvp_over_two_forwards"] > 0


@pytest.mark.slow  # four runs under qemu: a few minutes
def test_backbone_determinism_shows_what_changes_the_pretrained_bytes():
    res = run_json("backbone_determinism.py", "--steps", "3")
    rows = res["settings"]
    assert len(res["env"]["git_head"] or "") >= 7 and res["libraries"]
    first = next(iter(rows.values()))
    assert first["pinned"] and first["cpu"] == "this" and first["max_abs_diff_vs_first"] == 0.0
    assert {r["cpu"] for r in rows.values()} == {"this", "Haswell", "Nehalem"}
    pinned = [r for r in rows.values() if r["pinned"]]
    assert len(pinned) == 3 and {r["sha256"] for r in pinned} == {first["sha256"]}
    assert all(r["max_abs_diff_vs_first"] == 0.0 for r in pinned)
    if res["cpu_capability"] != "DEFAULT":  # torch's own kernels then differ from Nehalem's
        here = rows["this CPU, torch's kernels, 1 thread"]
        nehalem = rows["emulated Nehalem (SSE4.2), torch's kernels, 1 thread"]
        assert here["sha256"] != nehalem["sha256"] and nehalem["max_abs_diff_vs_first"] > 0


@pytest.mark.slow  # loads MiniLM-L6 four times and evaluates it (about a minute on 2 cores)
def test_lm_reviews_runs_every_method_on_one_forward_budget():
    from edgezo.analysis.stats import unpack_correct

    args = ["--methods", "mezo", "qzo-ff", "backprop", "--variants", "prompt", "head",
            "--adapters", "none", "--seeds", "0", "--forwards", "12", "--per-class", "4",
            "--test-size", "8", "--max-length", "32"]  # fmt: skip
    res = run_json("lm_reviews.py", *args)
    rows = [(r["method"], r["variant"], r["steps"]) for r in res["rows"]]
    assert rows == [(m, f"{v} full", s) for v in ("prompt", "head")
                    for m, s in (("zero-shot", 0), ("mezo", 6), ("qzo-ff", 2), ("backprop", 6))]  # fmt: skip
    # the seeds spread over two processes give the rows of one process, in seed order
    two = run_json("lm_reviews.py", *args[:10], "0", "1", *args[11:], "--jobs", "2")
    untimed = [{k: v for k, v in r.items() if "seconds" not in k} for r in two["rows"]]
    assert untimed[: len(rows)] == [{k: v for k, v in r.items() if "seconds" not in k}
                                    for r in res["rows"]]  # fmt: skip
    assert [r["seed"] for r in two["rows"]] == [0] * len(rows) + [1] * len(rows)
    for r in res["rows"]:
        flags = unpack_correct(r["correct"], r["examples"])
        assert r["examples"] == 8 and r["accuracy"] == pytest.approx(flags.mean())
        assert r["method"] == "zero-shot" or r["forwards"] == 12 and r["seconds_per_step"] > 0
    assert [r.get("eps") for r in res["rows"][:4]] == [None, 1e-3, 1e-3, None]
    assert {c["claim"] for c in res["claims"]} == {
        "pezo within 1 points of mezo",
        "mezo within 5 points of backprop",
    }


def test_dropping_shared_padding_keeps_the_prompt_scores():
    """lm_reviews.unpadded: the label words' scores of a right-padded batch are the same with
    the all-padding columns dropped (a tiny random BERT masked LM, its output cut to the words)."""
    import torch

    sys.path.insert(0, str(BENCH))
    import lm_reviews
    from transformers import BertConfig, BertForMaskedLM

    from edgezo.integrations.prompts import LabelWordLoss, score_label_words_only

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=32)).eval()  # fmt: skip
    loss = score_label_words_only(model, LabelWordLoss([7, 9], causal=False))
    ids = torch.randint(10, 50, (3, 12))
    mask = torch.zeros(3, 12, dtype=torch.long)
    for row, n in enumerate((5, 8, 3)):
        mask[row, :n] = 1
    labels = torch.full((3, 12), -100)
    labels[torch.arange(3), torch.tensor([2, 6, 1])] = torch.tensor([7, 9, 9])
    batch = {"input_ids": ids * mask, "attention_mask": mask, "labels": labels}
    short = lm_reviews.unpadded(batch)
    assert short["input_ids"].shape == (3, 8) and short["labels"].shape == (3, 8)
    with torch.no_grad():
        full = loss.class_logits(model(**{k: v for k, v in batch.items() if k != "labels"}), labels)
        cut = loss.class_logits(
            model(**{k: v for k, v in short.items() if k != "labels"}), short["labels"]
        )
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-6)


def test_lm_probe_runs_every_method_on_one_budget_and_picks_its_grid_point_on_validation(
    tmp_path, monkeypatch
):
    """The probe variant end to end on 8 reviews per seed (about 8 s of CPU)."""
    from edgezo.analysis.stats import unpack_correct

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path))  # its sentence-vector cache
    res = run_json("lm_probe.py", "--per-class", "4", "--eval-size", "8", "--calibration", "8",
                   "--forwards", "12", "--seeds", "0", "1", "--quick")  # fmt: skip
    methods = [
        "zero-shot",
        "mezo",
        "pezo",
        "qzo-ff 16w8a",
        "backprop",
        "backprop sgd",
        "backprop 16w8a",
    ]
    assert [(r["method"], r["seed"]) for r in res["rows"]] == [
        (m, s) for m in methods for s in (0, 1)
    ]
    for r in res["rows"]:
        flags = unpack_correct(r["correct"], r["examples"])
        assert r["examples"] == 8 and r["accuracy"] == flags.mean()
        assert r["forwards"] == (0 if r["method"] == "zero-shot" else 12)  # one budget for all
    by = {(r["method"], r["seed"]): r for r in res["rows"]}
    assert by["qzo-ff 16w8a", 0]["steps"] == 2 and by["mezo", 0]["steps"] == 6  # 6 and 2 forwards
    for m in methods[1:]:
        grid = [g for g in res["grid"] if g["method"] == m]
        (chosen,) = [g for g in grid if g["chosen"]]
        assert chosen["validation"] == max(g["validation"] for g in grid)
        assert all(
            (by[m, s]["lr"], by[m, s]["eps"]) == (chosen["lr"], chosen["eps"]) for s in (0, 1)
        )
        mean_val = (by[m, 0]["validation_accuracy"] + by[m, 1]["validation_accuracy"]) / 2
        assert math.isclose(chosen["validation"], mean_val)
    # training state by hand: the head has 384 x 2 + 2 = 770 float32 numbers
    assert by["backprop sgd", 0]["training_state_bytes"] == 770 * 4  # its gradient
    assert by["backprop", 0]["training_state_bytes"] == 3 * 770 * 4 + 2 * 4  # + 2 moments, steps
    assert by["mezo", 0]["training_state_bytes"] == 0
    assert by["pezo", 0]["training_state_bytes"] == 509 * 4  # the pool
    assert by["qzo-ff 16w8a", 0]["quantized"] and by["qzo-ff 16w8a", 0]["training_state_bytes"] == 0
    assert by["qzo-ff 16w8a", 0]["model_bytes"] < 0.6 * by["mezo", 0]["model_bytes"]
    assert [c["claim"] for c in res["claims"]] == [
        "qzo-ff 16w8a within 5 points of backprop", "pezo within 1 points of mezo"]  # fmt: skip
    assert res["study"] == "lm-reviews" and res["keys"] == ["variant"] and res["quick"]


def test_drift_records_its_provenance_and_the_failed_step_stays_within_the_bound(tmp_path):
    out = tmp_path / "drift.json"
    res = run_json("drift.py", "--steps", "3", "--dim", "2000", "--out", str(out))
    assert json.loads(out.read_text()) == res
    env = res["env"]
    assert env["torch_threads"] == 1 and len(env["loadavg_at_start"]) == 3
    assert env["git_head"] is None or len(env["git_head"].removesuffix("+dirty")) >= 7
    assert res["zero_biases"] == 200 and res["weight_std"] == 0.05 and res["steps"] == 3
    assert set(res["results"]) == {"float32", "bfloat16", "float16"}
    for sources in res["results"].values():
        for how in ("gaussian", "pool"):  # edgezo's +a, -2a, +a of one rounded a: zeros stay zero
            assert sources[how]["after_3"]["zero_bias"]["nonzero_fraction"] == 0.0
    assert len(res["failed_step"]) == 12
    for case, failed in res["failed_step"].items():  # README: at most 2 q finfo.eps (...)
        assert 0 < failed["max_bound_ratio"] <= 2, case
