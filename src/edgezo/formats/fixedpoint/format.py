"""FixedPointFormat: the number format of integer weights (QZO-FF, PAPERS.md B).

Owns the tensors made by :func:`~edgezo.formats.fixedpoint.model.quantize_model`
(``w = dw * w_q``). A perturbation writes nothing: the format sets a
:class:`~.integer.PerturbedRead` (plain data) on each parameter, from which its
layer computes ``w_q(+/-) = sat(requant(w_q * 1_q +/- eps_q * z_q))`` on the fly;
an update is the integer formula of :mod:`.integer`, chunk by chunk.

Two executors give the same integers: the compiled C step
(:mod:`edgezo.runtime.step`, the device's own code), taken on the CPU whenever a C
compiler builds it and the source is one it reproduces, and this module's torch code,
the reference and the fallback (always under ``EDGEZO_KERNELS=off``). :attr:`executor`
says which runs and, for Python, why.

The settings of this path (how ``z`` becomes integers, and whether to train a
configuration that cannot) live here, not on ``ZO``: they only mean something
for integer weights. They are the optimizer's datapath, not the weights'
storage, so they are not read from the quantized model (which fixes ``w_q`` and
``dw`` only); one model can be trained with several ``z`` formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ... import checks, passes
from ...params import Segment
from ...runtime.step import CompiledStep, compiled_step
from ..base import Key, NumberFormat
from .integer import PerturbedRead, UntrainableError, ZFormat, integer_coefficients
from .integer import subtract as subtract_integers
from .quant import Requant

if TYPE_CHECKING:
    from ...estimators import Estimator


class FixedPointFormat(NumberFormat):
    """Integer weights with fixed scales, perturbed on the fly and updated with integer arithmetic.

    Args:
        z_bits: ``z`` is quantized to ``z_bits``-bit integers,
            ``z_q = sat(round(z / dz))`` with ``dz = z_max / (2**(z_bits-1) - 1)``
            (a hardware source whose integers already fit, e.g. ``LFSR(bits=7)``,
            is used as is).
        z_max: the clipping range of ``z``.
        force: build even if the configuration cannot train (``eps`` or the
            update rounds to zero at the weights' bit width); the error
            otherwise raised says which tensor and by how much.

    Example:
        >>> import torch
        >>> from edgezo import ZO
        >>> from edgezo.fixedpoint import quantize_model, trainable_parameters
        >>> net = quantize_model(torch.nn.Linear(4, 2), activation_bits=None)
        >>> opt = ZO(trainable_parameters(net), lr=1e-2, eps=1e-2, estimator="sign",
        ...          formats=FixedPointFormat(z_bits=8, z_max=3.5))
        >>> [f.name for f in opt.formats]
        ['fixed point']
    """

    name = "fixed point"

    def __init__(self, z_bits: int = 8, z_max: float = 3.5, force: bool = False) -> None:
        z_bits = checks.integer("z_bits", z_bits)
        if not 2 <= z_bits <= 32:
            raise ValueError(f"Invalid bit width z_bits={z_bits}; use 2..32 bits")
        if isinstance(z_max, bool) or not (
            isinstance(z_max, (int, float)) and math.isfinite(z_max) and z_max > 0
        ):
            raise ValueError(f"Invalid z_max {z_max}; the clipping range of z must be > 0")
        if not isinstance(force, bool):
            raise TypeError(f"Invalid force={force!r}: use True or False")
        self.z_bits, self.z_max, self.force = z_bits, float(z_max), force

    def owns(self, segment: Segment) -> bool:
        return segment.fixed

    def config(self) -> dict[str, Any]:
        """``z_bits`` and ``z_max`` (``force`` changes no number: not recorded)."""
        return {"type": "FixedPointFormat", "z_bits": self.z_bits, "z_max": self.z_max}

    def prepare(self) -> None:
        self.zf = ZFormat.of(self.directions, self.z_bits, self.z_max)
        self.requant_dz = Requant.of(self.zf.dz)
        self.eps_q: list[Tensor] = [
            torch.round(self.eps / seg.param.fixed.scale).to(torch.int64) for seg in self.segments
        ]
        self.active: dict[Key, int] = {}
        self.step, self.executor = self.executor_of()

    def executor_of(self) -> tuple[CompiledStep | None, str]:
        """The compiled step and ``"compiled"``, or ``None`` and ``"python (why)"``."""
        if passes.mode == "off":
            return None, "python (EDGEZO_KERNELS=off)"
        return compiled_step(self)

    # -- checks before training ----------------------------------------------------------
    def problems(self, lrs: Sequence[float], estimator: Estimator) -> list[str]:
        """Why this configuration cannot train, with the numbers (empty if it can)."""
        out = []
        for seg, eps_q in zip(self.segments, self.eps_q, strict=True):
            dw = seg.param.fixed.scale
            name = f"a {seg.param.fixed.bits}-bit tensor of shape {tuple(seg.param.shape)}"
            if bool((eps_q == 0).any()):
                out.append(
                    f"eps = {self.eps:g} rounds to eps_q = 0 for {name} (weight step dw up to "
                    f"{float(dw.max()):.3g}): its perturbation vanishes; use eps >= "
                    f"{ceil3(0.501 * float(dw.max()))} or more weight bits"
                )
            lr = lrs[seg.group]
            step = lr * self.zf.one * self.zf.dz / dw  # a one-sigma sign update, in units of dw
            if estimator.sign_updates and lr > 0 and bool((step < 0.5).any()):
                out.append(
                    f"lr = {lr:g} gives a one-sigma update of {float(step.min()):.3g} weight "
                    f"steps for {name}: it rounds to zero; use lr >= "
                    f"{ceil3(0.5 * float(dw.max()) / (self.zf.one * self.zf.dz))} "
                    "or more weight bits"
                )
        return out

    def check(self, lrs: Sequence[float], estimator: Estimator) -> None:
        if estimator.needs_float_weights:
            raise ValueError(
                f"estimator {estimator.name!r} needs float weights (forward-mode AD); fixed-point "
                "weights train with 'central', 'forward' or 'sign'"
            )
        problems = self.problems(lrs, estimator)
        if problems and not self.force:
            raise UntrainableError(
                "This fixed-point configuration cannot train:\n- "
                + "\n- ".join(problems)
                + "\n(QZO-FF needs 16-bit weights for this reason.) Pass force=True to train "
                "anyway: formats=FixedPointFormat(force=True), or qzo_ff(..., force=True)."
            )

    # -- perturbation (on the fly) -------------------------------------------------------
    def start(self) -> None:
        """From now until :meth:`restore`, layers read ``sat(requant_dz(w_q * 1_q + ...))``.

        Every evaluation of a step, perturbed or not, then goes through the same
        integer path, so the unperturbed point of the one-sided estimator carries
        the same ``1_q * dz`` factor as the perturbed ones.
        """
        nets = tuple(self.active.items())
        if self.step is not None:
            self.step.start(nets)
            return
        for seg, eps_q in zip(self.segments, self.eps_q, strict=True):
            seg.param.fixed.perturbation = PerturbedRead(
                self.directions, self.zf, self.requant_dz, eps_q, seg.offset, seg.mask, nets
            )

    def perturb(self, moves: Sequence[tuple[Key, float]]) -> None:
        """Layers read ``w_q`` perturbed by ``net * eps_q`` along every active ``z(key)``.

        Several directions may be active at once (a sharpness-aware ascent plus
        the estimate); their ``net * eps_q * z_q`` terms share one accumulator.
        """
        for key, multiple in moves:
            net = self.active.get(key, 0) + multiple
            if net != int(net):
                raise ValueError(
                    f"fixed-point perturbations are integer multiples of eps, got {net}"
                )
            if net:
                self.active[key] = int(net)
            else:
                self.active.pop(key, None)
        self.start()

    def restore(self) -> None:
        self.active.clear()
        for seg in self.segments:
            seg.param.fixed.perturbation = None

    # -- the update ------------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self,
        terms: Sequence[tuple[int, int, float]],
        weights: Sequence[Sequence[float]],
        lrs: Sequence[float],
    ) -> None:
        """``w_q <- sat(w_q - requant(sum_i n_i z_q,i))`` per tensor (see :mod:`.integer`).

        ``weights[t][i]`` is term ``t``'s weight on tensor ``i`` of the space.
        """
        self.restore()
        for k, (seg, i) in enumerate(zip(self.segments, self.indices, strict=True)):
            lr = lrs[seg.group]
            numerators, delta = integer_coefficients([w[i] for w in weights])
            if lr == 0.0 or delta == 0.0:
                continue
            live = [
                (step, query, n) for (step, query, _), n in zip(terms, numerators, strict=True) if n
            ]
            self.subtract_terms(k, lr, delta, live)

    def subtract_terms(
        self, k: int, lr: float, delta: float, live: list[tuple[int, int, int]]
    ) -> None:
        """Segment ``k``: ``w_q <- sat(w_q - requant(sum_i n_i z_q,i))`` for ``live`` terms
        ``(step, query, n_i)``, requant ~ :meth:`update_factor` (the executor of the update)."""
        if self.step is not None:
            self.step.subtract_terms(k, lr, delta, live)
            return
        seg = self.segments[k]
        subtract_integers(seg, self._gradient(seg, live), self.update_factor(seg, lr, delta))

    def update_factor(self, seg: Segment, lr: float, delta: float) -> Tensor:
        """``lr * delta * dz / dw``: one unit of ``g_q`` in weight steps (per tensor or channel)."""
        return lr * delta * self.zf.dz / seg.param.fixed.scale

    def _gradient(
        self, seg: Segment, live: list[tuple[int, int, int]]
    ) -> Callable[[int, int], Tensor]:
        """``g_q = sum_i n_i z_q,i`` over flat elements ``start:stop`` of ``seg`` (int64)."""

        def gradient(start: int, stop: int) -> Tensor:
            g = torch.zeros(stop - start, dtype=torch.int64)
            for step, query, n in live:
                g += n * self.zf.integers(
                    self.directions, step, query, seg.offset + start, stop - start
                )
            return g

        return gradient

    @torch.no_grad()
    def decay(self, factors: Sequence[float]) -> None:
        """Weight decay ``w_q <- sat(w_q - requant(w_q))``, requant ~ ``lr * weight_decay``."""
        if self.step is not None:
            self.step.decay(factors)
            return
        for seg in self.segments:
            if factors[seg.group]:
                flat = seg.param.data.view(-1)
                subtract_integers(
                    seg, lambda a, b, flat=flat: flat[a:b].to(torch.int64), factors[seg.group]
                )


def ceil3(x: float) -> str:
    """``x`` rounded up to 3 significant digits (advice that is enough when followed)."""
    if x <= 0:
        return "0"
    e = math.floor(math.log10(x)) - 2
    return f"{math.ceil(x / 10**e) * 10**e:.3g}"
