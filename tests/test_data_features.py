"""edgezo.data.features against librosa (an independent implementation) and scipy's DCT."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.data.features import (
    dct_matrix,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    mfcc,
    power_spectrogram,
)


def test_signal(n=3, samples=16000, seed=0):
    """Noise plus a chirp (energy in every band) and a silent stretch (the log floor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * (100 + 3000 * t) * t)
    x = 0.05 * rng.standard_normal((n, samples)) + chirp
    x[:, 4000:6000] = 0.0
    return x


test_signal.__test__ = False  # a helper, not a test


def librosa_log_mel(x, sr=16000, n_fft=480, hop=160, n_mels=40, fmin=20.0, fmax=None):
    """The reference: librosa's power mel spectrogram (Slaney scale and norm), ln(. + 1e-6)."""
    s = librosa.feature.melspectrogram(
        y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=fmin, fmax=fmax,
        power=2.0, center=True, pad_mode="constant", htk=False, norm="slaney", dtype=np.float64,
    )  # fmt: skip
    return np.log(s + 1e-6)  # (..., n_mels, frames)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(16000, 480, 40, 20.0, None), (16000, 512, 64, 0.0, 7600.0), (8000, 256, 32, 50.0, 3500.0)],
)
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64
    )
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


@settings(deadline=None)
@given(st.floats(0.0, 8000.0))
def test_mel_scale_matches_librosa_and_inverts(hz):
    mel = hz_to_mel(torch.tensor(hz, dtype=torch.float64))
    assert float(mel) == pytest.approx(float(librosa.hz_to_mel(hz, htk=False)), abs=1e-9)
    assert float(mel_to_hz(mel)) == pytest.approx(hz, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_mel_matches_librosa(dtype):
    x = test_signal()
    ours = log_mel(torch.tensor(x, dtype=dtype))
    ref = librosa_log_mel(x).transpose(0, 2, 1)
    assert ours.shape == (3, 101, 40) and ours.dtype == dtype
    # float64: rounding only. float32: STFT rounding (~1e-7 relative on the power)
    # becomes an absolute error in the log; near the 1e-6 floor the float32
    # powers themselves (~1e-7 of the loudest bin) differ most.
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    np.testing.assert_allclose(ours.numpy(), ref, atol=tol, rtol=0)


def test_log_mel_other_settings_match_librosa():
    x = test_signal(n=2, samples=8000, seed=1)
    kwargs = {"sr": 8000, "n_fft": 256, "hop": 80, "n_mels": 32, "fmin": 50.0, "fmax": 3500.0}
    ours = log_mel(
        torch.from_numpy(x), sample_rate=8000, n_fft=256, hop=80, n_mels=32, f_min=50.0,
        f_max=3500.0,
    )  # fmt: skip
    np.testing.assert_allclose(ours.numpy(), librosa_log_mel(x, **kwargs).transpose(0, 2, 1), atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("n_mfcc", [10, 13])
def test_mfcc_matches_librosa(n_mfcc):
    x = test_signal(n=2)
    ours = mfcc(torch.from_numpy(x), n_mfcc=n_mfcc)
    ref = librosa.feature.mfcc(S=librosa_log_mel(x), n_mfcc=n_mfcc, dct_type=2, norm="ortho")
    assert ours.shape == (2, 101, n_mfcc)
    np.testing.assert_allclose(ours.numpy(), ref.transpose(0, 2, 1), atol=1e-8)


@pytest.mark.parametrize("n", [1, 10, 40])
def test_dct_matrix_is_scipys_orthonormal_dct(n):
    d = dct_matrix(n).numpy()
    np.testing.assert_allclose(d, scipy.fft.dct(np.eye(n), norm="ortho", axis=0), atol=1e-13)
    np.testing.assert_allclose(d @ d.T, np.eye(n), atol=1e-13)


@settings(max_examples=20, deadline=None)
@given(samples=st.integers(241, 4000), hop=st.integers(1, 400))
def test_frame_count_and_batching(samples, hop):
    x = torch.from_numpy(np.random.default_rng(samples).standard_normal((2, samples)))
    batch = log_mel(x, hop=hop)
    assert batch.shape == (2, 1 + samples // hop, 40)
    torch.testing.assert_close(batch[1], log_mel(x[1], hop=hop), rtol=0, atol=1e-12)


def test_power_spectrogram_obeys_parseval_on_a_frame():
    """sum |X_k|^2 over the one-sided spectrum, doubled but for DC/Nyquist, = n_fft sum (w x)^2."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(2000))
    power = power_spectrogram(x, n_fft=480, hop=160)  # (frames, 241)
    frame = 5  # centred at sample 800: samples 560 .. 1039
    w = torch.hann_window(480, periodic=True, dtype=torch.float64)
    windowed = x[800 - 240 : 800 + 240] * w
    one_sided = power[frame]
    total = one_sided[0] + one_sided[-1] + 2 * one_sided[1:-1].sum()
    assert float(total) == pytest.approx(480 * float((windowed**2).sum()), rel=1e-10)


def test_log_mel_is_differentiable_gradcheck():
    x = torch.randn(1, 400, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: log_mel(a, n_fft=128, hop=64, n_mels=8), (x,))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: log_mel(torch.zeros(16000, dtype=torch.int16)), TypeError, "floating-point"),
        (lambda: log_mel(torch.zeros(1, 2, 16000)), ValueError, r"\(T,\) or \(N, T\)"),
        (lambda: log_mel(torch.zeros(100)), ValueError, "too short for n_fft=480"),
        (lambda: log_mel(torch.zeros(16000), f_max=9000.0), ValueError, "f_max <= sample_rate / 2"),
        (lambda: log_mel(torch.zeros(16000), hop=0), ValueError, "Invalid hop"),
        (lambda: mfcc(torch.zeros(16000), n_mfcc=41), ValueError, "n_mfcc <= n_mels = 40"),
    ],
)
def test_bad_input_says_what_to_change(call, error, match):
    with pytest.raises(error, match=match):
        call()
