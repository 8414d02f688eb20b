"""The docs' result tables, generated from the committed results: ``edgezo report --docs FILE``.

A Markdown file (the README, docs/studies.md, docs/hw.md) marks each generated part::

    <!-- edgezo:generated study kws-fewshot -->
    ...replaced on every regeneration...
    <!-- edgezo:end -->

Kinds of block (the words after ``generated``):

* ``study NAME``: the merged results of ``results/NAME/results.json`` (``edgezo
  run NAME --seeds ...``): where they come from (quick or full, seeds, edgezo
  version and commit, wall time), each cell's mean and 95% t-interval over the
  seeds, and the study's claims decided on intervals (:mod:`edgezo.analysis.tables`).
* ``claims``: every claim of the papers checked on the committed results, the
  report's claims table (:mod:`edgezo.analysis.report`) with its verdict counts.
* ``verdicts``: that table's verdict counts alone (one line, for the README).
* ``demo``: ``results/demo/demo.json`` (``edgezo demo --seeds 0,1,2``): where it comes
  from, the first seed's table as ``edgezo demo`` prints it, and every seed's accuracy
  with the mean and 95% t-interval.
* ``benchmark NAME``: a table of ``benchmarks/results/`` (the benchmark scripts' committed
  JSON, beside ``results/``), :data:`edgezo.analysis.benchmarks.BENCHMARKS`.
* ``ablations [NAME]``: the ablation study's rows and decided differences
  (:mod:`edgezo.analysis.ablations`; ``NAME`` defaults to ``ablations``).
* ``convergence [NAME]``: the convergence study's accuracy at its budgets, at fixed steps and
  at the end against backprop, and whether the gap narrows (:mod:`edgezo.analysis.convergence`;
  ``NAME`` defaults to ``convergence``).
* ``probe NAME``: a language-model probe study (``benchmarks/lm_probe.py --out
  results/NAME``): per method its mean test accuracy and 95% t-interval over the
  seeds (zero-shot first: the vacuity reference), the lr/eps chosen on validation,
  the forward budget, seconds per step and the training state in bytes.
* ``finetune NAME``: a language-model fine-tuning study (``benchmarks/lm_reviews.py --out
  results/NAME``): per variant (full, LoRA) and method its test accuracy, the paired
  difference from the seed's zero-shot model and whether it is above zero beyond its interval,
  lr and eps, the forward budget, CPU seconds per step and the number of trained weights.
* ``hw [NAME]``: the RNG hardware report ``results/NAME/report.json`` (``edgezo hw report
  --out results/NAME``; ``NAME`` defaults to ``hw``): where it comes from, then the report's
  tables as ``edgezo hw report`` writes them (:func:`edgezo.hw.report.markdown`), without its
  title and chart (the chart is the report's, ``edgezo report``).
* ``hw-targets NAME ...``: the cell counts of several such reports side by side, one target
  each (:func:`edgezo.hw.report.targets_table`).
* ``engine FILE``, ``engine-energy FILE``: the ZO engine's cost per generator, and its energy
  per step, from ``docs/hw_engine/FILE.json`` (``edgezo hw report --engine``, committed beside
  the docs; :func:`edgezo.hw.engine_report.cost_table` and ``energy_table``).
* ``engine-savings FILE ...``: PeZO against the cheapest Gaussian across those files
  (:func:`edgezo.hw.engine_report.savings_table`).
* ``gaussian-accuracy``: the Gaussian baselines' exact mean, variance, KS distance to N(0, 1)
  and largest ``|z|`` at 8 bits, computed from the models when the block is rendered (about
  2 s; :func:`edgezo.hw.report.gaussian_models`, not a results file).

The hardware kinds need the ``hw`` extra (Amaranth), imported only when such a block is rendered.

A new kind is one function that returns the block's Markdown and one line in
:func:`render`'s table.

:func:`regenerate` rewrites every block of a text; the text outside the blocks
is never touched. Content that is not generated yet stays as written, marked
``<!-- edgezo:not-regenerated -->`` with a visible note (tests hold the generated
blocks to the results files and the rest to that mark).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..cache import atomic_write
from .ablations import ablation_body
from .benchmarks import BENCHMARKS, FOLDER
from .claims import Source, difference
from .convergence import convergence_body
from .report import by_source, claims_markdown, collect, demote, evaluate, verdict_counts
from .stats import accuracy_interval, beats
from .tables import demo_seed_table, demo_table, methods_of, study_body

BLOCK = re.compile(
    r"(<!-- edgezo:generated (?P<what>[^>]*?) -->\n)(?P<body>.*?)(<!-- edgezo:end -->)", re.S
)
#: The mark of hand-written results that no results file backs yet.
NOT_REGENERATED = "<!-- edgezo:not-regenerated -->"
#: Where the engine reports (``edgezo hw report --engine``) are committed, beside ``results/``.
ENGINE_FOLDER = Path("docs") / "hw_engine"


def study_block(results: Path, name: str, label: str) -> str:
    """The ``study NAME`` block: provenance line, table and claims of the merged results."""
    hits = [a for a in collect(results) if a.source.kind == "study" and a.source.name == name]
    if not hits or "seeds" not in hits[0].data:
        raise ValueError(
            f"no merged results for study {name!r} under {results}: run `edgezo run {name} "
            f"--seeds 0,1,2 --out {label}` (add --quick for the quick version) and commit "
            f"{label}/{name}/results.json"
        )
    data = hits[0].data
    prov = data.get("provenance", {})
    seeds = ", ".join(map(str, data["seeds"]))
    head = (
        f"Generated by `edgezo report --docs` from `{label}/{name}/results.json`: "
        f"{'quick' if data['quick'] else 'full'} run, seeds {seeds}, edgezo {prov.get('edgezo')} "
        f"{commits_text(data)}, {threads_text(data)}, {timing_text(data)}, "
        f"{backbones_text(data)}."
    )
    return "\n".join([head, "", *study_body(data)]) + "\n"


def backbones_text(data: Mapping[str, Any]) -> str:
    """Which seeds' runs recorded the backbones they rest on (name, recipe format, SHA-256 in
    ``runs.S.backbones``: :func:`edgezo.models.pretrain.loaded_backbones`)."""
    runs = seed_provenance(data)
    recorded = [seed for seed, prov in runs.items() if prov.get("backbones")]
    if not recorded:
        return "backbones not recorded (run before edgezo recorded them)"
    count = len({b["sha256"] for s in recorded for b in runs[s]["backbones"]})
    which = "every seed" if len(recorded) == len(runs) else f"seeds {', '.join(recorded)}"
    whose = "1 backbone's" if count == 1 else f"{count} backbones'"
    return f"{whose} SHA-256 recorded ({which}: `runs` in the JSON)"


def seed_provenance(data: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """Each seed's provenance of a merged study (``runs``); older files have only the merge's,
    which stands for the first seed."""
    return data.get("runs") or {str(data["seeds"][0]): data.get("provenance", {})}


def seeds_text(seeds: Sequence[str]) -> str:
    """``seed 0`` or ``seeds 1, 2``."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def per_seed_text(
    data: Mapping[str, Any], value: Callable[[Mapping[str, Any]], str], link: str = ""
) -> str:
    """``value`` of every seed's provenance (``runs``; older files have only the merge's):
    the value alone when the seeds agree, else ``seed 0 {link}V, seeds 1, 2 {link}W``."""
    by_value: dict[str, list[str]] = {}
    for seed, prov in seed_provenance(data).items():
        by_value.setdefault(value(prov), []).append(seed)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{seeds_text(s)} {link}{v}" for v, s in by_value.items())


