"""Sharpness-aware perturbation (QZO-FF, PAPERS.md B): estimate the gradient at a nearby uphill point.

SAM (Foret et al. 2021) takes the gradient at ``w + rho * g / ||g||``, the
worst point of a small ball, so training prefers flat minima. Without a
gradient, QZO-FF takes one *directional* ascent step instead: along a dedicated
direction ``z_a``, compare ``L(w + r z_a)`` and ``L(w - r z_a)`` and move to the
higher one; the base estimator then runs there, and the update is applied at
``w`` (the ascent is undone, fused with the update like any perturbation).

This module provides :class:`SharpnessAware`, an
:class:`~edgezo.estimators.Estimator` wrapper.
"""

from __future__ import annotations

import math

from .base import Closure, Estimate, Estimator, Probe
from .registry import get_estimator


class SharpnessAware(Estimator):
    """Run ``base`` at ``w + s * r * z_a``, ``s = sign(L(w + r z_a) - L(w - r z_a))``.

    One step, ``q`` queries, ``k = round(rho / eps)``, ``r = k * eps``:

    1. ``z_a = z(step, q)``: the ascent uses query slot ``q``, one past the
       estimator's own queries (``extra_queries = 1``; the optimizer must bind
       its direction source with ``queries + 1`` so stream sources such as
       ``Pool`` give it its own window; counter sources need nothing);
    2. ``L+ = L(w + r z_a)``, ``L- = L(w - r z_a)`` (two forwards);
    3. move to ``w + s r z_a`` (``s = 0`` if ``L+ == L-``: no evidence, stay at ``w``);
    4. run ``base`` there: its perturbations ``eps z_i`` add to the ascent
       (on the fixed-point path both are active in one integer accumulator);
    5. release ``z_a``: the optimizer undoes it together with the update, so
       ``w <- w - lr * g(w + s r z_a)``.

    The radius is a whole number of ``eps`` (the probe's unit; the fixed-point
    path perturbs by integer multiples of ``eps_q``), so ``rho`` is rounded to
    ``k * eps``; ``k < 1`` is an error. ``rho = 0`` is exactly ``base`` (no
    extra forward, no ascent).

    Cost: ``base.forwards(q) + 2`` forwards per step; no memory per weight.
    Float weights: up to four extra perturbation passes (``+r``, ``-2r``,
    ``+2r`` when ``s > 0``, and undoing ``z_a`` alongside the update). Fixed
    point: nothing is written; while the base evaluates, every layer read
    regenerates ``z_a``'s 8-bit values as well as the base's ``z_i``.
    The reported loss is ``(L+ + L-) / 2 = L(w) + O(r**2)``; the losses list
    holds ``L+, L-`` then the base's.

    Args:
        base: the estimator run at the ascended point: ``"sign"`` (QZO-FF),
            ``"central"``, ``"forward"``, or an :class:`~edgezo.estimators.Estimator`.
        rho: the ascent radius, in the units of the weights (like ``eps``).

    Example:
        >>> sam = SharpnessAware("sign", rho=4e-3)
        >>> sam.name, sam.forwards(3), sam.multiple(1e-3)
        ('sign', 8, 4)
    """

    extra_queries = 1  #: query slots used beyond the estimator's ``queries`` (the ascent's)

    def __init__(self, base: str | Estimator = "sign", rho: float = 5e-3) -> None:
        self.base = get_estimator(base)
        if isinstance(self.base, SharpnessAware):
            raise TypeError("SharpnessAware cannot wrap another SharpnessAware")
        if not self.base.perturbs_weights:
            raise ValueError(
                "SharpnessAware needs a finite-difference base estimator ('sign', 'central' or "
                "'forward'); the jvp estimator does not perturb the weights"
            )
        if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho >= 0):
            raise ValueError(f"Invalid rho {rho}; the ascent radius must be a finite number >= 0")
        self.rho = float(rho)
        # the coefficients are the base's: so are the name and the capabilities formats check
        self.name = self.base.name
        self.sign_updates = self.base.sign_updates
        self.needs_float_weights = self.base.needs_float_weights

    def multiple(self, eps: float) -> int:
        """``k = round(rho / eps)``: the radius in units of ``eps`` (0 when ``rho = 0``)."""
        if self.rho == 0.0:
            return 0
        k = round(self.rho / eps)
        if k < 1:
            raise ValueError(
                f"rho = {self.rho:g} is at most half of eps = {eps:g}: the ascent radius is a "
                f"whole number of eps and rounds to 0 (ties to even). Use rho >= {eps:g} (or rho = 0 to turn "
                "the sharpness-aware step off)."
            )
        return k

    def check(self, eps: float) -> None:
        """A radius that rounds to no whole ``eps`` is refused when the optimizer is built."""
        self.multiple(eps)

    def forwards(self, queries: int) -> int:
        return self.base.forwards(queries) + (2 if self.rho > 0 else 0)

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        k = self.multiple(probe.eps)
        if k == 0:
            return self.base.estimate(probe, closure, queries)
        ascent = queries  # the extra slot
        probe.perturb(ascent, +k)
        plus = probe.evaluate(closure)
        probe.perturb(ascent, -2 * k)
        minus = probe.evaluate(closure)
        ascent_losses = [plus, minus]
        if not math.isfinite(plus - minus):  # the step will be skipped: spend no more forwards
            probe.release(ascent)
            return Estimate(plus - minus, [], ascent_losses)
        if plus > minus:
            probe.perturb(ascent, +2 * k)
        elif plus == minus:
            probe.perturb(ascent, +k)  # no evidence either way: back to w
        estimate = self.base.estimate(probe, closure, queries)
        probe.release(ascent)
        return Estimate((plus + minus) / 2, estimate.coefficients, ascent_losses + estimate.losses)

    def __repr__(self) -> str:
        return f"SharpnessAware(base={self.base.name!r}, rho={self.rho})"
