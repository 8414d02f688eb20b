"""sign-m-SPSA (QZO-FF, PAPERS.md B): the sign of the two-sided difference."""

from __future__ import annotations

import math

from .central import Central


class Sign(Central):
    """sign-m-SPSA (QZO-FF, PAPERS.md B): ``c = sign(L+ - L-)``; use ``queries = m`` (3)."""

    name = "sign"
    sign_updates = True

    def coefficient(self, difference: float, eps: float) -> float:
        if not math.isfinite(difference):
            return difference
        return float((difference > 0) - (difference < 0))
