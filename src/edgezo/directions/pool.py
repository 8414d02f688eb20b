"""PeZO pre-generation: a fixed pool of random numbers, read cyclically (PAPERS.md A).

A pool of ``P`` numbers is generated once and kept (on an FPGA: in block RAM).
Perturbation ``t`` (``t = step * queries + query``) of dimension ``d`` reads the
pool cyclically from offset ``o_t``::

    z_t[j] = pool[(o_t + j) mod P],    o_{t+1} = (o_t + d) mod P,    o_0 = 0

so the numbers left over at the end of one perturbation start the next one.
Applying a perturbation needs no random number generator at all: ``w += eps * z``
is a sum with one or two contiguous slices of the pool (pre-multiplied by eps
once, then read through views), so a perturbation pass costs about what a
memory copy costs. The pool's memory (``P`` values, plus the scaled copy) is
the price, as on the FPGA.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .. import kernels
from .base import CHUNK, StreamDirections, _axpy_, _work_dtype
from .counter import Gaussian, Uniform, new_seed


class Pool(StreamDirections):
    """PeZO's pre-generated pool of ``size`` random numbers, reused cyclically.

    Args:
        size: pool length ``P``. Must not divide the parameter count ``d``
            (then every perturbation would be the same); PeZO uses pools much
            smaller than ``d``.
        seed: seed of the pool's numbers; ``None`` draws one from torch's
            global generator.
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
              of squares (``P + 1`` extra float64 values), but the pre-scaled
              pool is recomputed for every new window (one pass over ``P``).

    Example:
        >>> pool = Pool(size=1000, seed=0).bind(dim=2500)
        >>> bool(torch.equal(pool.sample(1, 0, 0, 5), pool.pool[500:505]))  # o_1 = 2500 mod 1000
        True
    """

    DISTRIBUTIONS = ("uniform", "gaussian")
    SCALES = ("pool", "unit", "perturbation")

    def __init__(
        self,
        size: int = 2**20,
        seed: int | None = None,
        distribution: str = "uniform",
        scale: str = "pool",
    ) -> None:
        super().__init__()
        if int(size) < 2:
            raise ValueError(f"Invalid pool size: {size}; a pool needs at least 2 numbers")
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(
                f"Invalid distribution {distribution!r}; choose one of {self.DISTRIBUTIONS}"
            )
        if scale not in self.SCALES:
            raise ValueError(f"Invalid scale rule {scale!r}; choose one of {self.SCALES}")
        self.size = int(size)
        self.seed = new_seed() if seed is None else int(seed)
        self.distribution = distribution
        self.scale = scale
        self.pool: Tensor = self._generate()  #: the numbers, float32, on the CPU
        self._cumsq: Tensor | None = None
        self._copies: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self._scaled_key: tuple | None = None
        self._plans: dict[int, tuple] = {}
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
        if self.distinct_perturbations == 1:
            suggestion = self.size + 1 if (self.size + 1) % 2 else self.size + 3
            raise ValueError(
                f"Pool size {self.size} divides the parameter count {self.dim}, so every "
                f"perturbation would read the same numbers (o_t = t*d mod P = 0). Choose a pool "
                f"size that does not divide {self.dim}, e.g. size={suggestion}."
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

    def _window_scale(self, start: int) -> float:
        """The ``"perturbation"`` rule's factor for the window starting at stream ``start``."""
        if self.scale != "perturbation":
            return 1.0
        if self._cumsq is None:
            self._cumsq = torch.cat(
                [torch.zeros(1, dtype=torch.float64), self.pool.double().square().cumsum(0)]
            )
        whole, rest = divmod(self.dim, self.size)
        k = start % self.size
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
        scale = self._window_scale(self.position(step, query, 0))
        return out.mul_(scale) if scale != 1.0 else out

    def add_(self, target, step, query, offset, eps, multiple=1.0, mask=None) -> None:
        """``target += multiple * round(eps * z)`` from slices of the pre-scaled pool (no allocation)."""
        eps = eps * self._window_scale(self.position(step, query, 0))
        scaled = self.scaled(eps, target.dtype, target.device)
        start = self.position(step, query, offset)
        for t0, p0, length in self.slices(start, target.numel()):
            part = slice(t0, t0 + length)
            _axpy_(
                target[part],
                scaled[p0 : p0 + length],
                multiple,
                None if mask is None else mask[part],
            )

    def add_passes_(self, segments, eps, passes) -> None:
        """Several passes; one fused kernel launch per weight dtype where allowed (CUDA)."""
        if not kernels.pool_passes_(self, segments, eps, passes):
            super().add_passes_(segments, eps, passes)

    def add_pass_(self, segments, step, query, eps, multiples) -> None:
        """One pass over all tensors in a few fused ``torch._foreach_*`` calls (no allocation).

        The tensors are grouped by (dtype, device, multiple, masked); each group is
        one foreach call over (target slice, pool slice) pairs, so the Python cost
        per tensor is a few slice computations, not a kernel launch. Where
        :func:`edgezo.kernels.plan` allows (CUDA), one fused kernel instead.
        """
        if kernels.pool_passes_(self, segments, eps, [(step, query, multiples)]):
            return
        window = self.position(step, query, 0)
        eps = eps * self._window_scale(window)
        if self._add_contiguous_(segments, window, eps, multiples):
            return
        batches: dict[tuple, tuple[list, list, list]] = {}
        for seg, k in zip(segments, multiples, strict=True):
            if k == 0.0:
                continue
            flat, mask = seg.flat(), seg.flat_mask()
            scaled = self.scaled(eps, flat.dtype, flat.device)
            targets, sources, masks = batches.setdefault(
                (flat.dtype, flat.device, k, mask is not None), ([], [], [])
            )
            for t0, p0, length in self.slices(window + seg.offset, seg.numel):
                whole = length == seg.numel
                targets.append(flat if whole else flat[t0 : t0 + length])
                sources.append(scaled[p0 : p0 + length])
                if mask is not None:
                    masks.append(mask if whole else mask[t0 : t0 + length])
        done = []
        try:
            for (_, _, k, masked), (targets, sources, masks) in batches.items():
                if masked:
                    torch._foreach_addcmul_(targets, sources, masks, value=k)
                else:
                    torch._foreach_add_(targets, sources, alpha=k)
                done.append((k, targets, sources, masks))
        except BaseException:  # take back the groups already done
            for k, targets, sources, masks in done:
                if masks:
                    torch._foreach_addcmul_(targets, sources, masks, value=-k)
                else:
                    torch._foreach_add_(targets, sources, alpha=-k)
            raise

    def _add_contiguous_(self, segments, window: int, eps: float, multiples) -> bool:
        """The common case in one call: unmasked tensors of one dtype, adjacent in the flat
        vector, one multiple, a window that does not wrap: the pool slice is split into
        per-tensor views by ``torch.split`` (one C++ call) and added by one foreach call.
        Returns False (nothing done) when the case does not apply.
        """
        plan = self._plan(segments)
        if plan is None or len(set(multiples)) != 1 or multiples[0] == 0.0:
            return False
        flats, sizes, first = plan
        start = (window + first) % self.size
        if start + sum(sizes) > self.size:
            return False
        scaled = self.scaled(eps, flats[0].dtype, flats[0].device)
        sources = scaled[start : start + sum(sizes)].split(sizes)
        torch._foreach_add_(flats, sources, alpha=multiples[0])
        return True

    def _plan(self, segments) -> tuple[list, list, int] | None:
        """Flat views, sizes and first offset of ``segments`` if the fast path applies (cached)."""
        key = id(segments)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is segments:
            return cached[1]
        flats = [seg.flat() for seg in segments]
        adjacent = all(a.end == b.offset for a, b in zip(segments[:-1], segments[1:], strict=True))
        uniform = len({(f.dtype, f.device) for f in flats}) == 1
        unmasked = all(seg.mask is None for seg in segments)
        plan = None
        if segments and adjacent and uniform and unmasked:
            plan = (flats, [seg.numel for seg in segments], segments[0].offset)
        self._plans[key] = (segments, plan)
        return plan

    def scaled(self, eps: float, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``round(eps * pool)`` in ``dtype`` on ``device``: the perturbation steps, computed once."""
        key = (eps, torch.device(device), dtype)
        if self._scaled_key != key:
            self._scaled = (self.pool.to(_work_dtype(dtype)) * eps).to(device=device, dtype=dtype)
            self._scaled_key = key
        return self._scaled
