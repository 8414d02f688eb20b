"""quantize_model: a model whose weights are integers with fixed scales, as an NPU stores them.

Every floating-point parameter of every module (Linear, Conv2d, norms' affine,
embeddings, attention projections, a ViT's class token: anything a module reads
as ``self.<name>`` in its forward) is replaced by a :class:`FixedPointParameter`
(``int16`` for 16 bits, ``int8`` for 8) with a fixed symmetric scale
``dw = w_max / (2**(b-1) - 1)`` per tensor or per output channel (PAPERS.md B).
Reading ``module.weight`` computes ``dw * w_q`` at that moment (the module's
class gains a ``__getattr__``), so weights are dequantized layer by layer as the
forward reaches them and no float copy persists. A forward pre-hook
fake-quantizes each weighted layer's input to ``activation_bits`` with a static
scale calibrated on example batches (16w8a: 16-bit weights, 8-bit activations).
Copy a quantized model with ``copy.deepcopy`` and save it with ``state_dict()``
(pickling the whole module is not supported: its classes are made at run time).
While ZO evaluates a perturbed point, reading a weight computes the perturbed
integers ``w_q(+/-)`` on the fly from the :class:`~.integer.PerturbedRead` that
the fixed-point number format set on it (see :mod:`.format`), so the stored
integers never change until the update.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ... import checks
from .qdq import dequantize, fake_quantize
from .quant import qmax, quantize, symmetric_scale

#: The ``scale_method`` values of :func:`quantize_model`.
SCALE_METHODS = ("max", "mse")


@dataclass
class FixedPoint:
    """How a :class:`FixedPointParameter` is read: ``w = scale * q`` with ``q`` in ``bits`` bits.

    Attributes:
        scale: float32 ``dw``, shape ``()`` or ``(C, 1, ...)`` (per output channel).
        bits: weight bit width.
        trainable: whether the float parameter required grad before quantization.
        perturbation: during a ZO step, the :class:`~.integer.PerturbedRead` (plain
            data: which directions, how many ``eps_q``) set by the fixed-point
            number format; ``None`` otherwise.
    """

    scale: Tensor
    bits: int
    trainable: bool = True
    perturbation: Any = field(default=None, repr=False, compare=False)

    @property
    def per_channel(self) -> bool:
        return self.scale.dim() > 0


class FixedPointParameter(nn.Parameter):
    """An integer parameter with its :class:`FixedPoint` description in ``.fixed``."""

    fixed: FixedPoint

    def __new__(cls, data: Tensor, fixed: FixedPoint) -> FixedPointParameter:
        self = super().__new__(cls, data, requires_grad=False)
        self.fixed = fixed
        return self

    def __deepcopy__(self, memo: dict) -> FixedPointParameter:
        if id(self) in memo:
            return memo[id(self)]
        # the scale is also the module's ``<name>_scale`` buffer: the memo keeps them one tensor
        scale = copy.deepcopy(self.fixed.scale, memo)
        fixed = FixedPoint(scale, self.fixed.bits, self.fixed.trainable)
        result = type(self)(self.data.clone(), fixed)
        memo[id(self)] = result
        return result

    def dequantize(self) -> Tensor:
        """``scale * q`` in float32, with the current perturbation if the format set one."""
        q = self.data if self.fixed.perturbation is None else self.fixed.perturbation.read(self)
        return dequantize(q, self.fixed.scale)

    def __repr__(self) -> str:
        return f"FixedPointParameter(bits={self.fixed.bits}, shape={tuple(self.shape)})"


# -- reading the weights ----------------------------------------------------------------------
INPUT_SCALE = "_edgezo_input_scale"  # module buffer: static activation scale (or absent)
_CLASSES: dict[type, type] = {}


def _dequantizing_getattr(self: nn.Module, name: str) -> Any:
    """``module.weight`` computed on access from ``module.weight_q``: nothing float is stored."""
    q = self.__dict__["_parameters"].get(name + "_q")
    if isinstance(q, FixedPointParameter):
        return q.dequantize()
    return nn.Module.__getattr__(self, name)


def _quantized_class(cls: type) -> type:
    """``cls`` with a ``__getattr__`` that dequantizes (one subclass per class, made once).

    Any code that reads ``module.weight`` (its own forward, or a parent's, as
    ``nn.MultiheadAttention`` reads ``out_proj.weight``) gets ``scale * q``,
    computed then and freed after use: the layer-by-layer dequantization of an NPU.
    """
    if cls not in _CLASSES:
        _CLASSES[cls] = type(
            f"FixedPoint{cls.__name__}", (cls,), {"__getattr__": _dequantizing_getattr}
        )
    return _CLASSES[cls]


def _is_activation(x: Any) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point()


def _activations(args: tuple, kwargs: dict) -> list[Tensor]:
    """The float tensors a layer receives (all positional ones, and query/key/value by name)."""
    named = [kwargs.get(k) for k in ("input", "query", "key", "value")]
    return [x for x in (*args, *named) if _is_activation(x)]


def _quantize_input(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: fake-quantize every float input of the layer with its static scale."""
    scale = getattr(module, INPUT_SCALE, None)
    if scale is None:
        return args, kwargs
    bits = module._edgezo_activation_bits

    def q(x: Any) -> Any:
        return fake_quantize(x, scale, bits) if _is_activation(x) else x

    return tuple(q(x) for x in args), {k: q(v) for k, v in kwargs.items()}


