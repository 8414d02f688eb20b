"""A corruption suite for grayscale images, in the spirit of CIFAR-10-C and MNIST-C.

Hendrycks & Dietterich (2019, "Benchmarking neural network robustness to common
corruptions and perturbations") and Mu & Gilmer (2019, "MNIST-C") measure a
model on a test set seen through a corrupted camera: noise, blur, weather,
digital artefacts, geometric changes, each at several severities. This module
gives 21 such corruptions at three severities (1 "easy", 2 "medium", 3 "hard")
for ``uint8 (N, H, W)`` images, white on black (MNIST's convention):

============  ==========================================================================
family        corruptions
============  ==========================================================================
noise         gaussian_noise, shot_noise, impulse_noise, speckle_noise
blur          gaussian_blur, defocus_blur, motion_blur, zoom_blur, glass_blur
weather       fog, snow, spatter
digital       contrast, brightness, pixelate, jpeg, elastic
geometric     rotate, shear, translate, scale
============  ==========================================================================

:data:`SEVERITY_PARAMETERS` lists the numbers behind every severity. Lengths
(blur radii, shifts, displacements) are in pixels of a 28x28 image and are
scaled by ``min(H, W) / 28`` for other sizes, so a corruption does the same to
the object at any resolution (on 8x8 digits a mild blur may round away).

Every corruption is a pure function of ``(images, name, severity, seed)``: its
random numbers come from a ``torch.Generator`` seeded from those three (via
``numpy.random.SeedSequence``), so the same inputs give the same bits on the
same torch build (1 and 2 threads were checked to agree). Each is vectorised
over the batch in torch (JPEG through Pillow, all images in one mosaic):
10,000 28x28 images took 0.2-1.3 s per corruption on one thread of a 2-core
machine under load 7, 0.2-3.1 s under load 11 (elastic, zoom and glass blur
are the slowest). Severity is monotone: a higher one changes the images more
(mean absolute pixel change over MNIST; the tests check it).

>>> import torch
>>> images = torch.zeros(4, 28, 28, dtype=torch.uint8)
>>> images[:, 8:20, 12:16] = 255
>>> out = corrupt(images, "fog", severity=2, seed=0)
>>> out.shape == images.shape, out.dtype, torch.equal(out, corrupt(images, "fog", 2, seed=0))
(True, torch.uint8, True)
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..extras import require
from .images import load_images

#: The three severities, by number.
SEVERITIES = (1, 2, 3)
#: Names of the severities, as the studies print them.
SEVERITY_NAMES = {1: "easy", 2: "medium", 3: "hard"}
#: Independent random streams for the two splits in :func:`load_corrupted`: ``2 * seed + stream``.
_SPLIT_STREAM = {"train": 0, "test": 1}
#: Images are 28x28 at scale 1; lengths scale with ``min(H, W) / 28``.
_REFERENCE_SIZE = 28

# A corruption works on float32 (N, 1, H, W) images in [0, 1]:
#     impl(x, parameter, generator, scale) -> float image (clipped and rounded afterwards)
Impl = Callable[[Tensor, object, torch.Generator, float], Tensor]


# -- random numbers ------------------------------------------------------------
def _uniform(generator: torch.Generator, shape: Sequence[int], low: float, high: float) -> Tensor:
    return torch.rand(tuple(shape), generator=generator).mul_(high - low).add_(low)


def _random_sign(generator: torch.Generator, n: int) -> Tensor:
    return torch.randint(0, 2, (n,), generator=generator).mul_(2).sub_(1).to(torch.float32)


# -- filters -------------------------------------------------------------------
def _conv_same(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve (N, 1, H, W) images with an odd kernel, edges replicated; same size out.

    ``kernel`` is one (kh, kw) kernel for all images or (N, kh, kw), one per image.
    The batch becomes the channels of one depthwise convolution (much faster on
    CPU than a one-channel convolution over a batch).
    """
    n, _, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    weight = kernel.to(x.dtype).reshape(-1, 1, kh, kw).expand(n, 1, kh, kw)
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    return F.conv2d(padded.view(1, n, h + kh - 1, w + kw - 1), weight, groups=n).view(n, 1, h, w)


