"""Keyword-spotting personalization (QZO-FF's audio case, PAPERS.md B): a keyword model
pretrained on some speakers adapts, on the device, to a new group of users from a few
utterances per keyword, in a quiet and in a noisy room.

Here (:mod:`edgezo.studies.audio`): a CRNN and a DS-CNN pretrained with backprop
on the synthesized keyword set's espeak-ng speakers of 7 accents (12 classes:
silence, unknown, 10 keywords), each clip clean and with mild noise. Each new group is the speakers of an accent
group never pretrained on: ``flite`` (another speech engine's voices) and ``en-029``
(espeak-ng's Caribbean English). For every group the study draws, per class,
``shots`` utterances to adapt on, ``val`` to choose the learning rate on and
``test`` held-out utterances to test on (classes balanced; the same utterances in
both conditions). ``noisy``: the same clips with noise at 0-10 dB SNR (half
babble, half white/pink/brown), louder than the pretraining's augmentation (10-30 dB).

Regimes: ``lp`` (the pretrained head trains on the frozen features) and ``ft``
(every weight trains; BatchNorm keeps its pretrained statistics, see
:func:`~edgezo.studies.audio.freeze_batchnorm_statistics`). Zero-shot is the
pretrained model as it is. The study also reports the CRNN's memory under
backprop against its weights (the paper: 250 kB of weights, 11.5 MB of activations).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..models.regimes import prepare as prepare_regime
from .audio import (
    ARCHS,
    AUDIO_CLAIMS,
    QUICK_DATA,
    AudioData,
    KeywordData,
    backbone,
    freeze_batchnorm_statistics,
    load_data,
    log_mels,
    lr_grids,
    memory_notes,
    method_settings,
    noisy,
    spectrograms,
    talkers,
)
from .common import Budget, Data, Options, Study, outcome_of
from .methods import BOTH_REUSES, Settings
from .parallel import Workers
from .results import StudyWriter

#: Probing learning rates (chosen on pilot runs of the quick study's validation clips; the
#: full run searches lr/3, lr, 3 lr).
LP_LRS = {"backprop": 3e-3, "zo": 3e-2, "pezo": 3e-2, "pezo array": 3e-2, "qzo-ff 16w8a": 1e-2}
#: Fine-tuning learning rates per backbone (fixed: ft is the costly regime). The DS-CNN's
#: ZO and PeZO diverge at the CRNN's 1e-4 (loss 1e8 within 100 steps: its depthwise
#: weights are few per filter); 3e-5 is the best of (1e-5, 3e-5, 1e-4) on validation clips
#: (``python benchmarks/kws_lr.py --arch dscnn``).
FT_LRS = {
    "crnn": {"backprop": 1e-3, "zo": 1e-4, "pezo": 1e-4, "pezo array": 1e-4, "qzo-ff 16w8a": 3e-4},
    "dscnn": {"backprop": 1e-3, "zo": 3e-5, "pezo": 3e-5, "pezo array": 3e-5, "qzo-ff 16w8a": 3e-4},
}


def default_settings() -> dict[str, dict[str, dict[str, Settings]]]:
    """``{backbone: {regime: {method: Settings}}}`` from :data:`LP_LRS` and :data:`FT_LRS`."""
    return {
        arch: {"lp": method_settings(LP_LRS), "ft": method_settings(FT_LRS[arch])} for arch in ARCHS
    }


def default_grids() -> dict[str, dict[str, dict[str, tuple[float, ...]]]]:
    """``{backbone: {regime: {method: lrs}}}``: lr/3, lr, 3 lr around each default."""
    return {arch: {"lp": lr_grids(LP_LRS), "ft": lr_grids(FT_LRS[arch])} for arch in ARCHS}


@dataclass(frozen=True)
class Config:
    data: AudioData = AudioData()
    groups: tuple[str, ...] | None = None  # the new groups adapted to (None: data.targets)
    backbones: tuple[str, ...] = ARCHS
    conditions: tuple[str, ...] = ("clean", "noisy")
    regimes: tuple[str, ...] = ("lp", "ft")
    methods: tuple[str, ...] = BOTH_REUSES
    shots: int = 5  # adaptation utterances per class (12 classes) per group
    val: int = 5
    test: int = 20
    budgets: dict[str, Budget] = field(
        default_factory=lambda: {
            "lp": Budget(steps=200, zo_steps=2000, batch=60, grid=True),
            "ft": Budget(steps=100, zo_steps=300, batch=32, grid=False),
        }
    )
    settings: dict[str, dict[str, dict[str, Settings]]] = field(default_factory=default_settings)
    grids: dict[str, dict[str, dict[str, tuple[float, ...]]]] = field(
        default_factory=default_grids
    )  # ft's is used only with budgets["ft"].grid (off: ft is the costly regime)


FULL = Config()
QUICK = Config(
    data=QUICK_DATA,
    groups=("flite",),
    backbones=("crnn",),
    shots=3,
    val=3,
    test=6,
    budgets={
        "lp": Budget(steps=100, zo_steps=500, batch=36, grid=False),
        "ft": Budget(steps=40, zo_steps=60, batch=36, grid=False),
    },
)


def split_per_class(labels: Tensor, index: Tensor, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint subsets of the clips ``index``, subset ``k`` with ``sizes[k]`` clips of every
    class present (a seeded shuffle per class)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in sizes]
    for c in torch.unique(labels[index]).tolist():
        members = index[labels[index] == c]
        if len(members) < sum(sizes):
            raise ValueError(
                f"Class {c} has {len(members)} clips in this group, fewer than the "
                f"{sum(sizes)} asked for (sizes {list(sizes)}); ask for fewer per class or "
                "generate more clips_per_word / silence_per_speaker"
            )
        members = members[torch.randperm(len(members), generator=g)]
        start = 0
        for part, n in zip(parts, sizes, strict=True):
            part.append(members[start : start + n])
            start += n
    return [torch.cat(p) for p in parts]


def target_sets(
    data: KeywordData, cfg: Config, seed: int
) -> dict[tuple[str, str], dict[str, Data]]:
    """``{(group, condition): {"train", "val", "test": (x, y)}}`` for every target group."""
    d = cfg.data
    babble = talkers(data, d)
    out = {}
    for group in cfg.groups or d.targets:
        if group not in d.targets:
            raise ValueError(f"Group {group!r} is not a target of the data ({d.targets})")
        clips = data.where(groups=[group], exclude_words=d.held_out)
        y = data.labels[clips]
        sizes = (cfg.shots, cfg.val, cfg.test)
        parts = split_per_class(y, torch.arange(len(clips)), sizes, seed)  # positions in clips
        for condition in cfg.conditions:
            x = condition_inputs(data, clips, condition, babble, cfg, seed)
            out[group, condition] = {
                name: (x[part], y[part])
                for name, part in zip(("train", "val", "test"), parts, strict=True)
            }
    return out


def condition_inputs(
    data: KeywordData, clips: Tensor, condition: str, babble: Tensor, cfg: Config, seed: int
) -> Tensor:
    """Log-mel inputs of ``clips`` in ``condition`` (``clean`` or ``noisy``)."""
    if condition == "clean":
        return data.x[clips]
    if condition == "noisy":
        return log_mels(noisy(data.keywords.audio, clips, babble, cfg.data.noise, seed))
    raise ValueError(f"Unknown condition {condition!r}; choose from clean, noisy")


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run the study with config ``cfg``, its cells spread over
    ``jobs`` processes; write ``results.json``, ``results.md``, curves and spectrograms
    under ``out``."""
    started = time.perf_counter()
    quick, out, seed, progress, jobs = opts.quick, opts.out, opts.seed, opts.progress, opts.jobs
    keys = ("backbone", "group", "condition", "regime")
    writer = StudyWriter("kws-personalize", out, keys, cfg.methods, claims=AUDIO_CLAIMS)
    data = load_data(cfg.data)
    sets = target_sets(data, cfg, seed)
    pretraining: dict[str, dict[str, float]] = {}
    workers = Workers(jobs, desc="kws-personalize cells", progress=progress)
    cells, tasks = [], []
    for arch in cfg.backbones:
        source, info = backbone(arch, data, cfg.data, seed=seed, progress=progress)
        pretraining[arch] = {"train_accuracy": info.train_accuracy, "seconds": info.train_seconds}
        for (group, condition), cell in sets.items():
            for regime in cfg.regimes:
                model, _ = prepare_regime(source, regime, seed=seed)
                if regime == "ft":
                    freeze_batchnorm_statistics(model)
                for method in cfg.methods:
                    cells.append(
                        {"backbone": arch, "group": group, "condition": condition, "regime": regime}
                    )
                    tasks.append((
                        method, model, cell["train"], cell["val"], cell["test"],
                        cfg.grids[arch][regime].get(method, ()),
                        cfg.settings[arch][regime].get(method), cfg.budgets[regime],
                        seed, regime == "lp", workers.task_progress,
                    ))  # fmt: skip
    with workers:
        outcomes = workers.map(outcome_of, tasks)
    for cell, outcome in zip(cells, outcomes, strict=True):
        writer.add(outcome, **cell)
    figures = figures_of(data, cfg, out, seed)
    writer.extra.update(pretraining=pretraining, spectrograms=figures,
                        seconds=time.perf_counter() - started)  # fmt: skip
    notes = study_notes(cfg, pretraining, figures, time.perf_counter() - started)
    return writer.finish(config=cfg, quick=quick, seed=seed, notes=notes)


