"""Audio features in plain torch ops: log-mel spectrogram and MFCC (no torchaudio).

Pipeline, for a batch of 16 kHz clips ``(N, T)``::

    power = |STFT(x)|^2         torch.stft: periodic Hann window of n_fft samples, hop samples
                                apart, frames centred (the clip is zero-padded by n_fft // 2
                                at both ends), so T = 16000, hop = 160 gives 1 + T // hop = 101
    mel   = M @ power           M: (n_mels, n_fft // 2 + 1) triangular filters on the Slaney
                                mel scale with Slaney area normalization (each filter has
                                unit area in Hz / 2: the filters of librosa's default
                                ``librosa.filters.mel``; HTK's scale is not offered)
    logmel = ln(mel + floor)    natural log, floor = 1e-6 (the offset of tf.signal's MFCC example)
    mfcc  = logmel @ D[:n_mfcc].T   D: orthonormal DCT-II matrix (scipy's ``dct(norm="ortho")``)

Defaults are those of keyword spotting (Zhang et al. 2017, "Hello Edge", arXiv
1711.07128): 30 ms windows (n_fft = 480), 10 ms hop, 40 mel bands from 20 Hz to
Nyquist. Outputs are ``(N, frames, n_mels)`` (or ``(frames, n_mels)`` for one
clip), time first, as the keyword models read them. Every function is batched and
differentiable, and computes in the input's float dtype (float32 in, float32 out).

    >>> import torch
    >>> log_mel(torch.zeros(2, 16000)).shape
    torch.Size([2, 101, 40])
    >>> mfcc(torch.zeros(16000), n_mfcc=10).shape
    torch.Size([101, 10])
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

SAMPLE_RATE = 16000
LOG_FLOOR = 1e-6


# -- the mel scale (Slaney's Auditory Toolbox; librosa's default) -------------------------------
_F_SP = 200.0 / 3  # Hz per mel in the linear part (below 1 kHz)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mel at 1 kHz
_LOG_STEP = math.log(6.4) / 27.0  # above 1 kHz: 27 mel per factor 6.4 in frequency


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(hz.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel.clamp(min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = 480,
    n_mels: int = 40,
    f_min: float = 20.0,
    f_max: float | None = None,
) -> Tensor:
    """Triangular mel filters, float64 ``(n_mels, n_fft // 2 + 1)``, Slaney area-normalized.

    Filter ``i`` rises from mel point ``i`` to ``i + 1`` and falls to ``i + 2``, the
    ``n_mels + 2`` points evenly spaced in mel from ``f_min`` to ``f_max``
    (default Nyquist); it is scaled by ``2 / (f[i + 2] - f[i])`` (Hz).
    """
    f_max = _check_band(sample_rate, n_fft, n_mels, f_min, f_max)
    return _filterbank(sample_rate, n_fft, n_mels, float(f_min), float(f_max)).clone()


@functools.lru_cache(maxsize=16)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    lo, hi = hz_to_mel(edges).tolist()
    points = mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64))  # (n_mels + 2,)
    width = points.diff()  # (n_mels + 1,)
    rise = (bins - points[:-2, None]) / width[:-1, None]  # (n_mels, bins)
    fall = (points[2:, None] - bins) / width[1:, None]
    triangles = torch.minimum(rise, fall).clamp(min=0.0)
    return triangles * (2.0 / (points[2:] - points[:-2]))[:, None]


def _check_band(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> float:
    for name, value in (("sample_rate", sample_rate), ("n_fft", n_fft), ("n_mels", n_mels)):
        if int(value) != value or value < 1:
            raise ValueError(f"Invalid {name}: {value}; it must be a positive integer")
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ValueError(
            f"Invalid mel band f_min={f_min} Hz, f_max={f_max} Hz; "
            f"need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist} Hz"
        )
    return f_max


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II as a matrix ``D (n, n)``: ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")``.

    ``D[k, j] = s_k cos(pi k (j + 1/2) / n)``, ``s_0 = sqrt(1/n)``, ``s_k = sqrt(2/n)``.
    """
    j = torch.arange(n, dtype=torch.float64)
    k = j[:, None]
    d = torch.cos(math.pi * k * (j + 0.5) / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


# -- features -----------------------------------------------------------------------------------
def power_spectrogram(audio: Tensor, n_fft: int = 480, hop: int = 160) -> Tensor:
    """``|STFT|^2`` with a periodic Hann window and centred, zero-padded frames: ``(..., frames, bins)``."""
    x = _check_audio(audio)
    if int(hop) != hop or hop < 1:
        raise ValueError(f"Invalid hop: {hop}; it must be a positive number of samples")
    if x.shape[-1] < n_fft // 2 + 1:
        raise ValueError(
            f"Audio of {x.shape[-1]} samples is too short for n_fft={n_fft}; "
            f"give at least {n_fft // 2 + 1} samples or a smaller n_fft"
        )
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    flat = x.reshape(-1, x.shape[-1])
    spec = torch.stft(
        flat, n_fft, hop_length=hop, window=window, center=True, pad_mode="constant",
        return_complex=True,
    )  # (N, bins, frames)  # fmt: skip
    power = spec.real.square() + spec.imag.square()
    return power.transpose(1, 2).reshape(*x.shape[:-1], power.shape[2], power.shape[1])


def log_mel(
    audio: Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = 480,
    hop: int = 160,
    n_mels: int = 40,
    f_min: float = 20.0,
    f_max: float | None = None,
) -> Tensor:
    """Log-mel spectrogram ``ln(M |STFT|^2 + 1e-6)``: ``(N, T)`` -> ``(N, frames, n_mels)``.

    Args:
        audio: ``(N, T)`` or ``(T,)`` float samples (full scale +-1).
        sample_rate: Hz.
        n_fft: window and FFT length in samples (480 = 30 ms at 16 kHz).
        hop: samples between frames (160 = 10 ms); ``frames = 1 + T // hop``.
        n_mels: mel bands.
        f_min, f_max: band edges in Hz (``f_max`` defaults to Nyquist).
    """
    f_max = _check_band(sample_rate, n_fft, n_mels, f_min, f_max)
    power = power_spectrogram(audio, n_fft, hop)
    fb = _filterbank(sample_rate, n_fft, n_mels, float(f_min), f_max)
    mel = power @ fb.to(dtype=power.dtype, device=power.device).T
    return torch.log(mel + LOG_FLOOR)


def mfcc(
    audio: Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = 480,
    hop: int = 160,
    n_mels: int = 40,
    f_min: float = 20.0,
    f_max: float | None = None,
    n_mfcc: int = 10,
) -> Tensor:
    """MFCC: the first ``n_mfcc`` orthonormal DCT-II coefficients of :func:`log_mel`.

    ``(N, T)`` -> ``(N, frames, n_mfcc)``; "Hello Edge" uses 10 coefficients of 40 mel bands.
    """
    if int(n_mfcc) != n_mfcc or not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"Invalid n_mfcc: {n_mfcc}; choose 1 <= n_mfcc <= n_mels = {n_mels}")
    logmel = log_mel(audio, sample_rate, n_fft, hop, n_mels, f_min, f_max)
    dct = dct_matrix(n_mels, logmel.dtype).to(logmel.device)[:n_mfcc]  # (n_mfcc, n_mels)
    return logmel @ dct.T


def _check_audio(audio: Tensor) -> Tensor:
    if not isinstance(audio, Tensor) or not audio.is_floating_point():
        raise TypeError(
            "Audio must be a floating-point tensor (float32 samples in [-1, 1]); convert "
            "integer PCM with x.float() / 32768"
        )
    if audio.dim() not in (1, 2):
        raise ValueError(
            f"Audio must be (T,) or (N, T); got shape {tuple(audio.shape)}. "
            "Flatten extra batch dimensions, and give mono samples"
        )
    return audio
