"""PeZO pre-generation: a fixed pool of random numbers, read cyclically (PAPERS.md A).

A pool of ``P`` numbers is generated once and kept (on an FPGA: in block RAM).
Perturbation ``t`` (``t = step * queries + query``) of dimension ``d`` reads the
pool cyclically from offset ``o_t``::

    z_t[j] = pool[(o_t + j) mod P],    o_{t+1} = (o_t + d) mod P,    o_0 = 0

so the numbers left over at the end of one perturbation start the next one.
Applying a perturbation needs no random number generator at all: ``w += eps * z``
is a sum with one or two contiguous slices of the pool (scaled by eps a
cache-sized batch at a time), so a perturbation pass costs about what a memory
copy costs. The pool's memory (``P`` float32 values) is the price, as on the
FPGA; on the CPU nothing else is kept (the GPU kernels keep one eps-scaled copy).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import torch
from torch import Tensor

from .. import checks
from .base import CHUNK, KernelSpec, StreamDirections, work_dtype
from .counter import Gaussian, Uniform, new_seed

#: The default pool length ``P``: 1,048,573, the largest prime below ``2**20`` (4 MB of
#: float32). A prime shares no factor with a parameter count ``d`` unless ``d`` is a
#: multiple of it, so the offsets ``o_t = t d mod P`` visit all ``P`` windows; the old
#: default ``2**20`` gave ``P / gcd(d, P)`` windows: 16 for ``d = 768 * 768``, 4 for ``2**18``.
DEFAULT_SIZE = 1_048_573

#: Fewest distinct perturbations a pool may give (fewer raises at :meth:`Pool.bind`),
#: unless the model has fewer weights than this. With ``D`` distinct windows the run
#: repeats its perturbations every ``D`` perturbations and every update lies in the span
#: of ``D`` fixed vectors: ``D >= d`` (small models) lets the updates reach every
#: direction at all; for larger models 64 is far below any pool that PeZO reuses by
#: design (thousands of values), so fewer is a collapse (a size sharing factors with
#: ``d``, or a toy size such as 2), never a deliberate choice.
MIN_WINDOWS = 64

#: When ``gcd(d, P) > 1`` cuts the windows below this many (or below ``d``, for smaller
#: models), :meth:`Pool.bind` warns: the pool still trains, but a size coprime with ``d``
#: would give ``P`` windows for free.
WARN_WINDOWS = 1024


class Pool(StreamDirections):
    """PeZO's pre-generated pool of ``size`` random numbers, reused cyclically.

    Args:
        size: pool length ``P``, an integer >= 2 (default :data:`DEFAULT_SIZE`, a
            prime near ``2**20``). The offsets cycle through ``P / gcd(d, P)`` windows
            for ``d`` trainable values: :meth:`bind` refuses fewer than
            ``min(d, 64)`` (:data:`MIN_WINDOWS`) and warns below ``min(d, 1024)`` when
            a size coprime with ``d`` would give more. A prime never collapses; PeZO uses
            pools much smaller than ``d``.
        seed: seed of the pool's numbers, in ``[0, 2**64)`` (never wrapped); ``None``
            draws one from torch's global generator.
        distribution: ``"uniform"`` (PeZO, the default) or ``"gaussian"``.
        scale: how the pool is scaled so the ZO estimate keeps a Gaussian's
            magnitude (PeZO's "adaptive scaling"; its exact rule is not public):

            * ``"pool"`` (default): divide the pool by its empirical RMS once, at
              generation, so its second moment is exactly 1. A finite pool's
              second moment differs from the distribution's; this corrects it
              with one constant, which hardware folds into eps and the learning
              rate (no per-element cost).
            * ``"unit"``: the distribution's theoretical scale (uniform on
              ``[-sqrt 3, sqrt 3]``); no correction.
            * ``"perturbation"``: rescale every window so ``||z_t||^2 = d``
              exactly; the factor is O(1) per perturbation from a prefix sum
              of squares (``P + 1`` extra float64 values); the GPU kernels'
              pre-scaled table is recomputed for every new window (one pass
              over ``P``), the CPU path scales its chunks per pass anyway.

    Example:
        >>> pool = Pool(size=1009, seed=0).bind(dim=2500)
        >>> bool(torch.equal(pool.sample(1, 0, 0, 5), pool.pool[482:487]))  # o_1 = 2500 mod 1009
        True
        >>> pool.distinct_perturbations  # 1009 / gcd(2500, 1009): a prime size uses every window
        1009
    """

    DISTRIBUTIONS = ("uniform", "gaussian")
    SCALES = ("pool", "unit", "perturbation")

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        seed: int | None = None,
        distribution: str = "uniform",
        scale: str = "pool",
    ) -> None:
        super().__init__()
        size = _check_size(size)
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(
                f"Invalid distribution {distribution!r}; choose one of {self.DISTRIBUTIONS}"
            )
        if scale not in self.SCALES:
            raise ValueError(f"Invalid scale rule {scale!r}; choose one of {self.SCALES}")
        self.size = size
        self.seed = new_seed() if seed is None else checks.seed(seed)
        self.distribution = distribution
        self.scale = scale
        self.pool: Tensor = self._generate()  #: the numbers, float32, on the CPU
        self._cumsq: Tensor | None = None
        self._copies: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self._scaled_key: tuple | None = None
        self._scaled: Tensor | None = None

    def _generate(self) -> Tensor:
        """The pool: the first ``P`` numbers of the seed's stream, made piece by piece."""
        source = Uniform(self.seed) if self.distribution == "uniform" else Gaussian(self.seed)
        pool = torch.empty(self.size)
        square_sum = 0.0
        for start in range(0, self.size, CHUNK):
            piece = pool[start : start + CHUNK]
            piece.copy_(source.sample(0, 0, start, piece.numel()))
            square_sum += float(torch.dot(piece.double(), piece.double()))
        if self.scale == "pool":  # unit second moment, exactly as measured in float64
            pool.mul_(math.sqrt(self.size / square_sum))
        return pool

    def config(self) -> dict[str, Any]:
        return {
            "type": "Pool",
            "size": self.size,
            "seed": self.seed,
            "distribution": self.distribution,
            "scale": self.scale,
        }

    def _check_binding(self) -> None:
        """Refuse a pool whose offsets give too few windows for ``d``; warn when few (see
        :data:`MIN_WINDOWS` and :data:`WARN_WINDOWS` for why)."""
        windows, dim = self.distinct_perturbations, self.dim
        common = math.gcd(dim, self.size)
        if windows == 1:
            raise ValueError(
                f"Pool size {self.size} divides the parameter count {dim}, so every "
                f"perturbation would read the same numbers (o_t = t*d mod P = 0). Choose a pool "
                f"size that does not divide {dim}, e.g. size={coprime_size(self.size, dim)}."
            )
        if windows < min(dim, MIN_WINDOWS):
            raise ValueError(
                f"Pool size {self.size} gives only {windows} distinct perturbations for "
                f"{dim} trainable values (the offsets t*d mod P cycle through P / gcd(d, P) = "
                f"{self.size} / {common} windows), so every update would lie in the span of "
                f"{windows} vectors; at least {min(dim, MIN_WINDOWS)} are needed. Use a pool "
                f"size coprime with {dim}, e.g. size={coprime_size(self.size, dim)} (a prime)."
            )
        if common > 1 and windows < min(dim, WARN_WINDOWS):
            warnings.warn(
                f"Pool size {self.size} shares the factor {common} with the parameter count "
                f"{dim}: the offsets visit only {windows} of its {self.size} windows. A size "
                f"coprime with {dim}, e.g. size={coprime_size(self.size, dim)}, uses them all.",
                stacklevel=3,
            )

    @property
    def distinct_perturbations(self) -> int:
        """How many different windows the offsets cycle through: ``P / gcd(d, P)``."""
        if self.dim is None:
            raise RuntimeError("call .bind(dim) first")
        return self.size // math.gcd(self.dim, self.size)

    def offset(self, step: int, query: int) -> int:
        """``o_t`` of PAPERS.md A for perturbation ``t = step * queries + query``."""
        return self.position(step, query, 0) % self.size

    # -- the numbers --------------------------------------------------------
    def values(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The pool in the given dtype and device (converted once, then cached)."""
        key = (torch.device(device), dtype)
        if key not in self._copies:
            self._copies[key] = self.pool.to(device=device, dtype=dtype)
        return self._copies[key]

    def window_factor(self, step: int, query: int) -> float:
        """The ``"perturbation"`` rule's factor of window ``(step, query)`` (1 for other rules)."""
        if self.scale != "perturbation":
            return 1.0
        if self._cumsq is None:
            self._cumsq = torch.cat(
                [torch.zeros(1, dtype=torch.float64), self.pool.double().square().cumsum(0)]
            )
        whole, rest = divmod(self.dim, self.size)
        k = self.offset(step, query)
        total = whole * float(self._cumsq[-1]) + self._cyclic_sum(k, rest)
        return math.sqrt(self.dim / total)

    def _cyclic_sum(self, k: int, n: int) -> float:
        """Sum of squares of ``pool[(k + j) mod P]`` for ``j < n``, with ``n <= P``."""
        c = self._cumsq
        if k + n <= self.size:
            return float(c[k + n] - c[k])
        return float(c[-1] - c[k] + c[k + n - self.size])

    def slices(self, start: int, n: int) -> list[tuple[int, int, int]]:
        """``S[start:start+n]`` as ``(target_start, pool_start, length)`` contiguous pieces."""
        pieces, done = [], 0
        k = start % self.size
        while done < n:
            length = min(n - done, self.size - k)
            pieces.append((done, k, length))
            done += length
            k = 0
        return pieces

    def stream(self, start, n, *, dtype, device) -> Tensor:
        pool = self.values(dtype, device)
        out = torch.empty(n, dtype=dtype, device=device)
        for t0, p0, length in self.slices(start, n):
            out[t0 : t0 + length].copy_(pool[p0 : p0 + length])
        return out

    def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None) -> Tensor:
        out = super().sample(step, query, offset, n, dtype=dtype, device=device)
        scale = self.window_factor(step, query)
        return out.mul_(scale) if scale != 1.0 else out

    def kernel_spec(self) -> KernelSpec:
        """A ``"pool"`` spec: the pool as values, :meth:`offset` as the start.

        :mod:`edgezo.passes` then scales the pool's pieces batch by batch and adds them
        (torch path: temporaries of one batch), or gathers from :meth:`scaled` in a
        fused kernel (CUDA).
        """
        return KernelSpec(
            "pool", self.window_factor, seed=self.seed, size=self.size,
            table=self.scaled, start=self.offset,
            values=lambda device: self.values(torch.float32, device),
        )  # fmt: skip

    def scaled(self, eps: float, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``round(eps * pool)`` in ``dtype`` on ``device``: the perturbation steps, computed once
        (the table of the GPU kernels; the torch path scales pieces as it goes instead)."""
        key = (eps, torch.device(device), dtype)
        if self._scaled_key != key:
            self._scaled = (self.pool.to(work_dtype(dtype)) * eps).to(device=device, dtype=dtype)
            self._scaled_key = key
        return self._scaled


def _check_size(size: Any) -> int:
    """``size`` as an int >= 2: a bool or a non-integral number is refused, never truncated."""
    if isinstance(size, bool) or not isinstance(size, (numbers.Integral, float)):
        raise TypeError(f"Invalid pool size {size!r}: give an integer (e.g. size=1048573)")
    if isinstance(size, float) and not size.is_integer():
        raise ValueError(f"Invalid pool size {size}: a pool has a whole number of entries")
    if int(size) < 2:
        raise ValueError(f"Invalid pool size: {size}; a pool needs at least 2 numbers")
    return int(size)


def coprime_size(size: int, dim: int) -> int:
    """The smallest prime ``>= max(size, MIN_WINDOWS)`` that does not divide ``dim``."""
    p = max(size, MIN_WINDOWS)
    while dim % p == 0 or any(p % f == 0 for f in range(2, math.isqrt(p) + 1)):
        p += 1
    return p
