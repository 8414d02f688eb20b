"""Whether ``eps`` survives rounding at the float weights' dtype (checked once, at construction).

A float weight ``w`` is perturbed by ``w + eps * z``; if ``eps * |z|`` is below half
an ulp of ``w`` the sum rounds back to ``w`` and that weight is not probed at all
(its part of the estimate is noise, yet the update still moves it). With a typical
``|z| = 1``, weight ``w`` *vanishes* when ``fl(w + eps) == w``.

* A tensor where more than :data:`WARN_FRACTION` of the trained weights vanish gets
  a warning naming it and the smallest eps that reaches all of them (the ulp of its
  largest weight). Below that fraction the few large weights missed leave the
  estimate of the rest intact (bf16 LayerNorm weights near 1 at eps 1e-3 are the
  common case above it: 1 + 1e-3 rounds to 1 in bf16).
* If every trained float weight vanishes, both perturbed points equal the current
  one for ``|z|`` near 1, so nearly every estimate is exactly 0 and nothing
  trains: that is an error, not a warning.

Cost: one reduction per tensor (``max |w|``); the exact count runs only for a tensor
whose largest weight is above the threshold, in chunks (no full-size temporary).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..params import Segment

#: Fraction of a tensor's trained weights whose perturbation may round away before
#: ZO warns (see the module docstring).
WARN_FRACTION = 0.01

#: Elements per piece of the exact count.
PIECE = 1 << 20


def largest_magnitude(seg: Segment) -> float:
    """``max |w|`` over the trained elements of ``seg`` (0 for an empty or all-masked tensor)."""
    flat = seg.flat()
    if flat.numel() == 0:
        return 0.0
    if seg.mask is None:
        low, high = torch.aminmax(flat)
        return max(abs(float(low)), abs(float(high)))
    out = 0.0
    for start in range(0, flat.numel(), PIECE):
        piece = flat[start : start + PIECE]
        piece = piece.abs() * seg.mask_piece(start, start + piece.numel(), torch.bool)
        out = max(out, float(piece.max()))
    return out


def ulp(value: float, dtype: torch.dtype) -> float:
    """The spacing of ``dtype`` just above ``|value|``."""
    x = torch.tensor(abs(value), dtype=dtype)
    return float(torch.nextafter(x, torch.tensor(math.inf, dtype=dtype)) - x)


def vanishing(seg: Segment, eps: float) -> tuple[int, int]:
    """``(count, trained)``: how many trained weights have ``fl(w + eps) == w``, out of how many."""
    flat = seg.flat()
    count, trained = 0, 0
    for start in range(0, flat.numel(), PIECE):
        piece = flat[start : start + PIECE]
        lost = (piece + eps) == piece
        if seg.mask is None:
            trained += piece.numel()
        else:
            keep = seg.mask_piece(start, start + piece.numel(), torch.bool)
            lost &= keep
            trained += int(keep.sum())
        count += int(lost.sum())
    return count, trained


def check_eps_resolution(
    segments: Sequence[Segment], eps: float, indices: Sequence[int] | None = None
) -> None:
    """Warn for each tensor where ``eps`` rounds away for many weights; raise if for all.

    ``indices``: the tensors' positions in the optimizer's parameter list (for messages).
    """
    lost_total, trained_total, messages = 0, 0, []
    indices = range(len(segments)) if indices is None else indices
    for index, seg in zip(indices, segments, strict=True):
        dtype = seg.param.dtype
        largest = largest_magnitude(seg)
        if eps >= ulp(largest, dtype):  # reaches the largest weight, hence all of them
            trained_total += seg.trained
            continue
        lost, trained = vanishing(seg, eps)
        lost_total, trained_total = lost_total + lost, trained_total + trained
        if trained and lost / trained > WARN_FRACTION:
            messages.append(
                f"eps={eps:g} rounds away (w + eps == w in {str(dtype).removeprefix('torch.')}) "
                f"for {lost} of {trained} trained weights of tensor {index} (shape "
                f"{tuple(seg.param.shape)}, max |w| = {largest:.3g}): those weights are not "
                f"probed and their estimate is noise; use eps >= {_ceil3(ulp(largest, dtype))}"
            )
    if trained_total and lost_total == trained_total:
        raise ValueError(
            f"eps={eps:g} is below half an ulp of every trained float weight: w + eps*z rounds "
            "back to w, so every estimate would be 0 and nothing would train. " + " ".join(messages)
        )
    for message in messages:
        warnings.warn(message, stacklevel=_caller_outside_edgezo())


def _ceil3(x: float) -> float:
    """``x`` rounded up to 3 significant digits (a bound to quote in a message)."""
    if x <= 0:
        return x
    digits = 2 - math.floor(math.log10(x))
    return math.ceil(x * 10**digits) / 10**digits


def _caller_outside_edgezo() -> int:
    """The ``stacklevel`` of the first frame outside edgezo (the user's ``ZO(...)`` call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("edgezo"):
        frame, level = frame.f_back, level + 1
    return level
