"""edgezo.analysis.benchmarks: each benchmark table rendered from a hand-made JSON equals a
hand-written table (the values chosen so the rounding and the intervals are worked by hand)."""

from __future__ import annotations

import json

import pytest

from edgezo.analysis import benchmarks as B

ENV = {"edgezo": "9.9.9", "git_head": "abcdef0", "torch": "7.7.7", "torch_threads": 2,
       "cpu_count": 4, "loadavg_at_start": [0.504, 1.0, 1.0]}  # fmt: skip


def write(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))


# -- step_overhead ------------------------------------------------------------------------------
def passes(ratios: dict[str, float]) -> dict:
    return {"sources": {k: {"paired_median_ratio_to_memory_pass": v} for k, v in ratios.items()}}


def steps(ratios: dict[str, float]) -> dict:
    return {k: {"paired_median_ratio_to_two_forwards": v} for k, v in ratios.items()}


def step_overhead(scale: float) -> dict:
    """One workload; ``scale`` multiplies every ratio (the torch path: 10)."""
    return {
        "env": ENV,
        "config": {"pool_size": 1024},
        "workloads": {"smallcnn": {
            "params": 12345, "batch": 8, "input_shape": [1, 4, 4],
            "forward": {"median_s": 0.0123},
            "passes": passes({"Pool": 1.004 * scale, "Gaussian": 2.5 * scale,
                              "Rademacher": 0.996 * scale, "Uniform": 1.5 * scale}),
            "hw_passes": passes({"LFSR": 1.1 * scale, "Xorshift": 1.2 * scale,
                                 "RNGArray": 1.3 * scale}),
            "steps": steps({"zo_central_pool": 1.1 * scale, "zo_central_gaussian": 1.2 * scale,
                            "zo_forward_pool": 1.05, "zo_jvp_pool": 1.5, "backprop_sgd": 2.0}),
        }},
        "memory": {"smallcnn": {"ratios": {"zo_pool_to_inference": 1.0254,
                                           "zo_gaussian_to_inference": 1.0,
                                           "backprop_to_inference": 1.6366}}},
    }  # fmt: skip


def test_step_overhead_table(tmp_path):
    write(tmp_path, "step_overhead", step_overhead(1.0))
    write(tmp_path, "step_overhead_kernels_off", step_overhead(10.0))
    mezo = {"env": {**ENV, "loadavg_at_start": [2.0]}, "workloads": {"smallcnn": {"steps": steps(
        {"mezo_style": 1.3, "edgezo_gaussian": 1.2, "edgezo_rademacher": 1.1, "edgezo_pool": 1.0}
    )}}}  # fmt: skip
    write(tmp_path, "mezo_side_by_side", mezo)
    text = B.step_overhead_table(tmp_path)
    assert text.startswith(
        "From `benchmarks/results/step_overhead.json` (`python benchmarks/step_overhead.py`: "
        "edgezo 9.9.9 at commit abcdef0, torch 7.7.7, 2 torch threads, 4 CPUs, load average 0.50 "
        "at the start); in parentheses the torch path, from "
    )
    assert "mezo_side_by_side.py`: edgezo 9.9.9 at commit abcdef0, torch 7.7.7, 2 torch " \
        "threads, 4 CPUs, load average 2.00 at the start)." in text  # fmt: skip
    table = text.split("\n\n", 1)[1]
    assert (
        table
        == """\
| | SmallCNN, 12,345 params, batch 8 of 1x4x4 |
|---|---|
| forward (no grad) | 12.3 ms |
| **perturbation pass / plain memory pass** (`p.mul_(1)` per tensor) | |
| `Pool(1,024)`, compiled (torch path) | 1.00x (10.0x) |
| `Gaussian` / `Rademacher` / `Uniform`, compiled (torch path) | 2.50x / 1.00x / 1.50x (25.0x / 9.96x / 15.0x) |
| `LFSR` / `Xorshift` / `RNGArray`, compiled (torch path) | 1.10x / 1.20x / 1.30x (11.0x / 12.0x / 13.0x) |
| **step / two forwards** (`step_overhead.py`; torch path) | |
| ZO central, `Pool` | 1.10 (11.00) |
| ZO central, `Gaussian` | 1.20 (12.00) |
| ZO forward (one-sided), `Pool` | 1.05 (1.05) |
| forward gradient (`jvp`), `Pool` | 1.50 (1.50) |
| backprop SGD step | 2.00 (2.00) |
| **step / two forwards, same rounds as MeZO's** (`mezo_side_by_side.py`) | |
| MeZO's step (Gaussian) | 1.30 |
| edgezo central: `Gaussian` / `Rademacher` / `Pool` | 1.20 / 1.10 / 1.00 |
| **peak resident memory / inference** (own process each) | |
| ZO central, `Pool` | 1.025 |
| ZO central, `Gaussian` | 1.000 |
| backprop SGD | 1.637 |
"""
    )


