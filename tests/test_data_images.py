"""edgezo.data.images: as_input against Pillow's bilinear resize; dispatch by dataset name."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgezo.data.digits import load_digits
from edgezo.data.images import DATASETS, as_input, image_size, load_images, num_classes
from edgezo.data.mnist import clear_cache, load_mnist


@st.composite
def uint8_images(draw, max_side: int = 20):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)
    return torch.from_numpy(pixels)


def pillow_bilinear(images: torch.Tensor, size: int) -> np.ndarray:
    """Each image as a float ('F') Pillow image, resized with Pillow's BILINEAR filter."""
    floats = images.numpy().astype(np.float32) / 255
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in floats]
    )


@settings(max_examples=40, deadline=None)
@given(images=uint8_images(), size=st.integers(1, 40))
def test_as_input_resizes_like_pillow_bilinear(images, size):
    x = as_input(images, size)
    assert x.shape == (images.shape[0], 1, size, size) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    np.testing.assert_allclose(x[:, 0].numpy(), pillow_bilinear(images, size), atol=2e-6)


@settings(max_examples=20, deadline=None)
@given(images=uint8_images())
def test_as_input_without_size_is_pixel_over_255(images):
    x = as_input(images)
    assert x.shape == (images.shape[0], 1, *images.shape[1:]) and x.dtype == torch.float32
    np.testing.assert_array_equal(
        x[:, 0].numpy(), images.numpy().astype(np.float32) / np.float32(255)
    )


@settings(max_examples=30, deadline=None)
@given(
    value=st.integers(0, 255),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    size=st.integers(1, 40),
)
def test_resizing_a_constant_image_keeps_it_constant(value, h, w, size):
    x = as_input(torch.full((2, h, w), value, dtype=torch.uint8), size)
    np.testing.assert_allclose(x.numpy(), value / 255, atol=1e-6)


def test_digits_become_backbone_inputs():
    images, _ = load_digits("test")
    x = as_input(images, 28)
    assert x.shape == (539, 1, 28, 28)
    # the interpolation keeps the mean brightness of each digit (to a few percent)
    np.testing.assert_allclose(
        x.mean(dim=(1, 2, 3)), images.float().mean(dim=(1, 2)) / 255, rtol=0.05
    )


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(2, 8, 8), r"uint8 images of shape \(N, H, W\), got torch.float32"),
        (torch.zeros(8, 8, dtype=torch.uint8), r"got torch.uint8 of shape \(8, 8\)"),
        (np.zeros((2, 8, 8), np.uint8), "got ndarray"),
    ],
)
def test_as_input_rejects_what_is_not_uint8_images(images, match):
    with pytest.raises(TypeError, match=match):
        as_input(images)


def test_as_input_rejects_a_bad_size():
    with pytest.raises(ValueError, match="size must be a positive number of pixels"):
        as_input(torch.zeros(1, 8, 8, dtype=torch.uint8), 0)


def test_load_images_dispatches_to_the_loaders():
    assert DATASETS == ("mnist", "fashion-mnist", "digits")
    for name, loader in (("mnist", load_mnist), ("digits", load_digits)):
        images, labels = load_images(name, "test")
        ref_images, ref_labels = loader("test")
        assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
        assert images.shape[1:] == (image_size(name), image_size(name))
        assert num_classes(name) == labels.unique().numel() == 10


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def test_fashion_mnist_name_reads_the_fashion_files(tmp_path, monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for kind, array in (("images-idx3", images), ("labels-idx1", np.array([4, 0, 9], np.uint8))):
        with gzip.open(tmp_path / f"t10k-{kind}-ubyte.gz", "wb") as f:
            f.write(_idx(array))
    monkeypatch.setenv("EDGEZO_FASHION_MNIST", str(tmp_path))
    clear_cache()
    try:
        x, y = load_images("fashion-mnist", "test")
        np.testing.assert_array_equal(x.numpy(), images)
        assert y.tolist() == [4, 0, 9]
    finally:
        clear_cache()
    assert num_classes("fashion-mnist") == 10 and image_size("fashion-mnist") == 28


@pytest.mark.parametrize("call", [load_images, num_classes, image_size])
def test_unknown_dataset_lists_the_valid_names(call):
    with pytest.raises(
        ValueError, match="Unknown dataset 'cifar10'; choose one of mnist, fashion-mnist, digits"
    ):
        call("cifar10")
