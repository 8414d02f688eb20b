"""edgezo.data.digits: the 8x8 digits against scikit-learn's own copy and an integer formula."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from edgezo.data.digits import load_digits, split_indices
from edgezo.data.mnist import DatasetNotFoundError, clear_cache

# the UCI optdigits set as scikit-learn ships it: 1797 images, these per-class counts
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def reference() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's images scaled by the integer form of round-half-up(v * 255 / 16)."""
    bunch = sklearn_digits()
    counts = bunch.images.astype(np.int64)
    return ((counts * 510 + 16) // 32).astype(np.uint8), bunch.target


def test_sklearn_digits_are_the_published_set():
    images, labels = reference()
    assert images.shape == (1797, 8, 8)
    assert np.bincount(labels).tolist() == DIGITS_COUNTS


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_has_documented_shape_types_and_stratified_counts(split):
    images, labels = load_digits(split)
    n = 1258 if split == "train" else 539
    assert images.shape == (n, 8, 8) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    train_counts = [round(0.7 * c) for c in DIGITS_COUNTS]
    test_counts = [c - t for c, t in zip(DIGITS_COUNTS, train_counts, strict=True)]
    expected = train_counts if split == "train" else test_counts
    assert torch.bincount(labels, minlength=10).tolist() == expected
    assert int(images.min()) == 0 and int(images.max()) == 255


def test_splits_are_disjoint_cover_the_set_and_hold_the_scaled_pixels():
    ref_images, ref_labels = reference()
    train_idx, test_idx = split_indices(ref_labels, "train"), split_indices(ref_labels, "test")
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert sorted([*train_idx.tolist(), *test_idx.tolist()]) == list(range(1797))
    for split, idx in (("train", train_idx), ("test", test_idx)):
        images, labels = load_digits(split)
        np.testing.assert_array_equal(images.numpy(), ref_images[idx])
        np.testing.assert_array_equal(labels.numpy(), ref_labels[idx])


def test_split_is_fixed_and_returns_copies():
    first, labels = load_digits("test")
    first_copy = first.clone()
    first.zero_()
    labels.fill_(3)
    again, labels_again = load_digits("test")
    assert torch.equal(again, first_copy)
    assert torch.bincount(labels_again).sum() == 539 and labels_again.unique().numel() == 10


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match=r"Invalid split 'val'; choose one of \('train', 'test'\)"):
        load_digits("val")


def test_missing_sklearn_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    clear_cache()
    try:
        with pytest.raises(DatasetNotFoundError, match="pip install scikit-learn"):
            load_digits("train")
    finally:
        clear_cache()
