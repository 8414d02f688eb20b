"""Sparse updates (QZO-FF, PAPERS.md B): train only a chosen subset of the weights.

QZO-FF trains a fraction of the weights and reports that 90% fewer trainable
weights costs little accuracy. :func:`masks` picks the subset; :func:`sparse_groups`
wraps parameters into ZO parameter groups carrying those masks. ZO never
perturbs nor changes a masked-out element (float and fixed point alike), so
the frozen weights stay bit-identical.

Rules:

* ``"topk"``: keep the largest ``|w|``. Per tensor by default (``scope="tensor"``):
  every tensor keeps exactly ``n - round(sparsity * n)`` of its ``n`` elements,
  so no layer is frozen wholesale because its weights are small in absolute
  terms (biases, norms, differently scaled layers); ``scope="global"`` ranks all
  weights together instead. Ties go to the lower index (a stable sort).
* ``"random"``: the same counts, chosen uniformly by a seeded generator
  (``torch.Generator().manual_seed(seed)``, one ``randperm`` per tensor in
  order, or one over all weights with ``scope="global"``).
* ``"threshold"``: keep ``|w| > threshold``; ``sparsity`` is not used.

Fixed-point weights (:class:`~edgezo.fixedpoint.FixedPointParameter`) are ranked
by their dequantized values ``dw * w_q`` (per-channel scales included), so the
rules pick the same weights as they would on the float model.

Cost: the masks are built once, before training, as float tensors (4 bytes
per weight, the caller's to drop). ZO copies each into bits
(:class:`~edgezo.params.BitMask`: 1 bit per weight of the masked tensors, the
layout of the C device step) and keeps no reference to the tensors given;
passes unpack them a piece at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .. import checks
from ..params import is_fixed_point

RULES = ("topk", "random", "threshold")
SCOPES = ("tensor", "global")


def magnitudes(p: Tensor) -> Tensor:
    """``|w|`` as float64 (fixed point: ``|dw * w_q|`` of the stored integers)."""
    if is_fixed_point(p):
        return (p.detach().to(torch.float64) * p.fixed.scale.to(torch.float64)).abs()
    return p.detach().to(torch.float64).abs()


def kept(n: int, sparsity: float) -> int:
    """Elements kept out of ``n``: ``n - round(sparsity * n)`` (round half to even)."""
    return n - round(sparsity * n)


def masks(
    params: Iterable[Tensor],
    sparsity: float = 0.9,
    rule: str = "topk",
    threshold: float | None = None,
    seed: int = 0,
    scope: str = "tensor",
) -> list[Tensor]:
    """One 0/1 mask per parameter (1 = trained), by ``rule`` (see the module docstring).

    Args:
        params: the tensors (float, or fixed point from :func:`edgezo.fixedpoint.quantize_model`).
        sparsity: the fraction frozen, in ``[0, 1)`` (``"topk"``, ``"random"``).
        rule: ``"topk"``, ``"random"`` or ``"threshold"``.
        threshold: ``"threshold"`` only: keep ``|w| > threshold``.
        seed: ``"random"`` only.
        scope: ``"tensor"`` (exact count per tensor) or ``"global"`` (over all tensors).

    Returns:
        Masks with each parameter's shape, on its device, float32 (fixed point)
        or the parameter's dtype, holding exactly 0 and 1.

    Example:
        >>> w = torch.tensor([0.1, -0.9, 0.3, 0.0, 0.5, -0.2, 0.05, 0.7, -0.4, 0.6])
        >>> masks([w], sparsity=0.7)[0]
        tensor([0., 1., 0., 0., 0., 0., 0., 1., 0., 1.])
    """
    params = list(params)
    _check_choices(rule, scope)
    seed = checks.seed(seed)  # never wrapped by torch's generator (-1 would be 2**64 - 1)
    if rule == "threshold":
        if threshold is None or not math.isfinite(threshold) or threshold < 0:
            raise ValueError(
                f"rule='threshold' needs a finite threshold >= 0 (keep |w| > threshold), got {threshold}"
            )
        return [_like(p, magnitudes(p) > threshold) for p in params]
    if threshold is not None:
        raise ValueError(f"threshold is only used by rule='threshold', not {rule!r}")
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ValueError(
            f"Invalid sparsity {sparsity}; use 0 <= sparsity < 1 (the fraction of weights frozen)"
        )
    if not params:
        return []
    if scope == "global":
        return _global_masks(params, sparsity, rule, seed)
    return _tensor_masks(params, sparsity, rule, seed)


def _check_choices(rule: str, scope: str) -> None:
    if rule not in RULES:
        raise ValueError(f"Invalid rule {rule!r}; choose one of {RULES}")
    if scope not in SCOPES:
        raise ValueError(f"Invalid scope {scope!r}; choose one of {SCOPES}")


def _global_masks(params: list[Tensor], sparsity: float, rule: str, seed: int) -> list[Tensor]:
    """``scope="global"``: rank (or draw) over all tensors together."""
    sizes = [p.numel() for p in params]
    keep = torch.zeros(sum(sizes), dtype=torch.bool)
    k = kept(len(keep), sparsity)
    if rule == "topk":
        flat = torch.cat([magnitudes(p).reshape(-1).cpu() for p in params])
        keep[_largest(flat, k)] = True
    else:
        keep[torch.randperm(len(keep), generator=_generator(seed))[:k]] = True
    return [_like(p, part.view(p.shape)) for p, part in zip(params, keep.split(sizes), strict=True)]


def _tensor_masks(params: list[Tensor], sparsity: float, rule: str, seed: int) -> list[Tensor]:
    """``scope="tensor"``: an exact count per tensor (one generator, tensors in order)."""
    out, g = [], _generator(seed)
    for p in params:
        keep = torch.zeros(p.numel(), dtype=torch.bool)
        k = kept(p.numel(), sparsity)
        if rule == "topk":
            keep[_largest(magnitudes(p).reshape(-1).cpu(), k)] = True
        else:
            keep[torch.randperm(p.numel(), generator=g)[:k]] = True
        out.append(_like(p, keep.view(p.shape)))
    return out


def sparse_groups(
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    sparsity: float = 0.9,
    rule: str = "topk",
    threshold: float | None = None,
    seed: int = 0,
    scope: str = "tensor",
) -> list[dict[str, Any]]:
    """ZO parameter groups with masks from :func:`masks`: ``ZO(sparse_groups(model.parameters()))``.

    ``params`` may be tensors (one group) or group dicts (each keeps its other
    settings, e.g. ``lr``; a group that already has ``masks`` is an error).
    With ``scope="global"`` the ranking spans all groups.

    Example:
        >>> net = torch.nn.Linear(10, 10)
        >>> groups = sparse_groups(net.parameters(), sparsity=0.9)
        >>> [int(m.sum()) for m in groups[0]["masks"]]
        [10, 1]
    """
    items = list(params)
    if items and all(isinstance(g, dict) for g in items):
        groups = [dict(g) for g in items]
    else:
        groups = [{"params": items}]
    for g in groups:
        ps = g["params"]
        g["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
        if g.get("masks") is not None:
            raise ValueError("A parameter group already has masks; give groups without 'masks'")
    flat = [p for g in groups for p in g["params"]]
    ms = iter(masks(flat, sparsity, rule, threshold, seed, scope))
    for g in groups:
        g["masks"] = [next(ms) for _ in g["params"]]
    return groups


def _largest(values: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest values; ties to the lower index."""
    return torch.sort(values, descending=True, stable=True).indices[:k]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _like(p: Tensor, keep: Tensor) -> Tensor:
    dtype = p.dtype if p.is_floating_point() else torch.float32
    return keep.to(device=p.device, dtype=dtype).reshape(p.shape)
