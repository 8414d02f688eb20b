"""Integer arithmetic of the fixed-point path: symmetric quantizers and multiply-and-shift.

Everything here is what an NPU's integer datapath computes (PAPERS.md B):
values are ``q * scale`` with ``q`` a signed ``b``-bit integer, and a real
factor ``x`` applied to an integer accumulator is a multiply by an integer
``m`` followed by an arithmetic right shift by ``k`` (``m / 2**k ~ x``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def qmax(bits: int) -> int:
    """Largest magnitude of a symmetric ``bits``-bit integer: ``2**(bits-1) - 1``."""
    if not 2 <= bits <= 32:
        raise ValueError(f"Invalid bit width {bits}; use 2..32 bits")
    return (1 << (bits - 1)) - 1


def storage_dtype(bits: int) -> torch.dtype:
    """The smallest signed integer dtype that holds ``bits`` bits."""
    for dtype, width in ((torch.int8, 8), (torch.int16, 16), (torch.int32, 32)):
        if bits <= width:
            return dtype
    raise ValueError(f"Invalid bit width {bits}; at most 32 bits")


def saturate(q: Tensor, bits: int) -> Tensor:
    """Clamp an integer tensor to ``[-qmax, qmax]`` (symmetric: -2**(b-1) is never used)."""
    m = qmax(bits)
    return q.clamp_(-m, m)


def channel_view(w: Tensor, per_channel: bool) -> Tensor:
    """``w`` as ``(channels, rest)``: output channels (dim 0) if per channel, else one row."""
    if per_channel and w.dim() >= 2:
        return w.reshape(w.shape[0], -1)
    return w.reshape(1, -1)


def symmetric_scale(
    w: Tensor, bits: int, per_channel: bool = False, method: str = "max", headroom: float = 1.0
) -> Tensor:
    """``dw = w_max / (2**(b-1) - 1)`` per tensor or per output channel (PAPERS.md B).

    ``method="max"`` takes ``w_max = max |w|``; ``"mse"`` searches clipping
    ratios in ``[0.5, 1]`` for the one with the least squared rounding error.
    ``headroom >= 1`` multiplies ``w_max`` so that the largest weights can
    still grow in training (with ``1``, they sit at the integer limit).
    Returns a float32 tensor broadcastable to ``w``: shape ``()`` per tensor,
    ``(C, 1, ..., 1)`` per channel. An all-zero (or subnormal) tensor or channel,
    such as a fresh bias, gets ``w_max = 1``: nothing to represent yet, and room
    to train.
    """
    if not headroom >= 1.0:
        raise ValueError(f"Invalid headroom {headroom}; use headroom >= 1")
    rows = channel_view(w.detach().float(), per_channel)
    wmax = rows.abs().amax(dim=1)
    if method == "mse":
        wmax = _mse_clip(rows, wmax, bits)
    elif method != "max":
        raise ValueError(f"Invalid scale method {method!r}; use 'max' or 'mse'")
    scale = wmax * headroom / qmax(bits)
    scale = torch.where(scale >= torch.finfo(torch.float32).tiny, scale, 1.0 / qmax(bits))
    if per_channel and w.dim() >= 2:
        return scale.view(-1, *([1] * (w.dim() - 1)))
    return scale.reshape(())


def _mse_clip(rows: Tensor, wmax: Tensor, bits: int) -> Tensor:
    best, best_err = wmax.clone(), torch.full_like(wmax, math.inf)
    for ratio in torch.linspace(0.5, 1.0, 51).tolist():
        clip = wmax * ratio
        scale = clip / qmax(bits)
        scale = torch.where(scale >= torch.finfo(torch.float32).tiny, scale, 1.0)[:, None]
        err = ((rows / scale).round().clamp(-qmax(bits), qmax(bits)) * scale - rows).square().sum(1)
        better = err < best_err
        best, best_err = torch.where(better, clip, best), torch.where(better, err, best_err)
    return best


def quantize(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """``q = sat(round(w / scale))`` in the storage dtype of ``bits`` (round half to even)."""
    q = torch.round(w.detach().float() / scale)
    return saturate(q, bits).to(storage_dtype(bits))


@dataclass(frozen=True)
class Requant:
    """Real factors as ``m / 2**k``: ``apply(acc) = (acc * m + 2**(k-1)) >> k`` (round half up).

    ``m`` and ``k`` are int64 tensors (scalars, or one per channel broadcastable
    to the accumulator). Each ``m`` has at most ``m_bits`` bits plus sign, with
    the largest ``k <= 62`` that keeps it there, so the factor is as exact as the
    multiplier allows. The product is formed in int64, as a 32-bit accumulator
    times a 16-bit multiplier needs.
    """

    m: Tensor
    k: Tensor

    @classmethod
    def of(cls, factor: Tensor | float, m_bits: int = 15) -> Requant:
        f = torch.as_tensor(factor, dtype=torch.float64)
        if not bool(torch.isfinite(f).all()):
            raise ValueError(f"Cannot requantize by a non-finite factor {factor}")
        safe = torch.where(f == 0, torch.ones_like(f), f.abs())
        k = torch.floor(torch.log2((2**m_bits - 1) / safe)).clamp(0, 62)
        m = torch.round(f * torch.exp2(k))
        return cls(m.to(torch.int64), torch.where(f == 0, 0, k).to(torch.int64))

    @property
    def value(self) -> Tensor:
        """The factors actually applied, ``m / 2**k`` (float64)."""
        return self.m.double() / torch.exp2(self.k.double())

    def apply(self, acc: Tensor) -> Tensor:
        """``round(acc * m / 2**k)`` on an integer tensor, in int64."""
        x = acc.to(torch.int64) * self.m
        half = torch.where(self.k > 0, torch.ones_like(self.k) << (self.k - 1).clamp_min(0), 0)
        return (x + half) >> self.k
