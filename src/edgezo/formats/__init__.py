"""Number formats: how trainable weights are stored, perturbed, restored and updated.

``ZO`` gives every tensor to the first format that owns it (by default
:class:`FloatFormat` for float tensors, :class:`FixedPointFormat` for the
integer tensors of :func:`~edgezo.formats.fixedpoint.quantize_model`), and
has no branch of its own for either.

    >>> from edgezo.formats import FixedPointFormat
    >>> FixedPointFormat(z_bits=8, z_max=3.5).name
    'fixed point'
"""

from .base import Key, NumberFormat, bind_formats
from .fixedpoint import FixedPointFormat, UntrainableError
from .floats import FloatFormat


def default_formats() -> list[NumberFormat]:
    """The formats ``ZO`` falls back to: float in place, then fixed point with QZO-FF's 8-bit ``z``."""
    return [FloatFormat(), FixedPointFormat()]


__all__ = [
    "FixedPointFormat",
    "FloatFormat",
    "Key",
    "NumberFormat",
    "UntrainableError",
    "bind_formats",
    "default_formats",
]
