"""DeviceFormat: QZO-FF's integer step run by the compiled C99 device code, on the same integers.

:class:`DeviceFormat` is :class:`~edgezo.formats.FixedPointFormat` whose
perturbed reads and updates run in ``c/edgezo_step.c`` (compiled once into the
cache, see :mod:`.clib`) on the very tensors ``ZO`` trains: the C code gets
their data pointers, and writes a perturbed read into one fresh buffer, as the
Python path does. Python keeps only what needs floats, once per step: the
update's multiply-and-shift ``(m, k)`` (:class:`~edgezo.fixedpoint.Requant`)
and the integer coefficients of the losses. The numbers are bit-identical to
the Python path (``tests/test_runtime_device.py``), and ``config()`` is
FixedPointFormat's, so checkpoints move between the two.

Supported: sources :class:`~edgezo.directions.Pool` (not ``scale='perturbation'``),
:class:`~edgezo.directions.LFSR`, :class:`~edgezo.directions.Xorshift`,
:class:`~edgezo.directions.RNGArray`, :class:`~edgezo.directions.Rademacher`; estimators central, forward and sign (any
``m``), sparse masks, momentum by replay, weight decay; int8 and int16 weights.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..formats.fixedpoint import (
    FixedPointFormat,
    FixedPointParameter,
    Requant,
)
from ..params import Segment
from .clib import BUILD, CompilerMissing, Factors, ReadParams, Term, check, library
from .clib import Tensor as CTensor
from .zsource import DeviceSource, UnsupportedSource

__all__ = ["BUILD", "CompilerMissing", "DeviceFormat", "DeviceRead", "UnsupportedSource"]


@dataclass
class DeviceTensor:
    """One trained tensor as the C step sees it: shape as rows x cols, qmax, packed mask."""

    struct: CTensor
    mask: np.ndarray | None
    eps_q: np.ndarray
    buffer: Tensor | None = None  #: where perturbed reads are written (made on first read)

    def read_buffer(self, data: Tensor) -> Tensor:
        """The tensor's read buffer, shaped and typed as ``data`` (allocated once)."""
        if self.buffer is None or self.buffer.shape != data.shape:
            self.buffer = torch.empty_like(data)
        return self.buffer

    @classmethod
    def of(cls, seg: Segment, eps_q: Tensor) -> DeviceTensor:
        p = seg.param
        if p.dtype not in (torch.int8, torch.int16):
            raise ValueError(
                f"The device step stores int8 or int16 weights; a {p.fixed.bits}-bit tensor of "
                f"shape {tuple(p.shape)} is {p.dtype}: quantize with weight_bits <= 16."
            )
        rows = p.shape[0] if p.fixed.per_channel and p.dim() >= 2 else 1
        mask = None
        if seg.mask is not None:  # the space's own bits: 1 per weight, LSB first
            mask = np.ascontiguousarray(seg.mask.bits.cpu().numpy())
        struct = CTensor(
            elem=p.element_size(), rows=rows, cols=p.numel() // rows,
            qmax=(1 << (p.fixed.bits - 1)) - 1, mask=None if mask is None else mask.ctypes.data,
        )  # fmt: skip
        return cls(struct, mask, eps_q.reshape(-1).to(torch.int32).numpy().copy())

    def bind(self, data: Tensor) -> ctypes.pointer:
        """The struct pointing at ``data``'s current storage (host memory only)."""
        if data.device.type != "cpu" or not data.is_contiguous():
            raise ValueError(
                f"The C device step reads and writes host memory, but a tensor of shape "
                f"{tuple(data.shape)} is on {data.device} (or not contiguous): keep the integer "
                "weights on the CPU (model.cpu()) to train with DeviceFormat."
            )
        self.struct.data = data.data_ptr()
        return ctypes.byref(self.struct)


def terms_array(items: Sequence[tuple[int, int, int, int]]) -> ctypes.Array:
    """``(base, step, query, net)`` rows as a C ``ez_term`` array."""
    out = (Term * max(1, len(items)))()
    for t, (base, step, query, net) in enumerate(items):
        out[t].base, out[t].step, out[t].query, out[t].net = base, step, query, net
    return out


def factors(requant: Requant) -> tuple[Factors, list[np.ndarray]]:
    """``(m, k)`` rows as ``ez_factors`` (and the arrays it points into, to keep alive)."""
    m = requant.m.reshape(-1).numpy().astype(np.int64)
    k = requant.k.reshape(-1).numpy().astype(np.int32)
    return Factors(m.ctypes.data, k.ctypes.data, m.size), [m, k]


@dataclass(frozen=True)
class DeviceRead:
    """What a fixed-point layer reads during a step, computed by the C step (plain data).

    The result goes into the tensor's one read buffer (:attr:`DeviceTensor.buffer`), as
    on a device: each read overwrites the previous one, which its forward has consumed.
    """

    source: DeviceSource
    tensor: DeviceTensor
    params: ReadParams
    terms: ctypes.Array  #: ``ez_term`` rows ``(base, step, query, net)``
    count: int  #: how many of them

    def read(self, p: FixedPointParameter) -> Tensor:
        """``sat(requant_dz(w_q * 1_q + sum net * eps_q * z_q))`` into the read buffer."""
        out = self.tensor.read_buffer(p.data)
        work = self.source.work(self.count)
        status = library().ez_read(
            ctypes.byref(self.source.source), self.tensor.bind(p.data), out.data_ptr(),
            ctypes.byref(self.params), self.terms, self.count, ctypes.byref(work),
        )  # fmt: skip
        check(status)
        return out


