"""One-sided differences: ``c = (L(w + eps z) - L(w)) / eps``."""

from __future__ import annotations

import math

from .base import Closure, Estimate, Estimator, Probe


class Forward(Estimator):
    """One-sided differences: ``c = (L(w + eps z) - L(w)) / eps``; ``q`` queries cost ``q + 1``."""

    name = "forward"

    def forwards(self, queries: int) -> int:
        return queries + 1

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        base = probe.evaluate(closure)
        losses, coefficients = [base], []
        for i in range(queries):
            if not math.isfinite(base):
                break
            probe.perturb(i, +1.0)
            loss = probe.evaluate(closure)
            probe.release(i)
            losses.append(loss)
            coefficients.append((loss - base) / probe.eps)
        return Estimate(base, coefficients, losses)