def test_fixedpoint_step_table(tmp_path):
    executors = {"float": "float passes", "int_compiled": "compiled"}
    case = {"executors": executors, "steps": {
        "float": {"paired_median_to_six_forwards": 0.875},
        "int_compiled": {"paired_median_to_six_forwards": 1.164}}}  # fmt: skip
    head = {"executors": executors, "steps": {
        "float": {"paired_median_to_six_forwards": 0.5},
        "int_compiled": {"paired_median_to_six_forwards": 1.0}}}  # fmt: skip
    data = {"env": ENV, "config": {"preset": "sign-3", "batch": 16, "repeats": 5},
            "cases": {"whole": case, "head": head}}  # fmt: skip
    write(tmp_path, "fixedpoint_step", data)
    text = B.fixedpoint_step_table(tmp_path)
    assert text.endswith("""; SmallCNN 16w8a, sign-3, batch 16, medians of 5 paired rounds.

| step / six forwards of the integer model | every layer trained | head only |
|---|---:|---:|
| float model, float passes | 0.88 | 0.50 |
| integer model, compiled | 1.16 | 1.00 |
""")


def test_a_missing_benchmark_file_says_what_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"python benchmarks/runtime.py --out .*runtime.json"):
        B.runtime_tables(tmp_path)


# -- runtime ------------------------------------------------------------------------------------
def test_agreement_table_in_percent_and_logit_steps():
    data = {"agreement": {"rows_per_family": 10, "vit": {
        "what": "w", "rows": 10000, "argmax_agreement": 0.99985, "max_diff_output_steps": 0.685,
        "bit_equal_rows": 0.961}, "other": {"what": "a new model", "rows": 5,
        "argmax_agreement": 1.0, "max_diff_output_steps": 30.921, "bit_equal_rows": 0.8}}}  # fmt: skip
    assert B.agreement_table(data) == [
        "| model | test inputs | same argmax | max logit diff | rows bit-equal |",
        "|---|---:|---:|---:|---:|",
        "| ViT (attention, LayerNorm, GELU, class token) | 10,000 | 99.98% | 0.69 steps | 96.10% |",
        "| a new model | 5 | 100.00% | 30.92 steps | 80.00% |",
    ]  # 99.985 rounds half to even in binary: 99.98


def device_data() -> dict:
    step = {"FixedPointFormat": {"paired_median_ratio_to_two_forwards": 2.0},
            "DeviceFormat": {"paired_median_ratio_to_two_forwards": 1.004}}  # fmt: skip
    return {
        "training": {"method": "pezo 16w8a", "settings": {"steps": 80, "seed": 3, "batch": 32},
                     "accuracy_before": 0.4, "accuracy_torch": 0.9, "accuracy_ort": 0.8999,
                     "final_integers_bit_identical": False, "queries_with_equal_coefficient": 0.5,
                     "steps_with_equal_losses": 0.25, "closures_per_step": 6,
                     "seconds_per_step": {"torch": 0.05, "ort_c": 0.0125}},
        "speed": {"batch": 16, "forward": {"torch_fixed_point": {"median_s": 0.03},
                                           "torch_float": {"median_s": 0.01},
                                           "ort": {"median_s": 0.02}},
                  "steps": {"head": step, "whole": step}, "smallcnn_head_reference": step,
                  "trainable_parameters": {"whole": 1234}},
        "memory": {"smallcnn_head": {"training_to_inference": 1.0071},
                   "vit_whole": {"training_to_inference": 1.5}},
    }  # fmt: skip


