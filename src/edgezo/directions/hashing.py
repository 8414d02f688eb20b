"""The integer hashing behind the counter sources and the hardware-RNG seeds (a leaf module).

Pure functions of integers, shared by :mod:`edgezo.directions.counter` (the
torch/NumPy path), :mod:`edgezo.directions.hwrng` (register seeds) and the Triton
kernels of :mod:`edgezo.passes` (the key tables): one definition of the bits.
See :mod:`edgezo.directions.counter` for how the words become ``z``.
"""

from __future__ import annotations

import numpy as np

from .base import CHUNK

MASK64 = (1 << 64) - 1
_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)


def splitmix64(x: int) -> int:
    """One SplitMix64 output for state ``x`` (Steele et al. 2014)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def keys(seed: int, step: int, query: int, block: int) -> tuple[int, int]:
    """The two 32-bit keys of perturbation ``(step, query)`` for indices ``block * 2**32 + [0, 2**32)``."""
    h = splitmix64(seed & MASK64)
    for word in (step, query, block):
        h = splitmix64(h ^ (word & MASK64))
    return h & 0xFFFFFFFF, h >> 32


def lowbias32_(x: np.ndarray, tmp: np.ndarray) -> None:
    """In-place ``lowbias32`` on a uint32 array (numpy: wrapping multiply, logical shifts)."""
    np.right_shift(x, 16, out=tmp)
    x ^= tmp
    x *= _M1
    np.right_shift(x, 15, out=tmp)
    x ^= tmp
    x *= _M2
    np.right_shift(x, 16, out=tmp)
    x ^= tmp


def hash_words(seed: int, step: int, query: int, offset: int, n: int) -> np.ndarray:
    """The 32-bit words ``x`` of step 2 for indices ``offset .. offset+n-1`` (uint32)."""
    out = np.empty(n, dtype=np.uint32)
    tmp = np.empty(min(n, CHUNK), dtype=np.uint32)
    start = 0
    while start < n:
        index = offset + start
        low = index & 0xFFFFFFFF
        stop = min(n, start + CHUNK, start + (1 << 32) - low)
        k1, k2 = keys(seed, step, query, index >> 32)
        x, t = out[start:stop], tmp[: stop - start]
        x[:] = np.arange(low, low + stop - start, dtype=np.uint32)
        x ^= np.uint32(k1)
        lowbias32_(x, t)
        x ^= np.uint32(k2)
        lowbias32_(x, t)
        start = stop
    return out


def symmetric_unit(words: np.ndarray) -> np.ndarray:
    """Step 3: ``u = (2 (x >> 8) + 1 - 2**24) / 2**24`` in float32, exact."""
    u = (words >> np.uint32(8)).astype(np.float32)
    u *= np.float32(2.0**-23)
    u -= np.float32(1 - 2.0**-24)  # both terms are multiples of 2**-24, |u| < 1: exact
    return u
