"""``edgezo memory MODEL [--regime ft|lp] [--batch N] [--out DIR]``: a model's training memory.

Writes ``memory.md`` (table), ``memory.png`` (stacked bars: weights, scratch,
gradients, optimizer state) and ``memory.json`` for the rows of
:func:`edgezo.analysis.memory.memory_table`, plus the measured peak resident
set of a separate process running inference, ZO and backprop steps.

Models and training regimes are looked up by name in :data:`MODELS` and
:data:`REGIMES`; :func:`register_model` and :func:`register_regime` add more.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .args import int_at_least, make_dir, writable_dir


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and the shape of one input sample (without the batch dimension)."""

    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    description: str


def _model(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    """A builder of ``edgezo.models.<name>(**kwargs)`` (imported when built)."""

    def build() -> nn.Module:
        from .. import models

        if name == "ViTTiny" and kwargs.get("small"):
            return models.ViTTiny(models.ViTConfig.small())
        return getattr(models, name)(**kwargs)

    return build


#: Models ``edgezo memory`` knows by name.
MODELS: dict[str, ModelSpec] = {
    "vit-tiny": ModelSpec(_model("ViTTiny"), (3, 32, 32), "ViTTiny: width 192, 12 blocks, 3x32x32 input"),
    "vit-small": ModelSpec(_model("ViTTiny", small=True), (1, 28, 28), "the studies' ViT: width 96, 4 blocks, 1x28x28"),
    "cnn": ModelSpec(_model("SmallCNN"), (1, 28, 28), "SmallCNN: two conv blocks, 1x28x28 input"),
    "resnet": ModelSpec(_model("SmallResNet"), (1, 28, 28), "SmallResNet: CIFAR-style, 1x28x28 input"),
    "crnn": ModelSpec(_model("CRNN"), (1, 101, 40), "keyword-spotting CRNN: 101 frames x 40 mels"),
    "dscnn": ModelSpec(_model("DSCNN"), (1, 101, 40), "keyword-spotting DS-CNN: 101 frames x 40 mels"),
}  # fmt: skip


def register_model(
    name: str, build: Callable[[], nn.Module], input_shape: tuple[int, ...], description: str = ""
) -> None:
    """Make ``edgezo memory NAME`` build ``build()`` and feed it ``(batch, *input_shape)`` inputs."""
    MODELS[name] = ModelSpec(build, tuple(input_shape), description or name)


def _regime(name: str) -> Callable[[nn.Module], nn.Module]:
    """The model as :func:`edgezo.models.prepare` sets it up for regime ``name``."""

    def prepare(model: nn.Module) -> nn.Module:
        from ..models import prepare as prepare_regime

        return prepare_regime(model, name)[0]

    return prepare


#: Training regimes: a function that marks the trained parameters ``requires_grad``
#: (it may also add parameters, as prompt tuning does) and returns the model.
REGIMES: dict[str, Callable[[nn.Module], nn.Module]] = {
    name: _regime(name) for name in ("ft", "lp", "lp3", "vpt")
}


def register_regime(name: str, prepare: Callable[[nn.Module], nn.Module]) -> None:
    """Make ``--regime NAME`` train what ``prepare(model)`` leaves ``requires_grad``."""
    REGIMES[name] = prepare


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``edgezo memory`` on ``subparsers`` (``handler`` returns the exit code)."""
    p = subparsers.add_parser(
        "memory",
        help="memory of training a model: weights, scratch, gradients, optimizer state",
        description=(
            "Measure a model's training memory for BP fp32, BP fp16, ZO fp32, QZO-FF 16w8a and "
            "QZO-FF 16w8a + 90% sparse: weights in their format, scratch (activations backprop "
            "saves vs the largest live set of a forward), gradients and optimizer state; plus "
            "the measured peak resident set of inference, ZO and backprop steps. Writes "
            "memory.md, memory.png and memory.json."
        ),
    )
    p.add_argument(
        "model",
        choices=sorted(MODELS),
        metavar="MODEL",
        help=f"model to measure: {', '.join(sorted(MODELS))}",
    )
    p.add_argument(
        "--regime",
        choices=sorted(REGIMES),
        default="ft",
        metavar="|".join(sorted(REGIMES)),
        help="what trains (default ft)",
    )
    p.add_argument(
        "--batch", type=int_at_least(1), default=1, metavar="N", help="batch size (default 1)"
    )
    p.add_argument(
        "--bp-optimizer",
        choices=["sgd", "momentum", "adam"],
        default="sgd",
        metavar="sgd|momentum|adam",
        help="state of the backprop rows (default sgd: none)",
    )
    p.add_argument(
        "--rss-steps",
        type=int_at_least(0),
        default=3,
        metavar="N",
        help="steps per measured process (peak resident set); 0 skips it (default 3)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, metavar="S", help="seed of weights and batch"
    )
    p.add_argument(
        "--out",
        type=writable_dir,
        default="memory",
        metavar="DIR",
        help="output folder, created if missing (default ./memory)",
    )
    p.set_defaults(handler=run_memory)
    return p


def build(name: str, regime: str, batch: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The registered model ``name`` prepared for ``regime``, and a random batch for it."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose from {sorted(MODELS)}")
    if regime not in REGIMES:
        raise ValueError(f"Unknown regime {regime!r}; choose from {sorted(REGIMES)}")
    spec = MODELS[name]
    torch.manual_seed(seed)
    model = REGIMES[regime](spec.build())  # as built: training mode
    return model, torch.randn(batch, *spec.input_shape)


def run_memory(args: argparse.Namespace) -> int:
    """Measure, write the three files, print the table and where they are."""
    from ..analysis.memory import (
        RSS_MODES,
        environment,
        measure_peak_rss,
        memory_table,
        memory_title,
        write_memory_report,
    )
    from ..studies.results import provenance

    make_dir(args.out)  # checked when parsed: a bad path fails before the work
    torch.set_num_threads(1)
    model, x = build(args.model, args.regime, args.batch, args.seed)
    rows = memory_table(model, x, bp_optimizer=args.bp_optimizer)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    meta: dict[str, Any] = {
        "model": f"{args.model} ({MODELS[args.model].description})",
        "regime": args.regime,
        "batch": args.batch,
        "input": list(x.shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained parameters": trained,
        "environment": environment(),
        "provenance": provenance(),
    }
    if args.rss_steps:
        meta["peak_rss"] = {
            mode: measure_peak_rss(model, x, mode, steps=args.rss_steps) for mode in RSS_MODES
        }
    paths = write_memory_report(args.out, rows, meta, memory_title(meta))
    print(paths[0].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
