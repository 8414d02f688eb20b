"""Momentum-guided sampling (QZO-FF, PAPERS.md B): perturbations that remember the last one.

QZO-FF draws the next perturbation partly around the previous one::

    z1 ~ N(0, alpha I),   z2 ~ N(z_t, (1 - alpha) I),   z_{t+1} = beta z1 + (1 - beta) z2

so with ``beta = 1`` it is plain (scaled) noise and with ``beta < 1`` successive
perturbations are correlated: ``E[z_{t+1} | z_t] = (1 - beta) z_t`` and
``Var[z_{t+1} | z_t] = beta**2 alpha + (1 - beta)**2 (1 - alpha)`` per element.
Training starts at ``beta = 1`` (no history yet) and blends history in later
(:class:`Ramp`).

The history ``z_t`` cannot be regenerated from a seed (it depends on every
earlier step), so it is *kept*: one signed 8-bit integer per trainable weight
(**1 byte per weight**), ``h = sat8(round(z_t / dz))`` with ``dz = z_max / 127``
(``z_max = 3.5``: the same 8-bit format as QZO-FF's fixed-point ``z``, so on the
integer path the stored history is exactly the ``z_q`` the NPU used).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import CHUNK, Directions, as_device

#: Bits of the stored history ``h`` (signed, symmetric: -127..127).
HISTORY_BITS = 8
_HMAX = (1 << (HISTORY_BITS - 1)) - 1


def _f32(x: float) -> float:
    """``x`` rounded to float32 (every coefficient of the blend is a float32 number)."""
    return float(np.float32(x))


@dataclass(frozen=True)
class Ramp:
    """A ``beta`` schedule: 1 (pure noise) until ``start``, then linear to ``final`` over ``steps``.

    ``beta(step) = 1`` for ``step < start``; ``1 + (final - 1) * min(1, (step - start + 1) / steps)``
    afterwards. Being a plain dataclass, it is saved in checkpoints by value.

    Example:
        >>> r = Ramp(final=0.5, steps=4, start=2)
        >>> [r(s) for s in range(7)]
        [1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.5]
    """

    final: float = 0.5
    steps: int = 100
    start: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.final <= 1.0:
            raise ValueError(f"Invalid final beta {self.final}; use 0 <= final <= 1")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"Invalid ramp length {self.steps}; use an integer >= 1")

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 1.0
        frac = min(1.0, (step - self.start + 1) / self.steps)
        return 1.0 + (self.final - 1.0) * frac

    def config(self) -> dict[str, Any]:
        return {"type": "Ramp", **asdict(self)}


class MomentumGuided(Directions):
    """QZO-FF's momentum-guided sampling over any base source (see the module docstring).

    Bit level, for perturbation ``(step, query)`` and global index ``i`` (all
    arithmetic in float32, each operation rounded, in this order)::

        n1 = base.sample(step, 2 * query)[i]          # the base source, bound with 2 * queries
        n2 = base.sample(step, 2 * query + 1)[i]
        z  = A * n1 + B * (D * h[i] + C * n2)

    with ``A = f32(beta * sqrt(alpha))``, ``B = f32(1 - beta)``,
    ``C = f32(sqrt(1 - alpha))``, ``D = f32(z_max / 127)``, ``beta = beta(step)``
    and ``h`` the int8 history. Terms with a zero coefficient are skipped (and
    their noise not generated): with ``beta = 1``, ``z = A * n1`` exactly; with
    ``beta = 0``, ``z = D * h + C * n2``. Every element depends only on its own
    index, so ``sample`` does not depend on chunking.

    Every query of a step uses the same history, with its own noise. The
    history is ``z(step, 0)`` of the last *applied* step: :meth:`commit` (called
    by ZO after a successful update; skipped steps do not count) rewrites ``h``
    chunk by chunk as ``sat8(round(z(step, 0) / D))``, the same rounding as
    ZO's fixed-point quantization of ``z``.

    Because a past ``z`` cannot be regenerated once ``h`` has moved on, asking
    for a step at or before the last committed one is an error: the source is
    not :attr:`replayable`, so :class:`~edgezo.ZO` refuses seed-replay
    :class:`~edgezo.updates.Momentum` (``ZO(momentum=...)``) with it when it is built.

    Cost: **1 byte per trainable weight** (the int8 history, allocated by
    :meth:`bind`), twice the base source's generation work while ``0 < beta < 1``
    (once at ``beta = 1``), and one extra generation pass per step in
    :meth:`commit`. No extra forward passes. ``state_dict`` includes the history
    (a copy), so a resume is bit-exact.

    Args:
        base: where the noise ``n1, n2`` comes from (e.g. ``Gaussian(seed)``).
        alpha: the split of variance between the fresh and the guided part, in ``[0, 1]``.
        beta: a number in ``[0, 1]`` or a schedule ``step -> beta`` (e.g. :class:`Ramp`).
        z_max: the clipping range of the 8-bit history (3.5 as QZO-FF's ``z``).

    Example:
        >>> from edgezo.directions import Gaussian
        >>> g = MomentumGuided(Gaussian(seed=0), alpha=0.5, beta=1.0).bind(dim=10)
        >>> n1 = Gaussian(seed=0).sample(0, 0, 0, 10)
        >>> bool(torch.equal(g.sample(0, 0, 0, 10), n1 * torch.tensor(0.5**0.5)))
        True
        >>> g.history.dtype, g.bytes_per_weight()
        (torch.int8, 1.0)
    """

    replayable = False  # z of a past step depends on a history that has moved on

    def __init__(
        self,
        base: Directions,
        alpha: float = 0.5,
        beta: float | Callable[[int], float] = 1.0,
        z_max: float = 3.5,
    ) -> None:
        super().__init__()
        if not isinstance(base, Directions):
            raise TypeError(
                f"base must be an edgezo.directions source (e.g. Gaussian()), got {type(base).__name__}"
            )
        if isinstance(base, MomentumGuided):
            raise TypeError("MomentumGuided cannot wrap another MomentumGuided")
        if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
            raise ValueError(f"Invalid alpha {alpha}; use 0 <= alpha <= 1")
        if not callable(beta):
            _check_beta(beta)
        if isinstance(z_max, bool) or not (
            isinstance(z_max, (int, float)) and math.isfinite(z_max) and z_max > 0
        ):
            raise ValueError(f"Invalid z_max {z_max}; the history's clipping range must be > 0")
        self.base, self.alpha, self.beta, self.z_max = base, float(alpha), beta, float(z_max)
        self.dz = z_max / _HMAX
        self.history: Tensor | None = None  #: int8 ``h``, one per weight (after :meth:`bind`)
        self.last: int = -1  #: the last committed step (-1: none, ``h = 0``)

    # -- configuration ------------------------------------------------------
    def bind(self, dim: int, queries: int = 1) -> MomentumGuided:
        """Bind the base with ``2 * queries`` (two noises per query) and allocate ``h = 0`` (int8)."""
        super().bind(dim, queries)
        self.base.bind(dim, 2 * queries)
        self.history = torch.zeros(self.dim, dtype=torch.int8)
        self.last = -1
        return self

    def config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "alpha": self.alpha,
            "beta": _beta_config(self.beta),
            "z_max": self.z_max,
            "base": self.base.config(),
        }

    def beta_at(self, step: int) -> float:
        """``beta`` for perturbations of ``step`` (the schedule's value, checked)."""
        beta = self.beta(step) if callable(self.beta) else self.beta
        _check_beta(beta)
        return float(beta)

    def bytes_per_weight(self) -> float:
        """Memory this source keeps per trainable weight: the int8 history."""
        return HISTORY_BITS / 8

    # -- the numbers --------------------------------------------------------
    def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None) -> Tensor:
        if self.history is None:
            raise RuntimeError(
                "MomentumGuided keeps one int8 history value per weight and needs the parameter "
                "count: call .bind(dim, queries) first (the ZO optimizer does this)."
            )
        if step <= self.last:
            raise ValueError(
                f"MomentumGuided cannot regenerate z of step {step}: its history has moved on to "
                f"step {self.last}. Past perturbations are not reproducible, so seed-replay "
                "momentum (ZO(momentum=...)) cannot be used with this source."
            )
        if offset < 0 or n < 0 or offset + n > self.dim:
            raise ValueError(
                f"Range [{offset}, {offset + n}) is outside the bound dimension {self.dim}"
            )
        return self._blend(step, query, offset, n).to(device=as_device(device), dtype=dtype)

    def _blend(self, step: int, query: int, offset: int, n: int) -> Tensor:
        """``z`` in float32 on the CPU, exactly as the class docstring defines it."""
        beta = self.beta_at(step)
        a = _f32(beta * math.sqrt(self.alpha))
        b = _f32(1.0 - beta)
        c = _f32(math.sqrt(1.0 - self.alpha))
        z = None
        if a != 0.0:
            z = self.base.sample(step, 2 * query, offset, n, dtype=torch.float32).mul_(a)
        if b != 0.0:
            t = self.history[offset : offset + n].to(torch.float32).mul_(_f32(self.dz))
            if c != 0.0:
                t.add_(
                    self.base.sample(step, 2 * query + 1, offset, n, dtype=torch.float32).mul_(c)
                )
            t.mul_(b)
            z = t if z is None else z.add_(t)
        return torch.zeros(n, dtype=torch.float32) if z is None else z

    def commit(self, step: int) -> None:
        """Step ``step`` was applied: ``h = sat8(round(z(step, 0) / dz))``, chunk by chunk."""
        if self.history is None:
            raise RuntimeError("MomentumGuided.commit before bind")
        if step <= self.last:
            raise ValueError(f"Step {step} was already committed (history is at step {self.last})")
        for start in range(0, self.dim, CHUNK):
            n = min(CHUNK, self.dim - start)
            z = self._blend(step, 0, start, n)  # reads h[start:start+n] before it is replaced
            self.history[start : start + n] = quantize_history(z, self.dz)
        self.last = step
        self.base.commit(step)

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Configuration, a copy of the int8 history, the last committed step, the base's state."""
        return {
            "config": self.config(),
            "history": None if self.history is None else self.history.clone(),
            "last": self.last,
            "base": self.base.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # checks the configuration
        self.base.load_state_dict(state["base"])
        history = state["history"]
        if history is None:
            if self.history is not None:
                self.history.zero_()
        else:
            if self.dim is not None and history.numel() != self.dim:
                raise ValueError(
                    f"Checkpoint history has {history.numel()} values but this optimizer has "
                    f"{self.dim} trainable values; build the model the same way before resuming"
                )
            self.history = history.to(dtype=torch.int8, device="cpu").clone()
        self.last = int(state["last"])


def quantize_history(z: Tensor, dz: float) -> Tensor:
    """``sat8(round(z / dz))`` as int8 (round half to even)."""
    return torch.round(z / dz).clamp_(-_HMAX, _HMAX).to(torch.int8)


def _check_beta(beta: Any) -> None:
    if isinstance(beta, bool) or not (isinstance(beta, (int, float)) and 0.0 <= beta <= 1.0):
        raise ValueError(f"Invalid beta {beta}; use 0 <= beta <= 1 (1: pure noise, no history)")


def _beta_config(beta: float | Callable[[int], float]) -> Any:
    """How ``beta`` is recorded in checkpoints: a number, a schedule's config, or its name."""
    if not callable(beta):
        return float(beta)
    if hasattr(beta, "config"):
        return beta.config()
    return (
        f"{getattr(beta, '__module__', '?')}.{getattr(beta, '__qualname__', type(beta).__name__)}"
    )
