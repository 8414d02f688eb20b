"""Image datasets by name, and the one conversion from stored images to model inputs.

Every dataset here is stored as ``uint8 (N, H, W)`` grayscale images (white on
black) with ``int64 (N,)`` labels; :func:`load_images` picks one by name.
:func:`as_input` turns such images into what the backbones take: ``float32
(N, 1, size, size)`` in ``[0, 1]``, resized when the sizes differ (e.g. the 8x8
digits shown to a backbone pretrained on 28x28 MNIST).

>>> import torch
>>> x = as_input(torch.full((2, 8, 8), 255, dtype=torch.uint8), size=28)
>>> tuple(x.shape), x.dtype, float(x.min()), float(x.max())
((2, 1, 28, 28), torch.float32, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .digits import load_digits
from .mnist import load_fashion_mnist, load_mnist

_LOADERS: dict[str, Callable[[str], tuple[Tensor, Tensor]]] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
}
_NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "digits": 10}
_IMAGE_SIZES = {"mnist": 28, "fashion-mnist": 28, "digits": 8}

#: Names accepted by :func:`load_images`.
DATASETS: tuple[str, ...] = tuple(_LOADERS)


def _check_name(name: str) -> str:
    if name not in _LOADERS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def load_images(name: str, split: str = "train") -> tuple[Tensor, Tensor]:
    """``(images uint8 (N, H, W), labels int64 (N,))`` of the dataset ``name`` (see DATASETS).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or split.
        DatasetNotFoundError: if the dataset's package is not installed.
    """
    return _LOADERS[_check_name(name)](split)


def num_classes(name: str) -> int:
    """Number of classes of the dataset ``name``."""
    return _NUM_CLASSES[_check_name(name)]


def image_size(name: str) -> int:
    """Side length in pixels of the dataset's (square) images: 28 or 8."""
    return _IMAGE_SIZES[_check_name(name)]


def as_input(images: Tensor, size: int | None = None) -> Tensor:
    """``uint8 (N, H, W)`` images -> ``float32 (N, 1, size, size)`` in ``[0, 1]`` (pixel / 255).

    Args:
        images: grayscale ``uint8`` images.
        size: output side length; ``None`` keeps ``(H, W)``. A different size is
            reached by bilinear interpolation with antialiasing (a triangle
            filter, as Pillow's ``BILINEAR`` resize), which keeps a constant image
            constant and every value inside ``[0, 1]``.
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 3:
        got = (
            f"{images.dtype} of shape {tuple(images.shape)}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise TypeError(f"as_input expects uint8 images of shape (N, H, W), got {got}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of pixels or None, got {size}")
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0)
