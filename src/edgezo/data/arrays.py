"""The loaders' in-process store: each split's arrays decoded once, handed out as fresh tensors.

Every call returns new tensors (a copy of the images), so a caller may modify
them freely; :func:`clear_cache` forgets what was loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "test")

_ARRAYS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def clear_cache() -> None:
    """Forget every array loaded in this process."""
    _ARRAYS.clear()


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a ``ValueError`` naming them."""
    if split not in SPLITS:
        raise ValueError(f"Invalid split {split!r}; choose one of {SPLITS}")
    return split


def as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` as new tensors: the images copied, the labels as ``int64``."""
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def cached_split(
    dataset: str, split: str, load: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[Tensor, Tensor]:
    """``dataset``'s ``split`` as tensors; ``load()`` decodes its arrays on the first call only."""
    check_split(split)
    key = (dataset, split)
    if key not in _ARRAYS:
        _ARRAYS[key] = load()
    return as_tensors(*_ARRAYS[key])
