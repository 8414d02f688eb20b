"""export_onnx: a fixed-point model as an ONNX graph (opset 21) whose trainable integers are inputs.

The graph is what an inference-only device runs between two integer updates:

* every trainable integer tensor (:func:`~edgezo.fixedpoint.trainable_parameters`)
  is a graph **input** named after its parameter (``head.weight_q``, int8/int16/int32),
  so a runtime can feed the current (or perturbed) integers on every call;
* frozen integer tensors and buffers (scales, BatchNorm statistics) are initializers;
* weights are read as ``DequantizeLinear`` and fake-quantized activations as
  ``QuantizeLinear -> Clip -> DequantizeLinear`` (see
  :mod:`edgezo.formats.fixedpoint.qdq` for the exact ops per bit width);
* dim 0 of every input (and of the logits) is a dynamic batch; more dynamic
  dims through ``dynamic_axes`` (e.g. a text model's sequence length).

Exporter: torch's TorchScript exporter (``torch.onnx.export(..., dynamo=False,
opset_version=21)``). It traces the ordinary eager forward, and the two
fixed-point reads become standard ops through ``symbolic`` methods of autograd
Functions (:mod:`~edgezo.formats.fixedpoint.qdq`), which torch calls only while
exporting. With no rule per model, every family of edgezo exports and matches
torch (tests/test_runtime_onnx.py): SmallCNN, the BatchNorm ResNet
(``BatchNormalization`` in eval mode), ViTTiny (``scaled_dot_product_attention``,
LayerNorm, GELU, class token), the keyword spotters (CRNN's hand-written GRU
loop is unrolled, so its number of frames is fixed at export; DS-CNN: both on
spectrograms, since the audio ``Featurizer``'s complex ``torch.stft`` does not
export, which :class:`ExportError` says, naming ``featurizer``) and
Hugging Face MiniLM (dynamic batch and sequence length). The dynamo exporter
would need the reads as ``torch.library`` custom ops with an onnxscript
``custom_translation_table`` and a ``torch.export`` of each model: more
machinery, not needed. torch 2.13 warns that opset 21 is above the TorchScript
exporter's tested 20 and that the exporter is deprecated; :func:`export_onnx`
silences those warnings and checks every graph with
``onnx.checker.check_model(full_check=True)`` instead.

The trainable integers become graph inputs by setting each parameter's
``fixed.perturbation`` (which :meth:`FixedPointParameter.dequantize` reads
through) to the traced input while tracing; a frozen one reads itself, so it
becomes an initializer named after it (``features.0.weight_q``). An op that ONNX
cannot express raises :class:`ExportError` naming the op and the module that
calls it (found by running the model once more and recording calls).
"""

from __future__ import annotations

import inspect
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..extras import require
from ..formats.fixedpoint import FixedPointParameter, trainable_parameters

if TYPE_CHECKING:
    import onnx

#: The ONNX opset of exported graphs: the first whose DequantizeLinear reads int16.
OPSET = 21
#: The name of the graph's one output.
OUTPUT = "logits"


class ExportError(RuntimeError):
    """A model (or one of its modules) that cannot become an ONNX graph; the message says which."""


@dataclass(frozen=True)
class TracedRead:
    """Stands in for a ``PerturbedRead`` while tracing: the layer reads the graph input ``q``."""

    q: Tensor

    def read(self, p: FixedPointParameter) -> Tensor:
        return self.q


class Exportable(nn.Module):
    """``qmodel`` as a function of ``(*inputs, *trainable integers)`` returning its logits."""

    def __init__(self, qmodel: nn.Module, trainable: Sequence[FixedPointParameter]) -> None:
        super().__init__()
        self.model = qmodel
        self.trainable = list(trainable)

    def forward(self, *args: Tensor) -> Tensor:
        n = len(args) - len(self.trainable)
        fed = {id(p): q for p, q in zip(self.trainable, args[n:], strict=True)}
        fixed = [p for p in self.model.parameters() if isinstance(p, FixedPointParameter)]
        try:
            for p in fixed:  # a frozen tensor reads itself: an initializer named after it
                p.fixed.perturbation = TracedRead(fed.get(id(p), p))
            return logits(self.model(*args[:n]))
        finally:
            for p in fixed:
                p.fixed.perturbation = None


