"""Training on an inference-only runtime: forwards in ONNX Runtime, the integer step in C.

Both papers exist because edge hardware runs inference only. This package runs
edgezo's fixed-point training the way such a device would:

* :class:`OnnxRuntimeModel` exports a model from
  :func:`edgezo.fixedpoint.quantize_model` to ONNX (trainable integers as graph
  inputs) and runs its forward in a plain ``onnxruntime.InferenceSession`` on
  the current integers, read from the same memory that ``ZO`` updates;
* :mod:`edgezo.runtime.device` compiles the device-side step (the integer
  perturb / restore / update of QZO-FF with PeZO's pool or the hardware RNGs) from
  dependency-free C99 with the system C compiler, bit-identical to the Python path;
* ``edgezo export`` writes both for one model: ``model.onnx``, the C sources, a
  generated header, a manifest and a README.

Needs the ``runtime`` extra (``pip install 'edgezo[runtime]'``) for ONNX; the C
step needs only a C compiler.

Importing this package needs neither onnx nor onnxruntime nor a C compiler: the
names below are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it (imported when the name is first read).
LAZY = {
    "OnnxRuntimeModel": "session", "export_onnx": "onnx", "ExportError": "onnx",
    "DeviceFormat": "device", "DeviceRead": "device", "CompilerMissing": "clib",
    "UnsupportedSource": "zsource", "write_device_sources": "bundle",
    "export_for_device": "export",
}  # fmt: skip

__all__ = sorted(LAZY)


def __getattr__(name: str) -> Any:
    if name in LAZY:
        value = getattr(importlib.import_module(f".{LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY])
