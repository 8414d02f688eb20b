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

from .. import checks
from .base import CHUNK, Directions, KernelSpec, as_device
from .hashing import hash_words, keys, symmetric_unit

#: ``hash_words``, ``keys`` and ``symmetric_unit`` live in :mod:`.hashing`; re-exported here.
__all__ = [
    "CounterDirections",
    "Gaussian",
    "Rademacher",
    "Uniform",
    "hash_words",
    "keys",
    "new_seed",
    "symmetric_unit",
]


def new_seed() -> int:
    """A seed from torch's global generator, so ``torch.manual_seed`` makes runs repeatable."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())


class CounterDirections(Directions):
    """Base of the hashed sources; subclasses map the 32-bit words to values."""

    #: The kernel spec's kind (:class:`~edgezo.directions.base.KernelSpec`); set by each source.
    KIND: str = ""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = new_seed() if seed is None else checks.seed(seed)

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "seed": self.seed}

    def map_words(self, words: np.ndarray) -> Tensor:
        """Map hash words (uint32) to float32 values (a CPU tensor)."""
        raise NotImplementedError

    def factor(self, step: int, query: int) -> float:
        """Per-perturbation factor applied after :meth:`map_words` (1 unless a rule says otherwise)."""
        return 1.0

    def kernel_spec(self) -> KernelSpec | None:
        """The hashed kind, seed and factor: a kernel computes the same ``z`` in registers."""
        return KernelSpec(self.KIND, self.factor, seed=self.seed) if self.KIND else None

    def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None) -> Tensor:
        if offset < 0 or n < 0:
            raise ValueError(f"offset and n must be >= 0, got offset={offset}, n={n}")
        values = self.map_words(hash_words(self.seed, step, query, offset, n))
        scale = self.factor(step, query)
        if scale != 1.0:
            values.mul_(scale)
        return values.to(device=as_device(device), dtype=dtype)


class Gaussian(CounterDirections):
    """Standard normal ``z`` (MeZO's distribution), by inverse CDF of a 24-bit uniform.

    Args:
        seed: an integer in ``[0, 2**64)`` (never wrapped); ``None`` draws one from torch's
            global generator.

    Example:
        >>> Gaussian(seed=0).sample(step=0, query=0, offset=0, n=3).shape
        torch.Size([3])
    """

    KIND = "gaussian"

    def map_words(self, words: np.ndarray) -> Tensor:
        return torch.from_numpy(symmetric_unit(words)).erfinv_().mul_(math.sqrt(2.0))


class Rademacher(CounterDirections):
    """``z[i]`` in ``{-1, +1}`` with equal probability (bit 31 of the hash word)."""

    KIND = "rademacher"

    def map_words(self, words: np.ndarray) -> Tensor:
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
        seed: an integer in ``[0, 2**64)`` (never wrapped); ``None`` draws one from torch's
            global generator.
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

    KIND = "uniform"

    def map_words(self, words: np.ndarray) -> Tensor:
        return torch.from_numpy(symmetric_unit(words)).mul_(math.sqrt(3.0))

    def factor(self, step: int, query: int) -> float:
        """``sqrt(d / ||z||^2)`` under ``scale="perturbation"`` (cached per perturbation), else 1."""
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
                v = self.map_words(hash_words(self.seed, step, query, start, n))
                total += float(v.double().square().sum())
            if len(self._norms) > 8:  # only the current step's queries are ever re-read
                self._norms.clear()
            self._norms[key] = math.sqrt(self.dim / total)
        return self._norms[key]