def test_device_table():
    assert B.device_table(device_data()) == [
        "| | torch + Python step | ONNX Runtime + C step |",
        "|---|---|---|",
        "| demo `pezo 16w8a`, 80 steps, seed 3: shifted test accuracy (from 40.00%) | 90.00% "
        "| 89.99% |",
        "| final integers | | differ |",
        "| queries whose `sign(L+ - L-)` agrees | | 50% (losses float-equal on 25% of steps) |",
        "| time per step (6 forwards of batch 32 + the step) | 50.0 ms | 12.5 ms |",
        "| ViT forward, batch 16 | 30.0 ms (float: 10.0 ms) | 20.0 ms |",
        "| ZO step / two ORT forwards, ViT, head trained | 2.00 | 1.00 |",
        "| ZO step / two ORT forwards, ViT, all 1,234 weights trained | 2.00 | 1.00 |",
        "| ZO step / two ORT forwards, demo SmallCNN head | 2.00 | 1.00 |",
        "| peak resident set, training / inference (SmallCNN head; ViT, all weights) | "
        "| 1.007; 1.500 |",
    ]


def test_c_step_table():
    data = {"c_step": {"weights": 1000, "dtype": "int16", "threads": 1, "update": "sign-3",
                       "compile_s": 0.25, "demo_head_state_bytes": 1413,
                       "tiny_training_sram_bytes": 262144,
                       "state_share_of_tiny_training_sram": 1413 / 262144,
                       "sources": {"pool": {"c_read_vs_memcpy": 6.37, "c_update_vs_memcpy": 10.0,
                                            "c_read_ms": 0.874, "python_read_ms": 12.62}}}}  # fmt: skip
    assert B.c_step_table(data) == [
        "| C step, 1,000 `int16` weights, 1 thread | pool |",
        "|---|---:|",
        "| perturbed read / memory copy | 6.4 |",
        "| sign-3 update / memory copy | 10.0 |",
        "| perturbed read, C / torch path (ms) | 0.87 / 12.6 |",
        "",
        "The C step compiles in 0.2 s on first use. The training state the device keeps beyond "
        "inference for the demo's head: **1,413 bytes**, 0.5% of the 262,144 bytes of SRAM that "
        "backprop-based on-device training (MIT's tiny-training) fits into.",
    ]  # 0.25 s rounds half to even: 0.2; 1413 / 262144 = 0.539%


# -- fixedpoint -----------------------------------------------------------------------------------
def fixedpoint_result(accs_zo, accs_q16) -> dict:
    def row(label, precision, accs, sat):
        mean = sum(accs) / len(accs)
        return {"label": label, "precision": precision, "accs": accs, "mean": mean, "std": 0.01,
                "steps": 100, "forwards_per_step": 6.0, "saturated": sat}  # fmt: skip

    return {
        "config": {"seeds": list(range(len(accs_zo))), "headroom": 2.0},
        "zero_shot": {"fp32": 0.45, "16w8a_headroom": 0.4},
        "rows": {"zo_fp32": row("fp32 ZO", "fp32", accs_zo, None),
                 "q16": row("QZO-FF 16w8a", "16w8a", accs_q16, 0.004)},
    }  # fmt: skip


