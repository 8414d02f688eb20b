"""Offline datasets and domain shifts (see DATA.md for where each dataset comes from).

>>> from edgezo.data import load_mnist
>>> images, labels = load_mnist("test")  # doctest: +SKIP
>>> images.shape, images.dtype, labels.dtype  # doctest: +SKIP
(torch.Size([10000, 28, 28]), torch.uint8, torch.int64)
"""

from .idx import parse_idx, read_idx
from .mnist import (
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    clear_cache,
    fashion_mnist_dir,
    load_fashion_mnist,
    load_mnist,
    mnist_path,
)
from .shift import SHIFTS, ink_on_paper, load_shifted_mnist, washed_out

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SHIFTS",
    "DatasetNotFoundError",
    "clear_cache",
    "fashion_mnist_dir",
    "ink_on_paper",
    "load_fashion_mnist",
    "load_mnist",
    "load_shifted_mnist",
    "mnist_path",
    "parse_idx",
    "read_idx",
    "washed_out",
]