def figures_of(data: KeywordData, cfg: Config, out: Path, seed: int) -> list[str]:
    """Spectrograms of 8 clips of the first target group, clean and noisy."""
    d = cfg.data
    clips = data.where(groups=(cfg.groups or d.targets)[:1], exclude_words=d.held_out)
    clips = clips[torch.linspace(0, len(clips) - 1, 8).round().long()]
    babble = talkers(data, d)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for condition in cfg.conditions:
        audio = None if condition == "clean" else noisy(data.keywords.audio, clips, babble,
                                                          d.noise, seed)  # fmt: skip
        names.append(spectrograms(data, clips, out / f"spectrograms-{condition}.png", audio).name)
    return names


def study_notes(
    cfg: Config, pretraining: dict[str, dict[str, float]], figures: list[str], seconds: float
) -> str:
    """The setup, the pretrained backbones, the memory report and the spectrograms, as Markdown."""
    d = cfg.data
    lines = [
        f"New groups {', '.join(cfg.groups or d.targets)}; per class {cfg.shots} utterances to "
        f"adapt on, {cfg.val} to choose the lr on, {cfg.test} to test on (12 classes); noisy: "
        f"SNR {d.noise.snr_db[0]:g}-{d.noise.snr_db[1]:g} dB. Keyword set: "
        f"{d.keywords.speakers} speakers, {d.keywords.clips_per_word} clips per word.",
        "",
    ]
    for arch, p in pretraining.items():
        lines.append(f"- {arch}: pretrained {d.pretrain_steps} steps, train accuracy "
                     f"{100 * p['train_accuracy']:.1f}%")  # fmt: skip
    lines += ["", f"Study wall time: {seconds:.0f} s.", "", memory_notes(), ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
