"""Integer perturbation and update of fixed-point weights (QZO-FF, PAPERS.md B).

Notation (per tensor, or per output channel with per-channel scales): weights
``w = dw * w_q`` in ``b`` bits; perturbations ``z = dz * z_q`` with ``z_q`` an
8-bit integer (``dz = z_max / 127``, so ``1.0`` is ``1_q = round(1 / dz)``, 36 at
``z_max = 3.5``); ``eps_q = round(eps / dw)``.

* Perturbed weights, as the paper's NPU computes them while streaming weights
  to the compute unit::

      w_q(+/-) = sat_b(requant_dz(w_q * 1_q +/- eps_q * z_q))

  a 16x8-bit product in a 32-bit accumulator, brought back to ``b`` bits by a
  multiply and a shift (``m / 2**k ~ dz``). They are computed on the fly when a
  layer reads its weights (:mod:`edgezo.fixedpoint.model`); the stored ``w_q``
  is not touched, so perturb + restore is bit-exact by construction. Note the
  paper's scheme evaluates at ``(1_q dz) w`` (0.992 w at ``z_max = 3.5``): the
  constant 1.0 is itself quantized.
* Update, for the terms ``(step, query, weight)`` of the update rule: the weights
  are written as integers ``n_i`` times one step ``delta`` (sign-m-SPSA: ``n_i =
  +/-1`` and ``delta = 1/m``, exact; otherwise ``delta = max|weight| / 127``,
  8-bit coefficients), the gradient is the integer ``g_q = sum_i n_i z_q,i`` and::

      w_q <- sat_b(w_q - requant(g_q))       requant ~ lr * delta * dz / dw

  so the ``1/m`` of sign-m-SPSA is folded into the one multiply-and-shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..directions import Directions
from ..params import Segment
from .model import FixedPointParameter
from .quant import Requant, channel_view, qmax, saturate

#: Elements per chunk of the integer update (whole output channels where scales are per
#: channel): bounds its int64 temporaries to ~CHUNK * 8 bytes each.
CHUNK = 1 << 14


class UntrainableError(ValueError):
    """A fixed-point configuration whose perturbation or update rounds to zero (it cannot train)."""


@dataclass(frozen=True)
class ZFormat:
    """How ``z`` becomes 8-bit integers: ``z_q = sat(round(z / dz))``, ``dz = z_max / qmax``.

    A hardware source whose odd integers ``v`` fit in ``bits`` (e.g.
    ``LFSR(bits=7)``) is used as is, with ``dz`` its own ``scale``.
    """

    dz: float
    bits: int
    native: bool  # the source's integers are used directly

    @classmethod
    def of(cls, directions: Directions, bits: int = 8, z_max: float = 3.5) -> ZFormat:
        native_bits = getattr(directions, "bits", None)
        if hasattr(directions, "integers") and native_bits is not None and native_bits < bits:
            return cls(float(directions.scale), bits, True)
        if not z_max > 0:
            raise ValueError(f"Invalid z_max {z_max}; the clipping range of z must be > 0")
        return cls(z_max / qmax(bits), bits, False)

    @property
    def one(self) -> int:
        """``1_q = round(1 / dz)``: the constant 1.0 in z's format."""
        return round(1.0 / self.dz)

    def integers(
        self, directions: Directions, step: int, query: int, offset: int, n: int
    ) -> Tensor:
        """``z_q`` of ``z(step, query)[offset : offset + n]`` (int32)."""
        if self.native:
            return directions.integers(step, query, offset, n).to(torch.int32)
        z = directions.sample(step, query, offset, n)
        return saturate(torch.round(z / self.dz), self.bits).to(torch.int32)


