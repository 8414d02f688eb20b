"""Estimators: how the loss along a direction becomes one coefficient per query.

One module per estimator: :mod:`.central` (MeZO's two-sided SPSA), :mod:`.forward`
(one-sided), :mod:`.sign` (QZO-FF's sign-m-SPSA), :mod:`.jvp` (forward gradient),
:mod:`.sharpness` (a sharpness-aware wrapper of any of the finite-difference ones).
:mod:`.base` holds the interface (:class:`Estimator`, :class:`Probe`, :class:`Estimate`)
and its table of coefficients; :mod:`.registry` the names ``ZO(estimator=...)`` accepts.
"""

from .base import Closure, Estimate, Estimator, Probe
from .central import Central
from .forward import Forward
from .jvp import JVP
from .registry import ESTIMATORS, get_estimator
from .sharpness import SharpnessAware
from .sign import Sign

__all__ = [
    "ESTIMATORS",
    "JVP",
    "Central",
    "Closure",
    "Estimate",
    "Estimator",
    "Forward",
    "Probe",
    "SharpnessAware",
    "Sign",
    "get_estimator",
]
