"""The docs' benchmark tables, made from the JSON the benchmark scripts commit under
``benchmarks/results/`` (``python benchmarks/NAME.py --out benchmarks/results/NAME.json``).

Each table is a function of its JSON alone, so the README cannot drift from what was
measured: ``edgezo report --docs`` rewrites the ``<!-- edgezo:generated benchmark NAME -->``
blocks with :data:`BENCHMARKS` (:mod:`edgezo.analysis.docs`). Timings are not rerun here:
they need a quiet machine, and the JSON says which machine and load made them.

* ``step_overhead``: perturbation passes, ZO steps and peak memory against inference
  (``step_overhead.json``), the torch path beside it (``step_overhead_kernels_off.json``)
  and MeZO's own step in the same rounds (``mezo_side_by_side.json``);
* ``fixedpoint_step``: the integer path's step against six forwards (``fixedpoint_step.json``);
* ``runtime``: ONNX Runtime against torch, the demo trained through ORT and the C step
  (``runtime.json``);
* ``fixedpoint``: QZO-FF against float ZO and backprop on the demo's head (``fixedpoint.json``;
  :func:`fixedpoint_table` is also what ``benchmarks/fixedpoint.py --markdown`` prints);
* ``peft_memory``: ZO and backprop, full and LoRA, bytes and peak memory (``peft_memory.json``);
* ``distributed``: data-parallel ZO's bytes per step and step times (``distributed.json``);
* ``drift``: how far float perturb/restore moves the weights, and a failed step's restore
  (``drift.json``);
* ``memory``: ViT-tiny's training memory, peak resident set and the paper's figure beside
  ours (``memory.json``);
* ``scale_rules``: PeZO's scaling rules, per generator and pool size: the mean estimate against
  the gradient and training (``scale_rules.json``);
* ``fewshot_lr``: the few-shot study's fixed forward-only ft lrs, swept on validation episodes
  over seeds (``fewshot_lr.json``);
* ``backbone_determinism``: the demo's backbone pretrained on this CPU and emulated ones, with
  pinned and with torch's own kernels: its SHA-256 and how far its weights move
  (``backbone_determinism.json``);
* ``hw_engine_cxxrtl``: the compiled hardware engine's long run per generator (rendered by
  :func:`edgezo.hw.engine_report.cxxrtl_table`; needs the ``hw`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .stats import Interval, accuracy_interval, t_interval

#: Where the benchmark JSON lives, relative to the repository root (the parent of ``results/``).
FOLDER = Path("benchmarks") / "results"
WORKLOADS = {"smallcnn": "SmallCNN", "vittiny": "ViT-tiny-like"}


def load(folder: Path, name: str) -> dict[str, Any]:
    """``folder/NAME.json``, with what to run when it is missing."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise ValueError(
            f"no benchmark results {path}: run `python benchmarks/{name}.py --out {path}` on a "
            "quiet machine and commit it"
        )
    return json.loads(path.read_text())


def times(v: float) -> str:
    """A ratio as ``1.39x`` (``20.4x`` from 10 on)."""
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x"


def source_line(path: str, data: Mapping[str, Any], command: str) -> str:
    """Where a table's numbers come from: file, command, version, commit, threads, load."""
    env = data["env"]
    load_avg = env.get("loadavg_at_start", [None])[0]
    threads = env.get("torch_threads")
    return (
        f"`{path}` (`{command}`: edgezo {env['edgezo']} at commit {env['git_head']}, "
        f"torch {env['torch']}, {threads} torch thread{'s' if threads != 1 else ''}"
        + (f", {env['cpu_count']} CPUs" if env.get("cpu_count") else "")
        + (f", load average {load_avg:.2f} at the start" if load_avg is not None else "")
        + ")"
    )


# -- step_overhead ------------------------------------------------------------------------------
def step_rows(data: Mapping, off: Mapping, mezo: Mapping, names: Sequence[str]) -> list[str]:
    """The step and memory rows of the step-overhead table (one column per workload)."""

    def step(d: Mapping, w: str, key: str) -> float:
        return d["workloads"][w]["steps"][key]["paired_median_ratio_to_two_forwards"]

    def row(label: str, cell: Callable[[str], str]) -> str:
        return f"| {label} | " + " | ".join(cell(w) for w in names) + " |"

    steps = {"ZO central, `Pool`": "zo_central_pool",
             "ZO central, `Gaussian`": "zo_central_gaussian",
             "ZO forward (one-sided), `Pool`": "zo_forward_pool",
             "forward gradient (`jvp`), `Pool`": "zo_jvp_pool",
             "backprop SGD step": "backprop_sgd"}  # fmt: skip
    lines = [f"| **step / two forwards** (`step_overhead.py`; torch path) |{' |' * len(names)}"]
    for label, key in steps.items():
        lines.append(row(label, lambda w, k=key: f"{step(data, w, k):.2f} ({step(off, w, k):.2f})"))
    lines.append(f"| **step / two forwards, same rounds as MeZO's** (`mezo_side_by_side.py`) |"
                 f"{' |' * len(names)}")  # fmt: skip
    lines.append(row("MeZO's step (Gaussian)", lambda w: f"{step(mezo, w, 'mezo_style'):.2f}"))
    edgezo = ("edgezo_gaussian", "edgezo_rademacher", "edgezo_pool")
    lines.append(row("edgezo central: `Gaussian` / `Rademacher` / `Pool`",
                     lambda w: " / ".join(f"{step(mezo, w, k):.2f}" for k in edgezo)))  # fmt: skip
    lines.append(f"| **peak resident memory / inference** (own process each) |{' |' * len(names)}")
    for label, key in (("ZO central, `Pool`", "zo_pool"), ("ZO central, `Gaussian`", "zo_gaussian"),
                       ("backprop SGD", "backprop")):  # fmt: skip
        ratio = f"{key}_to_inference"
        lines.append(row(label, lambda w, r=ratio: f"{data['memory'][w]['ratios'][r]:.3f}"))
    return lines


