"""QZO-FF's kernel-wise normalization: every tensor moves by ``lr * ||w_i||`` per unit coefficient.

Also the two norms it needs, public so other rules (and tests) can regenerate
them: :func:`weight_norms` (``||w_i||`` read from the weights) and
:func:`direction_norm` (``||z_i||`` regenerated from the direction source).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..directions.base import CHUNK
from .base import Term, UpdateRule
from .sgd import SGD

if TYPE_CHECKING:
    from ..directions import Directions
    from ..params import ParamSpace


class KernelNormalized(UpdateRule):
    """QZO-FF's kernel-wise normalization (PAPERS.md B, Eq. 9): every tensor moves by ``lr * ||w_i||``.

    For each trainable tensor ("kernel", "layer") ``i`` and each term
    ``(step, query, c)`` of the base rule, the update along ``z`` is rescaled so
    that its part on tensor ``i`` has the length of the tensor itself::

        g_i = c * z_i / ||z_i|| * ||w_i||      (sign-m-SPSA: c = sign(dL) / m)

    i.e. the per-tensor factor is ``||w_i|| / ||z_i(step, query)||``. One query
    with coefficient ``c`` therefore changes tensor ``i`` by exactly
    ``lr * |c| * ||w_i||`` (a relative step of ``lr * |c|``, the same for every
    layer, whatever its size or scale); with ``m`` queries the terms add up.

    * ``||z_i||`` is regenerated from the direction source over the tensor (in
      chunks, float64 sums) and ``||w_i||`` read from the weights; fixed-point
      weights count with their dequantized values ``dw * w_q`` (stored
      integers). With a mask only the trained elements count in both norms
      (the masked tensor is the kernel being trained), so the applied update
      still has length ``lr * |c| * ||w_i * mask||``.
    * ``||w_i||`` is the unperturbed weights' norm when the optimizer calls
      :meth:`begin` before the step's first perturbation; otherwise it is read
      when the update is computed: exact for fixed-point weights (perturbations
      are never stored), ``O(eps)`` off for float weights (still perturbed then).
    * A tensor with ``||w_i|| = 0`` (a zero-initialized bias) gets factor 0 and
      never moves under Eq. 9; so does one whose ``z_i`` is all zero.
    * Fixed point: per-tensor factors make the ``m`` coefficients of a tensor
      unequal, so ZO writes them as 8-bit integers times one step instead of
      the exact ``+/-1/m``; the applied ``z`` is the 8-bit ``z_q``, whose norm
      differs from ``||z_i||`` by the quantization of ``z``.

    Cost: no memory per weight; per step one read pass over the weights and,
    per update term, one generation pass of ``z`` (for ``||z_i||``).

    Args:
        base: the rule whose terms are normalized (default :class:`SGD`).

    Example:
        >>> import torch
        >>> from edgezo.directions import Gaussian
        >>> from edgezo.params import ParamSpace
        >>> w = torch.full((4,), 3.0)  # ||w|| = 6
        >>> space, z = ParamSpace([[w]]), Gaussian(seed=0).bind(4)
        >>> f = KernelNormalized().factors(0, 0, space, z)[0]
        >>> round(f * float(z.sample(0, 0, 0, 4).double().norm()), 6)
        6.0
    """

    def __init__(self, base: UpdateRule | None = None) -> None:
        self.base = SGD() if base is None else base
        if isinstance(self.base, KernelNormalized):
            raise TypeError("KernelNormalized cannot wrap another KernelNormalized")
        self._weight_norms: tuple[int, list[float]] | None = None
        self.replays_past = self.base.replays_past

    def terms(self, step: int, coefficients: list[float]) -> list[Term]:
        return self.base.terms(step, coefficients)

    def begin(self, step: int, space: ParamSpace) -> None:
        """Record ``||w_i||`` at the unperturbed weights (call before the step perturbs them)."""
        self._weight_norms = (step, weight_norms(space))

    def factors(
        self, step: int, query: int, space: ParamSpace, directions: Directions
    ) -> Sequence[float] | None:
        if self._weight_norms is not None and self._weight_norms[0] == step:
            w_norms = self._weight_norms[1]
        else:
            w_norms = weight_norms(space)
        base = self.base.factors(step, query, space, directions)
        out = []
        for i, (seg, w_norm) in enumerate(zip(space, w_norms, strict=True)):
            z_norm = direction_norm(directions, step, query, seg)
            f = w_norm / z_norm if z_norm > 0.0 else 0.0
            out.append(f if base is None else f * base[i])
        return out

    def commit(self, step: int, coefficients: list[float]) -> None:
        self.base.commit(step, coefficients)

    def config(self) -> dict[str, Any]:
        return {"type": "KernelNormalized", "base": self.base.config()}

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "base" not in state:
            raise ValueError(
                "The checkpoint's update state has no 'base' entry: it was not written with "
                "KernelNormalized; build the optimizer with the checkpoint's update rule"
            )
        self.base.load_state_dict(state["base"])

    def bytes_per_weight(self) -> float:
        return self.base.bytes_per_weight()


def weight_norms(space: ParamSpace) -> list[float]:
    """``||w_i||`` per tensor (trained elements only; fixed point dequantized), float64 sums."""
    out = []
    for seg in space:
        flat = seg.flat()
        scale = None
        if seg.fixed:
            scale = seg.param.fixed.scale.reshape(-1).double().to(flat.device)
        per_row = seg.numel // scale.numel() if scale is not None else 0
        total = 0.0
        for start in range(0, seg.numel, CHUNK):
            stop = min(start + CHUNK, seg.numel)
            w = flat[start:stop].double()  # (a view, for float64 weights: never in place)
            if scale is not None:  # one scale per tensor, or per output channel (rows of dim 0)
                rows = torch.arange(start, stop, device=w.device) // per_row
                w = w * (scale if scale.numel() == 1 else scale[rows])
            if seg.mask is not None:
                w = w * seg.mask_piece(start, stop, torch.float64)
            total += float(w.square().sum())
        out.append(total**0.5)
    return out


def direction_norm(directions: Directions, step: int, query: int, seg: Any) -> float:
    """``||z(step, query)||`` over one segment (trained elements only), float64 sums."""
    total = 0.0
    for start in range(0, seg.numel, CHUNK):
        stop = min(start + CHUNK, seg.numel)
        z = directions.sample(step, query, seg.offset + start, stop - start).double()
        if seg.mask is not None:
            z = z * seg.mask_piece(start, stop, torch.float64).cpu()
        total += float(z.square().sum())
    return total**0.5
