"""The two fixed-point reads as ONNX spells them: DequantizeLinear, and QuantizeLinear-Clip-Dequantize.

:mod:`.model` reads a weight as ``q.float() * scale`` and fake-quantizes a
layer's input as ``round(x / scale).clamp(-m, m) * scale`` (``m = 2**(a-1) - 1``).
While ``torch.onnx.export`` traces a model (``torch.onnx.is_in_onnx_export()``)
it calls these instead: autograd Functions that compute the very same
expressions, and whose ``symbolic`` writes the standard ONNX ops (opset 21)
so that an inference runtime sees integers and scales, not float weights:

* weight: ``DequantizeLinear(q, scale)``; per output channel ``axis=0`` with the
  scale flattened to ``(C,)``. Opset 21 reads int8, int16 and int32.
* activation, ``a <= 8`` bits: ``QuantizeLinear`` to int8, ``Clip(-m, m)`` on the
  integers (edgezo's symmetric range never uses ``-2**(a-1)``),
  ``DequantizeLinear``;
* ``8 < a <= 16``: ``QuantizeLinear`` to int16, ``DequantizeLinear``, then ``Clip``
  of the floats to ``+/- m * scale``: ONNX Runtime 1.32 has no int16 ``Clip``, and
  ``DequantizeLinear(q) = q * scale`` makes this the same float product;
* ``a > 16``: ``Div``, ``Round``, ``Clip``, ``Mul`` in float (no standard 32-bit
  QuantizeLinear target), the torch expression op for op.

``QuantizeLinear`` and ``Round`` round half to even, as ``torch.round``: each
spelling equals the torch expression bit for bit in ONNX Runtime at 4 to 20
bits, ties and saturation included (tests/test_runtime_onnx.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .quant import qmax


class Dequantize(torch.autograd.Function):
    """``q.float() * scale``, exported as ``DequantizeLinear`` (``axis=0`` per channel)."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, scale: Tensor) -> Tensor:
        return q.float() * scale

    @staticmethod
    def symbolic(g: Any, q: Any, scale: Any) -> Any:
        rank = scale.type().dim()
        if rank is None or rank == 0:
            return g.op("DequantizeLinear", q, scale)
        flat = g.op("Reshape", scale, g.op("Constant", value_t=torch.tensor([-1])))
        return g.op("DequantizeLinear", q, flat, axis_i=0)


class FakeQuantize(torch.autograd.Function):
    """``round(x / scale).clamp(-m, m) * scale`` for ``bits``-bit activations, exported as Q-Clip-DQ."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, bits: int) -> Tensor:
        m = qmax(bits)
        return torch.round(x / scale).clamp_(-m, m) * scale

    @staticmethod
    def symbolic(g: Any, x: Any, scale: Any, bits: int) -> Any:
        m = qmax(bits)
        if bits > 16:
            q = g.op("Round", g.op("Div", x, scale))
            q = g.op("Clip", q, _constant(g, -m, torch.float32), _constant(g, m, torch.float32))
            return g.op("Mul", q, scale)
        dtype = torch.int8 if bits <= 8 else torch.int16
        zero = _constant(g, 0, dtype)
        q = g.op("QuantizeLinear", x, scale, zero)
        if dtype == torch.int8:
            q = g.op("Clip", q, _constant(g, -m, dtype), _constant(g, m, dtype))
            return g.op("DequantizeLinear", q, scale, zero)
        y = g.op("DequantizeLinear", q, scale, zero)
        high = g.op("Mul", _constant(g, m, torch.float32), scale)  # m * scale, as torch computes it
        return g.op("Clip", y, g.op("Neg", high), high)


def _constant(g: Any, value: int, dtype: torch.dtype) -> Any:
    return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """``q.float() * scale``; through :class:`Dequantize` while exporting to ONNX."""
    if torch.onnx.is_in_onnx_export():
        return Dequantize.apply(q, scale)
    return q.float() * scale


def fake_quantize(x: Tensor, scale: Tensor, bits: int) -> Tensor:
    """``round(x / scale).clamp(-m, m) * scale``; through :class:`FakeQuantize` while exporting."""
    if torch.onnx.is_in_onnx_export():
        return FakeQuantize.apply(x, scale, bits)
    m = qmax(bits)
    return torch.round(x / scale).clamp_(-m, m) * scale
