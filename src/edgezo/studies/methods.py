"""The training methods every study compares, by name, with their hyper-parameters.

A method turns "a model whose trained parameters have ``requires_grad``" into
``(model to train, optimizer)``; the studies then run :func:`edgezo.train.fit`.

=================  ==========================================================
name               what it is
=================  ==========================================================
``zero-shot``      no training: the pretrained weights as they are
``backprop``       backprop fp32 with Adam (the reference; the papers use fp16)
``zo``             MeZO-style ZO-SGD: Gaussian ``z``, central, one query, fp32
``pezo``           PeZO: the same with a small pre-generated uniform pool
``qzo-ff 16w8a``   QZO-FF: sign-3-SPSA on 16-bit integer weights, 8-bit activations
``sparse zo``      ``zo`` training only the largest 10% of each tensor (topk, 90% sparse)
``pezo 16w8a``     QZO-FF's sign-3-SPSA on 16w8a integers with PeZO's pool (the demo)
``qzo-ff 8w8a``    QZO-FF on 8-bit weights (cannot train: Figure 6 shows why)
=================  ==========================================================

``pezo 16w8a (onnxruntime)`` is ``pezo 16w8a`` as a device runs it: forwards in
ONNX Runtime (:class:`~edgezo.runtime.OnnxRuntimeModel`), the integer step in the
compiled C99 of :class:`~edgezo.runtime.DeviceFormat` (needs the ``runtime``
extra and a C compiler).

:data:`METHODS` are the six the studies compare; :data:`EXTRA` the three more the
demo and Figure 6 use. This is the one registry: the demo, the studies and
Figure 6 build every model copy and optimizer here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..directions import Pool
from ..fixedpoint import quantize_model, trainable_parameters
from ..optim import ZO
from ..presets import mezo, pezo, qzo_ff
from ..updates import sparse_groups

#: ``pezo array`` is PeZO's on-the-fly reuse (a rotating array of LFSRs, ``pezo(reuse="array")``),
#: ``pezo`` its pre-generated pool.
METHODS = ("zero-shot", "backprop", "zo", "pezo", "pezo array", "qzo-ff 16w8a", "sparse zo")
#: The comparison of the studies that train both of PeZO's reuse strategies (its pool and its
#: rotating array: cross-domain and kws-personalize).
BOTH_REUSES = ("zero-shot", "backprop", "zo", "pezo", "pezo array", "qzo-ff 16w8a")
#: Methods beyond the studies' comparison: the demo's on-device recipe (in torch, and on an
#: inference runtime with the C step), Figure 6's 8-bit QZO-FF.
EXTRA = ("pezo 16w8a", "qzo-ff 8w8a", "pezo 16w8a (onnxruntime)")
#: Methods that train a fixed-point copy of the model: name -> weight bits (activations: 8).
WEIGHT_BITS = {"qzo-ff 16w8a": 16, "pezo 16w8a": 16, "qzo-ff 8w8a": 8,
               "pezo 16w8a (onnxruntime)": 16}  # fmt: skip
#: Methods whose forwards run in ONNX Runtime and whose integer step runs in C (edgezo.runtime).
RUNTIME = frozenset({"pezo 16w8a (onnxruntime)"})
QUANTIZED = frozenset(WEIGHT_BITS)
#: Methods that use forward passes only.
FORWARD_ONLY = frozenset({"zo", "pezo", "pezo array", "sparse zo", *QUANTIZED})


@dataclass(frozen=True)
class Settings:
    """One method's hyper-parameters (``lr`` is the one the studies grid-search)."""

    lr: float
    eps: float = 1e-3
    queries: int = 1
    pool_size: int = 4093  # PeZO: a prime, so no model size is a multiple of it
    sparsity: float = 0.9
    steps_factor: float = 1.0  # ZO needs more iterations than backprop (both papers)

    def with_lr(self, lr: float) -> Settings:
        return replace(self, lr=lr)


def vision_settings() -> dict[str, Settings]:
    """Each method's defaults for probing and prompt tuning a vision backbone (the quick runs'
    lr; full runs search :func:`vision_grids`). A sign step does not scale with the loss
    difference, so QZO-FF's lr is its own."""
    return {
        "backprop": Settings(lr=1e-3),
        "zo": Settings(lr=1e-3),
        "pezo": Settings(lr=1e-3),
        "pezo array": Settings(lr=1e-3),
        "sparse zo": Settings(lr=1e-3),
        "qzo-ff 16w8a": Settings(lr=5e-4),
    }


