"""Keyword-spotting backbones: the paper's small CRNN and a DS-CNN, and a raw-audio front end.

Both backbones read a spectrogram ``(B, 1, frames, mels)`` (time first; 101 x 40
log-mel frames for 1 s at the defaults of :mod:`edgezo.data.features`) and follow
the vision backbones' convention: ``features(x) -> (B, feature_dim)``, ``head``
(the linear classifier a probe adapts) and ``forward(x) = head(features(x))``.

* :class:`CRNN` — conv blocks, a GRU, a linear head: the "CRNN, 250 kB of weights"
  of Feng et al. 2024 (PAPERS.md B). The paper gives no layout; this one has
  ~58k parameters (~233 kB in fp32) at the defaults.
* :class:`DSCNN` — Zhang et al. 2017 ("Hello Edge", arXiv 1711.07128), the small
  DS-CNN layout: a 10x4 stride-2 conv, four depthwise-separable blocks of 64
  channels, global average pooling; ~23k parameters.

The GRU is built from two ``nn.Linear`` layers (``nn.GRU``'s equations, checked
against it in the tests) rather than ``nn.GRU``. Both see weights changed in place
between two forwards, as ZO perturbs them (torch 2.13's ``nn.GRU`` re-reads its
flat weights when they change), and both run under forward-mode AD. The
difference is fixed point: ``nn.GRU``'s fused kernel keeps the recurrent state in
float, so :func:`edgezo.fixedpoint.quantize_model`'s activation quantizer would
see only the GRU's input; with two ``Linear`` layers the state ``h`` is quantized
before every recurrent product, as on an integer NPU. The step loop costs a little
more than the fused kernel on CPU; the convs dominate the forward time anyway.

    >>> import torch
    >>> model = AudioClassifier(CRNN(classes=12))
    >>> model(torch.zeros(2, 16000)).shape, model.feature_dim
    (torch.Size([2, 12]), 64)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.features import SAMPLE_RATE, log_mel, mfcc


class Featurizer(nn.Module):
    """Raw audio ``(B, T)`` -> ``(B, 1, frames, n_mels)`` log-mel (or ``n_mfcc`` MFCCs).

    No parameters: it computes :func:`~edgezo.data.features.log_mel` (or
    :func:`~edgezo.data.features.mfcc` when ``n_mfcc`` is set) with the given settings.
    """

    def __init__(
        self,
        n_mels: int = 40,
        n_mfcc: int | None = None,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 480,
        hop: int = 160,
        f_min: float = 20.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.n_mfcc = n_mfcc
        self.settings = {
            "sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "n_mels": n_mels,
            "f_min": f_min, "f_max": f_max,
        }  # fmt: skip

    @property
    def bands(self) -> int:
        """The last dimension of the output: ``n_mfcc`` or ``n_mels``."""
        return self.n_mfcc or self.settings["n_mels"]

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() != 2:
            raise ValueError(f"Featurizer expects raw audio (B, T); got shape {tuple(audio.shape)}")
        if self.n_mfcc is None:
            return log_mel(audio, **self.settings).unsqueeze(1)
        return mfcc(audio, n_mfcc=self.n_mfcc, **self.settings).unsqueeze(1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) + f", n_mfcc={self.n_mfcc}"


class GRU(nn.Module):
    """One-layer GRU over ``(B, T, input_size)`` -> all hidden states ``(B, T, hidden_size)``.

    PyTorch's ``nn.GRU`` equations (gate order r, z, n), ``h_0 = 0``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    ``inputs`` holds ``W_i`` / ``b_i`` (``nn.GRU``'s ``weight_ih_l0`` / ``bias_ih_l0``),
    ``hidden`` holds ``W_h`` / ``b_h``; initialized as ``nn.GRU``: uniform
    ``+-1/sqrt(hidden_size)``. The input projection runs for all steps at once.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.inputs = nn.Linear(input_size, 3 * hidden_size)
        self.hidden = nn.Linear(hidden_size, 3 * hidden_size)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        xr, xz, xn = self.inputs(x).chunk(3, dim=2)  # 3 x (B, T, H)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            hr, hz, hn = self.hidden(h).chunk(3, dim=1)  # 3 x (B, H)
            r = torch.sigmoid(xr[:, t] + hr)
            z = torch.sigmoid(xz[:, t] + hz)
            n = torch.tanh(xn[:, t] + r * hn)
            h = (1 - z) * n + z * h
            states.append(h)
        return torch.stack(states, dim=1)  # (B, T, H)