# -- quantize_model -------------------------------------------------------------------------
def quantize_model(
    model: nn.Module,
    weight_bits: int = 16,
    activation_bits: int | None = 8,
    per_channel: bool = False,
    calibration: Iterable[Any] | None = None,
    scale_method: str = "max",
    headroom: float = 1.0,
) -> nn.Module:
    """A copy of ``model`` with integer weights and (optionally) fake-quantized activations.

    Args:
        model: any ``nn.Module``; its float parameters become integers.
        weight_bits: bits per weight (16 as in QZO-FF's "16w8a"; 8 stalls training).
        activation_bits: bits of every weighted layer's input; ``None`` keeps
            activations in float.
        per_channel: one scale per output channel (dim 0) of every tensor with
            two or more dims, instead of one per tensor.
        calibration: batches (tensors, or tuples whose first item is the input)
            run through the model once to fix the activation scales
            ``max|x| / (2**(a-1) - 1)``. Required when ``activation_bits`` is set.
        scale_method: ``"max"`` (max-abs) or ``"mse"`` (clipping by least squared error).
        headroom: ``w_max`` is multiplied by this (>= 1) so the largest weights can
            still grow; 1 is the paper's ``dw = w_max / (2**(b-1) - 1)``.

    Returns:
        The quantized copy (the original is left as it was). Train its
        :func:`trainable_parameters` with :class:`edgezo.ZO`.

    Example:
        >>> net = quantize_model(nn.Linear(4, 2), activation_bits=None)
        >>> net.weight_q.dtype, net.weight_q.fixed.bits
        (torch.int16, 16)
    """
    weight_bits, activation_bits, headroom = _check_arguments(
        model, weight_bits, activation_bits, per_channel, calibration, scale_method, headroom
    )
    model = copy.deepcopy(model)
    for module in model.modules():
        quantize_module(module, weight_bits, activation_bits, per_channel, scale_method, headroom)
    if activation_bits is not None:
        calibrate(model, calibration)
    return model


