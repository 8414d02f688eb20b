"""Heavy-ball momentum by seed replay: no buffer per weight, a few numbers per past direction."""

from __future__ import annotations

import numbers
from collections import deque
from typing import Any

from .base import Term, UpdateRule
from .sgd import SGD


class Momentum(UpdateRule):
    """Heavy-ball momentum by seed replay, truncated to the last ``history`` steps.

    Full momentum ``m_t = beta m_{t-1} + g_t`` would need a buffer the size of the
    model. Since ``g_k = (1/q) sum_i c_{k,i} z_{k,i}`` and every ``z`` can be
    regenerated, ``m_t = sum_k beta^(t-k) g_k`` is replayed from the stored
    ``(step, query, coefficient)`` triples instead: memory ``O(history * q)``
    numbers in all (none per weight), time ``history * q`` extra perturbation
    passes per step. Terms older than ``history`` steps are dropped (their weight
    is at most ``beta ** history``).
    """

    replays_past = True

    def __init__(self, beta: float, history: int) -> None:
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"Invalid momentum {beta!r}: give a number in [0, 1), not a bool")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid momentum: {beta}; use 0 <= momentum < 1")
        if isinstance(history, bool) or not isinstance(history, (numbers.Integral, float)):
            raise TypeError(f"Invalid momentum history {history!r}: give an integer >= 1")
        if int(history) != history or history < 1:
            raise ValueError(
                f"Invalid momentum history: {history}; keep a whole number of steps, at least 1"
            )
        self.beta, self.history = float(beta), int(history)
        self._past: deque[tuple[int, list[float]]] = deque(maxlen=self.history - 1)

    def terms(self, step: int, coefficients: list[float]) -> list[Term]:
        out = SGD().terms(step, coefficients)
        for past_step, coefs in self._past:
            decay = self.beta ** (step - past_step)
            out += [(s, i, decay * w) for s, i, w in SGD().terms(past_step, coefs)]
        return out

    def commit(self, step: int, coefficients: list[float]) -> None:
        self._past.appendleft((step, list(coefficients)))

    def config(self) -> dict[str, Any]:
        return {"type": "Momentum", "beta": self.beta, "history": self.history}

    def state_dict(self) -> dict[str, Any]:
        return {"past": [(s, list(c)) for s, c in self._past]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the replayed steps; a state without them (plain SGD's) is refused, clearly."""
        past = state.get("past") if isinstance(state, dict) else None
        if not isinstance(past, (list, tuple)):
            raise ValueError(
                "The checkpoint's update state has no momentum history 'past' (the replayed "
                "steps): it was written without momentum (SGD) or is damaged; build the "
                "optimizer with the checkpoint's update rule to resume"
            )
        try:
            entries = [(int(s), [float(x) for x in c]) for s, c in past]
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"The checkpoint's momentum history 'past' is malformed ({error}); "
                "expected (step, [coefficients]) pairs"
            ) from None
        self._past.clear()
        self._past.extend(entries)
