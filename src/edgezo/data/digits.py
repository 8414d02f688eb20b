"""scikit-learn's 8x8 handwritten digits (UCI "optdigits"), offline, as uint8 images.

scikit-learn ships the 1797 images with the package (no download). Each pixel
counts the set bits of a 4x4 block of a 32x32 bitmap, so its value is 0..16;
:func:`load_digits` scales it to MNIST's range with ``round(v * 255 / 16)``
(half up, so 0 -> 0, 8 -> 128, 16 -> 255) and returns the same types as the
MNIST loaders: ``uint8 (N, 8, 8)`` images and ``int64 (N,)`` labels.

The set has no official train/test split, so one is fixed here: per class,
the images are permuted with ``numpy.random.default_rng(DIGITS_SPLIT_SEED)``
and the first ``round(0.7 * n_class)`` go to "train", the rest to "test"
(stratified, disjoint, the same on every machine). That gives 1258 training
and 539 test images; each split keeps sklearn's order.

>>> images, labels = load_digits("test")
>>> tuple(images.shape), images.dtype, labels.dtype
((539, 8, 8), torch.uint8, torch.int64)
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ..extras import MissingExtra, require
from .arrays import cached_split
from .mnist import DatasetNotFoundError

#: Seed of the fixed stratified train/test split.
DIGITS_SPLIT_SEED = 0
#: Share of each class that goes to the training split.
DIGITS_TRAIN_FRACTION = 0.7


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's raw digits: ``(float64 (1797, 8, 8) in 0..16, int (1797,))``."""
    try:
        sklearn_load_digits = require("sklearn.datasets", "studies").load_digits
    except MissingExtra as error:
        raise DatasetNotFoundError(
            "The 8x8 digits ship with scikit-learn, which is not installed. "
            "Install it with: pip install scikit-learn (or pip install 'edgezo[studies]')"
        ) from error
    bunch = sklearn_load_digits()
    return bunch.images, bunch.target


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Counts 0..16 -> uint8 0..255 by ``round(v * 255 / 16)``, halves rounded up.

    >>> scale_to_uint8(np.array([0, 1, 8, 16])).tolist()
    [0, 16, 128, 255]
    """
    return np.floor(np.asarray(values, dtype=np.float64) * 255.0 / 16.0 + 0.5).astype(np.uint8)


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Sorted indices of ``split`` in the fixed stratified split of ``labels`` (see module doc)."""
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(DIGITS_TRAIN_FRACTION * len(members)))
        chosen.append(members[:n_train] if split == "train" else members[n_train:])
    return np.sort(np.concatenate(chosen))


def load_digits(split: str = "train") -> tuple[Tensor, Tensor]:
    """8x8 digits: ``(images uint8 (N, 8, 8), labels int64 (N,))``, N = 1258 (train) or 539 (test).

    Args:
        split: ``"train"`` or ``"test"`` (a fixed, stratified, disjoint 70/30 split).

    Raises:
        DatasetNotFoundError: if scikit-learn is not installed.
    """
    return cached_split("digits", split, lambda: _read_digits(split))


def _read_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` of sklearn's digits, scaled to uint8 (see the module doc)."""
    counts, labels = _sklearn_digits()
    keep = split_indices(labels, split)
    return scale_to_uint8(counts[keep]), labels[keep]
