"""ParamSpace: the trainable tensors seen as one virtual flat vector.

Tensors keep their own storage; ParamSpace only fixes their order and each
one's global offset, so a perturbation ``z`` of length ``d`` (the total count)
can be addressed by global index and regenerated tensor by tensor. Masks mark
which elements train (a sparse update): a masked-out element is never perturbed
and never changed. A mask is kept as :class:`BitMask`, 1 bit per weight: the
user's mask is read once, copied into bits and not referenced afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Mask elements packed or unpacked at once (a multiple of 8): the temporaries of
#: :class:`BitMask` stay this small whatever the tensor's size.
MASK_CHUNK = 1 << 16

#: ``1 << j`` for the bits of a byte, LSB first (``numpy.packbits(bitorder="little")``).
_BIT_VALUES = tuple(1 << j for j in range(8))


class BitMask:
    """A 0/1 mask stored as 1 bit per element: what ZO keeps of a user's mask.

    ``bits`` is a ``uint8`` tensor of ``ceil(numel / 8)`` bytes in
    ``numpy.packbits(..., bitorder="little")`` order (element ``i`` is bit ``i % 8``,
    least significant first, of byte ``i // 8``; the last byte's unused bits are 0):
    the layout the C device step (:mod:`edgezo.runtime.device`) reads, so it takes
    ``bits`` as is. Users of a mask read it piece by piece with :meth:`unpack`, so no
    full-size copy is ever made.

    Example:
        >>> m = BitMask.pack(torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
        >>> m.bits.tolist(), m.ones, m.unpack(1, 4).tolist()
        ([13, 1], 4, [False, True, True])
    """

    __slots__ = ("bits", "numel", "ones")

    def __init__(self, bits: Tensor, numel: int, ones: int) -> None:
        if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != -(-numel // 8):
            raise ValueError(
                f"BitMask needs a 1-D uint8 tensor of ceil({numel} / 8) bytes, got "
                f"{bits.dtype} of shape {tuple(bits.shape)}; build one with BitMask.pack(mask)"
            )
        self.bits, self.numel, self.ones = bits, int(numel), int(ones)

    @classmethod
    def pack(cls, mask: Tensor, device: torch.device | str | None = None) -> BitMask:
        """Pack a 0/1 tensor (any dtype) into bits on ``device`` (default: the mask's).

        Reads ``mask`` in :data:`MASK_CHUNK` pieces (temporaries of that size only)
        and keeps no reference to it. Raises if an element is neither 0 nor 1.
        """
        flat = mask.detach().reshape(-1)
        n = flat.numel()
        device = flat.device if device is None else torch.device(device)
        bits = torch.zeros(-(-n // 8), dtype=torch.uint8, device=device)
        weights = torch.tensor(_BIT_VALUES, dtype=torch.uint8, device=flat.device)
        ones = 0
        for start in range(0, n, MASK_CHUNK):
            piece = flat[start : start + MASK_CHUNK]
            on = piece == 1
            if not bool((on | (piece == 0)).all()):
                raise ValueError("Masks hold 0 (frozen) or 1 (trained) only")
            ones += int(on.sum())
            padded = torch.zeros(-(-on.numel() // 8) * 8, dtype=torch.uint8, device=flat.device)
            padded[: on.numel()] = on
            packed = (padded.view(-1, 8) * weights).sum(1, dtype=torch.uint8)
            bits[start // 8 : start // 8 + packed.numel()] = packed.to(device)
        return cls(bits, n, ones)

    @property
    def nbytes(self) -> int:
        """Bytes the mask keeps: ``ceil(numel / 8)``."""
        return self.bits.numel()

    def unpack(self, start: int = 0, stop: int | None = None, dtype=torch.bool) -> Tensor:
        """Elements ``[start, stop)`` as a 0/1 tensor of ``dtype`` on the bits' device.

        A new tensor of ``stop - start`` elements: callers ask for a piece at a time
        (:data:`MASK_CHUNK` or their own chunk), never the whole tensor of a large mask.
        """
        stop = self.numel if stop is None else stop
        if not 0 <= start <= stop <= self.numel:
            raise IndexError(f"mask piece [{start}, {stop}) outside [0, {self.numel})")
        first, last = start // 8, -(-stop // 8)
        shifts = torch.arange(8, dtype=torch.uint8, device=self.bits.device)
        spread = (self.bits[first:last, None] >> shifts) & 1  # (bytes, 8), LSB first
        return spread.view(-1)[start - 8 * first : stop - 8 * first].to(dtype)

    def dense(self, dtype: torch.dtype = torch.bool) -> Tensor:
        """The whole mask as a flat 0/1 tensor (a full-size copy: for inspection and tests)."""
        return self.unpack(0, self.numel, dtype)

    def to(self, device: torch.device | str) -> BitMask:
        """The same bits on ``device``."""
        return BitMask(self.bits.to(device), self.numel, self.ones)

    def __repr__(self) -> str:
        return f"BitMask(numel={self.numel}, ones={self.ones})"


@dataclass(frozen=True)
class Segment:
    """One trainable tensor's place in the flat vector.

    Attributes:
        param: the tensor itself (updated in place).
        offset: global index of its first element.
        group: index of its optimizer parameter group.
        mask: optional :class:`BitMask` over the flat tensor (0 = frozen); a 0/1
            tensor of the parameter's shape is packed into one (and not kept).
    """

    param: Tensor
    offset: int
    group: int
    mask: BitMask | None = None
    numel: int = field(init=False)
    shape: torch.Size = field(init=False, repr=False)
    _flat: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # views made once: a pass touches every tensor, and a view costs microseconds
        object.__setattr__(self, "numel", self.param.numel())
        object.__setattr__(self, "shape", self.param.shape)
        object.__setattr__(self, "_flat", self.param.detach().view(-1))
        if isinstance(self.mask, Tensor):
            object.__setattr__(self, "mask", _check_mask(self.param, self.mask))
        if self.mask is not None and self.mask.numel != self.numel:
            raise ValueError(
                f"A mask of {self.mask.numel} elements was given for a parameter of "
                f"{self.numel}; masks must match their parameter"
            )

    @property
    def fixed(self) -> bool:
        """Whether the tensor holds fixed-point integers (trained with integer arithmetic)."""
        return is_fixed_point(self.param)

    @property
    def end(self) -> int:
        return self.offset + self.numel

    def flat(self) -> Tensor:
        """A 1-D view of the tensor, sharing its storage (made when the space was built)."""
        return self._flat

    def mask_piece(self, start: int, stop: int, dtype: torch.dtype) -> Tensor | None:
        """Mask elements ``[start, stop)`` of the flat tensor as 0/1 ``dtype`` (``None``: no
        mask). Callers ask for a piece at a time: the mask is only stored as bits."""
        return None if self.mask is None else self.mask.unpack(start, stop, dtype)

    @property
    def trained(self) -> int:
        """Elements that train (mask 1): ``numel`` without a mask."""
        return self.numel if self.mask is None else self.mask.ones

    def change(self) -> str | None:
        """What replaced the tensor's storage since the space was built (``None``: nothing).

        ZO writes through the view made at construction: after ``p.data = ...``,
        ``model.half()`` or ``model.to(device)`` that view is no longer the parameter.
        The view keeps the old storage alive, so a new one never has its address:
        comparing addresses is the whole check (one call per tensor and step).
        """
        p, flat = self.param, self._flat
        if p.data_ptr() == flat.data_ptr():
            return None  # the same storage (a reshape through .data still trains the same numbers)
        if p.dtype != flat.dtype:
            return f"its dtype is now {p.dtype}, was {flat.dtype}"
        if p.device != flat.device:
            return f"it is now on {p.device}, was on {flat.device}"
        if p.shape != self.shape:
            return f"its shape is now {tuple(p.shape)}, was {tuple(self.shape)}"
        return "its storage was replaced (p.data = ...)"


class ParamSpace:
    """The trainable tensors of some parameter groups, in a fixed order with global offsets.

    The space keeps flat views of the tensors: replacing a parameter's storage
    afterwards (``p.data = ...``, ``model.half()``) leaves them behind;
    :meth:`check_unchanged` (called by ``ZO.step``) says so. Update values in place instead.

    Args:
        groups: a sequence of parameter lists, one per optimizer group (order is kept).
        masks: optional ``{tensor: 0/1 mask}``; a mask must have the tensor's shape.
            Each is copied into a :class:`BitMask` (1 bit per weight, on the tensor's
            device); the space keeps no reference to the mask given.

    Example:
        >>> a, b = torch.zeros(2, 3), torch.zeros(4)
        >>> space = ParamSpace([[a, b]])
        >>> space.dim, [s.offset for s in space]
        (10, [0, 6])
    """

    def __init__(
        self, groups: Sequence[Iterable[Tensor]], masks: dict[Tensor, Tensor] | None = None
    ) -> None:
        masks = {} if masks is None else masks
        by_id = {id(t): m for t, m in masks.items()}
        segments: list[Segment] = []
        offset = 0
        seen: set[int] = set()
        for g, params in enumerate(groups):
            for p in params:
                _check_param(p, seen)
                mask = _check_mask(p, by_id.get(id(p)))
                segments.append(Segment(p, offset, g, mask))
                offset += p.numel()
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.dim: int = offset
        self.float_segments: tuple[Segment, ...] = tuple(s for s in segments if not s.fixed)
        self.fixed_segments: tuple[Segment, ...] = tuple(s for s in segments if s.fixed)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    def check_unchanged(self) -> None:
        """Raise if a tensor was replaced, cast or moved since the space was built (O(tensors))."""
        for s in self.segments:
            change = s.change()
            if change is not None:
                raise RuntimeError(
                    f"A parameter of shape {tuple(s.shape)} changed since the optimizer was built: "
                    f"{change}. The optimizer holds views of the tensors it was given, so it "
                    "would no longer train them; after model.to(...), model.half() or "
                    "p.data = ..., create a new ZO optimizer for the new tensors (in-place "
                    "changes such as p.copy_(...) or model.load_state_dict(...) are fine)"
                )

    def versions(self) -> list[int]:
        """Every tensor's in-place version counter (torch bumps it on each in-place write)."""
        return [s.param._version for s in self.segments]

    def written_since(self, versions: Sequence[int]) -> list[Segment]:
        """The tensors written in place since :meth:`versions` returned ``versions``."""
        return [s for s, v in zip(self.segments, versions, strict=True) if s.param._version != v]

    def trainable(self) -> int:
        """Number of elements that train (mask == 1), ``dim`` without masks."""
        return sum(s.trained for s in self)

    def locate(self, offset: int, n: int) -> Iterator[tuple[Segment, int, int]]:
        """The pieces ``(segment, start, stop)`` (local indices) covering ``[offset, offset+n)``."""
        end = offset + n
        for s in self.segments:
            if s.end <= offset or s.offset >= end:
                continue
            yield s, max(offset, s.offset) - s.offset, min(end, s.end) - s.offset

    def gather(self, offset: int = 0, n: int | None = None) -> Tensor:
        """Copy of the flat vector ``w[offset:offset+n]`` (float64, for inspection and tests)."""
        n = self.dim - offset if n is None else n
        return torch.cat(
            [s.flat()[a:b].double().cpu() for s, a, b in self.locate(offset, n)]
            or [torch.zeros(0, dtype=torch.float64)]
        )

    def describe(self) -> dict[str, Any]:
        """Shapes and offsets, for checkpoints (a resumed optimizer must see the same layout)."""
        return {"dim": self.dim, "shapes": [tuple(s.param.shape) for s in self]}


def _check_param(p: Tensor, seen: set[int]) -> None:
    if not isinstance(p, Tensor):
        raise TypeError(f"ZO optimizes Tensors, but one of the params is a {type(p).__name__}")
    if not p.is_floating_point() and not is_fixed_point(p):
        raise TypeError(
            f"ZO optimizes floating-point tensors, but a parameter has dtype {p.dtype}; "
            "for integer weights use edgezo.fixedpoint.quantize_model"
        )
    if not p.is_contiguous():
        raise ValueError(
            f"A parameter of shape {tuple(p.shape)} is not contiguous; ZO perturbs parameters "
            "through flat views, call .data = p.data.contiguous() on it first"
        )
    if id(p) in seen:
        raise ValueError("A parameter appears twice in the parameter groups; pass each once")
    seen.add(id(p))


def is_frozen(p: Tensor) -> bool:
    """A parameter that was frozen with ``requires_grad_(False)``: ZO leaves it alone, as
    ``torch.optim`` does.

    A float ``nn.Parameter`` is made with ``requires_grad=True``, so ``False`` is a
    decision to freeze it. A plain tensor's ``False`` is only torch's default (ZO
    needs no autograd), so plain tensors train. Fixed-point tensors are integers
    (they cannot require grad): one is frozen if its float original was
    (``p.fixed.trainable``, what :func:`edgezo.fixedpoint.trainable_parameters` reads).
    """
    if is_fixed_point(p):
        return not getattr(p.fixed, "trainable", True)
    return isinstance(p, torch.nn.Parameter) and p.is_floating_point() and not p.requires_grad


def is_fixed_point(p: Tensor) -> bool:
    """An integer tensor made by :func:`edgezo.fixedpoint.quantize_model` (it carries ``.fixed``)."""
    return not p.is_floating_point() and hasattr(p, "fixed")


def _check_mask(p: Tensor, mask: Tensor | None) -> BitMask | None:
    """The mask as bits on the parameter's device (``None`` stays ``None``)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"A mask must be a 0/1 tensor, not a {type(mask).__name__}")
    if mask.shape != p.shape:
        raise ValueError(
            f"A mask of shape {tuple(mask.shape)} was given for a parameter of shape "
            f"{tuple(p.shape)}; masks must match their parameter's shape"
        )
    return BitMask.pack(mask, device=p.device)