def pass_rows(data: Mapping, off: Mapping, names: Sequence[str]) -> list[str]:
    """The perturbation-pass rows: each source's pass over a plain memory pass, compiled
    (torch path)."""

    def ratio(d: Mapping, w: str, group: str, source: str) -> float:
        return d["workloads"][w][group]["sources"][source]["paired_median_ratio_to_memory_pass"]

    def cell(w: str, group: str, sources: Sequence[str]) -> str:
        fast = " / ".join(times(ratio(data, w, group, s)) for s in sources)
        slow = " / ".join(times(ratio(off, w, group, s)) for s in sources)
        return f"{fast} ({slow})"

    pool = data["config"]["pool_size"]
    groups = {f"`Pool({pool:,})`": ("passes", ("Pool",)),
              "`Gaussian` / `Rademacher` / `Uniform`": ("passes", ("Gaussian", "Rademacher", "Uniform")),
              "`LFSR` / `Xorshift` / `RNGArray`": ("hw_passes", ("LFSR", "Xorshift", "RNGArray"))}  # fmt: skip
    lines = [f"| **perturbation pass / plain memory pass** (`p.mul_(1)` per tensor) |"
             f"{' |' * len(names)}"]  # fmt: skip
    for label, (group, sources) in groups.items():
        cells = " | ".join(cell(w, group, sources) for w in names)
        lines.append(f"| {label}, compiled (torch path) | {cells} |")
    return lines


def step_overhead_table(folder: Path) -> str:
    """The Performance table: passes, steps and memory of ``step_overhead.json`` with the torch
    path of ``step_overhead_kernels_off.json`` and MeZO's step of ``mezo_side_by_side.json``."""
    data = load(folder, "step_overhead")
    off, mezo = load(folder, "step_overhead_kernels_off"), load(folder, "mezo_side_by_side")
    names = list(data["workloads"])
    heads = []
    for w in names:
        wl = data["workloads"][w]
        size = "x".join(map(str, wl["input_shape"]))
        heads.append(f"{WORKLOADS.get(w, w)}, {wl['params']:,} params, batch {wl['batch']} of "
                     f"{size}")  # fmt: skip
    fwd = [f"{1000 * data['workloads'][w]['forward']['median_s']:.1f} ms" for w in names]
    lines = [
        "From "
        + source_line(
            f"{FOLDER}/step_overhead.json", data, "python benchmarks/step_overhead.py"
        )  # fmt: skip
        + "; in parentheses the torch path, from "
        + source_line(
            f"{FOLDER}/step_overhead_kernels_off.json",
            off,
            "EDGEZO_KERNELS=off python benchmarks/step_overhead.py --no-memory",
        )
        + "; MeZO's rows from "
        + source_line(
            f"{FOLDER}/mezo_side_by_side.json", mezo, "python benchmarks/mezo_side_by_side.py"
        )
        + ". Medians of paired rounds, every ratio taken within the same rounds.",
        "",
        "| | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(names),
        "| forward (no grad) | " + " | ".join(fwd) + " |",
        *pass_rows(data, off, names),
        *step_rows(data, off, mezo, names),
    ]
    return "\n".join(lines) + "\n"


