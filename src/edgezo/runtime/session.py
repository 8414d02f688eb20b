"""OnnxRuntimeModel: a fixed-point model's forward in plain ONNX Runtime, on the current integers.

The exported graph (:func:`~edgezo.runtime.onnx.export_onnx`) takes every
trainable integer tensor as an input. On each call this object binds, with
``IOBinding`` and the tensor's own data pointer (no copy, no new session):

* between steps, each trainable parameter's own memory, the integers that
  :class:`edgezo.ZO` updates in place;
* during a ZO step, ``p.fixed.perturbation.read(p)``: the perturbed integers
  that the fixed-point number format sets up and that an NPU would read.

So the forward of a closure can run in ONNX Runtime while ``ZO`` perturbs,
restores and updates the integers in torch, unchanged::

    ort_net = OnnxRuntimeModel(qmodel, x)
    opt = qzo_ff(trainable_parameters(qmodel), lr=1e-3, eps=1e-3)
    opt.step(lambda: F.cross_entropy(ort_net(x), y))

Frozen integers, scales and buffers are constants of the graph: build a new
``OnnxRuntimeModel`` after changing them.

Numerics: the integer reads and the activation quantizers are the same
arithmetic as torch's, bit for bit; the float ops between them (Conv, MatMul,
LayerNorm, Softmax, GELU) are ONNX Runtime's kernels, which may round
differently by an ulp. With 8-bit activations those ulps are mostly absorbed,
but an activation within an ulp of a rounding boundary gets the next code. On
10,000 real test inputs of pretrained models (``python benchmarks/runtime.py``)
0.2-3.9% of the rows differ, by at most 0.7 of the logits' 8-bit step, and the
argmax in 1 row of 10,000 (ResNet, ViT; none for SmallCNN, CRNN, DS-CNN);
through MiniLM-L6's six layers of 16w8a, 14% of sentences differ, by up to
about 30 steps, and the argmax of 2 in 512. A loss then differs in its last
digits; a sign-based step (sign-m-SPSA) changes only where a query's loss
difference is itself that small: the demo's 800 steps through this object and
the C step took torch's signs at every query and ended on the same integers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..extras import require
from ..formats.fixedpoint import FixedPointParameter, trainable_parameters
from .onnx import OUTPUT, export_onnx, input_names, parameter_names

#: ONNX Runtime's element type names -> numpy dtypes, for the inputs a graph of edgezo has.
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
#: The same element types as torch dtypes (what an input is converted to, if it must be).
TORCH_DTYPES = {d: torch.from_numpy(np.empty(0, d)).dtype for d in DTYPES.values()}


class OnnxRuntimeModel(nn.Module):
    """Calls like ``qmodel`` (torch tensors in, float32 logits out), computed by ONNX Runtime.

    An ``nn.Module`` whose one submodule is ``qmodel``: ``parameters()``,
    ``state_dict()`` and ``load_state_dict()`` are the integers', so training
    loops and checkpoints (:func:`edgezo.train.fit`) work unchanged. ``train()`` /
    ``eval()`` set ``qmodel``'s mode only: the graph is the eval-mode forward.

    Args:
        qmodel: a model made by :func:`~edgezo.fixedpoint.quantize_model`. Its
            trainable integers are read on every call; the rest is exported once.
        example_inputs: an input tensor or a tuple of them, to trace the graph.
        dynamic_axes: dims other than the batch that may change, e.g.
            ``{"input_ids": {1: "sequence"}}`` (see :func:`export_onnx`).
        sess_options: an ``onnxruntime.SessionOptions`` used as is.
        threads: intra-op threads when ``sess_options`` is not given (default:
            ``torch.get_num_threads()``).

    Attributes:
        onnx_model: the exported ``onnx.ModelProto``.
        session: the ``onnxruntime.InferenceSession`` (``CPUExecutionProvider``).
        input_names: the model's inputs, in call order (as the graph names them).
        parameter_names: the graph's integer inputs, one per trainable parameter
            that the forward reads.
    """

    def __init__(
        self,
        qmodel: nn.Module,
        example_inputs: Tensor | Sequence[Tensor],
        dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
        sess_options: Any = None,
        threads: int | None = None,
    ) -> None:
        ort = require("onnxruntime", "runtime")
        super().__init__()
        self.qmodel = qmodel
        self.onnx_model = export_onnx(qmodel, example_inputs, dynamic_axes=dynamic_axes)
        self.session = ort.InferenceSession(
            self.onnx_model.SerializeToString(),
            sess_options=sess_options or session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self.dtypes = {i.name: DTYPES.get(i.type) for i in self.session.get_inputs()}
        count = 1 if isinstance(example_inputs, Tensor) else len(example_inputs)
        self.input_names = input_names(qmodel, count)
        names = parameter_names(qmodel)
        # the exporter drops inputs the forward never reads (an unused layer's integers)
        self.trainable: list[FixedPointParameter] = [
            p for p in trainable_parameters(qmodel) if names[id(p)] in self.dtypes
        ]
        self.parameter_names = [names[id(p)] for p in self.trainable]

    def forward(self, *inputs: Tensor, **named: Tensor) -> Tensor:
        """The logits for ``inputs`` (positional, or by name: ``ort_net(**tokenized)``)."""
        inputs = self.arrange(inputs, named)
        binding = self.session.io_binding()
        pairs = zip(self.input_names, inputs, strict=True)
        alive = [self.bind(binding, name, x) for name, x in pairs if name in self.dtypes]
        for name, p in zip(self.parameter_names, self.trainable, strict=True):
            q = p.data if p.fixed.perturbation is None else p.fixed.perturbation.read(p)
            alive.append(self.bind(binding, name, q))
        binding.bind_output(OUTPUT, "cpu")
        self.session.run_with_iobinding(binding)
        # .numpy() views memory that the binding owns: copy the (small) logits out of it
        out = torch.from_numpy(binding.get_outputs()[0].numpy().copy())
        del alive  # the bound tensors had to live until the run ended
        return out

    def arrange(self, inputs: tuple[Tensor, ...], named: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Positional and named inputs in the graph's order, or a TypeError listing its inputs."""
        unknown = sorted(set(named) - set(self.input_names[len(inputs) :]))
        inputs = (*inputs, *(named[n] for n in self.input_names[len(inputs) :] if n in named))
        if unknown or len(inputs) != len(self.input_names):
            raise TypeError(
                f"OnnxRuntimeModel takes {len(self.input_names)} input(s) {self.input_names}, "
                f"got {len(inputs)}" + (f" and unknown or repeated {unknown}" if unknown else "")
            )
        return inputs

    def bind(self, binding: Any, name: str, x: Tensor) -> Tensor:
        """Bind ``x``'s memory to the graph input ``name`` (converted first only if it must be)."""
        dtype = self.dtypes[name]
        if not isinstance(x, Tensor):
            raise TypeError(f"input {name!r} must be a torch tensor, got {type(x).__name__}")
        if dtype is None:
            raise TypeError(f"input {name!r} has a type ONNX Runtime binding does not handle here")
        wanted = TORCH_DTYPES[dtype]
        x = x.detach()
        if x.dtype != wanted or x.device.type != "cpu" or not x.is_contiguous():
            x = x.to("cpu", wanted).contiguous()  # a copy for data inputs only: integers fit as is
        binding.bind_input(name, "cpu", 0, dtype, tuple(x.shape), x.data_ptr())
        return x

    def save(self, path: str | Path) -> None:
        """Write the ONNX graph to ``path`` (integer inputs stay inputs: feed them when running it)."""
        require("onnx", "runtime").save(self.onnx_model, str(path))

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, integers={self.parameter_names}"


def session_options(threads: int | None) -> Any:
    """ONNX Runtime options: ``threads`` intra-op threads, no spin-waiting, basic optimizations.

    No spin-waiting: between two forwards of a training loop torch computes the
    loss and the step on the same cores, and ORT's idle threads spinning for work
    took them away (the demo's ``pezo 16w8a (onnxruntime)``, 150 steps on 2 cores:
    8.6 s spinning, 3.5 s not, against 4.8 s for the torch forward).

    Basic (constant folding, redundant nodes) and no more: the higher levels may
    replace DequantizeLinear -> op -> QuantizeLinear groups with integer kernels
    (ONNX Runtime's QDQ fusions), which need not round as the torch forward that
    the tests compare with (on SmallCNN they gave the same logits). Pass
    ``sess_options`` to choose otherwise.
    """
    ort = require("onnxruntime", "runtime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else int(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
