"""Estimators: how the loss along a direction becomes one coefficient per query.

An estimator never sees tensors. It drives a :class:`Probe` (given by the
optimizer) that perturbs the weights along ``z(step, query)``, evaluates the
closure, and undoes perturbations; it returns, for every query ``i``, the
coefficient ``c_i`` of the gradient estimate ``g = (1/q) * sum_i c_i z_i``.
Nothing of size ``d`` is ever stored: the update rule later regenerates ``z_i``.

=========  ==========================================  ===============  =======================
name       coefficient ``c_i``                         forwards / step  returned loss
=========  ==========================================  ===============  =======================
central    ``(L(w+eps z) - L(w-eps z)) / (2 eps)``     ``2q``           mean of the ``2q`` losses
forward    ``(L(w+eps z) - L(w)) / eps``               ``q + 1``        ``L(w)``
sign       ``sign(L(w+eps z) - L(w-eps z))``           ``2q``           mean of the ``2q`` losses
jvp        ``d/dt L(w + t z)`` at 0, exact (fwd-AD)    ``q`` (dual)     ``L(w)``
=========  ==========================================  ===============  =======================

``central`` is MeZO's two-sided SPSA; ``sign`` is QZO-FF's sign-m-SPSA (PAPERS.md
B): ``g = (1/m) sum sign(dL) z``, with the magnitude of the perturbation, so
8-bit ``z`` give 8-bit gradients. The mean of the two perturbed losses equals
``L(w) + O(eps^2)``; it is what ``central``/``sign`` report, to save a forward.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

Closure = Callable[[], Tensor]


class Probe(Protocol):
    """What an estimator may do to the weights (implemented by the optimizer)."""

    eps: float

    def perturb(self, query: int, scale: float) -> None:
        """``w += scale * eps * z(step, query)``."""

    def release(self, query: int) -> None:
        """Done with ``query``: its perturbation may now be undone (lazily, fused with the update)."""

    def evaluate(self, closure: Closure) -> float:
        """The closure's loss at the current weights, without autograd."""

    def directional(self, closure: Closure, query: int) -> tuple[float, float]:
        """``(L(w), d/dt L(w + t z)|_0)`` by forward-mode AD."""


@dataclass
class Estimate:
    """One step's outcome: the reported loss, every loss evaluated, one coefficient per query."""

    loss: float
    coefficients: list[float]
    losses: list[float]

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (*self.losses, *self.coefficients))


class Estimator(ABC):
    """A rule turning closure evaluations into one coefficient per query."""

    name: str = ""
    #: query slots used beyond ``queries`` (the optimizer binds the source with them)
    extra_queries: int = 0

    @abstractmethod
    def forwards(self, queries: int) -> int:
        """Forward passes per step (for budgets and benchmarks)."""

    @abstractmethod
    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        """Run the probes for ``queries`` directions and return the coefficients."""


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


class Sign(Central):
    """sign-m-SPSA (QZO-FF, PAPERS.md B): ``c = sign(L+ - L-)``; use ``queries = m`` (3)."""

    name = "sign"

    def coefficient(self, difference: float, eps: float) -> float:
        if not math.isfinite(difference):
            return difference
        return float((difference > 0) - (difference < 0))


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


class JVP(Estimator):
    """Forward gradient (Baydin et al. 2022): the exact directional derivative ``grad . z``.

    Uses forward-mode AD on the same ``z`` as the other estimators, so it is the
    ``eps -> 0`` limit of :class:`Central` and a noise-free reference for it.
    Memory: the tangent ``z`` of every trainable tensor is alive during the
    forward (``d`` values), plus one tangent per activation.
    """

    name = "jvp"

    def forwards(self, queries: int) -> int:
        return queries

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        losses, coefficients = [], []
        for i in range(queries):
            loss, derivative = probe.directional(closure, i)
            losses.append(loss)
            coefficients.append(derivative)
        return Estimate(sum(losses) / len(losses), coefficients, losses)


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (Central, Forward, Sign, JVP)}


def get_estimator(spec: str | Estimator) -> Estimator:
    """An estimator from its name (``"central"``, ``"forward"``, ``"sign"``, ``"jvp"``) or itself."""
    if isinstance(spec, Estimator):
        return spec
    if spec not in ESTIMATORS:
        raise ValueError(f"Unknown estimator {spec!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[spec]()