def logits(output: Any) -> Tensor:
    """The model's output tensor: itself, ``.logits`` (Hugging Face), or the first of a tuple."""
    if isinstance(output, Tensor):
        return output
    if getattr(output, "logits", None) is not None:
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ExportError(
        f"the model returned {type(output).__name__}; export needs a tensor of logits, "
        "an output with .logits, or a tuple whose first item is the logits"
    )


def parameter_names(qmodel: nn.Module) -> dict[int, str]:
    """``{id(parameter): qualified name}``, the names the graph's integer inputs get."""
    return {id(p): name for name, p in qmodel.named_parameters()}


def input_names(qmodel: nn.Module, count: int) -> list[str]:
    """Names of the model's inputs: its ``forward``'s positional parameter names where it has them."""
    params = inspect.signature(qmodel.forward).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(named) >= count:
        return named[:count]
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def export_onnx(
    qmodel: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    path: str | Path | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> onnx.ModelProto:
    """Export a model made by :func:`~edgezo.fixedpoint.quantize_model` to ONNX (opset 21).

    Args:
        qmodel: the quantized model; exported in eval mode (BatchNorm uses its
            running statistics), its mode is restored afterwards.
        example_inputs: one input tensor, or a tuple of them (positional
            arguments of ``qmodel``, e.g. ``(input_ids, attention_mask)``).
        path: where to write the ``.onnx`` file too (optional).
        dynamic_axes: ``{input name: {dim: name}}`` for dims other than the
            batch, e.g. ``{"input_ids": {1: "sequence"}}``; dim 0 of every input
            is always dynamic.

    Returns:
        The checked ``onnx.ModelProto``. Its inputs are the model's inputs, then
        one integer tensor per trainable parameter that the forward reads, named
        after it; its output is ``logits``.

    Raises:
        ExportError: the model is not quantized, or a module uses an op that
            ONNX cannot express (the message names the module and the op).
    """
    onnx = require("onnx", "runtime")
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    trainable = check_exportable(qmodel, inputs)
    names = input_names(qmodel, len(inputs))
    ids = parameter_names(qmodel)
    axes = batch_axes(names, dynamic_axes or {})
    buffer, was_training = io.BytesIO(), qmodel.training
    qmodel.eval()
    try:
        trace(qmodel, inputs, trainable, buffer, names + [ids[id(p)] for p in trainable], axes)
    finally:
        qmodel.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    strip_prefix(model, "model.")
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, str(path))
    return model


def batch_axes(
    names: list[str], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[int, str]]:
    """Dim 0 of every input is ``batch``; plus the user's ``dynamic_axes`` (checked by name)."""
    unknown = sorted(set(dynamic_axes) - set(names))
    if unknown:
        raise ValueError(
            f"dynamic_axes names unknown input(s) {unknown}; the model's inputs are {names}"
        )
    return {name: {0: "batch", **dict(dynamic_axes.get(name, {}))} for name in names}


def check_exportable(qmodel: Any, inputs: tuple) -> list[FixedPointParameter]:
    """The trainable integers of ``qmodel``, or an :class:`ExportError` saying what to change."""
    if not isinstance(qmodel, nn.Module):
        raise ExportError(f"export_onnx takes an nn.Module, got {type(qmodel).__name__}")
    if not any(isinstance(p, FixedPointParameter) for p in qmodel.parameters()):
        raise ExportError(
            f"{type(qmodel).__name__} has no fixed-point parameters: export the model "
            "returned by edgezo.fixedpoint.quantize_model(model, ...)"
        )
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise ExportError("example_inputs must be a tensor or a non-empty tuple of tensors")
    fixed = [p for p in qmodel.parameters() if isinstance(p, FixedPointParameter)]
    if any(p.fixed.perturbation is not None for p in fixed):
        raise ExportError("export_onnx was called during a ZO step; export between steps")
    return trainable_parameters(qmodel)