def test_fixedpoint_table_with_the_paired_t_interval_worked_by_hand():
    # per-seed differences -1, -2, -3 points: mean -2, s = 1, t(0.975, 2) = 4.3027,
    # half-width 4.3027 / sqrt(3) = 2.4842
    result = fixedpoint_result([0.90, 0.91, 0.92], [0.89, 0.89, 0.89])
    assert B.fixedpoint_table(result) == [
        "| run | weights / activations | steps | forwards / step | shifted-test accuracy % "
        "(mean ± std, 3 seeds) | vs fp32 ZO (points, paired 95% t-interval) | trained weights at "
        "the integer limit |",
        "|---|---|---:|---:|---:|---:|---:|",
        "| zero-shot fp32 | fp32 | 0 | - | 45.00 | -46.00 | - |",
        "| zero-shot 16w8a, headroom 2 | 16 / 8 bit | 0 | - | 40.00 | -51.00 | - |",
        "| fp32 ZO | fp32 | 100 | 6 | 91.00 ± 1.00 | +0.00 | - |",
        "| QZO-FF 16w8a | 16 / 8 bit | 100 | 6 | 89.00 ± 1.00 | -2.00 [-4.48, +0.48] | 0.4% |",
    ]


def test_fixedpoint_table_of_one_seed_has_no_interval():
    lines = B.fixedpoint_table(fixedpoint_result([0.9], [0.875]))
    assert "(mean ± std, 1 seed) | vs fp32 ZO (points) |" in lines[0]
    assert lines[-1] == "| QZO-FF 16w8a | 16 / 8 bit | 100 | 6 | 87.50 | -2.50 | 0.4% |"


# -- peft_memory ----------------------------------------------------------------------------------
def peft_part(trained: int, grad: float, saved: float) -> dict:
    return {"params": 1000, "trained_params": trained, "zo_perturbed_dim": trained,
            "weights_mb": 4.0, "bp_gradient_mb": grad, "zo_state_mb": 0.0,
            "adam_state_mb": 2 * grad, "bp_saved_activations_mb": saved,
            "forward_peak_activations_mb": 0.5}  # fmt: skip


def test_peft_memory_table(tmp_path):
    rss = {m: {"peak_rss_mb": 100 * r, "rss_after_setup_mb": 90.0, "step_s_median": t,
               "peak_over_inference": r}
           for m, r, t in (("inference", 1.0, 0.456), ("zo-full", 1.0364, 2.0),
                           ("zo-lora", 1.0, 0.95), ("bp-lora", 1.3025, 1.434),
                           ("bp-full", 1.5, 12.25))}  # fmt: skip
    data = {"env": {**ENV, "torch_threads": 1},
            "settings": {"model": "tiny", "batch": 2, "length": 8, "steps": 3, "threads": 1,
                         "lora": {"r": 8, "lora_alpha": 16}},
            "bytes": {"full": peft_part(22713986, 90.856, 154.56),
                      "lora": peft_part(74498, 0.298, 0.004)},
            "peak_rss": rss}  # fmt: skip
    write(tmp_path, "peft_memory", data)
    assert (
        B.peft_memory_table(tmp_path)
        == """\
From `benchmarks/results/peft_memory.json` (`python benchmarks/peft_memory.py`: edgezo 9.9.9 at \
commit abcdef0, torch 7.7.7, 1 torch thread, 4 CPUs, load average 0.50 at the start): a tiny \
random BERT, 2-way head, LoRA r=8, alpha=16 on query and value, batch 2 x 8 tokens, fp32; peak RSS \
of a fresh process per column after 3 steps, inference's is 100.0 MB; step times are medians of \
those steps (indicative only on a shared machine).

| | ZO full | ZO LoRA | backprop LoRA (SGD) | backprop full (SGD) |
|---|---|---|---|---|
| trained (perturbed) weights | 22,713,986 | 74,498 | 74,498 | 22,713,986 |
| gradient | 0 | 0 | 0.30 MB | 90.9 MB |
| optimizer state (Adam would keep) | 0 | 0 | none (0.60 MB) | none (181.7 MB) |
| activations | 0.50 MB (forward peak) | 0.50 MB (forward peak) | 0.00 MB saved | 154.6 MB saved |
| peak RSS / inference's | 1.036x | 1.000x | 1.302x | 1.500x |
| step (inference 0.46 s) | 2.00 s | 0.95 s | 1.43 s | 12.25 s |
"""
    )


