"""Estimators by name: ``get_estimator("sign")``."""

from __future__ import annotations

from .base import Estimator
from .central import Central
from .forward import Forward
from .jvp import JVP
from .sign import Sign

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (Central, Forward, Sign, JVP)}


def get_estimator(spec: str | Estimator) -> Estimator:
    """An estimator from its name (``"central"``, ``"forward"``, ``"sign"``, ``"jvp"``) or itself."""
    if isinstance(spec, Estimator):
        return spec
    if spec not in ESTIMATORS:
        raise ValueError(f"Unknown estimator {spec!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[spec]()