def vision_grids() -> dict[str, tuple[float, ...]]:
    """The lr grid of each method (both papers grid-search the learning rate)."""
    return {
        "backprop": (3e-4, 1e-3, 3e-3),
        "zo": (3e-4, 1e-3, 3e-3),
        "pezo": (3e-4, 1e-3, 3e-3),
        "pezo array": (3e-4, 1e-3, 3e-3),
        "sparse zo": (1e-3, 3e-3, 1e-2),
        # two values: a QZO-FF step costs ~5 ZO steps (3 queries, integer passes)
        "qzo-ff 16w8a": (5e-4, 2e-3),
    }


def probe_grids() -> dict[str, tuple[float, ...]]:
    """The lr grid of each method for linear probing: a head trained on cached features
    is cheap, and its best lrs lie above prompt tuning's (the full cross-domain run with
    :func:`vision_grids` chose their top, 3e-3, for backprop and ZO)."""
    return {
        "backprop": (1e-3, 3e-3, 1e-2, 3e-2),
        "zo": (1e-3, 3e-3, 1e-2, 3e-2),
        "pezo": (1e-3, 3e-3, 1e-2, 3e-2),
        "pezo array": (1e-3, 3e-3, 1e-2, 3e-2),
        "sparse zo": (3e-3, 1e-2, 3e-2, 1e-1),
        "qzo-ff 16w8a": (5e-4, 2e-3, 8e-3),
    }


def check_method(name: str) -> str:
    """``name``, if the registry knows it (a ``ValueError`` naming the choices otherwise)."""
    if name not in METHODS + EXTRA:
        raise ValueError(f"Unknown method {name!r}; choose from {', '.join(METHODS + EXTRA)}")
    return name


def trained_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad`` (what the regime chose to train)."""
    return [p for p in model.parameters() if p.requires_grad]


def prepare(
    name: str, model: nn.Module, calibration: Sequence[Tensor] | None = None
) -> tuple[nn.Module, list[Tensor]]:
    """A copy of ``model`` for method ``name`` and the tensors it trains.

    ``QUANTIZED`` methods get a fixed-point copy (:data:`WEIGHT_BITS`, 8-bit activations, scales
    calibrated on ``calibration`` batches: the device calibrates on its own
    data); the others a float copy. The given model is never changed.
    """
    check_method(name)
    if name in QUANTIZED:
        if not calibration:
            raise ValueError(f"{name!r} needs calibration batches of the target data")
        quantized = quantize_model(
            model, weight_bits=WEIGHT_BITS[name], activation_bits=8, calibration=list(calibration)
        )
        params = list(trainable_parameters(quantized))
        if name in RUNTIME:
            from ..runtime import OnnxRuntimeModel

            return OnnxRuntimeModel(quantized, calibration[0][:1]), params
        return quantized, params
    model = copy.deepcopy(model)
    return model, trained_parameters(model)


def make_optimizer(
    name: str, params: list[Tensor], settings: Settings, seed: int
) -> torch.optim.Optimizer | None:
    """The optimizer of method ``name`` over ``params`` (``None`` for zero-shot)."""
    check_method(name)
    s = settings
    if name == "zero-shot":
        return None
    if name == "backprop":
        return torch.optim.Adam(params, lr=s.lr)
    if name == "zo":
        return mezo(params, lr=s.lr, eps=s.eps, seed=seed, queries=s.queries)
    if name == "pezo":
        return pezo(params, lr=s.lr, eps=s.eps, seed=seed, pool_size=s.pool_size, queries=s.queries)
    if name == "pezo array":
        return pezo(params, lr=s.lr, eps=s.eps, seed=seed, reuse="array", queries=s.queries)
    if name == "sparse zo":
        groups = sparse_groups(params, sparsity=s.sparsity, rule="topk")
        return mezo(groups, lr=s.lr, eps=s.eps, seed=seed, queries=s.queries)
    queries = max(s.queries, 3)
    if name.startswith("pezo 16w8a"):  # QZO-FF's integer sign-m-SPSA with z from PeZO's pool
        directions = Pool(s.pool_size, seed)
        return ZO(params, lr=s.lr, eps=s.eps, directions=directions, estimator="sign",
                  queries=queries, formats=device_formats(name))  # fmt: skip
    # force: a tensor whose 16-bit step is coarser than the update (e.g. a prototype head's
    # large biases) keeps its value, as it would on the device; the others train (8w8a: none
    # can, which is what Figure 6 shows)
    return qzo_ff(params, lr=s.lr, eps=s.eps, seed=seed, queries=queries, force=True)


def device_formats(name: str) -> Any:
    """The C step's number format for :data:`RUNTIME` methods; ``None`` (ZO's default) else."""
    if name not in RUNTIME:
        return None
    from ..runtime import DeviceFormat

    return DeviceFormat()


def is_forward_only(optimizer: Any) -> bool:
    return isinstance(optimizer, ZO)
