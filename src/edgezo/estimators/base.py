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
    """What an estimator may do to the weights (implemented by :class:`edgezo.probe.StepProbe`)."""

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
    #: capabilities the number formats check (instead of matching names):
    #: the estimator needs float weights (forward-mode AD cannot run on integers)
    needs_float_weights: bool = False
    #: every coefficient is +/-1 (or 0): the fixed-point format checks a one-sigma update
    sign_updates: bool = False
    #: the estimator moves the weights by ``probe.perturb`` (finite differences)
    perturbs_weights: bool = True

    def check(self, eps: float) -> None:
        """Refuse, when the optimizer is built, an ``eps`` this estimator cannot work with."""

    @abstractmethod
    def forwards(self, queries: int) -> int:
        """Forward passes per step (for budgets and benchmarks)."""

    @abstractmethod
    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        """Run the probes for ``queries`` directions and return the coefficients."""