def commits_text(data: Mapping[str, Any]) -> str:
    """``at commit C`` of a merged study, or ``seed 0 at commit C, seeds 1, 2 at commit D`` when
    its seeds ran at different commits. ``(dirty)`` marks a run from a work tree with changes."""

    def commit(prov: Mapping[str, Any]) -> str:
        return f"at commit {str(prov.get('commit'))[:10]}{' (dirty)' if prov.get('dirty') else ''}"

    return per_seed_text(data, commit)


def threads_text(data: Mapping[str, Any]) -> str:
    """The threads each seed's processes ran on (not the merge's: merging trains nothing)."""
    return per_seed_text(data, lambda p: f"{p.get('threads')} thread(s)", link="on ")


def timing_text(data: Mapping[str, Any]) -> str:
    """Wall minutes of the seeds' runs: ``N min for all seeds``, or the timed seeds named
    when some seed's run left no time."""
    seconds = data.get("seconds", {})
    minutes = sum(float(t) for t in seconds.values()) / 60
    if len(seconds) == len(data["seeds"]):
        return f"{minutes:.0f} min for all seeds"
    if not seconds:
        return "time not recorded"
    return (
        f"{minutes:.0f} min for seeds {', '.join(sorted(seconds, key=int))} (the others not timed)"
    )


