"""edgezo.data.keywords: the synthesized keyword set (needs espeak-ng and flite from apt)."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.data import keywords as kw
from edgezo.data.keywords import (
    ESPEAK_ACCENTS,
    FLITE_VOICES,
    SILENCE,
    TINY,
    UNKNOWN,
    Augment,
    KeywordConfig,
    KeywordSet,
    Speaker,
    SpeechEngineNotFoundError,
    SynthesisError,
    coloured_noise,
    draw_speakers,
    generate_keywords,
    load_keywords,
    mix_at_snr,
    speaker_split,
    spectrogram_figure,
    synthesize,
    time_shift,
    to_clip,
)

CLEAN = Augment(shift_ms=0.0, gain_db=0.0, noise_prob=0.0)


@pytest.fixture(scope="module")
def tiny() -> KeywordSet:
    return generate_keywords(TINY)


# -- the generated set --------------------------------------------------------------------------
def test_tiny_set_has_the_stated_counts_per_speaker_and_word(tiny):
    per_speaker = len(TINY.words) * TINY.clips_per_word + TINY.silence_per_speaker
    assert len(TINY) == TINY.speakers * per_speaker == 21
    assert tiny.audio.shape == (21, 16000) and tiny.audio.dtype == torch.float32
    assert tiny.labels.dtype == torch.int64 and tiny.speakers.dtype == torch.int64
    assert tiny.classes == [SILENCE, UNKNOWN, "yes", "no"]
    assert len(tiny.speaker_names) == 3 == len(set(tiny.speaker_names))
    counts = collections.Counter(zip(tiny.speakers.tolist(), tiny.words, strict=True))
    expected = {(s, w): 2 for s in range(3) for w in ("yes", "no", "cat")}
    expected |= {(s, SILENCE): 1 for s in range(3)}
    assert counts == expected
    class_of = {"yes": 2, "no": 3, "cat": 1, SILENCE: 0}
    assert tiny.labels.tolist() == [class_of[w] for w in tiny.words]
    assert float(tiny.audio.abs().max()) <= 1.0


def test_generation_is_bit_exact_for_a_config_and_changes_with_the_seed(tiny):
    again = generate_keywords(TINY, workers=1)  # other worker count, same arrays
    assert torch.equal(tiny.audio, again.audio)
    assert torch.equal(tiny.labels, again.labels) and torch.equal(tiny.speakers, again.speakers)
    assert tiny.words == again.words and tiny.speaker_names == again.speaker_names
    other = generate_keywords(dataclasses.replace(TINY, seed=1, speakers=1))
    assert not torch.equal(other.audio, tiny.audio[: len(other)])


def test_repetitions_of_a_word_differ(tiny):
    """The per-clip speed jitter and augmentation make a speaker's two clips of a word differ."""
    first, second = (i for i, w in enumerate(tiny.words) if w == "yes" and tiny.speakers[i] == 0)
    assert not torch.equal(tiny.audio[first], tiny.audio[second])


def test_clean_clips_are_the_engines_output_centred():
    config = dataclasses.replace(TINY, speakers=1, augment=CLEAN, speed_jitter=0.0)
    ks = generate_keywords(config)
    speaker = draw_speakers(1, config.seed)[0]
    for i, word in enumerate(ks.words):
        if word == SILENCE:  # background noise, even without augmentation of the words
            continue
        expected = synthesize(speaker, word).astype(np.float32)
        np.testing.assert_array_equal(ks.audio[i].numpy(), expected)
        loud = np.flatnonzero(np.abs(expected) >= 0.01)
        assert abs((loud[0] + loud[-1]) / 2 - 8000) <= 1  # centred in the second
        assert np.abs(expected).max() == pytest.approx(0.5)


def test_silence_clips_have_the_drawn_background_level(tiny):
    rms = tiny.audio[tiny.labels == 0].square().mean(dim=1).sqrt()
    lo, hi = TINY.augment.silence_db
    db = 20 * torch.log10(rms)
    assert bool(((db >= lo - 0.01) & (db <= hi + 0.01)).all())


