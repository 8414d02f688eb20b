"""Fixed-point training (QZO-FF, PAPERS.md B): integer weights, 8-bit perturbations and activations.

The code lives in :mod:`edgezo.formats.fixedpoint`; this module keeps the public names
where users import them.

>>> import torch
>>> from edgezo.fixedpoint import quantize_model
>>> net = quantize_model(torch.nn.Linear(3, 2), weight_bits=16, activation_bits=8,
...                      calibration=[torch.randn(4, 3)])
>>> net(torch.randn(5, 3)).shape
torch.Size([5, 2])
"""

from ..formats.fixedpoint import (
    FixedPoint,
    FixedPointFormat,
    FixedPointParameter,
    Requant,
    UntrainableError,
    ZFormat,
    calibrate,
    dequantized_copy,
    qmax,
    quantize,
    quantize_model,
    saturate,
    symmetric_scale,
    trainable_parameters,
)

__all__ = [
    "FixedPoint",
    "FixedPointFormat",
    "FixedPointParameter",
    "Requant",
    "UntrainableError",
    "ZFormat",
    "calibrate",
    "dequantized_copy",
    "qmax",
    "quantize",
    "quantize_model",
    "saturate",
    "symmetric_scale",
    "trainable_parameters",
]