# -- distributed ----------------------------------------------------------------------------------
def dp_config(ranks: int, threads: int, step: float, same: bool = True) -> dict:
    grad = 11048
    return {"ranks": ranks, "threads_per_rank": threads, "step_seconds": step,
            "comm_payload_bytes_per_step": 48.0, "gradient_allreduce_payload_bytes": grad,
            "payload_ratio_gradient_over_zo": grad / 48,
            "ring_wire_bytes_per_rank": {"zo_all_gather": (ranks - 1) * 48.0,
                                         "gradient_all_reduce": 2 * (ranks - 1) / ranks * grad},
            "replicas_identical": same}  # fmt: skip


def distributed(load: tuple[float, float], same: bool = True) -> dict:
    configs = {"1x1": dp_config(1, 1, 0.00581), "2x1": dp_config(2, 1, 0.0051, same),
               "1x2": dp_config(1, 2, 0.1234)}  # fmt: skip
    env = {**ENV, "torch_threads": 1, "cpu_count": 2, "loadavg_at_start": [load[0], 1.0, 1.0],
           "loadavg_at_end": [load[1], 1.0, 1.0], "backend": "gloo (loopback)", "repeats": 3}  # fmt: skip
    work = {"mlp": {"params": 2762, "global_batch": 64, "steps_per_run": 60, "configs": configs}}
    return {"env": env, "workloads": work}


def test_distributed_table_on_a_busy_machine(tmp_path):
    write(tmp_path, "distributed", distributed((7.004, 8.5)))
    assert (
        B.distributed_table(tmp_path)
        == """\
From `benchmarks/results/distributed.json` (`python benchmarks/distributed.py`: edgezo 9.9.9 at \
commit abcdef0, torch 7.7.7, 1 torch thread, 2 CPUs, load average 7.00 at the start); gloo \
(loopback); step times are rank 0's median step, the median over 3 round-robin repeats.

| | MLP, 2,762 params, global batch 64, 60 steps |
|---|---|
| bytes per step a rank sends, ZO central | 48 |
| gradient all-reduce payload (4 bytes x parameters) | 11,048 (230x) |
| ring wire bytes per rank, 2 ranks: ZO all-gather vs gradient all-reduce | 48 vs 11,048 |
| step, 1 / 2 ranks of 1 thread | 5.8 / 5.1 ms |
| step, 1 rank of 2 threads | 123 ms |
| replicas bit-identical after training | yes |

The machine had 2 cores at a load average of 7.00 at the start and 8.50 at the end: the ranks \
had no idle cores to run on, so the step times say nothing about how data-parallel ZO scales.
"""
    )


def test_distributed_table_on_a_quiet_machine_and_diverged_replicas(tmp_path):
    write(tmp_path, "distributed", distributed((0.5, 2.5), same=False))
    text = B.distributed_table(tmp_path)
    assert "| replicas bit-identical after training | no |" in text
    assert text.endswith("2.50 at the end; the step times include the other jobs' contention.\n")


# -- drift --------------------------------------------------------------------------------------
def drift_case(changed: float, ulps: tuple[float, float, float], bias: float) -> dict:
    w = dict(zip(("median_ulps", "p99_ulps", "max_ulps"), ulps, strict=True))
    return {"weights": {"changed_fraction": changed, **w},
            "zero_bias": {"nonzero_fraction": bias}}  # fmt: skip


