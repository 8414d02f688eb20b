"""Spoken keywords synthesized offline by real speech engines: a Speech-Commands-style set.

No labelled recorded speech can be had offline (DATA.md), so the clips are spoken
by Debian's ``espeak-ng`` (8 English accents x 11 voice variants, each speaker
with its own speed and pitch) and ``flite`` (5 voices, each with its own speed).
Every clip is 1 s of 16 kHz mono float32, like Google's Speech Commands
(Warden 2018, arXiv 1804.03209).

Classes, in index order (TensorFlow speech_commands' ``prepare_words_list``)::

    0 _silence_   background only (coloured noise), no word
    1 _unknown_   any of the unknown words (default: the 25 other Speech Commands v2 words)
    2 ...         the keywords in config order (default: yes no up down left right on off stop go)

Each clip keeps its spoken word (``words``) and its speaker (``speakers``, an
index into ``speaker_names``), so a study can use the words as classes (few-shot
on held-out words) or split by speaker (:func:`speaker_split`).

How one clip is made (all randomness from ``numpy.random.default_rng([seed, stream,
index])``, so a clip depends only on the config and its index, never on the
worker that made it or the order the workers finished):

1. synthesize the word with the speaker's engine, voice, speed and pitch; the speed
   is jittered by up to ``speed_jitter`` per clip, so a speaker's repetitions differ;
2. resample to 16 kHz (``scipy.signal.resample_poly``), normalize the peak to 0.5,
   trim the leading/trailing parts below 2% of the peak, and centre in 1 s
   (zero-padded, or centre-cropped if longer);
3. augment (:class:`Augment`): time shift (zero fill), then with probability
   ``noise_prob`` add noise at an SNR drawn from ``snr_db`` (coloured noise, or
   babble: the sum of ``babble_talkers`` other clean clips, each circularly shifted),
   then a gain drawn from ``+-gain_db``; finally clip to ``[-1, 1]`` as a recorder would.
   ``_silence_`` clips are coloured noise (white, pink or brown) at an RMS level
   drawn from ``silence_db`` dBFS.

Clips are synthesized by a pool of threads, each running the engine as a
subprocess, and cached with :mod:`edgezo.cache` under a key made of the config,
the engines' versions and this module's format version.

:func:`load_keywords` does the same as :func:`generate_keywords` through the cache:

    >>> ks = generate_keywords(TINY)  # 3 speakers x (3 words x 2 clips + 1 silence)
    >>> ks.audio.shape, ks.classes
    (torch.Size([21, 16000]), ['_silence_', '_unknown_', 'yes', 'no'])
    >>> ks.words[:3], ks.speaker_names[0]
    (['yes', 'yes', 'no'], 'espeak-ng:en-us+m5:s193:p65')
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import cache
from ..extras import require
from ..figures import save_png
from .features import LOG_FLOOR, log_mel
from .mnist import DatasetNotFoundError

SAMPLE_RATE = 16000  # Hz
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
SILENCE, UNKNOWN = "_silence_", "_unknown_"
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: The other words of Speech Commands v2 (Warden 2018), here the ``_unknown_`` class.
UNKNOWN_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)  # fmt: skip
#: espeak-ng's English accents (``espeak-ng --voices=en``, its own voices, not mbrola's).
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)  # fmt: skip
#: espeak-ng voice variants (``+m1`` ... ``+f4``): formant and pitch settings of 7 male, 4 female voices.
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
#: flite's built-in voices (``flite -lv``), less ``awb_time`` (it only speaks the time).
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
ENGINES = ("espeak-ng", "flite")
INSTALL = "apt-get install espeak-ng flite"
FORMAT_VERSION = 1  # bump when the generated arrays change for the same config

ESPEAK_WPM = (130, 200)  # words per minute, drawn per speaker (espeak-ng's default: 175)
ESPEAK_PITCH = (25, 75)  # 0-99, drawn per speaker (default 50)
FLITE_STRETCH = (0.85, 1.2)  # duration_stretch, drawn per speaker (1 = the voice's own)
_TRIM = 0.02  # trim threshold, fraction of the peak
_PEAK = 0.5  # peak after normalization, before the gain augmentation
_WORD = re.compile(r"^[a-z][a-z' ]*$")


class SpeechEngineNotFoundError(DatasetNotFoundError):
    """A speech engine the config needs is not installed; the message names the install command."""


class SynthesisError(RuntimeError):
    """A speech engine ran but gave no usable audio; the message names the command and its stderr."""


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """How clean clips are degraded; all draws are uniform over the given ranges.

    Attributes:
        shift_ms: largest time shift, ms (either direction, zero fill).
        gain_db: largest gain change, dB (either direction).
        noise_prob: probability that a spoken clip gets noise.
        snr_db: range of the signal-to-noise ratio, dB, powers over the whole second.
        babble_prob: share of noisy clips whose noise is babble (else white/pink/brown).
        babble_talkers: clean clips summed into one babble noise.
        silence_db: RMS level range of ``_silence_`` clips, dB re full scale.
    """

    shift_ms: float = 100.0
    gain_db: float = 6.0
    noise_prob: float = 0.8
    snr_db: tuple[float, float] = (5.0, 25.0)
    babble_prob: float = 0.3
    babble_talkers: int = 4
    silence_db: tuple[float, float] = (-60.0, -20.0)

    def __post_init__(self) -> None:
        for name in ("shift_ms", "gain_db"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Invalid {name}: {getattr(self, name)}; it must be >= 0")
        for name in ("noise_prob", "babble_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Invalid {name}: {getattr(self, name)}; it must be in [0, 1]")
        for name in ("snr_db", "silence_db"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"Invalid {name}: {(lo, hi)}; give a finite (low, high) range")
        if self.babble_talkers < 1:
            raise ValueError(f"Invalid babble_talkers: {self.babble_talkers}; it must be >= 1")


@dataclass(frozen=True)
class KeywordConfig:
    """What :func:`load_keywords` generates; every field is part of the cache key.

    The set has ``speakers * (len(words) * clips_per_word + silence_per_speaker)``
    clips, ``words = keywords + unknown_words``.

    Attributes:
        speakers: number of speakers, drawn round-robin over the accent groups
            (8 espeak-ng accents, then flite) so that the first ones cover every group;
            at most 88 + 5 = 93.
        clips_per_word: clips of each word by each speaker.
        silence_per_speaker: ``_silence_`` clips per speaker (background of that
            speaker's recordings, so speaker splits keep silence in every part).
        keywords: the words with their own class.
        unknown_words: the words of the ``_unknown_`` class.
        seed: the seed of every draw (speakers, jitter, augmentation).
        speed_jitter: relative per-clip change of the speaker's speed (+-).
        augment: see :class:`Augment`.
    """

    speakers: int = 40
    clips_per_word: int = 2
    silence_per_speaker: int = 2
    keywords: tuple[str, ...] = KEYWORDS
    unknown_words: tuple[str, ...] = UNKNOWN_WORDS
    seed: int = 0
    speed_jitter: float = 0.05
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        pool = len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS) + len(FLITE_VOICES)
        if int(self.speakers) != self.speakers or not 1 <= self.speakers <= pool:
            raise ValueError(f"Invalid speakers: {self.speakers}; choose 1 to {pool}")
        for name in ("clips_per_word", "silence_per_speaker"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ValueError(f"Invalid {name}: {getattr(self, name)}; it must be an int >= 0")
        if self.clips_per_word < 1:
            raise ValueError("Invalid clips_per_word: 0; every word needs at least one clip")
        if not self.keywords:
            raise ValueError("No keywords given; give at least one, e.g. KEYWORDS")
        words = list(self.keywords) + list(self.unknown_words)
        bad = [w for w in words if not isinstance(w, str) or not _WORD.match(w)]
        if bad:
            raise ValueError(f"Invalid words {bad}: use lower-case letters, spaces and apostrophes")
        if len(set(words)) != len(words):
            repeated = sorted({w for w in words if words.count(w) > 1})
            raise ValueError(f"Words {repeated} appear twice in keywords + unknown_words")
        if not 0.0 <= self.speed_jitter < 1.0:
            raise ValueError(f"Invalid speed_jitter: {self.speed_jitter}; it must be in [0, 1)")

    @property
    def classes(self) -> list[str]:
        """Class names in label order: ``_silence_``, ``_unknown_``, then the keywords."""
        return [SILENCE, UNKNOWN, *self.keywords]

    @property
    def words(self) -> tuple[str, ...]:
        """The spoken words: keywords, then unknown words."""
        return (*self.keywords, *self.unknown_words)

    def __len__(self) -> int:
        return self.speakers * (len(self.words) * self.clips_per_word + self.silence_per_speaker)


#: A small set for tests and examples: 3 speakers x (3 words x 2 clips + 1 silence) = 21 clips.
TINY = KeywordConfig(
    speakers=3, clips_per_word=2, silence_per_speaker=1, keywords=("yes", "no"),
    unknown_words=("cat",),
)  # fmt: skip


# -- speakers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: engine, voice (espeak-ng: accent), variant, speed and pitch.

    ``speed`` is words per minute for espeak-ng and a duration stretch for flite;
    ``pitch`` is espeak-ng's 0-99 pitch (flite's voices keep their own pitch: its
    ``int_f0_target_mean`` is ignored by some of them).
    """

    engine: str
    voice: str
    variant: str = ""
    speed: float = 0.0
    pitch: int = 0

    @property
    def name(self) -> str:
        """E.g. ``espeak-ng:en-gb+f2:s152:p61`` or ``flite:slt:x1.08``."""
        if self.engine == "espeak-ng":
            return f"espeak-ng:{self.voice}+{self.variant}:s{self.speed:g}:p{self.pitch}"
        return f"flite:{self.voice}:x{self.speed:g}"

    @property
    def accent(self) -> str:
        """The accent group: the espeak-ng language voice, or ``flite``."""
        return self.voice if self.engine == "espeak-ng" else "flite"

    def command(self, word: str, speed_factor: float, wav: str) -> list[str]:
        """The engine's command line that writes ``word`` to the WAV file ``wav``."""
        if self.engine == "espeak-ng":
            wpm = str(round(self.speed * speed_factor))
            voice = f"{self.voice}+{self.variant}"
            return ["espeak-ng", "-v", voice, "-s", wpm, "-p", str(self.pitch), "-w", wav, word]
        stretch = f"duration_stretch={self.speed / speed_factor:.4f}"
        return ["flite", "-voice", self.voice, "--setf", stretch, "-t", word, "-o", wav]


def draw_speakers(n: int, seed: int) -> list[Speaker]:
    """The first ``n`` speakers for ``seed``: groups visited round-robin, voices shuffled per group.

    Groups in order: the espeak-ng accents of :data:`ESPEAK_ACCENTS`, then flite. Speed
    and pitch are drawn per speaker from :data:`ESPEAK_WPM` / :data:`ESPEAK_PITCH`
    (integers) or :data:`FLITE_STRETCH` (2 decimals).
    """
    rng = np.random.default_rng([seed, 0])
    groups = [
        [("espeak-ng", a, v) for v in rng.permutation(ESPEAK_VARIANTS)] for a in ESPEAK_ACCENTS
    ]
    groups.append([("flite", v, "") for v in rng.permutation(FLITE_VOICES)])
    order = [g[r] for r in range(max(map(len, groups))) for g in groups if r < len(g)]
    speakers = []
    for engine, voice, variant in order[:n]:
        if engine == "espeak-ng":
            speed = float(rng.integers(ESPEAK_WPM[0], ESPEAK_WPM[1] + 1))
            pitch = int(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1))
        else:
            speed, pitch = round(float(rng.uniform(*FLITE_STRETCH)), 2), 0
        speakers.append(Speaker(engine, str(voice), str(variant), speed, pitch))
    return speakers


