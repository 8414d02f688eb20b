"""What the two keyword-spotting studies share: the synthesized keyword set, its log-mel
inputs, who and what the backbones never saw, the pretrained CRNN / DS-CNN, and the
memory backprop would need on the CRNN.

The keyword set (:mod:`edgezo.data.keywords`) is generated clean (time shift and
gain only: ``noise_prob = 0``); the noisy condition adds noise afterwards
(:func:`noisy`), so both conditions hold the same utterances and one synthesis
serves both. Speakers fall in accent groups (8 espeak-ng accents and flite);
the ``targets`` groups are never seen in pretraining: they are the "new users"
a device personalizes to. The ``held_out`` words are never seen in pretraining
either (not even as ``_unknown_``): they are the few-shot study's new classes.

The backbones are pretrained with backprop (Adam, warmup-cosine) on the other
speakers' clips of the other words, 12 classes (silence, unknown, 10 keywords),
every class capped at the median class size (the unknown class would otherwise
be most of the data: Speech Commands keeps it near 1/12 too), each clip clean
and with noise at 10-30 dB SNR (``pretrain_noise``), and cached by
:func:`edgezo.models.pretrain.pretrained`. The models read log-mel
spectrograms ``(B, 1, 101, 40)``: the :class:`~edgezo.models.kws.Featurizer`
has no parameters, so it is run once on every clip rather than at every forward
(the numbers are the same as those of the raw-audio
:class:`~edgezo.models.kws.AudioClassifier`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data.keywords import (
    CLIP_SAMPLES,
    NOISE_EXPONENTS,
    SILENCE,
    Augment,
    KeywordConfig,
    KeywordSet,
    coloured_noise,
    draw_speakers,
    load_keywords,
    mix_at_snr,
    spectrogram_figure,
)
from ..models.kws import CRNN, DSCNN, AudioClassifier, Featurizer
from ..models.pretrain import PretrainInfo
from ..models.regimes import FrozenBatchNorm2d
from .common import pretrained_announced
from .methods import Settings

#: The audio studies' claims (QZO-FF, PAPERS.md B): FF within 5 points of backprop in 11 of
#: 16 audio cases; quantized FF close to float (here: within 1.5 points of ZO fp32, every cell).
AUDIO_CLAIMS = (
    ("zo", "backprop", 5.0, 11 / 16),
    ("pezo", "backprop", 5.0, 11 / 16),
    ("qzo-ff 16w8a", "backprop", 5.0, 11 / 16),
    ("qzo-ff 16w8a", "zo", 1.5, 1.0),
)
ARCHS = ("crnn", "dscnn")
#: The unknown words of :data:`edgezo.data.keywords.UNKNOWN_WORDS` never seen in pretraining.
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def method_settings(lrs: Mapping[str, float]) -> dict[str, Settings]:
    """Each method's :class:`~edgezo.studies.methods.Settings` with the given lr."""
    return {method: Settings(lr=lr) for method, lr in lrs.items()}


def lr_grids(lrs: Mapping[str, float]) -> dict[str, tuple[float, ...]]:
    """Each method's learning-rate grid: its lr divided by 3, itself, times 3."""
    return {method: (lr / 3, lr, 3 * lr) for method, lr in lrs.items()}


@dataclass(frozen=True)
class Noise:
    """Noise added to every clip at an SNR drawn from ``snr_db`` (dB): babble
    (``talkers`` other clips summed, each circularly shifted) with probability ``babble_prob``,
    else white, pink or brown noise."""

    snr_db: tuple[float, float] = (0.0, 10.0)
    babble_prob: float = 0.5
    talkers: int = 4


@dataclass(frozen=True)
class AudioData:
    """The keyword set, its split into pretraining and new speakers and words, and the pretraining."""

    keywords: KeywordConfig = KeywordConfig(
        speakers=45, clips_per_word=6, silence_per_speaker=6, augment=Augment(noise_prob=0.0)
    )
    targets: tuple[str, ...] = ("flite", "en-029")  # accent groups never pretrained on
    held_out: tuple[str, ...] = DIGITS  # words never pretrained on (few-shot classes)
    noise: Noise = Noise()  # the noisy condition
    pretrain_noise: Noise = Noise(snr_db=(10.0, 30.0), babble_prob=0.3)  # train-time augmentation
    pretrain_steps: int = 1000
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3


#: 27 speakers (3 per accent group), 4 clips per word, 8 unknown words + 6 held out.
QUICK_DATA = AudioData(
    keywords=KeywordConfig(
        speakers=27, clips_per_word=4, silence_per_speaker=4,
        unknown_words=("bed", "bird", "cat", "dog", "happy", "house", "marvin", "tree",
                       "zero", "one", "two", "three", "four", "five"),
        augment=Augment(noise_prob=0.0),
    ),
    held_out=("zero", "one", "two", "three", "four", "five"),
    pretrain_steps=150,
)  # fmt: skip