def test_drift_tables(tmp_path):
    results = {"float16": {"gaussian": {
        "after_1": drift_case(0.47763, (0.0, 1.0, 246.0), 0.0),
        "after_50": drift_case(0.9419, (1.5, float("nan"), 1108.25), 0.02649)}}}  # fmt: skip
    failed = {"float16/forward/q1": {"max_bound_ratio": 0.994, "changed_fraction": 0.04},
              "float16/central/q3": {"max_bound_ratio": 0.9875, "changed_fraction": 0.618}}  # fmt: skip
    data = {"env": {**ENV, "torch_threads": 1}, "eps": 0.001, "dim": 100000, "weight_std": 0.05,
            "zero_biases": 10000, "steps": 50, "failed_step_seeds": 5, "results": results,
            "failed_step": failed}  # fmt: skip
    write(tmp_path, "drift", data)
    assert (
        B.drift_tables(tmp_path).split("; ", 1)[1]
        == """\
100,000 weights ~ N(0, 0.05) and 10,000 zero biases, eps = 0.001, central steps with `lr = 0`:

| dtype | source | after 1 step: weights changed | median / p99 / max ulps | after 50 steps: \
changed | median / p99 / max ulps | zero biases not zero (50 steps) |
|---|---|---|---|---|---|---|
| float16 | gaussian | 47.8% | 0 / 1 / 246 | 94.2% | 1.5 / - / 1108 | 2.6% |

A failed step (a NaN at the last forward; 100,000 weights ~ N(0, 0.05) plus 10,000 zeros, \
eps = 0.001, worst of 5 seeds): the largest `|w' - w|` over `q finfo.eps (|w| + max_i |eps z_i|)`, \
and in parentheses the weights not put back exactly:

| dtype | central, q = 3 | forward, q = 1 |
|---|---:|---:|
| float16 | 0.988 (61.8%) | 0.994 (4.0%) |
"""
    )


# -- memory ---------------------------------------------------------------------------------------
def memory_result(ff: float) -> dict:
    row = {
        "row": "BP fp32",
        "weights": 21.451,
        "scratch": 9.6695,
        "gradients": 21.451,
        "optimizer_state": 0.0,
        "total": 52.5716,
    }
    sparse = {
        "row": "QZO-FF + 90% sparse",
        "weights": 10.7261,
        "scratch": 0.1903,
        "gradients": 0.0,
        "optimizer_state": 0.6703,
        "total": 11.5868,
    }
    small = {
        "config": {"image": 32, "patch": 4, "channels": 3},
        "batch": 1,
        "parameters": 5362762,
        "table_mb": [row, sparse],
    }
    big = {
        "config": {"image": 224, "patch": 16, "channels": 3},
        "parameters": 5717416,
        "weights_mb": {"fp16": 11.4348},
        "bp_saved_mb": {"fp32": 29.8692},
        "zo_forward_peak_mb": {"fp32": 2.8716},
    }
    both = {"bp_mb": 26.37, "bp_math_attention_mb": 30.96, "zo_mb": 12.87, "bp_over_zo": 2.05}
    paper = {"bp_scratch_mb": 31.64, "ff_scratch_mb": ff, "bp_over_ff": 2.77}
    rss = {
        "peak_rss_source": "VmHWM",
        "steps": 3,
        "repeats": 3,
        "peak_rss_mb": {"inference": 276.1073, "zo-fp32": 278.2331, "bp-fp32": 459.0182},
        "peak_over_inference": {"inference": 1.0, "zo-fp32": 1.008, "bp-fp32": 1.662},
    }
    step = {
        "float_step_mb": 0.7611,
        "float_forward_mb": 0.7611,
        "float_step_over_forward": 1.0,
        "fixed_point_step_mb": 2.2479,
        "fixed_point_forward_mb": 1.953,
        "fixed_point_step_over_forward": 1.151,
    }
    return {"env": {**ENV, "torch_threads": 1},
            "settings": {"vit-tiny-32": small, "vit-tiny-224": big},
            "paper_comparison": {"vit-tiny-224": {"paper": paper,
                                                  "weights_plus_scratch_fp16": both}},
            "peak_rss": rss, "zo_step": step}  # fmt: skip