def _blur_matrix(size: int, sigma: float) -> Tensor:
    """(size, size) matrix of a 1-D Gaussian blur (taps out to 3 sigma), edges replicated."""
    radius = math.ceil(3.0 * sigma)
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets.float() / sigma) ** 2)
    taps /= taps.sum()
    rows = torch.arange(size).view(-1, 1).expand(size, len(offsets))
    columns = (rows + offsets).clamp(0, size - 1)  # a tap beyond the edge reads the edge
    matrix = torch.zeros(size, size)
    return matrix.index_put_((rows, columns), taps.expand(size, -1), accumulate=True)


def _gaussian_filter(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``sigma`` pixels over the last two axes, edges replicated:
    ``B_h @ x @ B_w^T`` (two small matrix products, faster than a convolution on CPU)."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    return _blur_matrix(h, sigma) @ x @ _blur_matrix(w, sigma).T


def _disk_kernel(radius: float) -> Tensor:
    """An antialiased disk (a defocused lens' point spread), normalized to sum 1."""
    r = math.ceil(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    distance = torch.sqrt(t.view(-1, 1) ** 2 + t.view(1, -1) ** 2)
    disk = (radius + 0.5 - distance).clamp(0.0, 1.0)
    return disk / disk.sum()


def _line_kernels(length: float, angle: Tensor) -> Tensor:
    """(N, k, k) kernels, each a centred segment of ``length`` pixels at ``angle`` radians
    (x right, y down), drawn by bilinear splatting of points half a pixel apart; sum 1."""
    radius = math.ceil(length / 2) + 1
    samples = max(2, math.ceil(2.0 * length) + 1)
    t = torch.linspace(-length / 2, length / 2, samples)
    px = t.view(1, -1, 1) * torch.cos(angle).view(-1, 1, 1)  # (N, samples, 1)
    py = t.view(1, -1, 1) * torch.sin(angle).view(-1, 1, 1)
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    wx = (1 - (grid - px).abs()).clamp_min(0.0)  # (N, samples, k): tent weights per column
    wy = (1 - (grid - py).abs()).clamp_min(0.0)
    kernels = wy.transpose(1, 2) @ wx  # (N, k rows, k columns)
    return kernels / kernels.sum(dim=(1, 2), keepdim=True)


# -- resampling ----------------------------------------------------------------
def _affine_grid(n: int, h: int, w: int, matrix: Tensor, shift: Tensor | None = None) -> Tensor:
    """grid_sample's (N, H, W, 2) grid: output pixel p reads input ``matrix @ p + shift``.

    Coordinates are in pixels from the image centre, x right and y down;
    ``matrix`` is (N, 2, 2) or (2, 2), ``shift`` (N, 2) or None.
    """
    matrix = matrix.to(torch.float32).expand(n, 2, 2)
    shift = torch.zeros(n, 2) if shift is None else shift.to(torch.float32)
    to_unit = torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1)  # pixels -> grid_sample units
    theta = torch.cat([matrix, shift.unsqueeze(-1)], dim=2) * to_unit  # (N, 2, 3)
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(h * w, 3)
    # one GEMM for the whole batch; the view keeps it free of a copy
    return (points @ theta.reshape(2 * n, 3).T).view(h, w, n, 2).permute(2, 0, 1, 3)


def _warp(x: Tensor, matrix: Tensor, shift: Tensor | None = None, padding: str = "zeros") -> Tensor:
    """Bilinear affine warp (see :func:`_affine_grid`); uncovered pixels are black by default."""
    n, _, h, w = x.shape
    grid = _affine_grid(n, h, w, matrix, shift)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _rotation(degrees: Tensor) -> Tensor:
    """(N, 2, 2) source matrices that show the image turned counter-clockwise by ``degrees``."""
    a = torch.deg2rad(degrees.to(torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _displace(x: Tensor, offsets: Tensor, mode: str, padding: str) -> Tensor:
    """Each output pixel reads the input ``offsets`` (N, H, W, 2) pixels (x, y) away from itself."""
    n, _, h, w = x.shape
    grid = _affine_grid(n, h, w, torch.eye(2)) + offsets * torch.tensor([2.0 / w, 2.0 / h])
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


def _fractal_noise(generator: torch.Generator, n: int, h: int, w: int, decay: float) -> Tensor:
    """Smooth clouds: octaves of upsampled Gaussian noise (2x2, 4x4, ... cells),
    amplitude ``decay ** octave``, rescaled to [0, 1] per image. Shape (n, 1, h, w)."""
    total = torch.zeros(n, 1, h, w)
    cells, amplitude = 2, 1.0
    while cells <= max(h, w):
        coarse = torch.randn((n, 1, cells, cells), generator=generator)
        total += amplitude * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        cells, amplitude = 2 * cells, amplitude * decay
    low = total.amin(dim=(2, 3), keepdim=True)
    high = total.amax(dim=(2, 3), keepdim=True)
    return (total - low) / (high - low).clamp_min(1e-12)


def _jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG encode + decode of uint8 (N, H, W) images, all in one mosaic.

    JPEG codes 8x8 blocks independently (up to lossless entropy coding), and
    libjpeg pads a partial block by repeating the edge pixels; so images
    edge-padded to multiples of 8 and tiled into one picture come back exactly
    as if each had been compressed alone (the tests check it), at a fraction of
    the cost of 10,000 small files.
    """
    Image = require("PIL.Image", "studies", needed_by="The jpeg corruption")
    n, h, w = pixels.shape
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    columns = max(1, min(n, 65000 // pw, math.ceil(math.sqrt(n))))
    rows = -(-n // columns)
    padded = np.pad(pixels, ((0, rows * columns - n), (0, ph - h), (0, pw - w)), mode="edge")
    mosaic = padded.reshape(rows, columns, ph, pw).transpose(0, 2, 1, 3).reshape(rows * ph, -1)
    buffer = io.BytesIO()
    Image.fromarray(mosaic).save(buffer, format="JPEG", quality=quality)
    decoded = np.array(Image.open(buffer).convert("L"))
    tiles = decoded.reshape(rows, ph, columns, pw).transpose(0, 2, 1, 3).reshape(-1, ph, pw)
    return tiles[:n, :h, :w]


# -- the corruptions (x: float32 (N, 1, H, W) in [0, 1]) ------------------------
def _gaussian_noise(x: Tensor, sigma: float, g: torch.Generator, scale: float) -> Tensor:
    """Sensor read noise: ``x + N(0, sigma^2)`` per pixel."""
    return x + sigma * torch.randn(x.shape, generator=g)


def _shot_noise(x: Tensor, photons: float, g: torch.Generator, scale: float) -> Tensor:
    """Photon counting: ``Poisson(photons * x) / photons`` (dark pixels stay dark)."""
    return torch.poisson(x * photons, generator=g) / photons


def _impulse_noise(x: Tensor, fraction: float, g: torch.Generator, scale: float) -> Tensor:
    """Salt and pepper: a ``fraction`` of the pixels set to 0 or 1 (half each)."""
    u = torch.rand(x.shape, generator=g)
    x = x.masked_fill(u < fraction / 2, 0.0)
    return x.masked_fill(u > 1 - fraction / 2, 1.0)


def _speckle_noise(x: Tensor, sigma: float, g: torch.Generator, scale: float) -> Tensor:
    """Multiplicative noise: ``x * (1 + N(0, sigma^2))``."""
    return x * (1 + sigma * torch.randn(x.shape, generator=g))


def _gaussian_blur(x: Tensor, sigma: float, g: torch.Generator, scale: float) -> Tensor:
    """Gaussian blur of ``sigma`` pixels."""
    return _gaussian_filter(x, sigma * scale)


def _defocus_blur(x: Tensor, radius: float, g: torch.Generator, scale: float) -> Tensor:
    """An out-of-focus lens: convolution with an antialiased disk of ``radius`` pixels."""
    return _conv_same(x, _disk_kernel(radius * scale))


def _motion_blur(x: Tensor, length: float, g: torch.Generator, scale: float) -> Tensor:
    """Camera shake: the mean of the image along a line of ``length`` pixels, random direction."""
    angle = _uniform(g, (x.shape[0],), 0.0, math.pi)
    return _conv_same(x, _line_kernels(length * scale, angle))


def _zoom_blur(x: Tensor, zoom: float, g: torch.Generator, scale: float) -> Tensor:
    """Zooming during the exposure: the mean of the image enlarged by 1 .. ``zoom``."""
    n, _, h, w = x.shape
    steps = max(2, math.ceil(2 * (zoom - 1) * max(h, w) / 2) + 1)  # outer pixels move <= 0.5 px
    total = torch.zeros_like(x)
    for z in torch.linspace(1.0, zoom, steps).tolist():
        grid = _affine_grid(1, h, w, torch.eye(2) / z).expand(n, h, w, 2)  # one grid for all
        total += F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return total / steps


def _glass_blur(x: Tensor, parameter: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Frosted glass: blur by ``sigma``, move every pixel up to ``jitter`` pixels at random
    (rounded to whole pixels), blur again."""
    sigma, jitter = parameter
    n, _, h, w = x.shape
    x = _gaussian_filter(x, sigma * scale)
    offsets = _uniform(g, (n, h, w, 2), -jitter * scale, jitter * scale)
    return _gaussian_filter(_displace(x, offsets, "nearest", "border"), sigma * scale)


def _fog(x: Tensor, density: float, g: torch.Generator, scale: float) -> Tensor:
    """Fog: smooth fractal clouds ``f`` added and the range compressed, ``(x + d f) / (1 + d)``."""
    n, _, h, w = x.shape
    return (x + density * _fractal_noise(g, n, h, w, decay=0.6)) / (1 + density)


def _snow(x: Tensor, parameter: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Falling snow: flakes on a ``density`` share of the pixels (brightness 0.6..1), drawn
    as streaks of ``length`` pixels in a random steep direction, over the image."""
    density, length = parameter
    flakes = (torch.rand(x.shape, generator=g) < density) * _uniform(g, x.shape, 0.6, 1.0)
    angle = _uniform(g, (x.shape[0],), math.radians(60), math.radians(120))
    kernels = _line_kernels(length * scale, angle)
    kernels = kernels / kernels.amax(dim=(1, 2), keepdim=True)  # a streak as bright as its flake
    return torch.maximum(x, _conv_same(flakes, kernels).clamp_(max=1.0))


def _spatter(x: Tensor, coverage: float, g: torch.Generator, scale: float) -> Tensor:
    """Mud spatter: grey blobs (smooth noise above a threshold) over about ``coverage``
    of the image, 80% opaque."""
    field = _gaussian_filter(torch.randn(x.shape, generator=g), 1.5 * scale)
    mean = field.mean(dim=(2, 3), keepdim=True)
    std = field.std(dim=(2, 3), keepdim=True, correction=0).clamp_min(1e-12)
    threshold = float(torch.special.ndtri(torch.tensor(1.0 - coverage)))
    mask = (((field - mean) / std - threshold) * 4.0).clamp(0.0, 1.0) * 0.8  # soft edges
    return x * (1 - mask) + 0.5 * mask


def _contrast(x: Tensor, factor: float, g: torch.Generator, scale: float) -> Tensor:
    """Lower contrast about each image's mean ``m``: ``(x - m) * factor + m``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _brightness(x: Tensor, offset: float, g: torch.Generator, scale: float) -> Tensor:
    """Overexposure: ``x + offset`` (then clipped to [0, 1])."""
    return x + offset


def _pixelate(x: Tensor, factor: float, g: torch.Generator, scale: float) -> Tensor:
    """A low-resolution sensor: box-downsample to ``factor`` of the size, upsample by nearest."""
    h, w = x.shape[-2:]
    small = F.interpolate(
        x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area"
    )
    return F.interpolate(small, size=(h, w), mode="nearest")


def _jpeg(x: Tensor, quality: int, g: torch.Generator, scale: float) -> Tensor:
    """JPEG compression at ``quality`` (Pillow's libjpeg, baseline, grayscale)."""
    pixels = x[:, 0].clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return torch.from_numpy(_jpeg_roundtrip(pixels, quality)).unsqueeze(1).float() / 255


def _elastic(x: Tensor, parameter: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Elastic distortion (Simard et al. 2003): a smooth random displacement field
    (Gaussian noise blurred by ``smoothness`` pixels) of RMS length ``displacement`` pixels."""
    displacement, smoothness = parameter
    n, _, h, w = x.shape
    field = _gaussian_filter(torch.randn((n, 2, h, w), generator=g), smoothness * scale)
    rms = field.pow(2).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True).sqrt()
    field = field * (displacement * scale / rms.clamp_min(1e-12))
    return _displace(x, field.permute(0, 2, 3, 1), "bilinear", "zeros")


def _rotate(x: Tensor, degrees: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Rotation by a random angle of ``degrees[0]`` to ``degrees[1]``, either direction."""
    n = x.shape[0]
    angle = _uniform(g, (n,), *degrees) * _random_sign(g, n)
    return _warp(x, _rotation(angle))


def _shear(x: Tensor, amount: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Horizontal shear ``x' = x + s y`` with ``|s|`` from ``amount[0]`` to ``amount[1]``."""
    n = x.shape[0]
    s = _uniform(g, (n,), *amount) * _random_sign(g, n)
    matrix = torch.eye(2).repeat(n, 1, 1)
    matrix[:, 0, 1] = -s
    return _warp(x, matrix)


def _translate(x: Tensor, distance: tuple, g: torch.Generator, scale: float) -> Tensor:
    """A shift of ``distance[0]`` to ``distance[1]`` pixels in a random direction."""
    n = x.shape[0]
    length = _uniform(g, (n,), *distance) * scale
    angle = _uniform(g, (n,), 0.0, 2 * math.pi)
    shift = -torch.stack([torch.cos(angle), torch.sin(angle)], -1) * length.unsqueeze(-1)
    return _warp(x, torch.eye(2), shift)


def _scale(x: Tensor, factor: tuple, g: torch.Generator, scale: float) -> Tensor:
    """Shrinking about the centre by a random factor from ``factor[0]`` to ``factor[1]``."""
    n = x.shape[0]
    f = _uniform(g, (n,), *factor)
    return _warp(x, torch.eye(2) / f.view(n, 1, 1))


#: name -> (implementation, parameter of severities 1, 2, 3).
_REGISTRY: dict[str, tuple[Impl, tuple]] = {
    "gaussian_noise": (_gaussian_noise, (0.1, 0.2, 0.35)),
    "shot_noise": (_shot_noise, (60.0, 20.0, 6.0)),
    "impulse_noise": (_impulse_noise, (0.03, 0.08, 0.16)),
    "speckle_noise": (_speckle_noise, (0.25, 0.5, 0.9)),
    "gaussian_blur": (_gaussian_blur, (0.7, 1.1, 1.6)),
    "defocus_blur": (_defocus_blur, (1.0, 1.6, 2.4)),
    "motion_blur": (_motion_blur, (3.0, 6.0, 9.0)),
    "zoom_blur": (_zoom_blur, (1.12, 1.25, 1.4)),
    "glass_blur": (_glass_blur, ((0.5, 1.0), (0.6, 1.5), (0.7, 2.5))),
    "fog": (_fog, (0.5, 1.0, 2.0)),
    "snow": (_snow, ((0.015, 3.0), (0.03, 5.0), (0.05, 7.0))),
    "spatter": (_spatter, (0.06, 0.12, 0.22)),
    "contrast": (_contrast, (0.6, 0.4, 0.2)),
    "brightness": (_brightness, (0.2, 0.35, 0.55)),
    "pixelate": (_pixelate, (0.6, 0.45, 0.3)),
    "jpeg": (_jpeg, (30, 15, 6)),
    "elastic": (_elastic, ((1.0, 3.0), (1.8, 3.0), (2.8, 3.0))),
    "rotate": (_rotate, ((10.0, 20.0), (20.0, 35.0), (35.0, 50.0))),
    "shear": (_shear, ((0.15, 0.3), (0.3, 0.5), (0.5, 0.7))),
    "translate": (_translate, ((1.5, 3.0), (3.0, 4.5), (4.5, 6.0))),
    "scale": (_scale, ((0.75, 0.85), (0.6, 0.75), (0.45, 0.6))),
}

#: name -> its parameter at severities 1, 2, 3 (units in each function's docstring).
SEVERITY_PARAMETERS: dict[str, tuple] = {name: p for name, (_, p) in _REGISTRY.items()}
#: Corruptions that draw random numbers (the others ignore the seed).
RANDOM_CORRUPTIONS = frozenset(_REGISTRY) - {
    "gaussian_blur",
    "defocus_blur",
    "zoom_blur",
    "contrast",
    "brightness",
    "pixelate",
    "jpeg",
}


# -- public API ----------------------------------------------------------------
def _check_images(images: Tensor, caller: str) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 3:
        got = (
            f"{images.dtype} of shape {tuple(images.shape)}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise TypeError(f"{caller} expects uint8 images of shape (N, H, W), got {got}")


def _check(name: str, severity: int, seed: int) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown corruption {name!r}; choose one of {', '.join(_REGISTRY)}")
    if severity not in SEVERITIES or isinstance(severity, bool):
        raise ValueError(
            f"severity must be one of {SEVERITIES} (1 easy, 2 medium, 3 hard), got {severity!r}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _on_floats(images: Tensor, transform: Callable[[Tensor], Tensor]) -> Tensor:
    """``uint8 (N, H, W)`` -> float (N, 1, H, W) in [0, 1] -> ``transform`` -> clip, round, uint8."""
    x = images.detach().to("cpu", torch.float32).div(255.0).unsqueeze(1)
    if images.numel():
        x = transform(x)
    out = x.squeeze(1).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return out.to(images.device)


def generator_for(name: str, severity: int, seed: int) -> torch.Generator:
    """The CPU generator of one (corruption, severity, seed): seeded by
    ``SeedSequence([seed, crc32(name), severity])``, so every triple has its own stream."""
    entropy = [int(seed), zlib.crc32(name.encode()), int(severity)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Apply the corruption ``name`` at ``severity`` (1, 2 or 3) to ``uint8 (N, H, W)`` images.

    Returns ``uint8`` images of the same shape (and device), rounded from the
    corrupted float image clipped to ``[0, 1]``; deterministic from
    ``(images, name, severity, seed)``.

    Raises:
        ValueError: unknown name (the message lists the valid ones), severity or seed.
        TypeError: images that are not ``uint8 (N, H, W)``.
    """
    _check(name, severity, seed)
    _check_images(images, "corrupt")
    impl, parameters = _REGISTRY[name]
    scale = min(images.shape[-2:]) / _REFERENCE_SIZE
    generator = generator_for(name, severity, seed)
    return _on_floats(images, lambda x: impl(x, parameters[severity - 1], generator, scale))


def rotate(images: Tensor, degrees: float | Tensor) -> Tensor:
    """Turn ``uint8 (N, H, W)`` images counter-clockwise (as displayed) by ``degrees`` about
    their centre: bilinear, uncovered pixels black. ``degrees``: one angle or one per image.

    The ``rotate`` corruption is this with random angles; 90 degrees equals ``torch.rot90``.
    """
    _check_images(images, "rotate")
    angle = torch.as_tensor(degrees, dtype=torch.float32).expand(images.shape[0])
    return _on_floats(images, lambda x: _warp(x, _rotation(angle)))


def _bind(name: str) -> Callable[..., Tensor]:
    impl = _REGISTRY[name][0]

    def apply(images: Tensor, severity: int, seed: int = 0) -> Tensor:
        return corrupt(images, name, severity, seed)

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = (
        f"{impl.__doc__}\n\n``{name}(images, severity, seed=0)`` is ``corrupt(images, "
        f"{name!r}, severity, seed)``; parameter per severity: {SEVERITY_PARAMETERS[name]}."
    )
    return apply


#: name -> ``f(images uint8 (N, H, W), severity, seed=0) -> uint8``, same as :func:`corrupt`.
CORRUPTIONS: dict[str, Callable[..., Tensor]] = {name: _bind(name) for name in _REGISTRY}


def load_corrupted(
    dataset: str, split: str, name: str, severity: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A dataset split (see ``edgezo.data.images.DATASETS``) under one corruption; labels unchanged.

    The train and test splits draw independent random numbers (seeds
    ``2 * seed`` and ``2 * seed + 1``, as ``load_shifted_mnist``), so a model
    adapted on corrupted training images is tested on noise it has not seen.
    """
    _check(name, severity, seed)
    images, labels = load_images(dataset, split)
    return corrupt(images, name, severity, seed=2 * int(seed) + _SPLIT_STREAM[split]), labels


def gallery(images: Tensor, path: str | os.PathLike[str], seed: int = 0) -> None:
    """Write a PNG grid: one row per corruption, columns clean and severities 1, 2, 3.

    Row ``r`` shows ``images[r % N]`` (``uint8 (N, H, W)``), so a few different
    images make a varied gallery. The grid is one mosaic drawn with
    matplotlib's object API (no pyplot, no change of backend).
    """
    Figure = require("matplotlib.figure", "studies").Figure

    _check_images(images, "gallery")
    if images.shape[0] == 0:
        raise ValueError("gallery needs at least one image")
    names = list(_REGISTRY)
    h, w = images.shape[-2:]
    gap = max(1, h // 14)
    cell_h, cell_w = h + gap, w + gap
    mosaic = np.full((len(names) * cell_h + gap, 4 * cell_w + gap), 128, dtype=np.uint8)
    for row, name in enumerate(names):
        image = images[row % images.shape[0]].unsqueeze(0).cpu()
        cells = [image, *(corrupt(image, name, s, seed) for s in SEVERITIES)]
        for column, cell in enumerate(cells):
            top, left = gap + row * cell_h, gap + column * cell_w
            mosaic[top : top + h, left : left + w] = cell[0].numpy()
    inch = 0.75 / cell_w  # inches per mosaic pixel: a cell is 0.75 inch wide
    width, height = mosaic.shape[1] * inch, mosaic.shape[0] * inch
    margin_left, margin_top, margin = 1.3, 0.35, 0.05
    figure = Figure(figsize=(width + margin_left + margin, height + margin_top + margin))
    fig_w, fig_h = figure.get_size_inches()
    ax = figure.add_axes((margin_left / fig_w, margin / fig_h, width / fig_w, height / fig_h))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([gap + row * cell_h + h / 2 for row in range(len(names))], names, fontsize=8)
    columns = ["clean", *(f"{s} {SEVERITY_NAMES[s]}" for s in SEVERITIES)]
    ax.set_xticks([gap + c * cell_w + w / 2 for c in range(4)], columns, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    figure.savefig(path, format="png", dpi=100)
