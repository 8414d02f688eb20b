"""Two-sided SPSA (MeZO): ``c = (L(w+eps z) - L(w-eps z)) / (2 eps)``."""

from __future__ import annotations

import math

from .base import Closure, Estimate, Estimator, Probe


class Central(Estimator):
    """Two-sided SPSA (MeZO): ``c = (L+ - L-) / (2 eps)``."""

    name = "central"

    def forwards(self, queries: int) -> int:
        return 2 * queries

    def differences(self, probe: Probe, closure: Closure, queries: int) -> tuple[list, list]:
        """``L(w + eps z_i) - L(w - eps z_i)`` for every query, and all losses seen."""
        diffs, losses = [], []
        for i in range(queries):
            probe.perturb(i, +1.0)
            plus = probe.evaluate(closure)
            probe.perturb(i, -2.0)
            minus = probe.evaluate(closure)
            probe.release(i)
            diffs.append(plus - minus)
            losses += [plus, minus]
            if not math.isfinite(plus - minus):
                break  # the step will be skipped; do not spend more forwards
        return diffs, losses

    def coefficient(self, difference: float, eps: float) -> float:
        return difference / (2.0 * eps)

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        diffs, losses = self.differences(probe, closure, queries)
        coefficients = [self.coefficient(d, probe.eps) for d in diffs]
        return Estimate(sum(losses) / len(losses), coefficients, losses)