def fixedpoint_step_table(folder: Path) -> str:
    """The integer path's step over six forwards of the same integer model, per executor, with
    every layer trained and the head only (``fixedpoint_step.json``)."""
    data = load(folder, "fixedpoint_step")
    cases = data["cases"]
    names = list(cases)
    lines = [
        "From "
        + source_line(
            f"{FOLDER}/fixedpoint_step.json", data, "python benchmarks/fixedpoint_step.py"
        )  # fmt: skip
        + f"; SmallCNN 16w8a, {data['config']['preset']}, batch {data['config']['batch']}, "
        f"medians of {data['config']['repeats']} paired rounds.",
        "",
        "| step / six forwards of the integer model | "
        + " | ".join({"whole": "every layer trained", "head": "head only"}.get(c, c) for c in names)
        + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, label in cases[names[0]]["executors"].items():
        cells = [f"{cases[c]['steps'][key]['paired_median_to_six_forwards']:.2f}" for c in names]
        what = "float model" if key == "float" else "integer model"
        lines.append(f"| {what}, {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- runtime ------------------------------------------------------------------------------------
AGREEMENT = {
    "smallcnn": "SmallCNN (the demo's, shifted MNIST)",
    "smallcnn_per_channel": "SmallCNN, per-channel scales",
    "resnet": "ResNet",
    "vit": "ViT (attention, LayerNorm, GELU, class token)",
    "crnn": "CRNN (digits read as spectrograms)",
    "dscnn": "DS-CNN (the same)",
    "minilm": "MiniLM-L6, 16w8a whole model (topic sentences)",
}


def agreement_table(data: Mapping[str, Any]) -> list[str]:
    """ONNX Runtime's forwards against the torch fixed-point model's, per model."""
    lines = [
        "| model | test inputs | same argmax | max logit diff | rows bit-equal |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, a in data["agreement"].items():
        if not isinstance(a, Mapping):
            continue  # rows_per_family
        lines.append(
            f"| {AGREEMENT.get(key, a['what'])} | {a['rows']:,} | {100 * a['argmax_agreement']:.2f}% "
            f"| {a['max_diff_output_steps']:.2f} steps | {100 * a['bit_equal_rows']:.2f}% |"
        )
    return lines


def device_table(data: Mapping[str, Any]) -> list[str]:
    """The demo trained through ORT and the C step beside torch and the Python step; speeds."""
    t, sp, mem = data["training"], data["speed"], data["memory"]
    s = t["settings"]

    def ms(x: float) -> str:
        return f"{1000 * x:.1f} ms"

    def ratio(case: str, fmt: str) -> str:
        steps = sp["steps"][case] if case in sp["steps"] else sp[case]
        return f"{steps[fmt]['paired_median_ratio_to_two_forwards']:.2f}"

    fwd = sp["forward"]
    same = "bit-identical" if t["final_integers_bit_identical"] else "differ"
    return [
        "| | torch + Python step | ONNX Runtime + C step |",
        "|---|---|---|",
        f"| demo `{t['method']}`, {s['steps']} steps, seed {s['seed']}: shifted test accuracy "
        f"(from {100 * t['accuracy_before']:.2f}%) | {100 * t['accuracy_torch']:.2f}% "
        f"| {100 * t['accuracy_ort']:.2f}% |",
        f"| final integers | | {same} |",
        f"| queries whose `sign(L+ - L-)` agrees | | {100 * t['queries_with_equal_coefficient']:.0f}%"
        f" (losses float-equal on {100 * t['steps_with_equal_losses']:.0f}% of steps) |",
        f"| time per step ({t['closures_per_step']} forwards of batch {s['batch']} + the step) "
        f"| {ms(t['seconds_per_step']['torch'])} | {ms(t['seconds_per_step']['ort_c'])} |",
        f"| ViT forward, batch {sp['batch']} | {ms(fwd['torch_fixed_point']['median_s'])} (float: "
        f"{ms(fwd['torch_float']['median_s'])}) | {ms(fwd['ort']['median_s'])} |",
        "| ZO step / two ORT forwards, ViT, head trained "
        f"| {ratio('head', 'FixedPointFormat')} | {ratio('head', 'DeviceFormat')} |",
        f"| ZO step / two ORT forwards, ViT, all {sp['trainable_parameters']['whole']:,} weights "
        f"trained | {ratio('whole', 'FixedPointFormat')} | {ratio('whole', 'DeviceFormat')} |",
        "| ZO step / two ORT forwards, demo SmallCNN head "
        f"| {ratio('smallcnn_head_reference', 'FixedPointFormat')} "
        f"| {ratio('smallcnn_head_reference', 'DeviceFormat')} |",
        "| peak resident set, training / inference (SmallCNN head; ViT, all weights) | "
        f"| {mem['smallcnn_head']['training_to_inference']:.3f}; "
        f"{mem['vit_whole']['training_to_inference']:.3f} |",
    ]


def c_step_table(data: Mapping[str, Any]) -> list[str]:
    """The C step alone on a large tensor, per direction source, against a memory copy."""
    c = data["c_step"]
    names = list(c["sources"])
    per = c["sources"]
    rows = {
        "perturbed read / memory copy": [f"{per[n]['c_read_vs_memcpy']:.1f}" for n in names],
        f"{c['update']} update / memory copy": [
            f"{per[n]['c_update_vs_memcpy']:.1f}" for n in names
        ],
        "perturbed read, C / torch path (ms)": [
            f"{per[n]['c_read_ms']:.2f} / {per[n]['python_read_ms']:.1f}" for n in names
        ],
    }
    lines = [
        f"| C step, {c['weights']:,} `{c['dtype']}` weights, {c['threads']} thread | "
        + " | ".join(names)
        + " |",
        "|---|" + "---:|" * len(names),
        *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()),
    ]
    share = 100 * c["state_share_of_tiny_training_sram"]
    return [
        *lines,
        "",
        f"The C step compiles in {c['compile_s']:.1f} s on first use. The training state the "
        f"device keeps beyond inference for the demo's head: **{c['demo_head_state_bytes']:,} "
        f"bytes**, {share:.1f}% of the {c['tiny_training_sram_bytes']:,} bytes of SRAM that "
        "backprop-based on-device training (MIT's tiny-training) fits into.",
    ]


def runtime_tables(folder: Path) -> str:
    """The inference-runtime section: agreement, the device step, the C step (``runtime.json``)."""
    data = load(folder, "runtime")
    env, cfg = data["env"], data["config"]
    lines = [
        "From "
        + source_line(f"{FOLDER}/runtime.json", data, "python benchmarks/runtime.py")
        + f"; ONNX Runtime {env['onnxruntime']} with {env['ort_intra_op_threads']} threads; "
        f"timings are medians of {cfg['repeats']} interleaved rounds, ratios taken in the same "
        "rounds. Forwards, ORT against the torch fixed-point model (16w8a, pretrained, real test "
        "inputs; a logit step is `max|logits| / 127`):",
        "",
        *agreement_table(data),
        "",
        *device_table(data),
        "",
        *c_step_table(data),
    ]
    return "\n".join(lines) + "\n"


# -- fixedpoint -----------------------------------------------------------------------------------
PRECISIONS = {"fp32": "fp32", "16w8a": "16 / 8 bit", "8w8a": "8 / 8 bit"}


def paired_difference(accs: Sequence[float], ref: Sequence[float]) -> str:
    """``accs - ref`` in points, per seed (the rows of a seed share its batches): the mean and,
    over several seeds, its 95% t-interval."""
    diffs = [100 * (a - r) for a, r in zip(accs, ref, strict=True)]
    iv = t_interval(diffs)
    if iv.n == 1:
        return f"{iv.mean:+.2f}"
    return f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"


def fixedpoint_table(result: Mapping[str, Any]) -> list[str]:
    """``benchmarks/fixedpoint.py``'s table: per run the shifted-test accuracy (mean ± sample std
    over seeds), its paired difference to fp32 ZO and the trained integers at their limit."""
    rows, zs = result["rows"], result["zero_shot"]
    seeds = len(result["config"]["seeds"])
    ref = rows["zo_fp32"]
    plural = "s" if seeds > 1 else ""
    vs = "vs fp32 ZO (points" + (", paired 95% t-interval)" if seeds > 1 else ")")
    lines = [
        "| run | weights / activations | steps | forwards / step | shifted-test accuracy % "
        f"(mean ± std, {seeds} seed{plural}) | {vs} | trained weights at the integer limit |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, acc in zs.items():
        base, _, extra = name.partition("_")
        label = f"zero-shot {base}" + (
            f", headroom {result['config']['headroom']:g}" if extra == "headroom" else ""
        )
        lines.append(f"| {label} | {PRECISIONS[base]} | 0 | - | {100 * acc:.2f} | "
                     f"{100 * (acc - ref['mean']):+.2f} | - |")  # fmt: skip
    for key, m in rows.items():
        fwd = "1 (+ backward)" if key == "bp_fp32" else f"{m['forwards_per_step']:g}"
        sat = "-" if m.get("saturated") is None else f"{100 * m['saturated']:.1f}%"
        acc = f"{100 * m['mean']:.2f}" + (f" ± {100 * m['std']:.2f}" if seeds > 1 else "")
        lines.append(
            f"| {m['label']} | {PRECISIONS[m['precision']]} | {m['steps']} | {fwd} | {acc} | "
            f"{'+0.00' if key == 'zo_fp32' else paired_difference(m['accs'], ref['accs'])} "
            f"| {sat} |"
        )
    return lines


def fixedpoint_settings(result: Mapping[str, Any]) -> list[str]:
    """How lr and eps were chosen, the batch, what was adapted; the step-time ratio."""
    ch, tm = result["chosen"], result["timing"]
    how = (
        "grid-searched once on fp32 ZO (seed 0, scored on a validation split of the shifted "
        "train images, disjoint from the adaptation images; the test set is never used to choose)"
        if ch["grid_searched"]
        else "fixed (no grid in --quick)"
    )
    return [
        f"Settings: lr {ch['lr']:g}, eps {ch['eps']:g} for every ZO row ({how}); "
        f"kernel-wise normalization also with its own lr {ch['kn_lr']:g}"
        f"{', chosen the same way' if ch['grid_searched'] else ''} "
        "(its lr is relative: ||dw_i|| = lr ||w_i|| per query); backprop: Adam, lr "
        f"{ch['bp_lr']:g}{' (same procedure)' if ch['grid_searched'] else ''}. "
        f"Batch {result['config']['demo']['batch']}; every "
        "row of a seed sees the same batches. Adapted: "
        f"{', '.join(result['backbone']['adapted'])} ({result['backbone']['adapted_numel']} "
        "parameters); the quantized rows quantize the whole model.",
        "",
        f"Step time, integer (16w8a) / float path, median of {tm['full_model']['repeats']} "
        f"interleaved repeats on the same batch: full model {tm['full_model']['ratio_median']:.2f}x "
        f"({tm['full_model']['int_step_ms']:.1f} vs {tm['full_model']['float_step_ms']:.1f} ms "
        f"per sign-3-SPSA step), head only {tm['head_only']['ratio_median']:.2f}x "
        f"({tm['head_only']['int_step_ms']:.2f} vs {tm['head_only']['float_step_ms']:.2f} ms).",
    ]


def fixedpoint_targets(result: Mapping[str, Any]) -> list[str]:
    """The benchmark's targets, met or not on the means, and the tool's refusal message."""
    rows, tg = result["rows"], result["targets"]
    q8, sp = tg["q8_fails_and_tool_warned"], tg["sparse90_within_2pt_of_dense"]
    q16t = tg["q16_within_1pt_of_fp32_zo"]
    lines = [
        "Targets:",
        f"- 16w8a within 1 point of fp32 ZO: {q16t['points']:+.2f} points, "
        f"{'met' if q16t['met'] else 'not met'}.",
        f"- 8w8a fails and the tool warned, at the shared lr: {'met' if q8['met'] else 'not met'} "
        f"(8w8a {q8['q8_gain_points']:+.2f} points over its zero-shot, "
        f"{q8['q8_vs_q16_points']:+.2f} vs 16w8a; the tool "
        f"{'warned' if q8['tool_warned'] else 'had nothing to say'}).",
    ]
    if "paper_regime" in tg:
        pr = tg["paper_regime"]
        lines.append(
            f"- 8w8a in the paper's regime (lr {pr['lr']:g}, where the 8-bit update rounds to "
            f"zero): 8w8a {pr['q8_gain_points']:+.2f} points over its zero-shot, 16w8a "
            f"{pr['q16_gain_points']:+.2f}; the tool "
            f"{'warned' if pr['tool_warned'] else 'did not warn'}."
        )
    lines.append(
        f"- 90% sparse (top-k) within 2 points of dense 16w8a: {sp['points']:+.2f} points, "
        f"{'met' if sp['met'] else 'not met'} (random mask: {sp['random_mask_points']:+.2f}; "
        f"fp32 top-k vs fp32 dense: {sp['fp32_topk_vs_fp32_dense_points']:+.2f}; "
        f"with headroom {result['config']['headroom']:g}, top-k vs dense: "
        f"{sp['headroom_topk_vs_headroom_dense_points']:+.2f})."
    )
    enh = tg["enhancements_points_vs_16w8a"]
    labels = {k: rows[k]["label"].removeprefix("16w8a + ").removeprefix("16w8a, ") for k in enh}
    lines.append("- Enhancements vs 16w8a (points): "
                 + "; ".join(f"{labels[k]} {v:+.2f}" for k, v in enh.items()) + ".")  # fmt: skip
    msg = result["tool"]["8w8a"]["message"] or result["tool"]["8w8a_paper_regime"]["message"]
    if msg:
        which = "shared" if result["tool"]["8w8a"]["message"] else "paper-regime"
        lines += ["", f"The tool's message before the forced 8w8a run ({which} lr):", "",
                  "```", msg, "```"]  # fmt: skip
    return lines


def fixedpoint_markdown(result: Mapping[str, Any]) -> str:
    """``benchmarks/fixedpoint.py --markdown``: the table, the settings, the targets."""
    lines = [*fixedpoint_table(result), "", *fixedpoint_settings(result), "",
             *fixedpoint_targets(result)]  # fmt: skip
    return "\n".join(lines) + "\n"


def fixedpoint_tables(folder: Path) -> str:
    """The README's "Does it still train?" block: where it comes from, then
    :func:`fixedpoint_markdown`."""
    r = load(folder, "fixedpoint")
    prov = r["provenance"]
    head = (
        f"From `{FOLDER}/fixedpoint.json` (`python benchmarks/fixedpoint.py`: edgezo "
        f"{prov['edgezo']} at commit {str(prov['commit'])[:10]}, torch {prov['torch']}, "
        f"{prov['threads']} thread{'s' if prov['threads'] != 1 else ''}, "
        f"{r['seconds'] / 60:.0f} min). The demo's task: the MNIST-pretrained SmallCNN's head "
        "adapted to the washed-out camera shift, every run of a seed on the same batches."
    )
    return head + "\n\n" + fixedpoint_markdown(r)


# -- peft_memory ----------------------------------------------------------------------------------
PEFT_MODELS = {"minilm": "MiniLM-L6", "tiny": "a tiny random BERT"}


def mb_cell(value: float) -> str:
    """Megabytes as ``90.9 MB``, ``0.30 MB`` below 1 MB, ``0`` for nothing."""
    return "0" if value == 0 else f"{value:.2f} MB" if value < 1 else f"{value:.1f} MB"


def peft_memory_table(folder: Path) -> str:
    """What a LoRA adapter changes in memory, ZO and backprop, full and LoRA
    (``peft_memory.json``: byte counts, and peak RSS and step time of a fresh process each)."""
    data = load(folder, "peft_memory")
    st, by, rss = data["settings"], data["bytes"], data["peak_rss"]
    cols = (("zo-full", "full"), ("zo-lora", "lora"), ("bp-lora", "lora"), ("bp-full", "full"))

    def row(label: str, cell: Callable[[str, Mapping[str, Any]], str]) -> str:
        return f"| {label} | " + " | ".join(cell(mode, by[part]) for mode, part in cols) + " |"

    def state(mode: str, b: Mapping[str, Any]) -> str:
        if mode.startswith("zo"):
            return mb_cell(b["zo_state_mb"])
        return f"none ({mb_cell(b['adam_state_mb'])})"

    def activations(mode: str, b: Mapping[str, Any]) -> str:
        if mode.startswith("zo"):
            return f"{mb_cell(b['forward_peak_activations_mb'])} (forward peak)"
        return f"{mb_cell(b['bp_saved_activations_mb'])} saved"

    command = "python benchmarks/peft_memory.py"
    lines = [
        "From "
        + source_line(f"{FOLDER}/peft_memory.json", data, command)
        + f": {PEFT_MODELS.get(st['model'], st['model'])}, 2-way head, LoRA r={st['lora']['r']}, "
        f"alpha={st['lora']['lora_alpha']} on query and value, batch {st['batch']} x "
        f"{st['length']} tokens, fp32; peak RSS of a fresh process per column after "
        f"{st['steps']} steps, inference's is {rss['inference']['peak_rss_mb']:.1f} MB; step "
        "times are medians of those steps (indicative only on a shared machine).",
        "",
        "| | ZO full | ZO LoRA | backprop LoRA (SGD) | backprop full (SGD) |",
        "|---|---|---|---|---|",
        row("trained (perturbed) weights", lambda m, b: f"{b['trained_params']:,}"),
        row("gradient", lambda m, b: "0" if m.startswith("zo") else mb_cell(b["bp_gradient_mb"])),
        row("optimizer state (Adam would keep)", state),
        row("activations", activations),
        row("peak RSS / inference's", lambda m, b: f"{rss[m]['peak_over_inference']:.3f}x"),
        row(
            f"step (inference {rss['inference']['step_s_median']:.2f} s)",
            lambda m, b: f"{rss[m]['step_s_median']:.2f} s",
        ),
    ]
    return "\n".join(lines) + "\n"


# -- distributed ----------------------------------------------------------------------------------
DP_WORKLOADS = {"mlp": "MLP", "vit": "ViT-tiny-like"}


def ms(seconds: float) -> str:
    """A step time in milliseconds: one decimal below 100 ms, none from there."""
    return f"{1000 * seconds:.1f}" if seconds < 0.1 else f"{1000 * seconds:.0f}"


def distributed_rows(work: Mapping[str, Any]) -> list[str]:
    """Bytes per step against a gradient all-reduce, and step times per ranks x threads."""
    names = list(work)
    configs = {w: work[w]["configs"] for w in names}
    first = {w: next(iter(configs[w].values())) for w in names}

    def row(label: str, cell: Callable[[str], str]) -> str:
        return f"| {label} | " + " | ".join(cell(w) for w in names) + " |"

    def wire(w: str) -> str:
        widest = max(configs[w].values(), key=lambda r: r["ranks"])
        ring = widest["ring_wire_bytes_per_rank"]
        return f"{ring['zo_all_gather']:,.0f} vs {ring['gradient_all_reduce']:,.0f}"

    def steps(w: str, threads: int) -> str:
        rows = sorted((r for r in configs[w].values() if r["threads_per_rank"] == threads),
                      key=lambda r: r["ranks"])  # fmt: skip
        return " / ".join(ms(r["step_seconds"]) for r in rows) + " ms"

    ranks = sorted({r["ranks"] for c in configs.values() for r in c.values()
                    if r["threads_per_rank"] == 1})  # fmt: skip
    widest = max(ranks)
    lines = [
        row("bytes per step a rank sends, ZO central",
            lambda w: f"{first[w]['comm_payload_bytes_per_step']:,.0f}"),
        row("gradient all-reduce payload (4 bytes x parameters)",
            lambda w: f"{first[w]['gradient_allreduce_payload_bytes']:,} "
            f"({first[w]['payload_ratio_gradient_over_zo']:,.0f}x)"),
        row(f"ring wire bytes per rank, {widest} ranks: ZO all-gather vs gradient all-reduce",
            wire),
        row("step, " + " / ".join(map(str, ranks)) + " ranks of 1 thread",
            lambda w: steps(w, 1)),
    ]  # fmt: skip
    if any(r["threads_per_rank"] == 2 for c in configs.values() for r in c.values()):
        lines.append(row("step, 1 rank of 2 threads", lambda w: steps(w, 2)))
    same = all(r["replicas_identical"] for c in configs.values() for r in c.values())
    lines.append(row("replicas bit-identical after training", lambda w: "yes" if same else "no"))
    return lines


def distributed_table(folder: Path) -> str:
    """Data-parallel ZO's bytes and step times (``distributed.json``), and what the load says
    about reading the step times as scaling."""
    data = load(folder, "distributed")
    env, work = data["env"], data["workloads"]
    heads = [f"{DP_WORKLOADS.get(w, w)}, {v['params']:,} params, global batch "
             f"{v['global_batch']}, {v['steps_per_run']} steps" for w, v in work.items()]  # fmt: skip
    start, end = env["loadavg_at_start"][0], env["loadavg_at_end"][0]
    busy = min(start, end) >= env["cpu_count"]
    lines = [
        "From "
        + source_line(f"{FOLDER}/distributed.json", data, "python benchmarks/distributed.py")
        + f"; {env['backend']}; step times are rank 0's median step, the median over "
        f"{env['repeats']} round-robin repeats.",
        "",
        "| | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(work),
        *distributed_rows(work),
        "",
        f"The machine had {env['cpu_count']} cores at a load average of {start:.2f} at the start "
        f"and {end:.2f} at the end"
        + (
            ": the ranks had no idle cores to run on, so the step times say nothing about how "
            "data-parallel ZO scales."
            if busy
            else "; the step times include the other jobs' contention."
        ),
    ]
    return "\n".join(lines) + "\n"


# -- drift --------------------------------------------------------------------------------------
def ulps(v: float) -> str:
    """A drift in ulps: whole from 100 on (and whole numbers), else three digits; ``-`` if not
    taken."""
    if v != v:  # NaN: the p99 of more than 2**24 weights is not computed
        return "-"
    return f"{v:.0f}" if v >= 100 or float(v).is_integer() else f"{v:.3g}"


def drift_rows(data: Mapping[str, Any]) -> list[str]:
    """Per dtype and source: weights changed and their ulps after one and after ``steps`` steps,
    and the zero biases that did not stay zero."""
    last = f"after_{data['steps']}"
    lines = []
    for dtype, sources in data["results"].items():
        for how, r in sources.items():
            cells = []
            for after in ("after_1", last):
                w = r[after]["weights"]
                cells.append(f"{100 * w['changed_fraction']:.1f}%")
                cells.append(
                    " / ".join(ulps(w[k]) for k in ("median_ulps", "p99_ulps", "max_ulps"))
                )
            bias = 100 * r[last]["zero_bias"]["nonzero_fraction"]
            lines.append(f"| {dtype} | {how} | " + " | ".join(cells) + f" | {bias:.1f}% |")
    return lines


def failed_step_rows(failed: Mapping[str, Any]) -> list[str]:
    """``dtype/estimator/qN`` cells as a dtype x (estimator, queries) table: the largest drift
    over its bound's unit, and the share of weights not put back exactly."""
    cases = sorted(
        {k.split("/", 1)[1] for k in failed}, key=lambda c: (c.split("/")[0] != "central", c)
    )
    dtypes = list(dict.fromkeys(k.split("/")[0] for k in failed))

    def head(case: str) -> str:
        estimator, q = case.split("/")
        return f"{estimator}, q = {q.removeprefix('q')}"

    lines = ["| dtype | " + " | ".join(head(c) for c in cases) + " |",
             "|---|" + "---:|" * len(cases)]  # fmt: skip
    for dtype in dtypes:
        cells = [failed[f"{dtype}/{c}"] for c in cases]
        lines.append(f"| {dtype} | " + " | ".join(
            f"{c['max_bound_ratio']:.3f} ({100 * c['changed_fraction']:.1f}%)" for c in cells) + " |")  # fmt: skip
    return lines


def drift_tables(folder: Path) -> str:
    """The perturb/restore drift with ``lr = 0`` and the failed step's restore (``drift.json``)."""
    data = load(folder, "drift")
    n = data["steps"]
    weights = f"{data['dim']:,} weights ~ N(0, {data['weight_std']:g})"
    zeros, eps = f"{data['zero_biases']:,}", f"eps = {data['eps']:g}"
    lines = [
        "From "
        + source_line(f"{FOLDER}/drift.json", data, "python benchmarks/drift.py")
        + f"; {weights} and {zeros} zero biases, {eps}, central steps with `lr = 0`:",
        "",
        f"| dtype | source | after 1 step: weights changed | median / p99 / max ulps | after {n} "
        f"steps: changed | median / p99 / max ulps | zero biases not zero ({n} steps) |",
        "|---|---|---|---|---|---|---|",
        *drift_rows(data),
        "",
        f"A failed step (a NaN at the last forward; {weights} plus {zeros} zeros, {eps}, worst of "
        f"{data['failed_step_seeds']} seeds): the largest `|w' - w|` over "
        "`q finfo.eps (|w| + max_i |eps z_i|)`, and in parentheses the weights not put back "
        "exactly:",
        "",
        *failed_step_rows(data["failed_step"]),
    ]
    return "\n".join(lines) + "\n"


# -- memory ---------------------------------------------------------------------------------------
RSS_LABELS = {"inference": "inference", "zo-fp32": "ZO", "bp-fp32": "backprop"}


def memory_rows(setting: Mapping[str, Any]) -> list[str]:
    """:func:`edgezo.analysis.memory.memory_table`'s rows: weights, scratch, gradients, optimizer
    state (the sparse row's mask) and their total, in MB."""

    def cell(v: float) -> str:
        return "0" if v == 0 else f"{v:.2f} MB"

    lines = ["| | weights | scratch | gradients | optimizer state / mask | total |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in setting["table_mb"]:
        keys = ("weights", "scratch", "gradients", "optimizer_state")
        lines.append(f"| {r['row']} | " + " | ".join(cell(r[k]) for k in keys)
                     + f" | {r['total']:.2f} MB |")  # fmt: skip
    return lines


def memory_sentences(data: Mapping[str, Any], big: str) -> list[str]:
    """Peak resident set per mode; the paper's 224x224 figure beside ours; a real step's scratch."""
    rss, z = data["peak_rss"], data["zo_step"]
    peaks = ", ".join(
        f"{RSS_LABELS.get(m, m)} {v:.1f} MB"
        + ("" if m == "inference" else f" ({rss['peak_over_inference'][m]:.3f}x)")
        for m, v in rss["peak_rss_mb"].items()
    )
    lines = [
        f"Peak resident set ({rss['peak_rss_source']}) of a fresh process running "
        f"{rss['steps']} steps, median of {rss['repeats']}: {peaks}.",
    ]
    if big in data["paper_comparison"]:
        pc, s = data["paper_comparison"][big], data["settings"][big]
        paper, both = pc["paper"], pc["weights_plus_scratch_fp16"]
        cfg = s["config"]
        lines += ["", (
            f"The paper's ViT-tiny figure ({paper['bp_scratch_mb']:.2f} MB -> "
            f"{paper['ff_scratch_mb']:.2f} MB, {paper['bp_over_ff']:.2f}x) is for "
            f"{cfg['image']}x{cfg['image']} inputs. Ours there (patch {cfg['patch']}, "
            f"{s['parameters']:,} parameters): scratch alone {s['bp_saved_mb']['fp32']:.2f} MB -> "
            f"{s['zo_forward_peak_mb']['fp32']:.2f} MB in fp32; fp16 weights and scratch "
            f"together {both['bp_mb']:.2f} MB -> {both['zo_mb']:.2f} MB ({both['bp_over_zo']:.2f}x; "
            f"{both['bp_math_attention_mb']:.2f} MB with math attention). The fp16 weights alone "
            f"are {s['weights_mb']['fp16']:.2f} MB"
            + (", the paper's FF number to the hundredth: its bars likely stack weights and scratch."
               if f"{s['weights_mb']['fp16']:.2f}" == f"{paper['ff_scratch_mb']:.2f}" else ".")
        )]  # fmt: skip
    lines += ["", (
        f"A real step's largest live set against its forward's: ZO fp32 {z['float_step_mb']:.2f} MB "
        f"vs {z['float_forward_mb']:.2f} MB ({z['float_step_over_forward']:.2f}x), QZO-FF 16w8a "
        f"{z['fixed_point_step_mb']:.2f} MB vs {z['fixed_point_forward_mb']:.2f} MB "
        f"({z['fixed_point_step_over_forward']:.2f}x)."
    )]  # fmt: skip
    return lines


def memory_tables(folder: Path) -> str:
    """The README's memory section: the training-memory table of the small ViT, peak resident
    set per mode, the paper's figure beside ours, a real step's scratch (``memory.json``)."""
    data = load(folder, "memory")
    small, big = "vit-tiny-32", "vit-tiny-224"
    s = data["settings"][small]
    cfg = s["config"]
    lines = [
        "From "
        + source_line(f"{FOLDER}/memory.json", data, "python benchmarks/memory.py")
        + f": the ViT-tiny-like model ({s['parameters']:,} parameters, {cfg['channels']}x"
        f"{cfg['image']}x{cfg['image']}, batch {s['batch']}, full fine-tuning):",
        "",
        *memory_rows(s),
        "",
        *memory_sentences(data, big),
    ]
    return "\n".join(lines) + "\n"


# -- scale_rules ----------------------------------------------------------------------------------
def accuracy_cell(runs: Sequence[Mapping[str, Any]]) -> str:
    """Test accuracy (%) over the seeds' runs: mean [95% t-interval, cut to 0-100]."""
    return accuracy_interval([r["test_accuracy"] for r in runs]).text()


def scale_rule_rows(data: Mapping[str, Any]) -> list[str]:
    """Per rule: the seeds' mean cosine of the mean estimate to the gradient, projection ratio,
    ``‖z‖²/d``, final training loss, and test accuracy with its t-interval; backprop last."""
    lines = ["| rule | cosine of the mean estimate to the gradient | projection ratio (1: unbiased) "
             "| ‖z‖²/d mean ± std | final train loss "
             "| test accuracy % [95% t-interval, cut to 0-100] |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, rule in data["rules"].items():
        m = rule["summary"]
        lines.append(
            f"| {name} | {m['cosine_mean_estimate_to_grad']:.3f} | {m['projection_ratio']:.3f} "
            f"| {m['second_moment_mean']:.3f} ± {m['second_moment_std']:.3f} "
            f"| {m['final_train_loss']:.3f} | {accuracy_cell(rule['training'])} |"
        )
    bp = data["backprop_sgd_reference"]
    lines.append(f"| backprop SGD (same lr) | - | - | - | {bp['final_train_loss']:.3f} "
                 f"| {accuracy_cell(bp['per_seed'])} |")  # fmt: skip
    return lines


def scale_rules_table(folder: Path) -> str:
    """PeZO's scaling rules (``scale_rules.json``): the settings, then :func:`scale_rule_rows`."""
    data = load(folder, "scale_rules")
    c = data["config"]
    seeds = ", ".join(map(str, c["seeds"]))
    pools = " and ".join(f"P = {p:,}" for p in c["pool_sizes"])
    lines = [
        "From "
        + source_line(f"{FOLDER}/scale_rules.json", data, "python benchmarks/scale_rules.py")
        + f", {'quick' if c['quick'] else 'full'} settings, {data['wall_s']:.0f} s: {c['model']} "
        f"(d = {c['dim']:,} weights), pools of {pools}. Estimator columns: at the initial weights "
        f"on a fixed batch of {c['estimator_batch']}, the mean of K = {c['k']:,} central "
        f"estimates (eps {c['eps']:g}) against the autograd gradient, mean over seeds {seeds} "
        f"(K isotropic directions give a cosine of {data['isotropic_reference_cosine']:.3f}). "
        f"Training: ZO-SGD, central, one query, lr {c['lr']:g}, batch {c['train_batch']}, "
        f"{c['train_steps']:,} steps, the same data order and initial weights per seed; test "
        f"accuracy on {c['n_test']:,} held-out images.",
        "",
        *scale_rule_rows(data),
    ]
    return "\n".join(lines) + "\n"


# -- fewshot_lr -----------------------------------------------------------------------------------
def sweep_intervals(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, float | None], Interval]:
    """(method, lr) -> its validation accuracy over the seeds (fractions, 95% t-interval)."""
    by: dict[tuple[str, float | None], list[float]] = {}
    for r in rows:
        by.setdefault((r["method"], r["lr"]), []).append(r["accuracy"] / 100)
    return {key: accuracy_interval(accs) for key, accs in by.items()}


def sweep_cell(text: str, used: bool, best: bool) -> str:
    """A sweep cell: bold where the study uses this lr, ``(best)`` where the sweep is best."""
    return (f"**{text}**" if used else text) + (" (best)" if best else "")


def fewshot_lr_table(folder: Path) -> str:
    """The few-shot lr sweep (``fewshot_lr.json``): per method and lr, the validation query
    accuracy over the seeds; the study's fixed lr in bold, the sweep's best marked."""
    data = load(folder, "fewshot_lr")
    c, rows = data["config"], data["rows"]
    intervals = sweep_intervals(rows)
    cells = {key: iv.text() for key, iv in intervals.items()}
    lrs = sorted({lr for lrs in c["grid"].values() for lr in lrs})
    seeds = ", ".join(map(str, c["seeds"]))
    lines = [
        "From "
        + source_line(f"{FOLDER}/fewshot_lr.json", data, "python benchmarks/fewshot_lr.py")
        + f", {data['wall_s']:,.0f} s: the {c['arch']} backbone, regime `{c['regime']}`, "
        f"{c['zo_steps']} ZO steps on each of {c['episodes']} validation episodes per seed; "
        f"seeds {seeds}, each with its own backbone ({c['pretrain_steps']:,} pretraining steps) "
        "and episodes. Mean query accuracy (%) over the seeds [95% t-interval, cut to 0-100]; "
        f"zero-shot ProtoNets: {cells['zero-shot', None]}. **Bold**: the lr the study uses; "
        "(best): the sweep's best mean.",
        "",
        "| method | " + " | ".join(f"`{lr:g}`" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    for method, used in data["study_lrs"].items():
        best = max(
            (lr for m, lr in intervals if m == method), key=lambda lr: intervals[method, lr].mean
        )
        row = [sweep_cell(cells[method, lr], lr == used, lr == best) if (method, lr) in cells
               else "" for lr in lrs]  # fmt: skip
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# -- backbone_determinism -------------------------------------------------------------------------
def backbone_determinism_table(folder: Path) -> str:
    """Per setting (CPU, pinned or torch's own kernels, threads): the pretrained state's SHA-256,
    its largest weight difference from the first setting's and the wall seconds
    (``backbone_determinism.json``)."""
    data = load(folder, "backbone_determinism")
    libraries = "; ".join(data["libraries"]) or "no MKL or oneDNN"
    lines = [
        "From "
        + source_line(
            f"{FOLDER}/backbone_determinism.json", data, "python benchmarks/backbone_determinism.py"
        )  # fmt: skip
        + f": the demo's SmallCNN pretrained for {data['steps']} steps in a fresh process per "
        f"setting, on this CPU (torch's kernels: {data['cpu_capability']}; {libraries}) and on "
        "CPUs emulated by `qemu-x86_64 -cpu MODEL`.",
        "",
        "| setting | CPU | kernels | sha256 of the weights (prefix) | largest weight difference "
        "from the first row | seconds |",
        "|---|---|---|---|---:|---:|",
    ]
    for name, r in data["settings"].items():
        kernels = (
            "pinned (portable)"
            if r["pinned"]
            else "torch's choice, " + ", ".join(f"`{k}={v}`" for k, v in r["env"].items())
        )
        cpu = "this one" if r["cpu"] == "this" else f"emulated {r['cpu']}"
        lines.append(f"| {name} | {cpu} | {kernels} | {r['sha256']} | "
                     f"{r['max_abs_diff_vs_first']:.2g} | {r['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# -- hw_engine_cxxrtl ----------------------------------------------------------------------------
def hw_engine_cxxrtl_table(folder: Path) -> str:
    """The compiled engine's long run per generator (``hw_engine_cxxrtl.json`` of
    ``benchmarks/hw_engine_cxxrtl.py``)."""
    from ..hw.engine_report import cxxrtl_table  # needs the 'hw' extra (Amaranth)

    data = load(folder, "hw_engine_cxxrtl")
    command = "python benchmarks/hw_engine_cxxrtl.py"
    return cxxrtl_table(data, source_line(f"{FOLDER}/hw_engine_cxxrtl.json", data, command))


#: ``<!-- edgezo:generated benchmark NAME -->`` blocks: NAME -> table of ``benchmarks/results/``.
BENCHMARKS: dict[str, Callable[[Path], str]] = {
    "step_overhead": step_overhead_table,
    "fixedpoint_step": fixedpoint_step_table,
    "runtime": runtime_tables,
    "fixedpoint": fixedpoint_tables,
    "peft_memory": peft_memory_table,
    "distributed": distributed_table,
    "drift": drift_tables,
    "memory": memory_tables,
    "scale_rules": scale_rules_table,
    "fewshot_lr": fewshot_lr_table,
    "backbone_determinism": backbone_determinism_table,
    "hw_engine_cxxrtl": hw_engine_cxxrtl_table,
}