class FixedPointSteps:
    """The integer side of one ZO optimizer: on-the-fly perturbation and integer updates."""

    def __init__(
        self, segments: Sequence[Segment], directions: Directions, eps: float, zf: ZFormat
    ):
        self.segments, self.directions, self.zf = list(segments), directions, zf
        self.requant_dz = Requant.of(zf.dz)
        self.eps_q = [self._eps_q(seg, eps) for seg in self.segments]
        self.active: dict[tuple[int, int], int] = {}

    @staticmethod
    def _eps_q(seg: Segment, eps: float) -> Tensor:
        return torch.round(eps / seg.param.fixed.scale).to(torch.int64)

    # -- checks before training ----------------------------------------------------------
    def problems(self, lrs: Sequence[float], eps: float, sign_updates: bool) -> list[str]:
        """Why this configuration cannot train, with the numbers (empty if it can)."""
        out = []
        for seg, eps_q in zip(self.segments, self.eps_q, strict=True):
            dw = seg.param.fixed.scale
            name = f"a {seg.param.fixed.bits}-bit tensor of shape {tuple(seg.param.shape)}"
            if bool((eps_q == 0).any()):
                out.append(
                    f"eps = {eps:g} rounds to eps_q = 0 for {name} (weight step dw up to "
                    f"{float(dw.max()):.3g}): its perturbation vanishes; use eps >= "
                    f"{_ceil3(0.501 * float(dw.max()))} or more weight bits"
                )
            lr = lrs[seg.group]
            step = lr * self.zf.one * self.zf.dz / dw  # a one-sigma sign update, in units of dw
            if sign_updates and lr > 0 and bool((step < 0.5).any()):
                out.append(
                    f"lr = {lr:g} gives a one-sigma update of {float(step.min()):.3g} weight "
                    f"steps for {name}: it rounds to zero; use lr >= "
                    f"{_ceil3(0.5 * float(dw.max()) / (self.zf.one * self.zf.dz))} "
                    "or more weight bits"
                )
        return out

    # -- perturbation (on the fly) -------------------------------------------------------
    def start(self) -> None:
        """From now until :meth:`clear`, layers read ``sat(requant_dz(w_q * 1_q + ...))``.

        Every evaluation of a step, perturbed or not, then goes through the same
        integer path, so the unperturbed point of the one-sided estimator carries
        the same ``1_q * dz`` factor as the perturbed ones.
        """
        for j, seg in enumerate(self.segments):
            seg.param.fixed.perturbation = _Perturbed(self, j)

    def perturb(self, key: tuple[int, int], net: int) -> None:
        """Layers read ``w_q`` perturbed by ``net * eps_q`` along ``z(key)`` (0 removes it).

        Several directions may be active at once (a sharpness-aware ascent plus
        the estimate); their ``net * eps_q * z_q`` terms share one accumulator.
        """
        if net:
            self.active[key] = net
        else:
            self.active.pop(key, None)
        self.start()

    def clear(self) -> None:
        self.active.clear()
        for seg in self.segments:
            seg.param.fixed.perturbation = None

    def perturbed(self, j: int) -> Tensor:
        """Tensor ``j``: ``sat(requant_dz(w_q * 1_q + sum_k net_k * eps_q * z_q,k))`` (masked: ``w_q``)."""
        seg = self.segments[j]
        p = seg.param
        eps_q = self.eps_q[j].reshape(-1, 1)
        flat, out = p.data.view(-1), torch.empty_like(p.data)
        mask = None if seg.mask is None else seg.mask.view(-1)
        for start, stop, rows in _chunks(p):
            w, eps_rows = flat[start:stop], _rows_of(eps_q, rows)
            acc = w.to(torch.int64).view(eps_rows.shape[0], -1) * self.zf.one
            for key, net in self.active.items():
                z = self.zf.integers(self.directions, *key, seg.offset + start, stop - start)
                acc += (net * eps_rows) * z.view(acc.shape)
            q = saturate(self.requant_dz.apply(acc), p.fixed.bits).view(-1).to(p.dtype)
            out.view(-1)[start:stop] = (
                q if mask is None else torch.where(mask[start:stop].bool(), q, w)
            )
        return out

    # -- the update ------------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self,
        terms: Sequence[tuple[int, int, float]],
        weights: Sequence[Sequence[float]],
        lrs: Sequence[float],
    ) -> None:
        """``w_q <- sat(w_q - requant(sum_i n_i z_q,i))`` per tensor (see the module doc).

        ``weights[j][t]`` is term ``t``'s weight on fixed-point tensor ``j``.
        """
        for seg, per_term in zip(self.segments, weights, strict=True):
            lr = lrs[seg.group]
            numerators, delta = integer_coefficients(per_term)
            if lr == 0.0 or delta == 0.0:
                continue
            live = [
                (step, query, n) for (step, query, _), n in zip(terms, numerators, strict=True) if n
            ]

            def gradient(start: int, stop: int, seg: Segment = seg, live: list = live) -> Tensor:
                g = torch.zeros(stop - start, dtype=torch.int64)
                for step, query, n in live:
                    g += n * self.zf.integers(
                        self.directions, step, query, seg.offset + start, stop - start
                    )
                return g

            self._subtract(seg, gradient, lr * delta * self.zf.dz / seg.param.fixed.scale)

    @torch.no_grad()
    def decay(self, factors: Sequence[float]) -> None:
        """Weight decay ``w_q <- sat(w_q - requant(w_q))``, requant ~ ``lr * weight_decay``."""
        for seg in self.segments:
            if factors[seg.group]:
                flat = seg.param.data.view(-1)
                self._subtract(
                    seg, lambda a, b, flat=flat: flat[a:b].to(torch.int64), factors[seg.group]
                )

    @staticmethod
    def _subtract(
        seg: Segment, amount: Callable[[int, int], Tensor], factor: Tensor | float
    ) -> None:
        """``w_q <- sat(w_q - requant(amount))``, ``CHUNK`` elements (whole channels) at a time.

        ``amount(start, stop)`` gives the int64 amount of flat elements
        ``start:stop``; ``factor`` is per tensor or per output channel. Chunks keep
        the int64 temporaries small (the step's scratch stays near the forward's).
        """
        p = seg.param
        flat = p.data.view(-1)
        requant = Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1, 1))
        mask = None if seg.mask is None else seg.mask.view(-1)
        for start, stop, rows in _chunks(p):
            chunk = Requant(_rows_of(requant.m, rows), _rows_of(requant.k, rows))
            change = chunk.apply(amount(start, stop).view(chunk.m.shape[0], -1))
            change = change.view(-1)
            if mask is not None:
                change *= mask[start:stop].to(torch.int64)
            flat[start:stop] = saturate(flat[start:stop].to(torch.int64) - change, p.fixed.bits)