def test_memory_tables(tmp_path):
    write(tmp_path, "memory", memory_result(11.43))
    assert (
        B.memory_tables(tmp_path).split("): ", 1)[1]
        == """\
the ViT-tiny-like model (5,362,762 parameters, 3x32x32, batch 1, full fine-tuning):

| | weights | scratch | gradients | optimizer state / mask | total |
|---|---:|---:|---:|---:|---:|
| BP fp32 | 21.45 MB | 9.67 MB | 21.45 MB | 0 | 52.57 MB |
| QZO-FF + 90% sparse | 10.73 MB | 0.19 MB | 0 | 0.67 MB | 11.59 MB |

Peak resident set (VmHWM) of a fresh process running 3 steps, median of 3: inference 276.1 MB, \
ZO 278.2 MB (1.008x), backprop 459.0 MB (1.662x).

The paper's ViT-tiny figure (31.64 MB -> 11.43 MB, 2.77x) is for 224x224 inputs. Ours there \
(patch 16, 5,717,416 parameters): scratch alone 29.87 MB -> 2.87 MB in fp32; fp16 weights and \
scratch together 26.37 MB -> 12.87 MB (2.05x; 30.96 MB with math attention). The fp16 weights \
alone are 11.43 MB, the paper's FF number to the hundredth: its bars likely stack weights and \
scratch.

A real step's largest live set against its forward's: ZO fp32 0.76 MB vs 0.76 MB (1.00x), \
QZO-FF 16w8a 2.25 MB vs 1.95 MB (1.15x).
"""
    )


def test_memory_tables_do_not_read_the_paper_as_stacked_when_its_number_differs(tmp_path):
    write(tmp_path, "memory", memory_result(12.5))
    text = B.memory_tables(tmp_path)
    assert "The fp16 weights alone are 11.43 MB.\n" in text and "stack" not in text


# -- scale_rules ----------------------------------------------------------------------------------
def rule(cos: float, ratio: float, moment: tuple[float, float], loss: float, accs) -> dict:
    summary = {"cosine_mean_estimate_to_grad": cos, "projection_ratio": ratio,
               "second_moment_mean": moment[0], "second_moment_std": moment[1],
               "final_train_loss": loss}  # fmt: skip
    return {"summary": summary, "training": [{"test_accuracy": a} for a in accs]}


def test_scale_rules_table_with_t_intervals_worked_by_hand(tmp_path):
    config = {"quick": False, "model": "MLP 64-32-10 on sklearn digits", "dim": 2410,
              "pool_sizes": [1024], "eps": 0.001, "k": 2000, "estimator_batch": 256, "lr": 0.01,
              "train_steps": 1000, "train_batch": 64, "seeds": [0, 1, 2], "n_test": 450}  # fmt: skip
    data = {"env": {**ENV, "torch_threads": 1}, "config": config, "wall_s": 274.6,
            "isotropic_reference_cosine": 0.67336,
            # accuracies 0.70, 0.72, 0.74: mean 72, sd 2, half-width 4.303 * 2 / sqrt(3) = 4.97
            "rules": {"Gaussian": rule(0.6691, 0.9675, (1.0005, 0.0286), 1.1253, (0.70, 0.72, 0.74)),
                      "Pool(P=2**10,pool)": rule(0.4172, 1.2609, (1.0, 0.0), 1.0764, (0.68,) * 3)},
            "backprop_sgd_reference": {"final_train_loss": 1.3128,  # 80, 81, 82: sd 1, half 2.48
                                       "per_seed": [{"test_accuracy": a} for a in (0.8, 0.81, 0.82)]}}  # fmt: skip
    write(tmp_path, "scale_rules", data)
    head, table = B.scale_rules_table(tmp_path).split("\n\n")
    assert "1 torch thread, 4 CPUs, load average 0.50 at the start), full settings, 275 s: " in head
    assert (
        "pools of P = 1,024. " in head and "mean of K = 2,000 central estimates (eps 0.001)" in head
    )
    assert (
        "give a cosine of 0.673). Training: ZO-SGD, central, one query, lr 0.01, batch 64" in head
    )
    assert table.splitlines()[2:] == [
        "| Gaussian | 0.669 | 0.968 | 1.000 ± 0.029 | 1.125 | 72.00 [67.03, 76.97] |",
        "| Pool(P=2**10,pool) | 0.417 | 1.261 | 1.000 ± 0.000 | 1.076 | 68.00 [68.00, 68.00] |",
        "| backprop SGD (same lr) | - | - | - | 1.313 | 81.00 [78.52, 83.48] |",
    ]


