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
"""

#: Public names of the C device step, imported on first use (no compiler needed to import).
DEVICE_NAMES = {
    "DeviceFormat": "device", "DeviceRead": "device", "CompilerMissing": "clib",
    "UnsupportedSource": "zsource", "write_device_sources": "bundle",
}  # fmt: skip


def __getattr__(name: str):
    if name in DEVICE_NAMES:
        import importlib

        return getattr(importlib.import_module(f".{DEVICE_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
