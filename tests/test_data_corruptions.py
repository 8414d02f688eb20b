"""edgezo.data.corruptions: determinism, severity order, and independent reference formulas."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.ndimage
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgezo.data.corruptions import (
    CORRUPTIONS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    SEVERITY_NAMES,
    SEVERITY_PARAMETERS,
    corrupt,
    gallery,
    load_corrupted,
    rotate,
)
from edgezo.data.images import load_images
from edgezo.data.mnist import load_mnist

NAMES = sorted(CORRUPTIONS)


@pytest.fixture(scope="module")
def digits28() -> torch.Tensor:
    """200 MNIST test digits (28x28): the images the suite is tuned for."""
    return load_mnist("test")[0][:200]


def mean_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def grey(value: int, n: int = 4, side: int = 28) -> torch.Tensor:
    return torch.full((n, side, side), value, dtype=torch.uint8)


def test_suite_covers_the_cifar_c_families():
    required = {
        "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",  # noise
        "gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur", "glass_blur",  # blur
        "fog", "snow", "spatter",  # weather
        "contrast", "brightness", "pixelate", "jpeg", "elastic",  # digital
        "rotate", "shear", "translate", "scale",  # geometric
    }  # fmt: skip
    assert required <= set(CORRUPTIONS) and len(CORRUPTIONS) >= 15
    assert SEVERITIES == (1, 2, 3)
    assert [SEVERITY_NAMES[s] for s in SEVERITIES] == ["easy", "medium", "hard"]
    assert all(len(SEVERITY_PARAMETERS[name]) == 3 for name in CORRUPTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_corruption_is_deterministic_changes_the_image_and_orders_severities(name, digits28):
    changes = []
    for severity in SEVERITIES:
        out = corrupt(digits28, name, severity, seed=3)
        assert out.dtype == torch.uint8 and out.shape == digits28.shape
        assert torch.equal(out, CORRUPTIONS[name](digits28, severity, seed=3))  # same bits
        other_seed = corrupt(digits28, name, severity, seed=4)
        assert torch.equal(out, other_seed) == (name not in RANDOM_CORRUPTIONS)
        changes.append(mean_change(out, digits28))
    assert changes[0] > 1.0, f"{name} at severity 1 barely changes the images: {changes}"
    assert changes[0] < changes[1] < changes[2], f"{name}: mean |change| {changes}"


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    severity=st.sampled_from(SEVERITIES),
    n=st.integers(0, 3),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_any_size_keeps_shape_and_dtype_and_is_reproducible(name, severity, n, h, w, seed):
    images = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, h, w), np.uint8))
    out = corrupt(images, name, severity, seed=seed)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, corrupt(images.clone(), name, severity, seed=seed))


def test_input_is_not_modified(digits28):
    before = digits28.clone()
    for name in NAMES:
        corrupt(digits28, name, 3)
    assert torch.equal(digits28, before)


# -- reference formulas ------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), severity=st.sampled_from(SEVERITIES))
def test_contrast_and_brightness_follow_the_numpy_formulas(seed, severity):
    images = np.random.default_rng(seed).integers(0, 256, (3, 12, 9), np.uint8)
    x = images / 255.0
    c = SEVERITY_PARAMETERS["contrast"][severity - 1]
    m = x.mean(axis=(1, 2), keepdims=True)
    contrast = np.clip((x - m) * c + m, 0, 1) * 255
    b = SEVERITY_PARAMETERS["brightness"][severity - 1]
    brightness = np.clip(x + b, 0, 1) * 255
    for name, exact in (("contrast", contrast), ("brightness", brightness)):
        out = corrupt(torch.from_numpy(images), name, severity).numpy().astype(float)
        # float32 vs float64 may only differ where the exact value is a rounding tie
        # (x.5 up to float32 error): there either neighbour is a correct rounding
        on_tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
        assert np.array_equal(out[~on_tie], np.round(exact[~on_tie]))
        assert np.all(
            (out[on_tie] == np.floor(exact[on_tie])) | (out[on_tie] == np.ceil(exact[on_tie]))
        )


@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_blur_matches_scipy_with_replicated_edges(severity, digits28):
    sigma = SEVERITY_PARAMETERS["gaussian_blur"][severity - 1]
    x = digits28[:20].numpy() / 255.0
    radius = int(np.ceil(3 * sigma))
    reference = np.stack(
        [scipy.ndimage.gaussian_filter(i, sigma, mode="nearest", radius=radius) for i in x]
    )
    out = corrupt(digits28[:20], "gaussian_blur", severity).numpy().astype(float)
    assert np.abs(out - np.round(reference * 255)).max() <= 1


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 7),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    severity=st.sampled_from(SEVERITIES),
    seed=st.integers(0, 2**32),
)
def test_jpeg_equals_pillow_on_each_image_alone(n, h, w, severity, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, h, w), np.uint8)
    images = scipy.ndimage.uniform_filter(images, size=(1, 3, 3))  # some structure to keep
    quality = SEVERITY_PARAMETERS["jpeg"][severity - 1]
    reference = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        reference.append(np.asarray(Image.open(buffer)))
    out = corrupt(torch.from_numpy(images), "jpeg", severity).numpy()
    np.testing.assert_array_equal(out, np.stack(reference))


@settings(max_examples=20, deadline=None)
@given(side=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_rotate_by_right_angles_equals_rot90(side, seed):
    images = torch.from_numpy(
        np.random.default_rng(seed).integers(0, 256, (2, side, side), np.uint8)
    )
    for degrees, k in ((90, 1), (-90, -1), (180, 2), (270, 3), (0, 0)):
        assert torch.equal(rotate(images, degrees), torch.rot90(images, k, dims=(-2, -1)))


def test_rotate_corruption_turns_by_its_severity_range(digits28):
    # the best right-angle-free match: every image equals rotate() at some angle in the range
    out = corrupt(digits28[:5], "rotate", 3, seed=0)
    low, high = SEVERITY_PARAMETERS["rotate"][2]
    angles = np.concatenate([np.linspace(-high, -low, 61), np.linspace(low, high, 61)])
    for image, result in zip(digits28[:5], out, strict=True):
        candidates = rotate(image.expand(len(angles), 28, 28), torch.tensor(angles))
        errors = (candidates.double() - result.double()).abs().mean(dim=(1, 2))
        assert float(errors.min()) < 1.5  # within the 0.25 degree grid
        others = rotate(image.expand(3, 28, 28), torch.tensor([0.0, low / 2, -low / 2]))
        assert float((others.double() - result.double()).abs().mean(dim=(1, 2)).min()) > 5


def test_noise_statistics_match_their_parameters():
    images = grey(128, n=16)
    x = 128 / 255
    sigma = SEVERITY_PARAMETERS["gaussian_noise"][0]
    noise = (corrupt(images, "gaussian_noise", 1).double() - 128) / 255
    assert abs(float(noise.mean())) < 0.005 and abs(float(noise.std()) / sigma - 1) < 0.03
    photons = SEVERITY_PARAMETERS["shot_noise"][0]
    shot = corrupt(images, "shot_noise", 1).double() / 255
    # Poisson(photons x) / photons: mean x, variance x / photons
    assert abs(float(shot.mean()) - x) < 0.005
    assert abs(float(shot.var()) / (x / photons) - 1) < 0.05
    fraction = SEVERITY_PARAMETERS["impulse_noise"][2]
    impulse = corrupt(images, "impulse_noise", 3)
    salt, pepper = float((impulse == 255).double().mean()), float((impulse == 0).double().mean())
    assert abs(salt - fraction / 2) < 0.006 and abs(pepper - fraction / 2) < 0.006
    assert bool(((impulse == 128) | (impulse == 0) | (impulse == 255)).all())


def test_lengths_scale_with_the_image_size(digits28):
    # a blur of sigma pixels at 28x28 is a blur of 2 sigma pixels on the image upsampled 2x
    big = digits28[:10].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    sigma = SEVERITY_PARAMETERS["gaussian_blur"][1]
    x = big.numpy() / 255.0
    reference = np.stack(
        [
            scipy.ndimage.gaussian_filter(
                i, 2 * sigma, mode="nearest", radius=int(np.ceil(6 * sigma))
            )
            for i in x
        ]
    )
    out = corrupt(big, "gaussian_blur", 2).numpy().astype(float)
    assert np.abs(out - np.round(reference * 255)).max() <= 1


# -- convenience and errors ------------------------------------------------------
def test_load_corrupted_uses_an_independent_stream_per_split():
    for split, stream in (("train", 0), ("test", 1)):
        images, labels = load_corrupted("digits", split, "elastic", 2, seed=5)
        clean, clean_labels = load_images("digits", split)
        assert torch.equal(labels, clean_labels)
        assert torch.equal(images, corrupt(clean, "elastic", 2, seed=10 + stream))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"name": "frost"},
            ValueError,
            r"Unknown corruption 'frost'; choose one of gaussian_noise, shot_noise",
        ),
        (
            {"severity": 4},
            ValueError,
            r"severity must be one of \(1, 2, 3\) \(1 easy, 2 medium, 3 hard\), got 4",
        ),
        ({"severity": 0}, ValueError, r"severity must be one of"),
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer, got -1"),
        (
            {"images": torch.zeros(2, 8, 8)},
            TypeError,
            r"corrupt expects uint8 images of shape \(N, H, W\), got torch.float32",
        ),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, error, match):
    arguments = {"images": grey(0, 1, 8), "name": "fog", "severity": 1, "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        corrupt(**arguments)


def test_load_corrupted_checks_the_corruption_before_loading():
    with pytest.raises(ValueError, match="Unknown corruption 'hail'"):
        load_corrupted("mnist", "train", "hail", 1)


def test_gallery_writes_a_png(tmp_path):
    images, _ = load_images("digits", "test")
    path = tmp_path / "gallery.png"
    gallery(images[:3], path, seed=1)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    picture = np.asarray(Image.open(path))
    # one row per corruption, taller than wide, and not blank
    assert picture.shape[0] > picture.shape[1] > 100
    assert picture.std() > 10
