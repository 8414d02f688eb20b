"""Fixed-point weights (QZO-FF, PAPERS.md B): integer storage, quantizers, the 16w8a wrapper,
and the number format that perturbs and updates them with integer arithmetic.

* :mod:`.quant`: symmetric quantizers and multiply-and-shift (what an NPU's datapath computes);
* :mod:`.model`: :func:`quantize_model`, integer parameters read layer by layer;
* :mod:`.integer`: ``z`` as integers, perturbed reads, the chunked integer update;
* :mod:`.format`: :class:`FixedPointFormat`, the :class:`~edgezo.formats.NumberFormat`;
* :mod:`.qdq`: the weight and activation reads as ONNX ops, for :mod:`edgezo.runtime`'s export.
"""

from .format import FixedPointFormat
from .integer import PerturbedRead, UntrainableError, ZFormat, integer_coefficients
from .model import (
    FixedPoint,
    FixedPointParameter,
    calibrate,
    dequantized_copy,
    quantize_model,
    trainable_parameters,
)
from .quant import Requant, qmax, quantize, saturate, storage_dtype, symmetric_scale

__all__ = [
    "FixedPoint",
    "FixedPointFormat",
    "FixedPointParameter",
    "PerturbedRead",
    "Requant",
    "UntrainableError",
    "ZFormat",
    "calibrate",
    "dequantized_copy",
    "integer_coefficients",
    "qmax",
    "quantize",
    "quantize_model",
    "saturate",
    "storage_dtype",
    "symmetric_scale",
    "trainable_parameters",
]
