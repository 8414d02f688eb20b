"""Fixed-point training (QZO-FF, PAPERS.md B): integer weights, 8-bit perturbations and activations.

>>> import torch
>>> from edgezo.fixedpoint import quantize_model
>>> net = quantize_model(torch.nn.Linear(3, 2), weight_bits=16, activation_bits=8,
...                      calibration=[torch.randn(4, 3)])
>>> net(torch.randn(5, 3)).shape
torch.Size([5, 2])
"""

from .model import (
    FixedPoint,
    FixedPointParameter,
    calibrate,
    dequantized_copy,
    quantize_model,
    trainable_parameters,
)
from .quant import Requant, qmax, quantize, saturate, symmetric_scale
from .zo import UntrainableError

__all__ = [
    "FixedPoint",
    "FixedPointParameter",
    "Requant",
    "UntrainableError",
    "calibrate",
    "dequantized_copy",
    "qmax",
    "quantize",
    "quantize_model",
    "saturate",
    "symmetric_scale",
    "trainable_parameters",
]