class DeviceFormat(FixedPointFormat):
    """:class:`~edgezo.formats.FixedPointFormat` executed by the compiled C99 device step.

    Same arguments and numbers as FixedPointFormat (its ``config()`` too). Raises
    :class:`CompilerMissing` when bound without a C compiler, and
    :class:`UnsupportedSource` for a direction source the integer step cannot
    reproduce (MomentumGuided; a float factor per perturbation: ``scale='perturbation'``).

    Example (needs a C compiler, so not run as a doctest)::

        from edgezo import ZO
        from edgezo.directions import Pool
        from edgezo.fixedpoint import quantize_model, trainable_parameters
        net = quantize_model(torch.nn.Linear(64, 4), activation_bits=None)
        opt = ZO(trainable_parameters(net), lr=1e-2, eps=1e-2, estimator="sign", queries=3,
                 directions=Pool(size=1021, seed=0), formats=DeviceFormat())
        opt.formats[0].state_bytes()  # what the device keeps beyond inference
    """

    name = "fixed point (C)"

    def prepare(self) -> None:
        super().prepare()
        self.lib = library()
        self.device_source = DeviceSource.of(self.directions, self.zf)
        self.tensors = [
            DeviceTensor.of(seg, eps_q)
            for seg, eps_q in zip(self.segments, self.eps_q, strict=True)
        ]
        self.read_params = [
            ReadParams(
                self.zf.one,
                int(self.requant_dz.m),
                int(self.requant_dz.k),
                t.eps_q.ctypes.data,
                t.eps_q.size,
            )  # fmt: skip
            for t in self.tensors
        ]
        #: tensor index -> ((lr, delta), ez_factors, the arrays it points into)
        self.factor_cache: dict[int, tuple[tuple[float, float], Factors, list]] = {}

    def start(self) -> None:
        """Layers read their perturbed integers through :class:`DeviceRead` (the C step)."""
        nets = tuple(self.active.items())
        for seg, tensor, params in zip(self.segments, self.tensors, self.read_params, strict=True):
            src = self.device_source
            terms = [src.term(self.directions, s, q, seg.offset, n) for (s, q), n in nets]
            seg.param.fixed.perturbation = DeviceRead(
                src, tensor, params, terms_array(terms), len(terms)
            )

    def subtract_terms(
        self, k: int, lr: float, delta: float, live: list[tuple[int, int, int]]
    ) -> None:
        """Segment ``k``'s update in C, with the Python path's ``(m, k)`` rows."""
        seg, src = self.segments[k], self.device_source
        terms = [src.term(self.directions, step, query, seg.offset, n) for step, query, n in live]
        self.subtract(seg, self.tensors[k], self.update_factors(k, lr, delta), terms)

    def update_factors(self, k: int, lr: float, delta: float) -> Factors:
        """Segment ``k``'s ``(m, k)`` rows of :meth:`update_factor`, as the Python path
        computes them; kept while ``(lr, delta)`` stays (every sign-m-SPSA step)."""
        key = (lr, delta)
        if self.factor_cache.get(k, (None,))[0] != key:
            factor = self.update_factor(self.segments[k], lr, delta)
            requant = Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1, 1))
            self.factor_cache[k] = (key, *factors(requant))
        return self.factor_cache[k][1]

    def subtract(self, seg: Segment, tensor: DeviceTensor, f: Factors, live: list) -> None:
        """One tensor's update in C, with the same ``(m, k)`` rows as the Python path."""
        work = self.device_source.work(len(live))
        status = self.lib.ez_update(
            ctypes.byref(self.device_source.source), tensor.bind(seg.param.data),
            ctypes.byref(f), terms_array(live), len(live), ctypes.byref(work),
        )  # fmt: skip
        check(status)

    @torch.no_grad()
    def decay(self, decays: Sequence[float]) -> None:
        """Weight decay ``w_q <- sat(w_q - requant(w_q))`` in C, requant ~ ``lr * weight_decay``."""
        for seg, tensor in zip(self.segments, self.tensors, strict=True):
            if decays[seg.group]:
                f, keep = factors(
                    Requant.of(torch.tensor([[decays[seg.group]]], dtype=torch.float64))
                )
                check(self.lib.ez_decay(tensor.bind(seg.param.data), ctypes.byref(f)))
                del keep

    def state_bytes(self, terms: int | None = None) -> int:
        """Bytes the device keeps beyond inference (see ``ez_state_bytes`` in the header).

        ``terms``: cursors held at once (default: the optimizer's queries, at least 1).
        """
        terms = max(1, self.directions.queries) if terms is None else terms
        rows = sum(int(t.struct.rows) for t in self.tensors)
        masked = sum(t.struct.rows * t.struct.cols for t in self.tensors if t.mask is not None)
        return int(
            self.lib.ez_state_bytes(ctypes.byref(self.device_source.source), terms, rows, masked)
        )