def claims_block(results: Path, label: str) -> str:
    """The ``claims`` block: the report's claims table on the committed results."""
    rows = evaluate(by_source(collect(results)), label)
    return claims_markdown(rows)


def verdicts_block(results: Path, label: str) -> str:
    """The ``verdicts`` block: one line counting the claims' verdicts on the committed results."""
    rows = evaluate(by_source(collect(results)), label)
    return f"{verdict_counts(rows)} (From `{label}/`; the table: docs/studies.md.)\n"


def in_order(methods: dict, order: list[str]) -> dict:
    """``methods`` in the demo's order (``demo.json`` keeps it in a list: its keys are sorted)."""
    return {name: methods[name] for name in order}


def demo_block(results: Path, label: str) -> str:
    """The ``demo`` block: provenance, the first seed's table as ``edgezo demo`` prints it and,
    over several seeds, every seed's accuracy with the mean and its 95% t-interval."""
    path = Path(results) / "demo" / "demo.json"
    if not path.is_file():
        raise ValueError(f"no demo results {path}: run `edgezo demo --seeds 0,1,2 --out "
                         f"{label}/demo` and commit {label}/demo/demo.json")  # fmt: skip
    data = json.loads(path.read_text())
    prov, seeds = data["provenance"], data["seeds"]
    first = data["runs"][str(seeds[0])]
    pre = first["pretrain"]
    how = "from the cache" if pre["cached"] else f"pretrained in {pre['seconds']:.1f} s"
    loads = ", ".join(f"{data['runs'][str(s)]['loadavg_at_start']:.1f}" for s in seeds)
    lines = [
        f"Generated by `edgezo report --docs` from `{label}/demo/demo.json` (`{data['demo']}`: "
        f"edgezo {prov['edgezo']} at commit {str(prov['commit'])[:10]}, torch {prov['torch']}, "
        f"{prov['threads']} thread{'s' if prov['threads'] != 1 else ''}, {prov['machine']}; "
        f"backbone {how}, load average {loads} at "
        f"the start of each seed; seed {seeds[0]} took {first['seconds']:.0f} s in all). "
        f"Seed {seeds[0]}, as `edgezo demo` prints it:",
        "",
        "```",
        *demo_table(in_order(first["methods"], data["methods"])),
        "```",
    ]
    if len(seeds) > 1:
        runs = {str(s): {**data["runs"][str(s)], "methods": in_order(
            data["runs"][str(s)]["methods"], data["methods"])} for s in seeds}  # fmt: skip
        lines += ["", "Shifted-test accuracy (%) over the seeds (the backbone is the same for "
                  "every seed; the seed changes the batches and the directions):", "",
                  *demo_seed_table(runs)]  # fmt: skip
    return "\n".join(lines) + "\n"


def benchmark_block(results: Path, name: str) -> str:
    """The ``benchmark NAME`` block: a table of the benchmark JSON under ``benchmarks/results/``
    of the repository that holds ``results``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; use one of: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name](Path(results).parent / FOLDER)


def ablations_block(results: Path, name: str, label: str) -> str:
    """The ``ablations NAME`` block: the ``study`` block's provenance line, then the rows and
    the differences decided on their intervals (:func:`~edgezo.analysis.ablations.ablation_body`)."""
    head = study_block(results, name, label).split("\n", 1)[0]
    data = next(a.data for a in collect(results) if a.source.name == name)
    return "\n".join([head, "", *ablation_body(data)]) + "\n"


def convergence_block(results: Path, name: str, label: str) -> str:
    """The ``convergence NAME`` block: the ``study`` block's provenance line, then per cell the
    accuracy table and the gap's verdict (:func:`~edgezo.analysis.convergence.convergence_body`)."""
    head = study_block(results, name, label).split("\n", 1)[0]
    data = next(a.data for a in collect(results) if a.source.name == name)
    return "\n".join([head, "", *convergence_body(data)]) + "\n"


