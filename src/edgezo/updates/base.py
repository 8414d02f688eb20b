"""Update rules: from a step's coefficients to the directions the weights move along.

A rule returns *terms* ``(step, query, weight)``; the optimizer then applies
``w -= lr * weight * z(step, query)`` for every term, regenerating each ``z``.
A rule therefore never holds anything of the model's size: its history is a
few numbers per past direction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..directions import Directions
    from ..params import ParamSpace

Term = tuple[int, int, float]


class UpdateRule(ABC):
    """Turns the coefficients of step ``step`` into update terms."""

    #: Whether :meth:`terms` names past steps, so ``z`` of those steps must be regenerated
    #: (ZO refuses a source that cannot, e.g. momentum-guided sampling).
    replays_past: bool = False

    @abstractmethod
    def terms(self, step: int, coefficients: list[float]) -> list[Term]:
        """The terms for this step (pure: does not change the rule's state)."""

    def factors(
        self, step: int, query: int, space: ParamSpace, directions: Directions
    ) -> Sequence[float] | None:
        """Per-tensor factors of term ``(step, query)`` (``None``: 1 for every tensor).

        Lets a rule scale layers differently (QZO-FF's kernel-wise normalization).
        """
        return None

    def segment_weights(
        self, terms: Sequence[Term], space: ParamSpace, directions: Directions
    ) -> list[list[float]]:
        """Each term's weight on each tensor: ``out[t][i]`` = term ``t``'s weight times its
        :meth:`factors` on tensor ``i`` (the optimizer moves tensor ``i`` by
        ``-lr * out[t][i] * z_i``)."""
        out = []
        for step, query, weight in terms:
            factors = self.factors(step, query, space, directions)
            out.append([weight] * len(space) if factors is None else [weight * f for f in factors])
        return out

    def begin(self, step: int, space: ParamSpace) -> None:
        """Called at the start of step ``step``, before any perturbation (e.g. to read norms)."""

    def commit(self, step: int, coefficients: list[float]) -> None:
        """Record a step that was applied (called only once its update succeeded)."""

    def config(self) -> dict[str, Any]:
        """The settings that change the updates (recorded in checkpoints, compared on load)."""
        return {"type": type(self).__name__}

    def state_dict(self) -> dict[str, Any]:
        """What changes during training (a rule without history: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a rule without history refuses a state that has some."""
        if not isinstance(state, dict) or state:
            raise ValueError(
                f"{type(self).__name__} keeps no state, but the checkpoint's update state is "
                f"{_keys(state)}: it was written with another update rule (e.g. Momentum, which keeps 'past'); "
                "build the optimizer with the checkpoint's update rule to resume"
            )

    def bytes_per_weight(self) -> float:
        """Extra memory per trainable weight this rule keeps (0 for seed replay)."""
        return 0.0


def _keys(state: Any) -> str:
    """What a checkpoint's update state holds, for a message."""
    return (
        f"a dict with {sorted(state)}" if isinstance(state, dict) else f"a {type(state).__name__}"
    )
