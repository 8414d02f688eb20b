"""Counter-based sources: Gaussian, Rademacher and Uniform ``z`` hashed from ``(seed, step, query, i)``.

Every element is computed alone from its global index (NumPy uint32 arithmetic
on the CPU, single-threaded and about 2x faster than torch ops here), so the numbers do not
depend on chunking, tensor boundaries, thread count or device: a GPU kernel can
compute the same bits in registers (no stored ``z``, no global RNG state). This
replaces MeZO's "re-seed the global RNG and call ``torch.normal`` per tensor",
which is fragile (PEERS.md: a row-by-row draw differs from a whole-tensor draw).

Bit level, for perturbation ``(step, query)`` and global index ``i``:

1. ``k1, k2 = keys(seed, step, query, i >> 32)`` — two 32-bit words from
   SplitMix64 over the four integers (computed once per piece, in Python);
2. ``x = lowbias32(lowbias32((i mod 2**32) ^ k1) ^ k2)``, where ``lowbias32``
   is C. Wellons' 32-bit integer hash
   (``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16``,
   all modulo 2**32);
3. ``v = x >> 8`` (24 bits) and ``u = (2 v + 1 - 2**24) / 2**24``, an odd
   multiple of ``2**-24`` in ``(-1, 1)``: symmetric, mean exactly zero, exact in
   float32;
4. Uniform: ``sqrt(3) * u`` (variance ``1 - 4**-24``); Gaussian:
   ``sqrt(2) * erfinv(u)`` (inverse-CDF, float32; tails are cut at 5.46 sigma);
   Rademacher: ``+1`` if bit 31 of ``x`` is 0 else ``-1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import kernels
from .base import CHUNK, Directions, as_device

_MASK64 = (1 << 64) - 1
_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)


def _splitmix64(x: int) -> int:
    """One SplitMix64 output for state ``x`` (Steele et al. 2014)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def keys(seed: int, step: int, query: int, block: int) -> tuple[int, int]:
    """The two 32-bit keys of perturbation ``(step, query)`` for indices ``block * 2**32 + [0, 2**32)``."""
    h = _splitmix64(seed & _MASK64)
    for word in (step, query, block):
        h = _splitmix64(h ^ (word & _MASK64))
    return h & 0xFFFFFFFF, h >> 32


def _lowbias32_(x: np.ndarray, tmp: np.ndarray) -> None:
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
        _lowbias32_(x, t)
        x ^= np.uint32(k2)
        _lowbias32_(x, t)
        start = stop
    return out


def symmetric_unit(words: np.ndarray) -> np.ndarray:
    """Step 3: ``u = (2 (x >> 8) + 1 - 2**24) / 2**24`` in float32, exact."""
    u = (words >> np.uint32(8)).astype(np.float32)
    u *= np.float32(2.0**-23)
    u -= np.float32(1 - 2.0**-24)  # both terms are multiples of 2**-24, |u| < 1: exact
    return u


def new_seed() -> int:
    """A seed from torch's global generator, so ``torch.manual_seed`` makes runs repeatable."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())


class CounterDirections(Directions):
    """Base of the hashed sources; subclasses map the 32-bit words to values."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = new_seed() if seed is None else int(seed)

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "seed": self.seed}

    def _values(self, words: np.ndarray) -> Tensor:
        """Map hash words (uint32) to float32 values (a CPU tensor)."""
        raise NotImplementedError

    def _scale(self, step: int, query: int) -> float:
        """Per-perturbation factor applied after :meth:`_values` (1 unless a rule says otherwise)."""
        return 1.0

    def add_pass_(self, segments, step, query, eps, multiples) -> None:
        """One pass; by a fused kernel where :func:`edgezo.kernels.plan` allows (CUDA)."""
        if not kernels.counter_passes_(self, segments, eps, [(step, query, multiples)]):
            super().add_pass_(segments, step, query, eps, multiples)

    def add_passes_(self, segments, eps, passes) -> None:
        """Several passes; one fused kernel launch per weight dtype where allowed (CUDA)."""
        if not kernels.counter_passes_(self, segments, eps, passes):
            super().add_passes_(segments, eps, passes)

    def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None) -> Tensor:
        if offset < 0 or n < 0:
            raise ValueError(f"offset and n must be >= 0, got offset={offset}, n={n}")
        values = self._values(hash_words(self.seed, step, query, offset, n))
        scale = self._scale(step, query)
        if scale != 1.0:
            values.mul_(scale)
        return values.to(device=as_device(device), dtype=dtype)


class Gaussian(CounterDirections):
    """Standard normal ``z`` (MeZO's distribution), by inverse CDF of a 24-bit uniform.

    Args:
        seed: any integer; ``None`` draws one from torch's global generator.

    Example:
        >>> Gaussian(seed=0).sample(step=0, query=0, offset=0, n=3).shape
        torch.Size([3])
    """

    def _values(self, words: np.ndarray) -> Tensor:
        return torch.from_numpy(symmetric_unit(words)).erfinv_().mul_(math.sqrt(2.0))


class Rademacher(CounterDirections):
    """``z[i]`` in ``{-1, +1}`` with equal probability (bit 31 of the hash word)."""

    def _values(self, words: np.ndarray) -> Tensor:
        top = (words >> np.uint32(31)).astype(np.float32)  # bit 31: 0 or 1
        return torch.from_numpy(1.0 - 2.0 * top)


class Uniform(CounterDirections):
    """Uniform ``z`` on ``[-sqrt(3), sqrt(3)]`` (unit variance), with a choice of scale rule.

    PeZO (PAPERS.md A) replaces the Gaussian by a uniform distribution and rescales
    it so the ZO estimate keeps the Gaussian's magnitude. The exact rule is not
    public; edgezo offers two and compares them in ``benchmarks/scale_rules.py``:

    * ``scale="unit"`` (default): the theoretical unit-variance bound ``sqrt(3)``.
      ``E[z z^T] = I`` exactly, so ``E[g] = grad`` to first order, as for Gaussian z.
    * ``scale="perturbation"``: every ``z(step, query)`` is rescaled so that
      ``||z||^2 = d`` exactly (the Gaussian's expected squared norm). Costs one
      extra generation pass per perturbation (to measure the norm); lowers the
      variance of the step length. Needs :meth:`bind`.

    Args:
        seed: any integer; ``None`` draws one from torch's global generator.
        scale: ``"unit"`` or ``"perturbation"``.
    """

    SCALES = ("unit", "perturbation")

    def __init__(self, seed: int | None = None, scale: str = "unit") -> None:
        super().__init__(seed)
        if scale not in self.SCALES:
            raise ValueError(f"Invalid scale rule {scale!r}; choose one of {self.SCALES}")
        self.scale = scale
        self._norms: dict[tuple[int, int], float] = {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "scale": self.scale}

    def _values(self, words: np.ndarray) -> Tensor:
        return torch.from_numpy(symmetric_unit(words)).mul_(math.sqrt(3.0))

    def _scale(self, step: int, query: int) -> float:
        if self.scale == "unit":
            return 1.0
        if self.dim is None:
            raise RuntimeError(
                "Uniform(scale='perturbation') needs the parameter count: call .bind(dim)"
            )
        key = (step, query)
        if key not in self._norms:
            total = 0.0
            for start in range(0, self.dim, CHUNK):
                n = min(CHUNK, self.dim - start)
                v = self._values(hash_words(self.seed, step, query, start, n))
                total += float(v.double().square().sum())
            if len(self._norms) > 8:  # only the current step's queries are ever re-read
                self._norms.clear()
            self._norms[key] = math.sqrt(self.dim / total)
        return self._norms[key]