def probe_block(results: Path, name: str, label: str) -> str:
    """The ``probe NAME`` block: one line per method of ``results/NAME/results.json``."""
    path = results / name / "results.json"
    if not path.is_file():
        raise ValueError(f"no {path}: run `python benchmarks/lm_probe.py --out {label}/{name}` "
                         f"and commit {label}/{name}/results.json")  # fmt: skip
    data = json.loads(path.read_text())
    prov, rows = data["provenance"], data["rows"]
    lines = [
        f"Generated by `edgezo report --docs` from `{label}/{name}/results.json`: seeds "
        f"{', '.join(map(str, data['seeds']))}, edgezo {prov['edgezo']} at commit "
        f"{str(prov['commit'])[:10]}, {prov['threads']} thread(s). Sentence vectors computed "
        f"once: {1e3 * data['cpu_seconds_per_review']['float']:.0f} CPU ms per review (float), "
        f"{1e3 * data['cpu_seconds_per_review']['16w8a']:.0f} ms (16w8a); times are CPU time.",
        "",
        "| method | test accuracy % [95% t, cut to 0-100] | lr | eps | steps x forwards "
        "| CPU ms/step | training state (bytes) | model (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods_of(rows):
        runs = [r for r in rows if r["method"] == method]
        acc = accuracy_interval([r["accuracy"] for r in runs]).text()
        first = runs[0]
        lr, eps = (f"{first[k]:g}" if first.get(k) is not None else "-" for k in ("lr", "eps"))
        budget = f"{first['steps']} x {first['forwards'] // max(first['steps'], 1)}"
        ms = sum(r.get("cpu_seconds_per_step", 0.0) for r in runs) / len(runs) * 1e3
        state = first.get("training_state_bytes", 0)
        lines.append(f"| {method} | {acc} | {lr} | {eps} | {budget} | {ms:.2f} | {state:,} "
                     f"| {first['model_bytes'] / 1e6:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def finetune_block(results: Path, name: str, label: str) -> str:
    """The ``finetune NAME`` block (``benchmarks/lm_reviews.py --out results/NAME``): per
    variant and method, test accuracy, its paired difference from the seed's zero-shot
    model, the budget and the CPU time per step."""
    path = results / name / "results.json"
    if not path.is_file():
        raise ValueError(f"no {path}: run `python benchmarks/lm_reviews.py --out {label}/{name}` "
                         f"and commit {label}/{name}/results.json")  # fmt: skip
    data = json.loads(path.read_text())
    prov, rows, config = data["provenance"], data["rows"], data["config"]
    minutes = data["total_seconds"] / 60
    paired = ("a paired bootstrap over seeds x reviews" if all("correct" in r for r in rows)
              else "a t-interval of the per-seed differences")  # fmt: skip
    lines = [
        f"Generated by `edgezo report --docs` from `{label}/{name}/results.json`: seeds "
        f"{', '.join(map(str, data['seeds']))}, {config['forwards']} forward passes of a batch "
        f"of {config['batch']} per run, {config['per_class']} training reviews per class, "
        f"edgezo {prov['edgezo']} at commit {str(prov['commit'])[:10]}, {prov['threads']} "
        f"thread(s), {minutes:.0f} min in all. Test accuracy over "
        f'{rows[0]["examples"]:,} reviews; "minus zero-shot": {paired}; "learned": above '
        "zero-shot beyond that interval.",
        "",
        "| variant | method | test accuracy % [95% t, cut to 0-100] "
        "| minus zero-shot, points [95%] | learned | lr | eps | steps x forwards | CPU s/step "
        "| trained numbers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cell = [r for r in rows if r["variant"] == variant]
        zero = [r for r in cell if r["method"] == "zero-shot"]
        for method in methods_of(cell):
            runs = [r for r in cell if r["method"] == method]
            lines.append(finetune_line(variant, method, runs, zero))
    return "\n".join(lines) + "\n"


def finetune_line(variant: str, method: str, runs: Sequence[dict], zero: Sequence[dict]) -> str:
    """One row of :func:`finetune_block`."""
    acc = accuracy_interval([r["accuracy"] for r in runs]).text()
    first = runs[0]
    if method == "zero-shot":
        return f"| {variant} | zero-shot | {acc} | - | - | - | - | 0 | - | - |"
    gap = difference(runs, zero)
    lr, eps = (f"{first[k]:g}" if first.get(k) is not None else "-" for k in ("lr", "eps"))
    cpu = sum(r["cpu_seconds_per_step"] for r in runs) / len(runs)
    return (f"| {variant} | {method} | {acc} | {gap.text(scale=1.0)} | "
            f"{'yes' if beats(gap) else 'no'} | {lr} | {eps} | {first['steps']} x "
            f"{first['forwards_per_step']} | {cpu:.2f} | {first['trained_parameters']:,} |")  # fmt: skip


def hw_report(results: Path, name: str, label: str) -> dict:
    """``results/NAME/report.json`` of ``edgezo hw report``, or an error saying how to make it."""
    path = Path(results) / name / "report.json"
    if not path.is_file():
        raise ValueError(f"no {path}: run `edgezo hw report --out {label}/{name}` (with the "
                         f"--target it shows) and commit {label}/{name}/report.json")  # fmt: skip
    return json.loads(path.read_text())


def hw_block(results: Path, name: str, label: str) -> str:
    """The ``hw NAME`` block: where the report comes from, then its tables as ``edgezo hw
    report`` writes them, without the title, headings from level 3."""
    from ..hw.report import markdown, rows_of  # needs the 'hw' extra (Amaranth)

    data = hw_report(results, name, label)
    prov = data["provenance"]
    command = Source("hw", name).command(data, label)
    text = markdown(rows_of(data), data["throughput"], data["bits"], data["target"], data["cycles"])
    head = (
        f"Generated by `edgezo report --docs` from `{label}/{name}/report.json` (`{command}`: "
        f"edgezo {prov['edgezo']} at commit {str(prov['commit'])[:10]}"
        f"{' (dirty)' if prov.get('dirty') else ''}, {prov['threads']} thread(s)):"
    )
    return head + "\n\n" + demote(text.split("\n", 2)[2], top=3).strip() + "\n"


def hw_targets_block(results: Path, names: Sequence[str], label: str) -> str:
    """The ``hw-targets NAME ...`` block: the cell counts of the reports side by side."""
    from ..hw.report import targets_table  # needs the 'hw' extra (Amaranth)

    if not names:
        raise ValueError("hw-targets needs the report folders to show, e.g. hw-ice40 hw-ecp5")
    reports = [hw_report(results, name, label) for name in names]
    commands = "; ".join(
        f"`{Source('hw', n).command(d, label)}` at commit {str(d['provenance']['commit'])[:10]}"
        for n, d in zip(names, reports, strict=True)
    )
    files = ", ".join(f"`{label}/{n}/report.json`" for n in names)
    return f"Generated by `edgezo report --docs` from {files} ({commands}):\n\n" + targets_table(
        reports
    )


def engine_files(results: Path, names: Sequence[str]) -> list[tuple[str, dict]]:
    """``(path, data)`` of each ``docs/hw_engine/NAME.json`` beside ``results``."""
    if not names:
        raise ValueError(f"name the engine reports under {ENGINE_FOLDER}/, e.g. ecp5_4lanes")
    out = []
    for name in names:
        path = Path(results).parent / ENGINE_FOLDER / f"{name}.json"
        if not path.is_file():
            raise ValueError(f"no {path}: run `edgezo hw report --engine --out DIR` (with the "
                             f"lanes and target of {name}) and commit DIR/engine.json as "
                             f"{ENGINE_FOLDER.as_posix()}/{name}.json")  # fmt: skip
        out.append(((ENGINE_FOLDER / f"{name}.json").as_posix(), json.loads(path.read_text())))
    return out


def engine_block(results: Path, kind: str, names: Sequence[str]) -> str:
    """The ``engine FILE``, ``engine-energy FILE`` and ``engine-savings FILE ...`` blocks."""
    from ..hw import engine_report  # needs the 'hw' extra (Amaranth)

    files = engine_files(results, names)
    if kind == "engine-savings":
        return engine_report.savings_table(files)
    if len(files) != 1:
        raise ValueError(f"{kind} takes one engine report, not {' '.join(names)}")
    table = engine_report.cost_table if kind == "engine" else engine_report.energy_table
    return table(files[0][1], files[0][0])


def gaussian_block() -> str:
    """The ``gaussian-accuracy`` block: the Gaussian baselines' exact accuracy at 8 bits,
    computed from the models now (exact properties of their tables, not results)."""
    from ..hw.report import gaussian_accuracy_table, gaussian_models  # needs the 'hw' extra

    models = gaussian_models(bits=8)
    calls = " and ".join(f"`{call}.stats()`" for _, call, _ in models)
    head = (
        "Computed by `edgezo report --docs` from the models when the docs are regenerated, not "
        f"read from a results file: {calls} of `edgezo.hw.gaussian`, exact properties of the "
        "designs' tables; `tests/test_hw_rtl.py` holds the models to the bounds of "
        "`edgezo.hw.gaussian.ACCURACY`."
    )
    stats = {label: model.stats() for label, _, model in models}
    return head + "\n\n" + gaussian_accuracy_table(stats)


def render(what: str, results: Path, label: str) -> str:
    """The body of the block ``what`` (``"study NAME"``, ``"claims"``, ``"benchmark NAME"``, ...).
    A new kind of block is one line here."""
    kind, _, arg = what.strip().partition(" ")
    renderers: dict[str, Callable[[], str]] = {
        "study": lambda: study_block(results, arg.strip(), label),
        "claims": lambda: claims_block(results, label),
        "verdicts": lambda: verdicts_block(results, label),
        "demo": lambda: demo_block(results, label),
        "benchmark": lambda: benchmark_block(results, arg.strip()),
        "probe": lambda: probe_block(results, arg.strip(), label),
        "finetune": lambda: finetune_block(results, arg.strip(), label),
        "ablations": lambda: ablations_block(results, arg.strip() or "ablations", label),
        "convergence": lambda: convergence_block(results, arg.strip() or "convergence", label),
        "hw": lambda: hw_block(results, arg.strip() or "hw", label),
        "hw-targets": lambda: hw_targets_block(results, arg.split(), label),
        "engine": lambda: engine_block(results, kind, arg.split()),
        "engine-energy": lambda: engine_block(results, kind, arg.split()),
        "engine-savings": lambda: engine_block(results, kind, arg.split()),
        "gaussian-accuracy": gaussian_block,
    }
    if kind not in renderers:
        raise ValueError(
            f"unknown generated block {what!r}; use one of: {', '.join(renderers)} (study, probe, "
            "benchmark and engine take a NAME)"
        )
    return renderers[kind]()


def regenerate(text: str, results: Path, label: str = "results") -> str:
    """``text`` with the body of every generated block rewritten from ``results``."""
    return BLOCK.sub(
        lambda m: m.group(1) + render(m.group("what"), results, label) + m.group(4), text
    )


def blocks(text: str) -> list[tuple[str, str]]:
    """``(what, body)`` of every generated block of ``text``."""
    return [(m.group("what"), m.group("body")) for m in BLOCK.finditer(text)]


def update_docs(paths: Sequence[Path], results: Path, label: str = "results") -> list[Path]:
    """Regenerate the blocks of each file in ``paths``; returns the files that changed. A file
    without a block is refused (a typo in ``--docs`` would otherwise pass silently)."""
    changed = []
    for path in paths:
        text = Path(path).read_text()
        if not blocks(text):
            raise ValueError(f"{path} has no <!-- edgezo:generated ... --> block to regenerate")
        new = regenerate(text, results, label)
        if new != text:
            atomic_write(Path(path), lambda f, t=new: f.write(t.encode("utf-8")))
            changed.append(Path(path))
    return changed