@dataclass
class KeywordData:
    """The keyword set as model inputs: ``x`` log-mel ``(N, 1, 101, 40)``, ``labels`` (12
    classes), each clip's ``words`` and ``groups`` (accent group); ``keywords`` is the set
    itself (raw clips, speakers, names)."""

    x: Tensor
    labels: Tensor
    words: list[str]
    groups: list[str]
    keywords: KeywordSet

    def where(
        self,
        *,
        groups: Sequence[str] | None = None,
        words: Sequence[str] | None = None,
        exclude_groups: Sequence[str] = (),
        exclude_words: Sequence[str] = (),
    ) -> Tensor:
        """Indices of the clips in ``groups`` and ``words`` (any when ``None``), less the excluded."""
        keep = [
            (groups is None or g in groups) and (words is None or w in words)
            and g not in exclude_groups and w not in exclude_words
            for g, w in zip(self.groups, self.words, strict=True)
        ]  # fmt: skip
        return torch.nonzero(torch.tensor(keep, dtype=torch.bool)).flatten()


def check_data(cfg: AudioData) -> None:
    """Fail early, saying what to change, if the targets or held-out words are not in the set."""
    groups = {s.accent for s in draw_speakers(cfg.keywords.speakers, cfg.keywords.seed)}
    missing = [g for g in cfg.targets if g not in groups]
    if missing:
        raise ValueError(
            f"Target groups {missing} have no speaker among the first {cfg.keywords.speakers}; "
            f"choose from {sorted(groups)} or generate more speakers"
        )
    if not groups - set(cfg.targets):
        raise ValueError("Every accent group is a target: leave at least one for pretraining")
    absent = [w for w in cfg.held_out if w not in cfg.keywords.unknown_words]
    if absent:
        raise ValueError(
            f"Held-out words {absent} are not among the set's unknown_words; add them to "
            "KeywordConfig.unknown_words (keywords cannot be held out: they are classes)"
        )


@torch.no_grad()
def log_mels(audio: Tensor, batch: int = 512) -> Tensor:
    """The backbones' input ``(N, 1, 101, 40)`` of raw clips ``(N, 16000)``, ``batch`` at a time."""
    featurizer = Featurizer()
    return torch.cat([featurizer(audio[i : i + batch]) for i in range(0, len(audio), batch)])


def load_data(cfg: AudioData, workers: int | None = None) -> KeywordData:
    """The clean keyword set of ``cfg`` (generated once, then from the cache) as model inputs."""
    check_data(cfg)
    ks = load_keywords(cfg.keywords, workers=workers)
    accents = [s.accent for s in draw_speakers(cfg.keywords.speakers, cfg.keywords.seed)]
    groups = [accents[int(s)] for s in ks.speakers]
    return KeywordData(log_mels(ks.audio), ks.labels, ks.words, groups, ks)


def noisy(audio: Tensor, index: Tensor, babble_from: Tensor, noise: Noise, seed: int) -> Tensor:
    """Clips ``audio[index]`` with noise added (see :class:`Noise`), clipped to ``[-1, 1]``.

    Clip ``index[i]``'s noise depends only on ``(seed, index[i])``; babble talkers are
    drawn from the clips ``babble_from`` (other speakers' clean clips).
    """
    out = np.empty((len(index), CLIP_SAMPLES), dtype=np.float32)
    source = audio.numpy()
    for row, i in enumerate(index.tolist()):
        rng = np.random.default_rng([seed, 3, i])
        if rng.random() < noise.babble_prob:
            talkers = rng.choice(babble_from.numpy(), size=noise.talkers, replace=False)
            sound = sum(np.roll(source[t].astype(np.float64), rng.integers(CLIP_SAMPLES))
                        for t in talkers)  # fmt: skip
        else:
            exponent = NOISE_EXPONENTS[rng.choice(list(NOISE_EXPONENTS))]
            sound = coloured_noise(rng, CLIP_SAMPLES, exponent)
        mixed = mix_at_snr(source[i].astype(np.float64), sound, rng.uniform(*noise.snr_db))
        out[row] = np.clip(mixed, -1.0, 1.0)
    return torch.from_numpy(out)


def pretraining_index(data: KeywordData, cfg: AudioData, seed: int) -> Tensor:
    """The pretraining clips: no target group, no held-out word, each class capped at the
    median class size (a seeded random subset of the larger classes)."""
    index = data.where(exclude_groups=cfg.targets, exclude_words=cfg.held_out)
    labels = data.labels[index]
    counts = torch.bincount(labels)
    cap = int(counts[counts > 0].median())
    g = torch.Generator().manual_seed(seed)
    kept = []
    for c in torch.nonzero(counts).flatten().tolist():
        members = index[labels == c]
        kept.append(members[torch.randperm(len(members), generator=g)[:cap]])
    return torch.cat(kept).sort().values


