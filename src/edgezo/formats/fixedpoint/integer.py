"""The integer arithmetic of fixed-point training (QZO-FF, PAPERS.md B): perturbed reads and updates.

Notation (per tensor, or per output channel with per-channel scales): weights
``w = dw * w_q`` in ``b`` bits; perturbations ``z = dz * z_q`` with ``z_q`` an
8-bit integer (``dz = z_max / 127``, so ``1.0`` is ``1_q = round(1 / dz)``, 36 at
``z_max = 3.5``); ``eps_q = round(eps / dw)``.

* Perturbed weights, as the paper's NPU computes them while streaming weights
  to the compute unit::

      w_q(+/-) = sat_b(requant_dz(w_q * 1_q +/- eps_q * z_q))

  a 16x8-bit product in a 32-bit accumulator, brought back to ``b`` bits by a
  multiply and a shift (``m / 2**k ~ dz``). They are computed on the fly when a
  layer reads its weights (:mod:`.model`), from the plain data of a
  :class:`PerturbedRead` that the fixed-point number format (:mod:`.format`) sets
  on the parameter; the stored ``w_q`` is not touched, so perturb + restore is
  bit-exact by construction. Note the
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

from ...directions import Directions
from ...params import BitMask, Segment
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


@dataclass(frozen=True)
class PerturbedRead:
    """What a fixed-point layer reads during a step: plain data, set by the number format.

    ``read(p)`` gives ``sat(requant_dz(w_q * 1_q + sum_k net_k * eps_q * z_q,k))``
    (masked elements: ``w_q``), regenerating each ``z_q,k`` from the direction
    source, a pure function of ``(step, query, index)``: nothing of the
    optimizer is reached, and nothing is stored. With no ``nets`` it is the
    unperturbed point on the same integer path (``1_q * dz`` included), so every
    evaluation of a step reads through it.
    """

    directions: Directions
    zf: ZFormat
    requant_dz: Requant
    eps_q: Tensor  #: ``round(eps / dw)``, per tensor or per output channel
    offset: int  #: the tensor's global index in the flat vector
    mask: BitMask | None
    nets: tuple[tuple[tuple[int, int], int], ...] = ()  #: ``((step, query), net)``

    def read(self, p: FixedPointParameter) -> Tensor:
        """The perturbed integers of ``p``, in ``CHUNK`` pieces (whole channels)."""
        eps_q = self.eps_q.reshape(-1, 1)
        flat, out = p.data.view(-1), torch.empty_like(p.data)
        mask = self.mask
        for start, stop, rows in _chunks(p):
            w, eps_rows = flat[start:stop], _rows_of(eps_q, rows)
            acc = w.to(torch.int64).view(eps_rows.shape[0], -1) * self.zf.one
            for key, net in self.nets:
                z = self.zf.integers(self.directions, *key, self.offset + start, stop - start)
                acc += (net * eps_rows) * z.view(acc.shape)
            q = saturate(self.requant_dz.apply(acc), p.fixed.bits).view(-1).to(p.dtype)
            out.view(-1)[start:stop] = (
                q if mask is None else torch.where(mask.unpack(start, stop), q, w)
            )
        return out


@torch.no_grad()
def subtract(seg: Segment, amount: Callable[[int, int], Tensor], factor: Tensor | float) -> None:
    """``w_q <- sat(w_q - requant(amount))``, ``CHUNK`` elements (whole channels) at a time.

    ``amount(start, stop)`` gives the int64 amount of flat elements
    ``start:stop``; ``factor`` is per tensor or per output channel. Chunks keep
    the int64 temporaries small (the step's scratch stays near the forward's).
    """
    p = seg.param
    flat = p.data.view(-1)
    requant = Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1, 1))
    for start, stop, rows in _chunks(p):
        chunk = Requant(_rows_of(requant.m, rows), _rows_of(requant.k, rows))
        change = chunk.apply(amount(start, stop).view(chunk.m.shape[0], -1))
        change = change.view(-1)
        if seg.mask is not None:
            change *= seg.mask_piece(start, stop, torch.int64)
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