def _check_arguments(
    model: Any,
    weight_bits: Any,
    activation_bits: Any,
    per_channel: Any,
    calibration: Any,
    scale_method: Any,
    headroom: Any,
) -> tuple[int, int | None, float]:
    """Refuse a bad argument of :func:`quantize_model` by name, with the allowed values."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_model takes an nn.Module, got {type(model).__name__}")
    weight_bits = checks.integer("weight_bits", weight_bits, low=2, high=32)
    if activation_bits is not None:
        activation_bits = checks.integer("activation_bits", activation_bits, low=2, high=32)
    if not isinstance(per_channel, bool):
        raise TypeError(f"Invalid per_channel={per_channel!r}: use True or False")
    if scale_method not in SCALE_METHODS:
        raise ValueError(f"Invalid scale_method={scale_method!r}: use one of {SCALE_METHODS}")
    headroom = checks.real("headroom", headroom, low=1.0)
    if calibration is not None and not isinstance(calibration, Iterable):
        raise TypeError(
            f"Invalid calibration={calibration!r}: use an iterable of batches, e.g. [x1, x2]"
        )
    if activation_bits is not None and calibration is None:
        raise ValueError(
            "quantize_model needs calibration batches to fix the activation scales "
            f"({activation_bits}-bit activations): pass calibration=[x1, x2, ...], "
            "or activation_bits=None to keep activations in float"
        )
    return weight_bits, activation_bits, headroom


def quantize_module(
    module: nn.Module,
    weight_bits: int,
    activation_bits: int | None,
    per_channel: bool = False,
    scale_method: str = "max",
    headroom: float = 1.0,
) -> None:
    """Replace ``module``'s own float parameters by integers (in place; see :func:`quantize_model`).

    A module without float parameters of its own is left as it is.
    """
    names = [n for n, p in module._parameters.items() if p is not None and p.is_floating_point()]
    if not names:
        return
    for name in names:
        p = module._parameters.pop(name)
        scale = symmetric_scale(p, weight_bits, per_channel, scale_method, headroom)
        q = quantize(p, scale, weight_bits)
        module.register_buffer(name + "_scale", scale)  # saved with the weights
        module.register_parameter(
            name + "_q",
            FixedPointParameter(q, FixedPoint(scale, weight_bits, p.requires_grad)),
        )
    module.__class__ = _quantized_class(type(module))
    module._edgezo_activation_bits = activation_bits
    module.register_forward_pre_hook(_quantize_input, with_kwargs=True)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Any]) -> None:
    """Fix every quantized layer's input scale to ``max|x| / qmax`` over the batches."""
    peaks: dict[nn.Module, float] = {}

    def observe(module: nn.Module, args: tuple, kwargs: dict) -> None:
        for x in _activations(args, kwargs):
            peaks[module] = max(peaks.get(module, 0.0), float(x.detach().abs().max()))

    layers = [m for m in model.modules() if type(m) in _CLASSES.values()]
    for m in layers:  # observe raw inputs: no fake quantization while calibrating
        if hasattr(m, INPUT_SCALE):
            delattr(m, INPUT_SCALE)
    handles = [m.register_forward_pre_hook(observe, prepend=True, with_kwargs=True) for m in layers]
    try:
        count = 0
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            count += 1
    finally:
        for h in handles:
            h.remove()
    if count == 0:
        raise ValueError("calibration gave no batches; pass at least one example input")
    for m in layers:
        if m in peaks:
            bits = m._edgezo_activation_bits
            scale = torch.tensor(max(peaks[m], 1e-12) / qmax(bits))
            m.register_buffer(INPUT_SCALE, scale)


def trainable_parameters(model: nn.Module) -> list[FixedPointParameter]:
    """The fixed-point parameters whose float originals were trainable (``requires_grad``)."""
    return [
        p for p in model.parameters() if isinstance(p, FixedPointParameter) and p.fixed.trainable
    ]


def dequantized_copy(model: nn.Module) -> dict[str, Tensor]:
    """``{name: scale * q}`` for every fixed-point parameter (for inspection and tests)."""
    return {
        name.removesuffix("_q"): p.dequantize()
        for name, p in model.named_parameters()
        if isinstance(p, FixedPointParameter)
    }