def _chunks(p: FixedPointParameter) -> Iterator[tuple[int, int, slice]]:
    """Flat ranges ``[start, stop)`` of about ``CHUNK`` elements of ``p``, and the rows of its
    channel view they cover (whole rows when ``p`` has per-channel scales)."""
    rows, cols = channel_view(p.data, p.fixed.per_channel).shape
    if rows == 1:
        for start in range(0, cols, CHUNK):
            yield start, min(start + CHUNK, cols), slice(0, 1)
        return
    step = max(1, CHUNK // cols)
    for r in range(0, rows, step):
        yield r * cols, min(r + step, rows) * cols, slice(r, r + step)


def _rows_of(per_row: Tensor, rows: slice) -> Tensor:
    """The ``(rows, 1)`` factors of a chunk: per-row values, or the one per-tensor value."""
    return per_row[rows] if per_row.shape[0] > 1 else per_row


def _ceil3(x: float) -> str:
    """``x`` rounded up to 3 significant digits (advice that is enough when followed)."""
    if x <= 0:
        return "0"
    e = math.floor(math.log10(x)) - 2
    return f"{math.ceil(x / 10**e) * 10**e:.3g}"


class _Perturbed:
    """What a layer computes when it reads a weight under perturbation."""

    def __init__(self, steps: FixedPointSteps, index: int):
        self.steps, self.index = steps, index

    def __call__(self, param: FixedPointParameter) -> Tensor:
        return self.steps.perturbed(self.index)


def integer_coefficients(weights: Sequence[float]) -> tuple[list[int], float]:
    """Write ``weights`` as ``n_i * delta`` with integer ``n_i``.

    Equal magnitudes (sign-m-SPSA: ``+/-1/m``) are exact: ``n_i = +/-1``,
    ``delta = 1/m``. Otherwise the coefficients are quantized to 8 bits:
    ``delta = max|w| / 127``.
    """
    mags = {abs(w) for w in weights if w != 0.0}
    if not mags:
        return [0] * len(weights), 0.0
    if len(mags) == 1:
        delta = mags.pop()
        return [int(math.copysign(1, w)) if w else 0 for w in weights], delta
    delta = max(mags) / 127
    return [round(w / delta) for w in weights], delta
