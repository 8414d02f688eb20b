"""The contract every perturbation source follows.

A direction source defines, for every perturbation ``(step, query)``, a vector
``z`` over the trainable parameters seen as one flat vector (see
:class:`edgezo.params.ParamSpace`). ``z[i]`` is a pure function of the source's
configuration (its seed), ``step``, ``query`` and the global index ``i``: it is
never stored, never drawn from a global RNG, and never depends on how a caller
splits the vector into pieces. The optimizer regenerates the same ``z`` to
perturb, to restore and to update.

Two families exist:

* counter sources (:class:`Gaussian`, :class:`Rademacher`, :class:`Uniform`)
  hash ``(seed, step, query, i)`` directly, so any element is computable alone;
* stream sources (:class:`Pool`, :class:`RNGArray`, :class:`LFSR`,
  :class:`Xorshift`) produce one endless stream ``S`` and perturbation number
  ``t = step * queries + query`` reads the window ``S[t*d : (t+1)*d]``, as
  PeZO's hardware does (PAPERS.md A). They need ``d`` and ``queries``, which the
  optimizer passes with :meth:`Directions.bind`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..params import Segment

#: Elements generated per piece when a source materialises ``z`` for a tensor:
#: large enough to amortise Python overhead, small enough to stay in cache.
CHUNK = 1 << 16


class Directions(ABC):
    """A perturbation source ``z(step, query)[i]`` (see the module docstring)."""

    def __init__(self) -> None:
        self.dim: int | None = None
        self.queries: int = 1

    # -- configuration ------------------------------------------------------
    def bind(self, dim: int, queries: int = 1) -> Directions:
        """Tell the source the length ``d`` of the flat vector and the queries per step.

        Stream sources need both to place perturbation ``(step, query)`` in their
        stream; counter sources only validate them. Returns ``self``.
        """
        if dim < 1:
            raise ValueError(
                f"Invalid dimension: {dim}; there must be at least one trainable value"
            )
        if queries < 1:
            raise ValueError(f"Invalid number of queries: {queries}; use queries >= 1")
        self.dim, self.queries = int(dim), int(queries)
        self._check_binding()
        return self

    def _check_binding(self) -> None:
        """Hook for sources that must reject a (dim, queries) pair."""

    def config(self) -> dict[str, Any]:
        """The settings that determine the numbers (saved in checkpoints and checked on load)."""
        return {"type": type(self).__name__}

    # -- the numbers --------------------------------------------------------
    @abstractmethod
    def sample(
        self,
        step: int,
        query: int,
        offset: int,
        n: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Return ``z(step, query)[offset : offset + n]`` as a new 1-D tensor."""

    def add_(
        self,
        target: Tensor,
        step: int,
        query: int,
        offset: int,
        eps: float,
        multiple: float = 1.0,
        mask: Tensor | None = None,
    ) -> None:
        """``target += multiple * a`` with ``a = round(eps * z(step, query)[offset : ...])``, in place.

        ``target`` is a contiguous 1-D view of one parameter tensor whose first
        element has global index ``offset``; where ``mask`` (0/1, same length) is
        0 it is left untouched. The step ``a`` is rounded to the target's dtype
        *before* it is added, so the optimizer's ``+a, -2a, +a`` round trip
        (``multiple`` = 1, -2, 1: exact scalings) brings a zero back to exactly
        zero and any weight back to within an ulp or so (``benchmarks/drift.py``),
        as an out-of-place ``w + a`` would. The default implementation
        generates ``z`` piece by piece (at most :data:`CHUNK` values alive at
        once); sources that can do better (the pool's cached views) override it.
        """
        n = target.numel()
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            z = self.sample(
                step,
                query,
                offset + start,
                stop - start,
                dtype=_work_dtype(target.dtype),
                device=target.device,
            )
            a = z.mul_(eps).to(target.dtype)
            _axpy_(target[start:stop], a, multiple, None if mask is None else mask[start:stop])

    def add_pass_(
        self,
        segments: Sequence[Segment],
        step: int,
        query: int,
        eps: float,
        multiples: Sequence[float],
    ) -> None:
        """One pass over all tensors: :meth:`add_` on ``segments[i]`` with ``multiples[i]``.

        If interrupted (an exception, Ctrl-C) the tensors already done are taken
        back before the exception propagates, so a pass is all or nothing.
        Sources override it to batch the work (the pool: a few fused calls).
        """
        done = []
        try:
            for seg, k in zip(segments, multiples, strict=True):
                if k != 0.0:
                    self.add_(seg.flat(), step, query, seg.offset, eps, k, seg.flat_mask())
                    done.append((seg, k))
        except BaseException:
            for seg, k in done:
                self.add_(seg.flat(), step, query, seg.offset, eps, -k, seg.flat_mask())
            raise

    def add_passes_(
        self,
        segments: Sequence[Segment],
        eps: float,
        passes: Sequence[tuple[int, int, Sequence[float]]],
    ) -> None:
        """Several passes ``(step, query, multiples)`` of :meth:`add_pass_`, in order, all or nothing.

        The optimizer issues a step's restores and update this way, so a source
        with a fused kernel (:mod:`edgezo.kernels`) can read and write the weights
        once for all of them; here they are applied one after the other.
        """
        done = []
        try:
            for step, query, multiples in passes:
                self.add_pass_(segments, step, query, eps, multiples)
                done.append((step, query, multiples))
        except BaseException:
            for step, query, multiples in reversed(done):
                self.add_pass_(segments, step, query, eps, [-k for k in multiples])
            raise

    def commit(self, step: int) -> None:
        """Called once step ``step`` has been applied; sources with history update it here."""

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The source's configuration; the numbers are a function of it and of the step."""
        return {"config": self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check that a checkpoint was written with the same source configuration."""
        saved, mine = state.get("config"), self.config()
        if saved != mine:
            raise ValueError(
                f"Checkpoint was written with directions {saved}, but this optimizer uses {mine}; "
                "construct the optimizer with the same direction source to resume."
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _axpy_(target: Tensor, a: Tensor, multiple: float, mask: Tensor | None) -> None:
    """``target += multiple * a`` (times ``mask`` where given), without a temporary."""
    if mask is None:
        target.add_(a, alpha=multiple)
    else:
        target.addcmul_(a, mask, value=multiple)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision in which ``eps * z`` is formed: float64 for float64 weights, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_device(device: torch.device | str | None) -> torch.device:
    """Normalise an optional device argument (default: CPU)."""
    return torch.device("cpu") if device is None else torch.device(device)


class StreamDirections(Directions):
    """A source defined by one endless stream ``S``; perturbation ``t`` reads ``S[t*d:(t+1)*d]``.

    ``t = step * queries + query`` counts perturbations in the order the optimizer
    makes them, so consecutive perturbations read consecutive windows: the numbers
    left at the end of one perturbation start the next one (PAPERS.md A).
    Subclasses implement :meth:`stream`.
    """

    @abstractmethod
    def stream(self, start: int, n: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Return ``S[start : start + n]`` as a new 1-D tensor."""

    def position(self, step: int, query: int, offset: int) -> int:
        """Stream position of ``z(step, query)[offset]``."""
        if self.dim is None:
            raise RuntimeError(
                f"{type(self).__name__} reads perturbations from one stream and needs the "
                "parameter count: call .bind(dim, queries) first (the ZO optimizer does this)."
            )
        if not 0 <= query < self.queries:
            raise ValueError(f"query {query} is out of range for {self.queries} queries per step")
        return (step * self.queries + query) * self.dim + offset

    def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None) -> Tensor:
        return self.stream(
            self.position(step, query, offset), n, dtype=dtype, device=as_device(device)
        )
