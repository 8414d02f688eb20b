"""Plain ZO-SGD: the step's estimate, ``g = (1/q) sum_i c_i z_i``."""

from __future__ import annotations

from .base import Term, UpdateRule


class SGD(UpdateRule):
    """``g = (1/q) sum_i c_i z_i``: one term per query of this step."""

    def terms(self, step: int, coefficients: list[float]) -> list[Term]:
        q = len(coefficients)
        return [(step, i, c / q) for i, c in enumerate(coefficients)]