def talkers(data: KeywordData, cfg: AudioData) -> Tensor:
    """The clips babble is made of: spoken words (no silence) of the pretraining speakers."""
    return data.where(exclude_groups=cfg.targets, exclude_words=(SILENCE, *cfg.held_out))


def pretraining_data(data: KeywordData, cfg: AudioData, seed: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` to pretrain on: every clip of :func:`pretraining_index` twice, clean and with
    ``cfg.pretrain_noise`` (the usual background-noise augmentation of keyword spotting)."""
    index = pretraining_index(data, cfg, seed)
    audio = noisy(data.keywords.audio, index, talkers(data, cfg), cfg.pretrain_noise, seed + 1)
    return torch.cat([data.x[index], log_mels(audio)]), data.labels[index].repeat(2)


def build(arch: str, classes: int) -> nn.Module:
    """An untrained CRNN or DS-CNN (:mod:`edgezo.models.kws`) at its default size."""
    builders = {"crnn": CRNN, "dscnn": DSCNN}
    if arch not in builders:
        raise ValueError(f"Unknown audio backbone {arch!r}; choose from {', '.join(builders)}")
    return builders[arch](classes=classes)


def backbone(
    arch: str, data: KeywordData, cfg: AudioData, *, seed: int = 0, progress: bool = True
) -> tuple[nn.Module, PretrainInfo]:
    """Backbone ``arch`` pretrained with backprop on :func:`pretraining_data` (trained
    once, then loaded from the cache, ``$EDGEZO_CACHE``), and how it was got."""
    classes = len(data.keywords.classes)
    model, info = pretrained_announced(
        f"kws-{arch}",
        functools.partial(build, arch, classes),
        pretraining_data(data, cfg, seed),
        config={
            "arch": arch,
            "classes": classes,
            "keywords": dataclasses.asdict(cfg.keywords),
            "targets": cfg.targets,
            "held_out": cfg.held_out,
            "split_seed": seed,
            "noise": dataclasses.asdict(cfg.pretrain_noise),
        },
        steps=cfg.pretrain_steps,
        batch_size=cfg.pretrain_batch,
        lr=cfg.pretrain_lr,
        seed=seed,
        progress=progress,
    )
    return model.eval(), info


def freeze_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d of ``model`` keeps normalizing with its pretrained statistics in
    training too (its affine weights still train): a few dozen clips are too few to
    re-estimate them, and forward-only methods train in eval mode anyway."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.__class__ = FrozenBatchNorm2d
    return model


# -- what the study reports beside its tables --------------------------------------------------
def memory_notes(arch: str = "crnn", batches: Sequence[int] = (1, 10, 32)) -> str:
    """Markdown: backprop's saved activations of ``arch`` (with its featurizer, raw audio in)
    against its weights, and the forward's peak (a ZO step's scratch), per batch size."""
    from ..analysis.memory import (
        MB,
        forward_peak_activation_bytes,
        saved_activation_bytes,
        weight_bytes,
    )

    model = AudioClassifier(build(arch, 12)).eval()
    weights = weight_bytes(model, "fp32")
    lines = [
        f"## Memory of the {arch.upper()} (measured, float32, raw 1 s audio in)", "",
        f"Weights: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{weights / 1e3:.1f} kB in fp32 (the paper's CRNN: 250 kB).", "",
        "| batch | backprop saved activations (MB) | saved / weights | forward peak = ZO scratch (MB) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for b in batches:
        audio = torch.zeros(b, CLIP_SAMPLES)
        saved = saved_activation_bytes(model, audio)
        peak = forward_peak_activation_bytes(model, audio)
        lines.append(f"| {b} | {saved / MB:.2f} | {saved / weights:.0f} | {peak / MB:.2f} |")
    per_clip = saved_activation_bytes(model, torch.zeros(1, CLIP_SAMPLES))
    lines += ["", "The paper reports 11.5 MB of activations for its CRNN under backprop and does "
              "not give the batch; saved activations grow linearly with it: 11.5 MB is what this "
              f"CRNN saves for a batch of {11.5 * MB / per_clip:.1f} clips."]  # fmt: skip
    return "\n".join(lines)


def spectrograms(data: KeywordData, index: Tensor, path: Path, audio: Tensor | None = None,
                 n: int = 8) -> Path:  # fmt: skip
    """The spectrogram figure of :mod:`edgezo.data.keywords` for clips ``index`` (with
    ``audio`` instead of the clean clips when given, e.g. the noisy condition)."""
    ks = data.keywords.subset(index)
    if audio is not None:
        ks = dataclasses.replace(ks, audio=audio)
    return spectrogram_figure(ks, path, n=min(n, len(ks)))