# -- fewshot_lr -----------------------------------------------------------------------------------
def sweep_rows(method: str, lr: float | None, accs: tuple[float, ...]) -> list[dict]:
    return [{"seed": s, "method": method, "lr": lr, "accuracy": a, "ci95": 3.0, "seconds": 1.0}
            for s, a in enumerate(accs)]  # fmt: skip


def test_fewshot_lr_table_marks_the_study_lr_and_the_best_with_t_intervals(tmp_path):
    grid = {"zo": [1e-5, 3e-5], "qzo-ff 16w8a": [3e-4, 1e-3]}
    config = {"arch": "resnet", "regime": "ft", "episodes": 10, "zo_steps": 100,
              "seeds": [0, 1, 2], "grid": grid, "pretrain_steps": 2000}  # fmt: skip
    rows = [
        *sweep_rows("zero-shot", None, (50, 52, 54)),  # mean 52, sd 2, half 4.97
        *sweep_rows("zo", 1e-5, (56, 57, 58)),  # sd 1: half 2.48
        *sweep_rows("zo", 3e-5, (60, 60, 60)),
        *sweep_rows("qzo-ff 16w8a", 3e-4, (59, 60, 61)),
        *sweep_rows("qzo-ff 16w8a", 1e-3, (1, 2, 3)),
    ]  # the cut at 0: 2 - 2.48 < 0
    data = {"env": ENV, "config": config, "study_lrs": {"zo": 3e-5, "qzo-ff 16w8a": 1e-3},
            "rows": rows, "wall_s": 3012.4}  # fmt: skip
    write(tmp_path, "fewshot_lr", data)
    head, table = B.fewshot_lr_table(tmp_path).split("\n\n")
    assert ", 3,012 s: the resnet backbone, regime `ft`, 100 ZO steps on each of 10 " in head
    assert "seeds 0, 1, 2, each with its own backbone (2,000 pretraining steps)" in head
    assert "zero-shot ProtoNets: 52.00 [47.03, 56.97]." in head
    assert table.splitlines() == [
        "| method | `1e-05` | `3e-05` | `0.0003` | `0.001` |",
        "|---|---|---|---|---|",
        "| zo | 57.00 [54.52, 59.48] | **60.00 [60.00, 60.00]** (best) |  |  |",
        "| qzo-ff 16w8a |  |  | 60.00 [57.52, 62.48] (best) | **2.00 [0.00, 4.48]** |",
    ]


# -- backbone_determinism -------------------------------------------------------------------------
def test_backbone_determinism_table(tmp_path):
    pins = {"OMP_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE"}
    data = {"env": ENV, "steps": 200, "cpu_capability": "AVX512",
            "libraries": ["Intel(R) MKL-DNN v3.12.0"],
            "settings": {"this CPU, portable": {"sha256": "7ec288826be2ac3e", "cpu": "this",
                                                "pinned": True, "env": pins, "seconds": 27.46,
                                                "max_abs_diff_vs_first": 0.0},
                         "emulated Nehalem": {"sha256": "72b7a2b9d2ae6e4b", "cpu": "Nehalem",
                                              "pinned": False, "env": {"OMP_NUM_THREADS": "2"},
                                              "seconds": 612.5,
                                              "max_abs_diff_vs_first": 0.04812}}}  # fmt: skip
    write(tmp_path, "backbone_determinism", data)
    head, table = B.backbone_determinism_table(tmp_path).split("\n\n")
    assert head.endswith("for 200 steps in a fresh process per setting, on this CPU (torch's "
                         "kernels: AVX512; Intel(R) MKL-DNN v3.12.0) and on CPUs emulated by "
                         "`qemu-x86_64 -cpu MODEL`.")  # fmt: skip
    assert table.splitlines()[2:] == [
        "| this CPU, portable | this one | pinned (portable) | 7ec288826be2ac3e | 0 | 27 |",
        "| emulated Nehalem | emulated Nehalem | torch's choice, `OMP_NUM_THREADS=2` | "
        "72b7a2b9d2ae6e4b | 0.048 | 612 |",
    ]