# -- the data set -------------------------------------------------------------------------------
@dataclass
class KeywordSet:
    """Keyword clips with their labels, words and speakers.

    Attributes:
        audio: float32 ``(N, 16000)``, 16 kHz mono, in ``[-1, 1]``.
        labels: int64 ``(N,)``, indices into ``classes``.
        speakers: int64 ``(N,)``, indices into ``speaker_names``.
        words: the spoken word of each clip (``_silence_`` for silence).
        classes: class names in label order (see the module docstring).
        speaker_names: one :attr:`Speaker.name` per speaker id.
    """

    audio: Tensor
    labels: Tensor
    speakers: Tensor
    words: list[str]
    classes: list[str]
    speaker_names: list[str]

    def __len__(self) -> int:
        return self.audio.shape[0]

    def subset(self, index: Tensor | Sequence[int]) -> KeywordSet:
        """The clips at ``index`` (integer indices or a boolean mask); classes and speaker
        names are kept whole, so label and speaker ids keep their meaning."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        index = index.to(torch.int64)
        return KeywordSet(
            self.audio[index], self.labels[index], self.speakers[index],
            [self.words[i] for i in index.tolist()], list(self.classes), list(self.speaker_names),
        )  # fmt: skip


def speaker_split(
    ks: KeywordSet, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[KeywordSet, ...]:
    """Split by speaker: every speaker's clips land in exactly one part.

    The speakers present are shuffled with ``seed`` and cut at the rounded
    cumulative ``fractions`` (which must be positive and sum to 1); every part
    gets at least one speaker.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"Invalid fractions {fractions}: give positive numbers that sum to 1")
    present = torch.unique(ks.speakers)
    if len(present) < len(fractions):
        raise ValueError(
            f"Cannot split {len(present)} speakers into {len(fractions)} parts; "
            "generate more speakers or ask for fewer parts"
        )
    order = present[torch.from_numpy(np.random.default_rng(seed).permutation(len(present)))]
    cuts = [0]
    for i, total in enumerate(np.cumsum(fractions)[:-1]):
        # at least one speaker per part so far, and leave one for each part still to come
        lo, hi = cuts[-1] + 1, len(present) - (len(fractions) - 1 - i)
        cuts.append(min(max(round(total * len(present)), lo), hi))
    cuts.append(len(present))
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        parts.append(ks.subset(torch.isin(ks.speakers, order[a:b])))
    return tuple(parts)


