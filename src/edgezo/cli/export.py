"""``edgezo export MODEL_OR_CHECKPOINT --out DIR``: a model and its training step, for a device.

``demo`` exports the demo's on-device recipe as it starts: the pretrained SmallCNN
(cached by ``edgezo demo``) quantized to 16w8a on shifted train images, its
classifier head trained by ``pezo 16w8a`` (sign-3-SPSA with z from PeZO's pool).
A file exports the same model with the integers it holds: a ``state_dict`` of that
quantized model (``torch.save(qmodel.state_dict(), path)``) or a checkpoint of
:func:`edgezo.train.fit` (its ``model`` entry, and its ``optimizer`` entry, so the
step count and the pool's position carry on). A checkpoint does not name its
architecture, so only the demo's model can be read back this way.

Writes ``model.onnx``, the C step and its generated header, ``main.c``,
``weights.bin``, ``manifest.json`` and ``README.md``
(:func:`edgezo.runtime.export.export_for_device`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .args import make_dir, nonnegative_int, writable_dir


def add_cli(subparsers: Any) -> None:
    """Register ``edgezo export`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "export",
        help="write a model's ONNX graph and its device-side C training step",
        description=(
            "Export what an inference-only device needs to train a model: model.onnx (the "
            "forward, trained integers as inputs), the C99 integer step with a header "
            "generated for the model, main.c, weights.bin, manifest.json and a README. "
            "MODEL_OR_CHECKPOINT: 'demo' (the demo's 16w8a SmallCNN, head trained by pezo "
            "16w8a), or a state_dict / edgezo.train.fit checkpoint of that model."
        ),
    )
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT", help="'demo' or a checkpoint file")
    p.add_argument("--out", metavar="DIR", type=writable_dir, required=True,
                   help="output directory, created if missing")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="the demo's quick backbone (as edgezo demo --quick)")  # fmt: skip
    p.add_argument("--seed", type=nonnegative_int, metavar="S", default=0,
                   help="seed of the pool (as edgezo demo --seed; default 0)")  # fmt: skip
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build (or load) the model, export it and print what was written."""
    if args.model != "demo" and not Path(args.model).is_file():
        raise ValueError(
            f"{args.model!r} is neither 'demo' nor a checkpoint file; give 'demo' or the path "
            "of a state_dict / fit checkpoint of the demo's quantized model"
        )
    from ..runtime.export import export_for_device
    from ..studies.demo import device_start

    qmodel, optimizer, example = device_start(args.quick, args.seed)
    if args.model != "demo":
        load_checkpoint(Path(args.model), qmodel, optimizer)
    make_dir(args.out)
    manifest = export_for_device(qmodel, optimizer, example, args.out)
    tensors = ", ".join(f"{t['name']} {tuple(t['shape'])}" for t in manifest["tensors"])
    print(f"wrote {args.out}: model.onnx, the C step and README.md (trained: {tensors})")
    print(f"build: cd {args.out} && {manifest['run']}", file=sys.stderr)
    return 0


def load_checkpoint(path: Path, qmodel: Any, optimizer: Any) -> None:
    """Load a ``state_dict`` of ``qmodel``, or a fit checkpoint's model (and optimizer) state."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict or checkpoint")
    model_state = state.get("model", state)
    try:
        qmodel.load_state_dict(model_state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"{path} is not a checkpoint of the demo's 16w8a model: {first}") from None
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
