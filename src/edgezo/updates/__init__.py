"""Update rules: from a step's coefficients to the directions the weights move along.

One module per rule: :mod:`.sgd`, :mod:`.momentum` (heavy ball by seed replay),
:mod:`.norms` (QZO-FF's kernel-wise normalization) and :mod:`.sparse` (sparse
updates: which elements train). :mod:`.base` holds the interface, :class:`UpdateRule`.
"""

from .base import Term, UpdateRule
from .momentum import Momentum
from .norms import KernelNormalized, direction_norm, weight_norms
from .sgd import SGD
from .sparse import kept, magnitudes, masks, sparse_groups

__all__ = [
    "SGD",
    "KernelNormalized",
    "Momentum",
    "Term",
    "UpdateRule",
    "direction_norm",
    "kept",
    "magnitudes",
    "masks",
    "sparse_groups",
    "weight_norms",
]