# -- synthesis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Clip:
    """One planned clip: its index, speaker id, word (``None``: silence) and label."""

    index: int
    speaker: int
    word: str | None
    label: int


def plan_clips(config: KeywordConfig) -> list[_Clip]:
    """Clip order: speaker by speaker, each word ``clips_per_word`` times, then the silences."""
    label_of = {w: 2 + i for i, w in enumerate(config.keywords)}
    plan: list[_Clip] = []
    for s in range(config.speakers):
        for word in config.words:
            for _ in range(config.clips_per_word):
                plan.append(_Clip(len(plan), s, word, label_of.get(word, 1)))
        for _ in range(config.silence_per_speaker):
            plan.append(_Clip(len(plan), s, None, 0))
    return plan


def check_engines(engines: Sequence[str]) -> dict[str, str]:
    """Each engine's version line; raises :class:`SpeechEngineNotFoundError` for a missing one."""
    missing = [e for e in engines if shutil.which(e) is None]
    if missing:
        raise SpeechEngineNotFoundError(
            f"Speech engine(s) {', '.join(missing)} not found on PATH; the keyword set is "
            f"synthesized offline by them. Install them with: {INSTALL}"
        )
    versions = {}
    for engine in engines:
        out = subprocess.run([engine, "--version"], capture_output=True, text=True, check=False)
        lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if "version" in ln]
        versions[engine] = lines[0] if lines else "unknown"
    return versions


