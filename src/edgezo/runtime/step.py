"""The compiled executor of the fixed-point path: QZO-FF's integer step in C, on the same integers.

:class:`CompiledStep` runs a :class:`~edgezo.formats.FixedPointFormat`'s perturbed
reads and updates in ``c/edgezo_step.c`` (compiled once into the cache, see
:mod:`.clib`) on the very tensors ``ZO`` trains: the C code gets their data pointers
and writes a perturbed read into a fresh buffer, as the Python path does. Python
keeps only what needs floats, once per step: the update's multiply-and-shift
``(m, k)`` (:class:`~edgezo.fixedpoint.Requant`) and the integer coefficients of the
losses. The numbers are bit-identical to the Python path
(``tests/test_runtime_device.py``).

:func:`compiled_step` is where the fixed-point path chooses its executor: this one on
the CPU when a C compiler builds the library and the source is one the C step
reproduces, else ``None`` and the Python path (with the reason).
"""

from __future__ import annotations

import ctypes
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..formats.fixedpoint.model import FixedPointParameter
from ..formats.fixedpoint.quant import Requant
from ..params import Segment
from ..passes.compiled import in_parallel, pieces
from .clib import CompilerMissing, Factors, ReadParams, Term, check, library
from .clib import Tensor as CTensor
from .zsource import DeviceSource, UnsupportedSource

if TYPE_CHECKING:
    from ..formats.fixedpoint import FixedPointFormat


@dataclass
class DeviceTensor:
    """One trained tensor as the C step sees it: shape as rows x cols, qmax, packed mask."""

    struct: CTensor
    mask: np.ndarray | None
    eps_q: np.ndarray

    @classmethod
    def of(cls, seg: Segment, eps_q: Tensor) -> DeviceTensor:
        p = seg.param
        if p.device.type != "cpu" or not p.is_contiguous():
            raise ValueError(
                f"The C step reads and writes host memory, but a tensor of shape "
                f"{tuple(p.shape)} is on {p.device} (or not contiguous): keep the integer "
                "weights on the CPU (model.cpu()) to train with DeviceFormat."
            )
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


def in_ranges(function, head: tuple, source: DeviceSource, terms: int, n: int) -> None:
    """``function(*head, work, lo, hi)`` over elements ``[0, n)`` cut into one range per torch
    thread (:func:`edgezo.passes.compiled.pieces`), each with its own work area; every
    element is computed alone, so the integers do not depend on the cut. All ranges
    finish before an error or interrupt propagates (an update is never left half done)."""
    cut = pieces(n, torch.get_num_threads())
    works = [source.work(terms, slot) for slot in range(len(cut))]  # made here, not in threads

    def one(work, lo: int, hi: int) -> None:
        check(function(*head, ctypes.byref(work), lo, hi))

    stop = in_parallel([partial(one, w, lo, hi) for w, (lo, hi) in zip(works, cut, strict=True)])
    if stop is not None:
        raise stop


@dataclass(frozen=True)
class DeviceRead:
    """What a fixed-point layer reads during a step, computed by the C step (plain data).

    Each read goes into a fresh tensor, freed once its forward has consumed it, as the
    Python path's; a device writes it into one read buffer that each read overwrites.
    """

    source: DeviceSource
    tensor: DeviceTensor
    params: ReadParams
    terms: ctypes.Array  #: ``ez_term`` rows ``(base, step, query, net)``
    count: int  #: how many of them

    def read(self, p: FixedPointParameter) -> Tensor:
        """``sat(requant_dz(w_q * 1_q + sum net * eps_q * z_q))``, into a fresh tensor."""
        out = torch.empty_like(p.data)
        head = (ctypes.byref(self.source.source), self.tensor.bind(p.data), out.data_ptr(),
                ctypes.byref(self.params), self.terms, self.count)  # fmt: skip
        in_ranges(library().ez_read_range, head, self.source, self.count, p.numel())
        return out