def conv_block(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    """3x3 conv (no bias: BN follows), batch norm, ReLU, max-pool by ``pool`` (time, freq)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.MaxPool2d(pool),
    )  # fmt: skip


class CRNN(nn.Module):
    """Conv blocks on the spectrogram, a GRU along time, the mean GRU state, a linear head.

    Shapes at the defaults (101 frames x 40 mels)::

        (B, 1, 101, 40) -> conv 16, pool (2, 2) -> (B, 16, 50, 20)
                        -> conv 32, pool (2, 2) -> (B, 32, 25, 10)
                        -> conv 32, pool (1, 2) -> (B, 32, 25, 5)
                        -> (B, 25, 160) -> GRU 64 -> mean over time -> (B, 64) -> head

    The GRU steps every 40 ms (25 steps per second).

    Args:
        classes: output classes (12: silence, unknown, 10 keywords).
        mels: spectrogram bands (the last input dimension); at least 8.
        channels: output channels of the three conv blocks.
        hidden: GRU width = ``feature_dim``.
    """

    POOLS = ((2, 2), (2, 2), (1, 2))  # (time, freq): the frequency axis shrinks by 8

    def __init__(
        self, classes: int = 12, mels: int = 40, channels: Sequence[int] = (16, 32, 32),
        hidden: int = 64,
    ) -> None:  # fmt: skip
        super().__init__()
        if len(channels) != len(self.POOLS):
            raise ValueError(f"CRNN has {len(self.POOLS)} conv blocks; got channels={channels}")
        if mels < 8:
            raise ValueError(f"Invalid mels: {mels}; the CRNN pools frequency by 8, give >= 8")
        inputs = [1, *channels[:-1]]
        blocks = zip(inputs, channels, self.POOLS, strict=True)
        self.conv = nn.Sequential(*(conv_block(a, b, pool) for a, b, pool in blocks))
        self.gru = GRU(channels[-1] * (mels // 8), hidden)
        self.head = nn.Linear(hidden, classes)
        self.feature_dim = hidden

    def features(self, x: Tensor) -> Tensor:
        """``(B, 1, frames, mels)`` -> the time-averaged GRU state ``(B, hidden)``."""
        y = self.conv(x)  # (B, C, T', F')
        y = y.permute(0, 2, 1, 3).flatten(2)  # (B, T', C * F')
        return self.gru(y).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def separable_block(channels: int) -> nn.Sequential:
    """Depthwise 3x3 conv, BN, ReLU, pointwise 1x1 conv, BN, ReLU (MobileNet's block)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.BatchNorm2d(channels), nn.ReLU(),
        nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
    )  # fmt: skip


class DSCNN(nn.Module):
    """Depthwise-separable CNN (Hello Edge's small DS-CNN): stem, DS blocks, average pool, head.

    Shapes at the defaults: ``(B, 1, 101, 40)`` -> 10x4 conv, stride 2 ->
    ``(B, 64, 51, 20)`` -> 4 separable blocks -> mean over time and frequency ->
    ``(B, 64)`` -> head.

    Args:
        classes: output classes.
        channels: width of every layer = ``feature_dim``.
        blocks: depthwise-separable blocks.
    """

    def __init__(self, classes: int = 12, channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1), bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
        )  # fmt: skip
        self.blocks = nn.Sequential(*(separable_block(channels) for _ in range(blocks)))
        self.head = nn.Linear(channels, classes)
        self.feature_dim = channels

    def features(self, x: Tensor) -> Tensor:
        """``(B, 1, frames, mels)`` -> the globally averaged last block ``(B, channels)``."""
        # Channels-last makes oneDNN's depthwise conv several times faster; without oneDNN (a
        # portable run, edgezo.models.portable) torch's own conv is 2-3x slower in it.
        h = self.stem(x)
        if torch.backends.mkldnn.enabled:
            h = h.contiguous(memory_format=torch.channels_last)
        return self.blocks(h).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class AudioClassifier(nn.Module):
    """A backbone behind a :class:`Featurizer`: raw audio ``(B, T)`` in, logits out.

    ``features``, ``head`` and ``feature_dim`` are the backbone's, so a probe or a
    ProtoNet treats it like any backbone.
    """

    def __init__(self, backbone: nn.Module, featurizer: Featurizer | None = None) -> None:
        super().__init__()
        self.featurizer = featurizer or Featurizer()
        self.backbone = backbone

    @property
    def head(self) -> nn.Module:
        return self.backbone.head

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def features(self, audio: Tensor) -> Tensor:
        return self.backbone.features(self.featurizer(audio))

    def forward(self, audio: Tensor) -> Tensor:
        return self.backbone(self.featurizer(audio))