def _failure(command: list[str], why: str, stderr: bytes = b"") -> SynthesisError:
    message = stderr.decode(errors="replace").strip() or "no message"
    return SynthesisError(
        f"Speech synthesis failed ({why}): {' '.join(command)}: {message}. Check that the "
        f"voice exists (espeak-ng --voices=en, flite -lv) or reinstall the engines: {INSTALL}"
    )


def _run_engine(command: list[str], wav: str) -> tuple[np.ndarray, int]:
    """Run a speech engine that writes the file ``wav``; its samples (float64) and sample rate."""
    try:
        out = subprocess.run(command, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _failure(command, str(e)) from e
    if out.returncode != 0:
        raise _failure(command, f"exit status {out.returncode}", out.stderr)
    try:
        with wave.open(wav) as w:
            rate, width = w.getframerate(), w.getsampwidth()
            pcm = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as e:
        raise _failure(command, f"no readable WAV: {e}", out.stderr) from e
    if width != 2:
        raise _failure(command, f"{8 * width}-bit audio, expected 16-bit")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0, rate


def to_clip(samples: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz, peak 0.5, trimmed, centred in 1 s (zero-padded or centre-cropped), float64.

    Raises:
        ValueError: if ``samples`` are all zero.
    """
    resample_poly = require("scipy.signal", "studies").resample_poly  # only generation needs it

    if rate != SAMPLE_RATE:
        g = math.gcd(SAMPLE_RATE, rate)
        samples = resample_poly(samples, SAMPLE_RATE // g, rate // g)
    peak = np.abs(samples).max(initial=0.0)
    if not peak > 0:
        raise ValueError("the audio is silent: nothing to centre")
    samples = samples * (_PEAK / peak)
    loud = np.flatnonzero(np.abs(samples) >= _TRIM * _PEAK)
    samples = samples[loud[0] : loud[-1] + 1]
    if len(samples) > CLIP_SAMPLES:
        start = (len(samples) - CLIP_SAMPLES) // 2
        return samples[start : start + CLIP_SAMPLES]
    clip = np.zeros(CLIP_SAMPLES)
    start = (CLIP_SAMPLES - len(samples)) // 2
    clip[start : start + len(samples)] = samples
    return clip


def synthesize(speaker: Speaker, word: str, speed_factor: float = 1.0) -> np.ndarray:
    """One clean clip: ``word`` spoken by ``speaker``, float64 ``(16000,)`` (steps 1-2 above)."""
    with tempfile.TemporaryDirectory(prefix="edgezo-kws-") as tmp:
        wav = str(Path(tmp) / "clip.wav")
        command = speaker.command(word, speed_factor, wav)
        samples, rate = _run_engine(command, wav)
    try:
        return to_clip(samples, rate)
    except ValueError as e:
        raise _failure(command, str(e)) from e


# -- augmentation -------------------------------------------------------------------------------
NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectral density ``~ 1 / f**exponent``, unit RMS, ``(n,)``.

    0: white, 1: pink, 2: brown (Brownian). Shaped in the frequency domain; the DC
    bin gets the lowest non-zero frequency's gain.
    """
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spectrum * f ** (-exponent / 2), n)
    x -= x.mean()
    return x / np.sqrt(np.mean(x**2))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + a * noise`` with ``a`` such that ``10 log10(P_signal / P_(a noise)) = snr_db``.

    Powers are means of squares over the whole array.
    """
    p_signal, p_noise = np.mean(signal**2), np.mean(noise**2)
    if not (p_signal > 0 and p_noise > 0):
        raise ValueError("mix_at_snr needs a signal and a noise with non-zero power")
    return signal + noise * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def time_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``x`` delayed by ``shift`` samples (advanced if negative), zero-filled, same length."""
    out = np.zeros_like(x)
    if shift >= 0:
        out[shift:] = x[: len(x) - shift]
    else:
        out[:shift] = x[-shift:]
    return out


def _augment(
    clip: _Clip, clean: np.ndarray, spoken: np.ndarray, config: KeywordConfig
) -> np.ndarray:
    """Step 3 for one clip: ``clean`` holds every clean clip, ``spoken`` the indices of words."""
    aug = config.augment
    rng = np.random.default_rng([config.seed, 1, clip.index])
    if clip.word is None:  # _silence_: coloured noise at a drawn level
        colour = NOISE_EXPONENTS[rng.choice(list(NOISE_EXPONENTS))]
        level = 10 ** (rng.uniform(*aug.silence_db) / 20)
        return np.clip(level * coloured_noise(rng, CLIP_SAMPLES, colour), -1.0, 1.0)
    max_shift = round(aug.shift_ms * SAMPLE_RATE / 1000)
    x = time_shift(clean[clip.index], int(rng.integers(-max_shift, max_shift + 1)))
    if rng.random() < aug.noise_prob:
        if rng.random() < aug.babble_prob and len(spoken) > 1:
            others = spoken[spoken != clip.index]
            talkers = rng.choice(others, size=min(aug.babble_talkers, len(others)), replace=False)
            noise = sum(np.roll(clean[t], int(rng.integers(CLIP_SAMPLES))) for t in talkers)
        else:
            colour = NOISE_EXPONENTS[rng.choice(list(NOISE_EXPONENTS))]
            noise = coloured_noise(rng, CLIP_SAMPLES, colour)
        x = mix_at_snr(x, noise, rng.uniform(*aug.snr_db))
    gain = 10 ** (rng.uniform(-aug.gain_db, aug.gain_db) / 20)
    return np.clip(gain * x, -1.0, 1.0)


# -- generation and cache -----------------------------------------------------------------------
def _engines_of(speakers: Sequence[Speaker]) -> list[str]:
    return [e for e in ENGINES if any(s.engine == e for s in speakers)]


def generate_keywords(config: KeywordConfig, workers: int | None = None) -> KeywordSet:
    """Synthesize and augment the set for ``config`` (no cache); see the module docstring.

    Args:
        config: what to generate.
        workers: engine processes run at once (default: the CPU count).

    Raises:
        SpeechEngineNotFoundError: if espeak-ng or flite is needed but missing.
        SynthesisError: if an engine fails or gives silence.
    """
    speakers = draw_speakers(config.speakers, config.seed)
    check_engines(_engines_of(speakers))
    plan = plan_clips(config)
    spoken = np.array([c.index for c in plan if c.word is not None])

    def clean_clip(c: _Clip) -> np.ndarray:
        u = np.random.default_rng([config.seed, 2, c.index]).uniform(-1.0, 1.0)
        return synthesize(speakers[c.speaker], c.word, 1.0 + config.speed_jitter * u)

    from tqdm.auto import tqdm  # deferred, like the other heavy optional imports

    clean = np.zeros((len(plan), CLIP_SAMPLES), dtype=np.float32)  # from 16-bit PCM: exact enough
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        done = tqdm(
            pool.map(clean_clip, [plan[i] for i in spoken]),
            total=len(spoken),
            desc="keywords",
            disable=None,
        )
        for i, x in zip(spoken, done, strict=True):
            clean[i] = x
    audio = np.empty_like(clean)
    for c in plan:
        audio[c.index] = _augment(c, clean, spoken, config)
    return KeywordSet(
        audio=torch.from_numpy(audio),
        labels=torch.tensor([c.label for c in plan], dtype=torch.int64),
        speakers=torch.tensor([c.speaker for c in plan], dtype=torch.int64),
        words=[c.word or SILENCE for c in plan],
        classes=config.classes,
        speaker_names=[s.name for s in speakers],
    )


def cache_config(config: KeywordConfig) -> dict:
    """The cache key's content: the config, the engines' versions, the format version."""
    engines = _engines_of(draw_speakers(config.speakers, config.seed))
    return {
        "config": asdict(config),
        "engines": check_engines(engines),
        "format": FORMAT_VERSION,
    }


def load_keywords(
    config: KeywordConfig = KeywordConfig(), use_cache: bool = True, workers: int | None = None
) -> KeywordSet:
    """The keyword set for ``config``: from the cache, or generated and cached.

    The cache entry (``edgezo.cache``, ``keywords-<key>.pt``) stores the audio,
    labels, speaker ids and word ids; names come from the config.
    """
    if not use_cache:
        return generate_keywords(config, workers)
    key = cache_config(config)
    stored = cache.load_state("keywords", key)
    speakers = draw_speakers(config.speakers, config.seed)
    vocabulary = [SILENCE, *config.words]
    if stored is not None and stored["audio"].shape == (len(config), CLIP_SAMPLES):
        return KeywordSet(
            stored["audio"], stored["labels"], stored["speakers"],
            [vocabulary[i] for i in stored["word_ids"].tolist()], config.classes,
            [s.name for s in speakers],
        )  # fmt: skip
    ks = generate_keywords(config, workers)
    word_ids = torch.tensor([vocabulary.index(w) for w in ks.words], dtype=torch.int64)
    state = {"audio": ks.audio, "labels": ks.labels, "speakers": ks.speakers, "word_ids": word_ids}
    cache.save_state("keywords", key, state)
    return ks


# -- a look at the data -------------------------------------------------------------------------
def spectrogram_figure(ks: KeywordSet, path: str | os.PathLike[str], n: int = 8) -> Path:
    """A PNG of the log-mel spectrograms of ``n`` clips, evenly spaced through the set.

    Each panel is titled with the clip's word, class and speaker; time runs along x
    (10 ms frames), mel band along y, one colour scale for all panels (from the log
    floor, ln 1e-6, to the loudest bin). Returns the path written.
    """
    if not 1 <= n <= len(ks):
        raise ValueError(f"Invalid n: {n}; the set has {len(ks)} clips, choose 1 to {len(ks)}")
    require("matplotlib", "studies").use("Agg")
    import matplotlib.pyplot as plt

    index = np.linspace(0, len(ks) - 1, n).round().astype(int)
    spectra = log_mel(ks.audio[torch.from_numpy(index)])  # (n, frames, mels)
    shade = {"vmin": math.log(LOG_FLOOR), "vmax": float(spectra.max()), "cmap": "magma"}
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, i, spec in zip(axes.flat, index, spectra, strict=False):
        ax.imshow(spec.T.numpy(), origin="lower", aspect="auto", **shade)
        speaker = ks.speaker_names[int(ks.speakers[i])]
        ax.set_title(f"{ks.words[i]} [{ks.classes[int(ks.labels[i])]}]\n{speaker}", fontsize=7)
        ax.set_xlabel("frame (10 ms)", fontsize=7)
        ax.set_ylabel("mel band", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = save_png(fig, path, dpi=100)
    plt.close(fig)
    return path
