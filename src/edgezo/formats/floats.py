"""FloatFormat: floating-point weights, perturbed and updated in place.

A perturbation is ``w += multiple * eps * z``, written into the weights by the
direction passes (one fused pass for several moves); a restore subtracts what
was added, so it carries the floating-point drift that README documents; the
update is fused with the last restore, then decoupled weight decay.

A pass scales ``a = round(eps z)`` by its multiple in the weights' dtype, and an
update's multiple ``lr c / eps`` can exceed float16's range (65504) on a loss
spike; such a multiple ``k`` is applied as ``(k / 2**e) round(2**e eps z)``,
the same numbers (scaling by a power of two is exact), see :func:`in_range`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..directions.base import CHUNK
from ..params import Segment
from ..passes import apply_
from .base import Key, NumberFormat
from .resolution import check_eps_resolution

if TYPE_CHECKING:
    from ..estimators import Estimator


class FloatFormat(NumberFormat):
    """Floating-point tensors (any float dtype), changed in place (the default for float weights).

    ``applied[key][i]`` is how many ``eps * z(key)`` this step has added to
    tensor ``i``; :meth:`restore` subtracts them all.
    """

    name = "float"

    def owns(self, segment: Segment) -> bool:
        return not segment.fixed

    def prepare(self) -> None:
        self.applied: dict[Key, list[float]] = {}
        self.limits = [multiple_limit(seg.param.dtype) for seg in self.segments]

    def check(self, lrs: Sequence[float], estimator: Estimator) -> None:
        """Warn (or raise, if for every weight) when ``eps`` rounds away at the weights' dtype."""
        super().check(lrs, estimator)
        check_eps_resolution(self.segments, self.eps, self.indices)

    def start(self) -> None:
        self.applied.clear()

    def _add(self, moves: Sequence[tuple[Key, list[float]]]) -> None:
        """``w += multiples[i] * eps * z(key)`` on tensor ``i`` for every ``(key, multiples)``.

        One call to the source (in order, all or nothing), so a fused kernel reads
        and writes the weights once for all moves (one more per power of two, for
        multiples past the dtype's range: :func:`in_range`); then recorded in ``applied``.
        """
        for exponent, chunk in in_range(moves, self.limits):
            scale = 2.0**exponent
            apply_(self.directions, self.segments, self.eps * scale, [(*k, m) for k, m in chunk])
            for key, multiples in chunk:
                total = self.applied.setdefault(key, [0.0] * len(self.segments))
                self.applied[key] = [a + k * scale for a, k in zip(total, multiples, strict=True)]

    def perturb(self, moves: Sequence[tuple[Key, float]]) -> None:
        self._add([(key, [multiple] * len(self.segments)) for key, multiple in moves])

    def restore(self) -> None:
        moves = [(key, [-a for a in amounts]) for key, amounts in self.applied.items()]
        for exponent, chunk in in_range(moves, self.limits):
            passes = [(*key, multiples) for key, multiples in chunk]
            apply_(self.directions, self.segments, self.eps * 2.0**exponent, passes)
        self.applied.clear()

    def update(
        self,
        terms: Sequence[tuple[int, int, float]],
        weights: Sequence[Sequence[float]],
        lrs: Sequence[float],
    ) -> None:
        """One fused pass: undo what is still perturbed and move ``w -= lr * weight * z``."""
        moves = {key: [-a for a in amounts] for key, amounts in self.applied.items()}
        for (step, query, _), per_segment in zip(terms, weights, strict=True):
            multiples = moves.setdefault((step, query), [0.0] * len(self.segments))
            for j, i in enumerate(self.indices):  # w -= lr * weight * z, in units of eps * z
                multiples[j] -= lrs[self.segments[j].group] * per_segment[i] / self.eps
        self._add(list(moves.items()))

    def decay(self, factors: Sequence[float]) -> None:
        for seg in self.segments:
            decay = factors[seg.group]
            if decay == 0.0:
                continue
            flat = seg.flat()
            if seg.mask is None:
                flat.mul_(1.0 - decay)
                continue
            for start in range(0, seg.numel, CHUNK):  # the mask is unpacked a piece at a time
                piece = flat[start : start + CHUNK]
                mask = seg.mask_piece(start, start + piece.numel(), flat.dtype)
                piece.addcmul_(piece, mask, value=-decay)

    def end(self) -> None:
        self.applied.clear()


Moves = Sequence[tuple[Key, Sequence[float]]]


def multiple_limit(dtype: torch.dtype) -> float:
    """The largest power of two a multiple may be in ``dtype`` (2**15 for float16)."""
    return math.ldexp(1.0, math.frexp(torch.finfo(dtype).max)[1] - 1)


def in_range(moves: Moves, limits: Sequence[float]) -> list[tuple[int, list]]:
    """``moves`` as ``(e, moves')`` with every multiple of ``moves'`` within ``limits``, in units
    of ``2**e eps z``: ``k round(eps z) = (k / 2**e) round(2**e eps z)`` exactly (barring
    subnormals). Nearly always one chunk, ``e = 0``, the moves as given."""
    exponents = {
        (m, j): math.frexp(abs(k) / limits[j])[1]  # |k| / 2**e <= limit
        for m, (_, multiples) in enumerate(moves)
        for j, k in enumerate(multiples)
        if abs(k) > limits[j]
    }
    if not exponents:
        return [(0, list(moves))]
    chunks: dict[int, list] = {}
    for e in sorted({0, *exponents.values()}):
        chunk = [
            (key, [k / 2.0**e if exponents.get((m, j), 0) == e else 0.0 for j, k in enumerate(ks)])
            for m, (key, ks) in enumerate(moves)
        ]
        chunks[e] = chunk
    return list(chunks.items())
