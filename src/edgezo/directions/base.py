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

A source only says what ``z`` is: :meth:`Directions.sample`, plus, optionally, a
:class:`KernelSpec` that describes its numbers as data (a hashed kind and its seed,
or a pool table) so a fused kernel can make them. How ``w += k round(eps z)`` is
applied to the weights (torch or Triton, all or nothing) is :mod:`edgezo.passes`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .hwrng import Registers

#: Elements generated per piece when a source materialises ``z`` for a tensor:
#: large enough to amortise Python overhead, small enough to stay in cache.
CHUNK = 1 << 16


def unit_factor(step: int, query: int) -> float:
    """The factor of a source whose ``z`` needs no per-perturbation rescaling."""
    return 1.0


@dataclass(frozen=True)
class KernelSpec:
    """What a fused kernel needs to make a source's ``z`` itself (read by :mod:`edgezo.passes`).

    A source describes its numbers as data, so the executor needs no knowledge of
    its class. Two families:

    * ``kind`` ``"gaussian"``, ``"rademacher"`` or ``"uniform"``: ``z`` is hashed from
      ``(seed, step, query, i)`` exactly as :mod:`edgezo.directions.counter` defines it;
    * ``kind`` ``"pool"``: ``z(step, query)[j] = pool[(start(step, query) + j) mod size]``;
      ``values(device)`` returns the pool (float32, the source's own tensor on the CPU):
      the torch path scales the pieces it needs, batch by batch; ``table(eps, dtype,
      device)`` returns ``round(eps * pool)`` (``size`` values, cached by the source),
      for the GPU kernels that gather from it.

    In both, ``z`` is then multiplied by ``factor(step, query)`` (1 for most sources;
    the per-perturbation norm rules of :class:`~edgezo.directions.Uniform` and
    :class:`~edgezo.directions.Pool`).

    A third, ``kind`` ``"registers"`` (the hardware-RNG models): ``z(step, query)[j]`` is
    position ``start(step, query) + j`` of the stream of ``registers``
    (:class:`~edgezo.directions.hwrng.Registers`), mapped to ``v * scale`` as
    :class:`~edgezo.directions.hwrng.HardwareRNG` defines it; its factor is 1. Only the
    compiled CPU executor (:mod:`edgezo.passes.streams`) reads it.
    """

    KINDS = ("gaussian", "rademacher", "uniform", "pool", "registers")

    kind: str
    factor: Callable[[int, int], float] = unit_factor
    seed: int = 0
    size: int = 0
    table: Callable[[float, torch.dtype, torch.device], Tensor] | None = None
    start: Callable[[int, int], int] | None = None
    values: Callable[[torch.device], Tensor] | None = None
    registers: Registers | None = None

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"Invalid kernel kind {self.kind!r}; choose one of {self.KINDS}")
        pool = (self.table, self.start, self.values)
        if self.kind == "pool" and (self.size < 1 or any(f is None for f in pool)):
            raise ValueError("A 'pool' kernel spec needs size >= 1, table, start and values")
        if self.kind == "registers" and (self.registers is None or self.start is None):
            raise ValueError("A 'registers' kernel spec needs registers and start")


class Directions(ABC):
    """A perturbation source ``z(step, query)[i]`` (see the module docstring)."""

    #: Whether ``z`` of a past step can be regenerated at any time (seed replay needs it).
    #: A source with history (:class:`~edgezo.directions.MomentumGuided`) sets it False.
    replayable: bool = True

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

    def kernel_spec(self) -> KernelSpec | None:
        """How a fused kernel can make this source's ``z`` (``None``: no kernel, torch path).

        Optional: :mod:`edgezo.passes` reads it to run a pass on the GPU (or, for a
        ``"pool"`` kind, to add cached views of the table on the torch path). A
        subclass that changes :meth:`sample` must return ``None`` or a matching spec.
        """
        return None

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


def work_dtype(dtype: torch.dtype) -> torch.dtype:
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
