"""Forward gradient: the exact directional derivative by forward-mode AD."""

from __future__ import annotations

from .base import Closure, Estimate, Estimator, Probe


class JVP(Estimator):
    """Forward gradient (Baydin et al. 2022): the exact directional derivative ``grad . z``.

    Uses forward-mode AD on the same ``z`` as the other estimators, so it is the
    ``eps -> 0`` limit of :class:`Central` and a noise-free reference for it.
    Memory: the tangent ``z`` of every trainable tensor is alive during the
    forward (``d`` values), plus one tangent per activation.
    """

    name = "jvp"
    needs_float_weights = True
    perturbs_weights = False

    def forwards(self, queries: int) -> int:
        return queries

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        losses, coefficients = [], []
        for i in range(queries):
            loss, derivative = probe.directional(closure, i)
            losses.append(loss)
            coefficients.append(derivative)
        return Estimate(sum(losses) / len(losses), coefficients, losses)
