"""NumberFormat: how the weights a format owns are stored, perturbed, restored and updated.

The optimizer does not know how a number is stored. It hands every trainable
tensor to the first format that :meth:`~NumberFormat.owns` it, and during a step
tells each format, in the same words, what to do:

* :meth:`~NumberFormat.perturb` ``moves``: add ``multiple * eps * z(step, query)``
  for every ``((step, query), multiple)``, all or nothing;
* :meth:`~NumberFormat.update`: undo what is still perturbed, fused with
  ``w -= lr * weight * z`` for every update term;
* :meth:`~NumberFormat.decay`: ``w -= lr * weight_decay * w``;
* :meth:`~NumberFormat.restore`: put back everything since :meth:`~NumberFormat.start`
  (a failed or skipped step).

Float weights change in place (:class:`~edgezo.formats.floats.FloatFormat`);
fixed-point weights never change under a perturbation, their layers read
perturbed integers computed on the fly
(:class:`~edgezo.formats.fixedpoint.FixedPointFormat`). A new format (bfloat16
with stochastic rounding, block floating point...) is one new class.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..directions import Directions
    from ..estimators import Estimator
    from ..params import ParamSpace, Segment

Key = tuple[int, int]  #: ``(step, query)``: which ``z``


class NumberFormat(ABC):
    """A number format: the settings given by the user, bound by the optimizer to its tensors.

    A format object is a configuration; :meth:`bind` returns a copy that owns
    some tensors of one optimizer (``segments``, at positions ``indices`` of the
    :class:`~edgezo.params.ParamSpace`) and may hold per-step state.
    """

    name: str = ""
    segments: tuple[Segment, ...] = ()
    indices: tuple[int, ...] = ()

    @abstractmethod
    def owns(self, segment: Segment) -> bool:
        """Whether this format stores ``segment``'s tensor (e.g. by dtype)."""

    def bind(
        self, space: ParamSpace, indices: Sequence[int], directions: Directions, eps: float
    ) -> NumberFormat:
        """A copy of this format owning ``space``'s tensors at ``indices``."""
        bound = copy.copy(self)
        bound.indices = tuple(indices)
        bound.segments = tuple(space.segments[i] for i in indices)
        bound.directions, bound.eps = directions, float(eps)
        bound.prepare()
        return bound

    def prepare(self) -> None:
        """Compute what the bound format needs (called by :meth:`bind`)."""

    def config(self) -> dict[str, Any]:
        """The settings that change the numbers (recorded in checkpoints, compared on load)."""
        return {"type": type(self).__name__}

    # -- checks before training ---------------------------------------------------------
    def problems(self, lrs: Sequence[float], estimator: Estimator) -> list[str]:
        """Why this configuration cannot train, one sentence each (empty: it can)."""
        return []

    def check(self, lrs: Sequence[float], estimator: Estimator) -> None:
        """Raise ``ValueError`` if the format cannot train with these settings."""
        problems = self.problems(lrs, estimator)
        if problems:
            raise ValueError(f"The {self.name} format cannot train:\n- " + "\n- ".join(problems))

    # -- one step --------------------------------------------------------------------------
    def start(self) -> None:
        """A step begins (before its first evaluation)."""

    @abstractmethod
    def perturb(self, moves: Sequence[tuple[Key, float]]) -> None:
        """``w += multiple * eps * z(key)`` for every ``(key, multiple)``, in order, all or nothing."""

    @abstractmethod
    def restore(self) -> None:
        """Undo everything since :meth:`start` (perturbations, and an update not yet ended)."""

    @abstractmethod
    def update(
        self,
        terms: Sequence[tuple[int, int, float]],
        weights: Sequence[Sequence[float]],
        lrs: Sequence[float],
    ) -> None:
        """Undo the perturbations, fused with ``w_i -= lrs[group] * weights[t][i] * z(term t)``.

        ``weights[t][i]`` is term ``t``'s weight on tensor ``i`` of the whole
        space; the format reads its own (``self.indices``).
        """

    @abstractmethod
    def decay(self, factors: Sequence[float]) -> None:
        """Decoupled weight decay ``w -= factors[group] * w`` on the trained elements."""

    def end(self) -> None:
        """The step is over: what :meth:`restore` would undo is now final."""


def bind_formats(
    space: ParamSpace,
    formats: Sequence[NumberFormat],
    directions: Directions,
    eps: float,
) -> list[NumberFormat]:
    """Give every tensor of ``space`` to the first format that owns it; bind those with tensors.

    Raises ``TypeError`` naming the tensor if no format owns it.
    """
    owner: list[int] = []
    for seg in space:
        claims = [k for k, fmt in enumerate(formats) if fmt.owns(seg)]
        if not claims:
            raise TypeError(
                f"No number format owns a tensor of dtype {seg.param.dtype} and shape "
                f"{tuple(seg.param.shape)}; give formats=[...] one that does"
            )
        owner.append(claims[0])
    out = []
    for k, fmt in enumerate(formats):
        indices = [i for i, o in enumerate(owner) if o == k]
        if indices:
            out.append(fmt.bind(space, indices, directions, eps))
    return out
