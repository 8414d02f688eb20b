"""FloatFormat: floating-point weights, perturbed and updated in place.

A perturbation is ``w += multiple * eps * z``, written into the weights by the
direction passes (one fused pass for several moves); a restore subtracts what
was added, so it carries the floating-point drift that README documents; the
update is fused with the last restore, then decoupled weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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

    def check(self, lrs: Sequence[float], estimator: Estimator) -> None:
        """Warn (or raise, if for every weight) when ``eps`` rounds away at the weights' dtype."""
        super().check(lrs, estimator)
        check_eps_resolution(self.segments, self.eps, self.indices)

    def start(self) -> None:
        self.applied.clear()

    def _add(self, moves: Sequence[tuple[Key, list[float]]]) -> None:
        """``w += multiples[i] * eps * z(key)`` on tensor ``i`` for every ``(key, multiples)``.

        One call to the source (in order, all or nothing), so a fused kernel reads
        and writes the weights once for all moves; then recorded in ``applied``.
        """
        apply_(self.directions, self.segments, self.eps, [(*key, m) for key, m in moves])
        for key, multiples in moves:
            total = self.applied.setdefault(key, [0.0] * len(self.segments))
            self.applied[key] = [a + k for a, k in zip(total, multiples, strict=True)]

    def perturb(self, moves: Sequence[tuple[Key, float]]) -> None:
        self._add([(key, [multiple] * len(self.segments)) for key, multiple in moves])

    def restore(self) -> None:
        passes = [(*key, [-a for a in amounts]) for key, amounts in self.applied.items()]
        apply_(self.directions, self.segments, self.eps, passes)
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
            flat, mask = seg.flat(), seg.flat_mask()
            if mask is None:
                flat.mul_(1.0 - decay)
            else:
                flat.addcmul_(flat, mask, value=-decay)

    def end(self) -> None:
        self.applied.clear()