class CompiledStep:
    """A fixed-point format's reads, updates and decay in C (see the module docstring)."""

    def __init__(self, fmt: FixedPointFormat) -> None:
        self.fmt, self.lib = fmt, library()
        self.source = DeviceSource.of(fmt.directions, fmt.zf).indexed()
        self.tensors = [
            DeviceTensor.of(seg, eps_q) for seg, eps_q in zip(fmt.segments, fmt.eps_q, strict=True)
        ]
        one, m, k = fmt.zf.one, int(fmt.requant_dz.m), int(fmt.requant_dz.k)
        self.read_params = [
            ReadParams(one, m, k, t.eps_q.ctypes.data, t.eps_q.size) for t in self.tensors
        ]
        #: tensor index -> ((lr, delta), ez_factors, the arrays it points into)
        self.factor_cache: dict[int, tuple[tuple[float, float], Factors, list]] = {}

    def start(self, nets: Sequence[tuple[tuple[int, int], int]]) -> None:
        """Layers read their perturbed integers through :class:`DeviceRead` (the C step)."""
        fmt, src = self.fmt, self.source
        for seg, tensor, params in zip(fmt.segments, self.tensors, self.read_params, strict=True):
            terms = [src.term(fmt.directions, s, q, seg.offset, n) for (s, q), n in nets]
            seg.param.fixed.perturbation = DeviceRead(
                src, tensor, params, terms_array(terms), len(terms)
            )

    def subtract_terms(
        self, k: int, lr: float, delta: float, live: list[tuple[int, int, int]]
    ) -> None:
        """Segment ``k``'s update in C, with the Python path's ``(m, k)`` rows."""
        seg, src = self.fmt.segments[k], self.source
        terms = [src.term(self.fmt.directions, s, q, seg.offset, n) for s, q, n in live]
        head = (ctypes.byref(src.source), self.tensors[k].bind(seg.param.data),
                ctypes.byref(self.update_factors(k, lr, delta)), terms_array(terms), len(terms))  # fmt: skip
        in_ranges(self.lib.ez_update_range, head, src, len(terms), seg.numel)

    def update_factors(self, k: int, lr: float, delta: float) -> Factors:
        """Segment ``k``'s ``(m, k)`` rows of the format's ``update_factor``, as the Python
        path computes them; kept while ``(lr, delta)`` stays (every sign-m-SPSA step)."""
        key = (lr, delta)
        if self.factor_cache.get(k, (None,))[0] != key:
            factor = self.fmt.update_factor(self.fmt.segments[k], lr, delta)
            requant = Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1, 1))
            self.factor_cache[k] = (key, *factors(requant))
        return self.factor_cache[k][1]

    def decay(self, decays: Sequence[float]) -> None:
        """Weight decay ``w_q <- sat(w_q - requant(w_q))`` in C, requant ~ ``lr * weight_decay``."""
        for seg, tensor in zip(self.fmt.segments, self.tensors, strict=True):
            if decays[seg.group]:
                f, keep = factors(
                    Requant.of(torch.tensor([[decays[seg.group]]], dtype=torch.float64))
                )
                check(self.lib.ez_decay(tensor.bind(seg.param.data), ctypes.byref(f)))
                del keep

    def state_bytes(self, terms: int) -> int:
        """Bytes the device keeps beyond inference (see ``ez_state_bytes`` in the header)."""
        rows = sum(int(t.struct.rows) for t in self.tensors)
        masked = sum(t.struct.rows * t.struct.cols for t in self.tensors if t.mask is not None)
        return int(self.lib.ez_state_bytes(ctypes.byref(self.source.source), terms, rows, masked))


def compiled_step(fmt: FixedPointFormat, required: bool = False) -> tuple[CompiledStep | None, str]:
    """The C executor of ``fmt`` and ``"compiled"``, or ``None`` and why the Python path runs.

    ``required``: raise (:class:`~.clib.CompilerMissing`, :class:`~.zsource.UnsupportedSource`,
    ``ValueError``) instead of falling back.
    """
    try:
        return CompiledStep(fmt), "compiled"
    except (CompilerMissing, UnsupportedSource, ValueError) as err:  # expected: say it in .executor
        if required:
            raise
        return None, f"python ({err})"
    except (RuntimeError, OSError) as err:  # a broken toolchain: warn, as the float passes do
        if required:
            raise
        warnings.warn(f"edgezo: the compiled fixed-point step is unavailable, using torch: {err}",
                      stacklevel=3)  # fmt: skip
        return None, f"python ({err})"