def trace(
    qmodel: nn.Module,
    inputs: tuple[Tensor, ...],
    trainable: list[FixedPointParameter],
    out: io.BytesIO,
    names: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    """Run the TorchScript exporter into ``out``; map an unsupported op to its module."""
    args = (*inputs, *(p.detach().clone() for p in trainable))
    with warnings.catch_warnings(), torch.no_grad():
        # torch 2.13 tests its TorchScript exporter up to opset 20; the graph is checked instead
        warnings.filterwarnings("ignore", message=r".*opset.*21", category=UserWarning)
        # the TorchScript exporter is chosen knowingly (see the module doc)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
        try:
            torch.onnx.export(
                Exportable(qmodel, trainable), args, out, dynamo=False, opset_version=OPSET,
                input_names=names, output_names=[OUTPUT],
                dynamic_axes={**axes, OUTPUT: {0: "batch"}}, do_constant_folding=True,
            )  # fmt: skip
        except torch.onnx.errors.OnnxExporterError as error:
            raise unsupported(qmodel, inputs, error) from error


def unsupported(qmodel: nn.Module, inputs: tuple[Tensor, ...], error: Exception) -> ExportError:
    """An :class:`ExportError` naming the module that failed and the op (or the reason)."""
    text = str(error)
    found = re.search(r"'(?:aten|prim)::(\w+)'", text)
    where = scope_of(text)
    if where is None and found is not None:
        where = module_calling(qmodel, inputs, found.group(1))
    if where is None:
        place = f"a module of {type(qmodel).__name__}"
    else:
        place = f"module {where!r}" if where else f"{type(qmodel).__name__} itself"
    if found is not None:
        what = f"uses {found.group(1)!r} (aten::{found.group(1)}), which ONNX opset {OPSET} "
        what += "cannot express"
    else:
        what = f"cannot be exported to ONNX opset {OPSET} ({text.split(' [Caused by')[0].strip()})"
    return ExportError(
        f"{place} {what}: replace it with standard ops, or export the part of the model "
        "after it (e.g. the classifier on precomputed features)"
    )


def scope_of(text: str) -> str | None:
    """The qualified module name in an exporter message's ``scope: A::/B::model/C::sub``."""
    found = re.search(r"scope: (\S+)", text)
    if found is None:
        return None
    names = [part.rpartition("::")[2] for part in found.group(1).split("/")]
    return ".".join(names[2:])  # [export wrapper, "model", *the user's module path]


def strip_prefix(model: onnx.ModelProto, prefix: str) -> None:
    """Name initializers after the user's model (``head.weight_scale``), not the export wrapper."""
    renamed = {
        t.name: t.name[len(prefix) :] for t in model.graph.initializer if t.name.startswith(prefix)
    }
    taken = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    renamed = {old: new for old, new in renamed.items() if new not in taken}
    for t in model.graph.initializer:
        t.name = renamed.get(t.name, t.name)
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for info in model.graph.value_info:
        info.name = renamed.get(info.name, info.name)


class CallRecorder(torch.overrides.TorchFunctionMode):
    """Records the innermost module that first calls a torch function named ``op``."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op, self.stack, self.found = op, [""], None

    def enter(self, name: str) -> None:
        self.stack.append(name)

    def leave(self) -> None:
        self.stack.pop()

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: Any = None
    ) -> Any:
        if self.found is None and getattr(func, "__name__", None) == self.op:
            self.found = self.stack[-1]
        return func(*args, **(kwargs or {}))


def module_calling(qmodel: nn.Module, inputs: tuple[Tensor, ...], op: str) -> str | None:
    """The qualified name of the module whose own code calls ``op`` (``None`` if none is found)."""
    recorder = CallRecorder(op)
    handles = []
    for name, module in qmodel.named_modules():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: recorder.enter(n)))
        handles.append(module.register_forward_hook(lambda *_: recorder.leave()))
    try:
        with recorder, torch.no_grad():
            qmodel(*inputs)
    except Exception:  # noqa: S110 - the op ran or not: what was recorded is the answer
        pass
    finally:
        for handle in handles:
            handle.remove()
    return recorder.found or None
