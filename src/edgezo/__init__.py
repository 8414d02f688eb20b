"""edgezo: train with forward passes only, the way an edge device would.

    >>> from edgezo import ZO
    >>> from edgezo.directions import Pool

See :class:`ZO`, :mod:`edgezo.directions`, :mod:`edgezo.presets`.
"""

from . import directions, presets
from .optim import ZO
from .params import ParamSpace

__version__ = "0.1.0"
__all__ = ["ZO", "ParamSpace", "directions", "presets", "__version__"]
