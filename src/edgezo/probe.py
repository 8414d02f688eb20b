"""StepProbe: the optimizer's side of :class:`~edgezo.estimators.Probe` for one step.

An estimator says "perturb along query ``i`` by ``scale``", "evaluate", "done with
``i``"; the probe turns that into moves for the number formats that own the
tensors (:mod:`edgezo.formats`) and counts the forwards. It is given what it
needs (the space, the bound formats, the direction source, ``eps``, the step
and the counters) and reads nothing else of the optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from .directions import Directions
from .directions.base import CHUNK
from .estimators import Closure
from .formats import Key, NumberFormat
from .params import ParamSpace
from .updates import Term


@dataclass
class Counters:
    """What an optimizer counts across steps (saved in its checkpoints)."""

    steps: int = 0  #: steps taken (the perturbation counter; also counts skipped steps)
    skipped: int = 0  #: steps skipped because a loss or coefficient was not finite
    forwards: int = 0  #: closure evaluations so far


class StepProbe:
    """Perturb, evaluate and restore for one step, through the number formats.

    ``nets[key]`` is how many ``eps * z(key)`` are currently added. Restores of
    released queries are deferred to the next perturbation (one fused pass) or
    to :meth:`finish` (fused with the update); :meth:`undo` puts everything back.
    """

    def __init__(
        self,
        space: ParamSpace,
        formats: Sequence[NumberFormat],
        directions: Directions,
        eps: float,
        step: int,
        counters: Counters,
    ) -> None:
        self.space, self.formats, self.directions = space, list(formats), directions
        self.eps, self.step, self.counters = float(eps), step, counters
        self.nets: dict[Key, float] = {}
        self.released: list[int] = []
        for fmt in self.formats:
            fmt.start()

    # perturbations -------------------------------------------------------
    def perturb(self, query: int, scale: float) -> None:
        """Undo released queries and perturb along ``query``, in one pass over the weights."""
        key = (self.step, query)
        restores = [((self.step, q), -self.nets[(self.step, q)]) for q in self.released]
        moves = [*restores, (key, scale)]
        for fmt in self.formats:
            fmt.perturb(moves)
        for released, _ in restores:
            self.nets[released] = 0.0
        self.released.clear()
        self.nets[key] = self.nets.get(key, 0.0) + scale

    def release(self, query: int) -> None:
        self.released.append(query)

    # evaluations ---------------------------------------------------------
    def evaluate(self, closure: Closure) -> float:
        self.counters.forwards += 1
        return loss_value(self.call(closure))

    def call(self, closure: Closure) -> Tensor | float:
        """``closure()``, refusing one that wrote the weights (their version counters moved)."""
        versions = self.space.versions()
        loss = closure()
        written = self.space.written_since(versions)
        if written:
            shapes = ", ".join(str(tuple(s.shape)) for s in written[:3])
            raise RuntimeError(
                f"The closure changed the weights in place ({len(written)} parameter(s), shapes "
                f"{shapes}...): ZO perturbs and restores the weights around each closure call, so "
                "the closure must only compute the loss. Move the change out of the closure "
                "(before or after opt.step). The optimizer's perturbations were taken back; the "
                "closure's own change was not."
            )
        return loss

    def directional(self, closure: Closure, query: int) -> tuple[float, float]:
        """``(L(w), d/dt L(w + t z)|_0)``: every tensor gets ``z(step, query)`` as its tangent.

        Memory: the tangents (``d`` values, one per trainable weight, kept until the
        loss is computed), written a :data:`~edgezo.directions.base.CHUNK` piece at a
        time; making a tensor's tangent briefly holds one more tensor of its size
        (PyTorch's forward-AD formula for the in-place op), and the forward keeps one
        tangent per activation.
        """
        self.counters.forwards += 1
        with fwad.dual_level(), math_attention():
            for seg in self.space:
                p = seg.param
                tangent = _zero_tangent(p).view(-1)
                for start in range(0, seg.numel, CHUNK):
                    stop = min(start + CHUNK, seg.numel)
                    z = self.directions.sample(
                        self.step, query, seg.offset + start, stop - start, dtype=p.dtype,
                        device=p.device,
                    )  # fmt: skip
                    if seg.mask is not None:
                        z.mul_(seg.mask_piece(start, stop, z.dtype))
                    tangent[start:stop].copy_(z)
            primal, tangent = fwad.unpack_dual(self.call(closure))
        if tangent is None:
            raise RuntimeError(
                "The closure's loss does not depend on the parameters (no forward-mode tangent); "
                "check that the closure uses the model whose parameters were given to ZO"
            )
        return loss_value(primal), loss_value(tangent)

    # the update ----------------------------------------------------------
    def finish(
        self,
        terms: Sequence[Term],
        weights: Sequence[Sequence[float]],
        lrs: Sequence[float],
        decays: Sequence[float],
    ) -> None:
        """Undo what is still perturbed, fused with the update terms; then weight decay.

        ``weights[t][i]`` is term ``t``'s weight on tensor ``i`` (the update rule's
        :meth:`~edgezo.updates.UpdateRule.segment_weights`); ``lrs`` and ``decays``
        (``lr * weight_decay``) are per parameter group.
        """
        self.released.clear()
        for fmt in self.formats:
            fmt.update(terms, weights, lrs)
            fmt.decay(decays)
        for fmt in self.formats:
            fmt.end()
        self.nets.clear()

    def undo(self) -> None:
        """Put back everything this step changed: the weights are as before the step."""
        for fmt in self.formats:
            fmt.restore()
        self.nets.clear()


def loss_value(loss: Tensor | float) -> float:
    """The closure's scalar loss as a Python float (a clear error for a non-scalar tensor)."""
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"The closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}; "
                "reduce it (e.g. .mean())"
            )
        return float(loss.detach())
    return float(loss)


def math_attention() -> contextlib.AbstractContextManager:
    """Select PyTorch's math attention kernel: the fused CPU kernels lack forward-mode AD."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _zero_tangent(p: Tensor) -> Tensor:
    """Give ``p`` a forward-mode tangent of zeros, in place and without changing a bit of
    ``p`` (``w - 0 == w``, ``-0.0`` included), and return that tangent (its storage: writes
    to it are the tangent). ``p`` is used as is by the closure's model, so its tangent must
    be set in place; subtracting an expanded zero allocates only the tangent itself."""
    zero = torch.zeros((), dtype=p.dtype, device=p.device).expand_as(p)
    p.sub_(fwad.make_dual(zero, zero))
    return fwad.unpack_dual(p).tangent
