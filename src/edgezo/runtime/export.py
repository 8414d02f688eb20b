"""export_for_device: everything a device needs to train one model, in one directory.

A device that trains the QZO-FF way has an inference runtime (an NPU with its
runtime; here ONNX Runtime) and a small CPU beside it. This writes both halves:

* ``model.onnx``: the forward (:func:`~edgezo.runtime.onnx.export_onnx`), whose
  trainable integer tensors are graph inputs: the runtime reads them from the
  device's weight memory, or from the buffer the C step fills with the perturbed
  integers of a query;
* the device step (:func:`~edgezo.runtime.bundle.write_device_sources`): the C99
  sources, a header generated for this model, ``main.c``, ``weights.bin`` and
  ``manifest.json``;
* ``README.md``: how the two are called in a training loop.

The manifest gains an ``onnx`` entry: the file, the graph's data inputs and, in
order, its integer inputs (one per trained tensor of the step).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from ..fixedpoint import trainable_parameters
from ..optim import ZO
from .bundle import FILES, write_device_sources
from .onnx import export_onnx, parameter_names

ONNX_FILE = "model.onnx"
README_FILE = "README.md"


def export_for_device(
    qmodel: nn.Module,
    optimizer: ZO,
    example_inputs: Tensor | Sequence[Tensor],
    out_dir: str | Path,
) -> dict:
    """Write ``model.onnx``, the C step, the manifest and a README into ``out_dir``.

    Args:
        qmodel: a model from :func:`~edgezo.fixedpoint.quantize_model`.
        optimizer: the :class:`~edgezo.ZO` optimizer over ``qmodel``'s trainable
            integers that the device will run (sign-m-SPSA; see
            :func:`~edgezo.runtime.bundle.write_device_sources` for what it accepts).
        example_inputs: input(s) to trace the forward (any batch size: it is dynamic).
        out_dir: created if missing; existing files of the same names are replaced.

    Returns:
        The manifest (also written to ``manifest.json``).
    """
    out = write_device_sources(optimizer, out_dir, model=qmodel)
    graph = export_onnx(qmodel, example_inputs, out / ONNX_FILE)
    names = parameter_names(qmodel)
    trained = {names[id(p)] for p in trainable_parameters(qmodel)}
    integers = [i.name for i in graph.graph.input if i.name in trained]
    data = [i.name for i in graph.graph.input if i.name not in trained]
    manifest_path = out / FILES["manifest"]
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx"] = {
        "file": ONNX_FILE,
        "inputs": data,
        "integer_inputs": integers,
        "output": [o.name for o in graph.graph.output],
        "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    (out / README_FILE).write_text(device_readme(manifest))
    return manifest


def device_readme(manifest: dict) -> str:
    """The README of an exported directory: files, build, and one training step."""
    onnx = manifest["onnx"]
    names = ", ".join(f"`{t['name']}`" for t in manifest["tensors"])
    queries = manifest["queries"]
    return f"""# edgezo device export (edgezo {manifest["edgezo_version"]})

Training of this model the way an inference-only device does it: forwards in an
inference runtime, the integer perturb / update in portable C99 on the CPU beside it.

| file | what it is |
|---|---|
| `{onnx["file"]}` | the forward, ONNX opset {onnx["opset"]}: inputs {", ".join(onnx["inputs"])}, then the trained integers {", ".join(onnx["integer_inputs"])}; output {", ".join(onnx["output"])} |
| `edgezo_step.h`, `edgezo_step.c` | the device step: perturbed reads and the integer update, integers only |
| `{FILES["header"]}` | generated for this model: tensors, scales as `eps_q` and update `(m, k)`, the perturbation source |
| `{FILES["main"]}` | one step from the command line (below) |
| `{FILES["weights"]}` | the current integers of {names}, in order, native byte order |
| `{FILES["manifest"]}` | names, shapes, dtypes, scales, settings, edgezo version |

Build and check one step (the losses' signs come from the forwards, run elsewhere):

    cc -std=c99 -O2 {FILES["main"]} edgezo_step.c -o step
    ./step {FILES["weights"]} STEP s_0 ... s_{queries - 1} new_weights.bin

One training step (sign-{queries}-SPSA, step number `STEP` counted from {manifest["step"]}):

1. for each query `q` in `0 .. {queries - 1}`: let the C step write the perturbed
   integers `+eps` of `(STEP, q)` into the buffers bound to the graph's integer
   inputs, run `{onnx["file"]}` on a batch and take the loss `L+`; the same with
   `-eps` gives `L-`; `s_q = sign(L+ - L-)`;
2. apply the update with the signs `s_0 .. s_{queries - 1}`: the stored integers
   change in place (nothing else is kept: no gradient, no activations);
3. between steps, bind the stored integers themselves to the graph's inputs for
   inference.

`{FILES["main"]}` shows the calls of steps 1 and 2 (see `edgezo_step.h` for the
API). Made by `edgezo export`; in Python the same loop is
`edgezo.runtime.OnnxRuntimeModel` + `edgezo.runtime.DeviceFormat`.
"""