# -- the cache ----------------------------------------------------------------------------------
def test_load_keywords_caches_and_returns_the_same_set(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path))
    first = load_keywords(TINY)
    assert len(list(tmp_path.glob("keywords-*.pt"))) == 1

    def no_engines(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(kw, "generate_keywords", no_engines)
    cached = load_keywords(TINY)
    for ks in (first, cached):
        assert torch.equal(ks.audio, tiny.audio) and torch.equal(ks.labels, tiny.labels)
        assert torch.equal(ks.speakers, tiny.speakers)
        assert ks.words == tiny.words and ks.classes == tiny.classes
        assert ks.speaker_names == tiny.speaker_names
    # another config is another entry
    with pytest.raises(AssertionError, match="generated again"):
        load_keywords(dataclasses.replace(TINY, seed=5))


# -- speakers -----------------------------------------------------------------------------------
def test_speakers_cover_every_accent_group_first_and_are_deterministic():
    speakers = draw_speakers(93, seed=3)
    assert [s.name for s in speakers] == [s.name for s in draw_speakers(93, seed=3)]
    assert len({s.name for s in speakers}) == 93
    assert [s.accent for s in speakers[:9]] == [*ESPEAK_ACCENTS, "flite"]
    assert sorted(s.voice for s in speakers if s.engine == "flite") == sorted(FLITE_VOICES)
    espeak = [s for s in speakers if s.engine == "espeak-ng"]
    assert all(130 <= s.speed <= 200 and 25 <= s.pitch <= 75 for s in espeak)
    assert [s.name for s in draw_speakers(93, seed=4)] != [s.name for s in speakers]


@pytest.mark.parametrize("voice", FLITE_VOICES)
def test_every_flite_voice_gives_a_centred_second(voice):
    clip = synthesize(Speaker("flite", voice, speed=1.0), "left")
    assert clip.shape == (16000,) and np.abs(clip).max() == pytest.approx(0.5)
    assert np.abs(clip[:100]).max() == 0.0 and np.abs(clip[-100:]).max() == 0.0


def test_to_clip_resamples_to_16k_keeping_the_frequency():
    rate = 22050  # espeak-ng's rate
    t = np.arange(int(0.5 * rate)) / rate
    clip = to_clip(np.sin(2 * np.pi * 1000.0 * t), rate)
    assert clip.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(clip))
    assert np.argmax(spectrum) * 16000 / len(clip) == pytest.approx(1000.0, abs=1.0)
    assert np.count_nonzero(clip) == pytest.approx(8000, abs=10)  # 0.5 s of sound


def test_to_clip_centre_crops_long_audio():
    x = np.linspace(0.1, 1.0, 20000)  # 1.25 s at 16 kHz, no trimming (all above 2% of peak)
    clip = to_clip(x, 16000)
    np.testing.assert_allclose(clip, 0.5 * x[2000:18000])


# -- augmentation -------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(snr=st.floats(-10.0, 40.0), seed=st.integers(0, 2**16))
def test_mix_at_snr_gives_the_requested_snr(snr, seed):
    rng = np.random.default_rng(seed)
    signal, noise = rng.standard_normal(1000), 3.0 * rng.standard_normal(1000)
    added = mix_at_snr(signal, noise, snr) - signal
    measured = 10 * np.log10(np.mean(signal**2) / np.mean(added**2))
    assert measured == pytest.approx(snr, abs=1e-9)
    np.testing.assert_allclose(added / noise, added[0] / noise[0])  # a scaled copy of the noise


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_spectral_slope(exponent):
    x = coloured_noise(np.random.default_rng(0), 2**16, exponent)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x))
    band = (f > 1e-3) & (f < 0.4)
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.05)


@settings(deadline=None)
@given(shift=st.integers(-20, 20))
def test_time_shift_is_a_zero_filled_roll(shift):
    x = np.arange(1.0, 21.0)
    expected = np.roll(x, shift)
    if shift > 0:
        expected[:shift] = 0
    elif shift < 0:
        expected[shift:] = 0
    np.testing.assert_array_equal(time_shift(x, shift), expected)


