"""Argument checks shared by the constructors (a leaf module: imports nothing of edgezo).

A bool is never accepted where a number is meant (``True`` is an ``int`` to Python,
but ``bits=True`` is a mistake, not 1), a fraction is never truncated to an integer,
and a seed outside its source's range is refused instead of wrapped.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

#: Seeds of the hashed sources and pools: they are used as 64-bit words.
SEED_RANGE = (0, 2**64 - 1)


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]``: integral floats and NumPy integers accepted.

    Raises ``TypeError`` for a bool or a non-number, ``ValueError`` for a fraction or
    a value out of range, each naming ``name`` and the allowed values.
    """
    allowed = _range(name, low, high)
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise TypeError(
            f"Invalid {name}={value!r}: give an integer, not a {type(value).__name__}"
            f" (allowed: {allowed})"
        )
    if not isinstance(value, numbers.Integral) and not (
        math.isfinite(float(value)) and float(value).is_integer()
    ):
        raise ValueError(
            f"Invalid {name}={value!r}: it must be a whole number (allowed: {allowed})"
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"Invalid {name}={value}: allowed: {allowed}")
    return value


def seed(
    value: Any, low: int = SEED_RANGE[0], high: int = SEED_RANGE[1], name: str = "seed"
) -> int:
    """A seed in ``[low, high]``, never wrapped: ``2**70`` is not ``0`` and ``-1`` not ``2**64-1``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise TypeError(f"Invalid {name} {value!r}: give an integer in {_range(name, low, high)}")
    if not isinstance(value, numbers.Integral) and not (
        math.isfinite(float(value)) and float(value).is_integer()
    ):
        raise TypeError(
            f"Invalid {name} {value!r}: a seed is a whole number ({_range(name, low, high)})"
        )
    value = int(value)
    if not low <= value <= high:
        raise ValueError(
            f"Invalid {name} {value}: use {_range(name, low, high)}; seeds are not wrapped "
            "(a seed outside the range would silently equal another one)"
        )
    return value


def real(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Invalid {name}={value!r}: give a number, not a {type(value).__name__} "
            f"(use {_range(name, low, high)})"
        )
    value = float(value)
    if (
        not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise ValueError(f"Invalid {name}={value}: use a finite number, {_range(name, low, high)}")
    return value


def _range(name: str, low: Any, high: Any) -> str:
    if low is not None and high is not None:
        if high == 2**64 - 1:
            return f"{low} <= {name} < 2**64"
        return f"{low} <= {name} <= {high}"
    if low is not None:
        return f"{name} >= {low}"
    if high is not None:
        return f"{name} <= {high}"
    return "any integer"