# -- splits -------------------------------------------------------------------------------------
def fake_set(speakers: int, clips: int = 3) -> KeywordSet:
    """A set without audio content: ``clips`` clips per speaker."""
    ids = torch.arange(speakers).repeat_interleave(clips)
    return KeywordSet(
        torch.zeros(len(ids), 4), torch.zeros(len(ids), dtype=torch.int64), ids,
        ["yes"] * len(ids), [SILENCE, UNKNOWN, "yes"], [f"s{i}" for i in range(speakers)],
    )  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(
    speakers=st.integers(3, 60),
    weights=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_speaker_split_is_disjoint_complete_and_follows_the_fractions(speakers, weights, seed):
    fractions = [w / sum(weights) for w in weights]
    parts = speaker_split(fake_set(speakers), fractions, seed)
    owned = [set(p.speakers.tolist()) for p in parts]
    assert all(owned), "every part has a speaker"
    assert sum(len(o) for o in owned) == speakers == len(set().union(*owned))
    assert sum(len(p) for p in parts) == 3 * speakers
    for part, f in zip(owned, fractions, strict=True):
        assert abs(len(part) - f * speakers) <= len(fractions)  # rounding, and the >= 1 rule
    again = speaker_split(fake_set(speakers), fractions, seed)
    assert [p.speakers.tolist() for p in again] == [p.speakers.tolist() for p in parts]


def test_speaker_split_of_the_tiny_set_keeps_names_and_words(tiny):
    train, test = speaker_split(tiny, (2 / 3, 1 / 3), seed=0)
    assert not set(train.speakers.tolist()) & set(test.speakers.tolist())
    assert train.speaker_names == tiny.speaker_names == test.speaker_names
    for part in (train, test):
        for i in range(len(part)):
            j = int(torch.nonzero((tiny.audio == part.audio[i]).all(dim=1))[0])
            assert part.words[i] == tiny.words[j] and part.labels[i] == tiny.labels[j]


# -- errors -------------------------------------------------------------------------------------
def test_missing_engine_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpeechEngineNotFoundError, match=r"apt-get install espeak-ng flite"):
        generate_keywords(TINY)


def test_failed_synthesis_names_the_command_and_the_engines_message():
    with pytest.raises(SynthesisError, match=r"espeak-ng -v xx-nope\+m1 .*voice does not exist"):
        synthesize(Speaker("espeak-ng", "xx-nope", "m1", 150.0, 50), "yes")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"speakers": 0}, "Invalid speakers: 0; choose 1 to 93"),
        ({"speakers": 94}, "choose 1 to 93"),
        ({"clips_per_word": 0}, "at least one clip"),
        ({"keywords": ()}, "at least one"),
        ({"keywords": ("yes", "Yes!")}, "lower-case letters"),
        ({"unknown_words": ("yes",)}, r"\['yes'\] appear twice"),
        ({"speed_jitter": 1.0}, "speed_jitter"),
    ],
)
def test_bad_config_says_what_to_change(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(KeywordConfig(), **change)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"snr_db": (5, 1)}, r"Invalid snr_db: \(5, 1\); give a finite \(low, high\) range"),
        ({"noise_prob": 2}, r"noise_prob: 2; it must be in \[0, 1\]"),
        ({"shift_ms": -1}, "shift_ms: -1; it must be >= 0"),
        ({"babble_talkers": 0}, "babble_talkers: 0"),
    ],
)
def test_bad_augment_says_what_to_change(change, match):
    with pytest.raises(ValueError, match=match):
        Augment(**change)


def test_subset_takes_indices_or_a_mask(tiny):
    mask = tiny.labels == 2
    by_mask, by_index = tiny.subset(mask), tiny.subset(torch.nonzero(mask).flatten().tolist())
    assert torch.equal(by_mask.audio, by_index.audio) and len(by_mask) == 6
    assert by_mask.words == by_index.words == ["yes"] * 6
    assert torch.equal(by_mask.speakers, torch.tensor([0, 0, 1, 1, 2, 2]))


def test_bad_split_says_what_to_change():
    with pytest.raises(ValueError, match="sum to 1"):
        speaker_split(fake_set(5), (0.5, 0.2))
    with pytest.raises(ValueError, match="Cannot split 2 speakers into 3 parts"):
        speaker_split(fake_set(2), (0.4, 0.3, 0.3))


# -- the figure ---------------------------------------------------------------------------------
def test_spectrogram_figure_writes_a_png(tiny, tmp_path):
    path = spectrogram_figure(tiny, tmp_path / "figs" / "spectrograms.png", n=6)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match="choose 1 to 21"):
        spectrogram_figure(tiny, tmp_path / "x.png", n=30)
