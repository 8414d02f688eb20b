"""The run's randomness: the global generators forked and seeded, saved and restored per step.

Randomness inside the model (dropout) comes from the global torch generator (and
the CUDA generators of the devices the model lives on); ``fit`` forks and seeds
them, so a run is a function of its arguments and the caller's state is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


def cuda_devices(model: nn.Module) -> list[int]:
    """The CUDA devices holding ``model``'s parameters (whose generators its randomness uses)."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})


@contextlib.contextmanager
def seeded_rng(model: nn.Module, seed: int) -> Iterator[None]:
    """Run with the global generators forked (the caller's state is kept) and seeded."""
    devices = cuda_devices(model)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for d in devices:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


def rng_state(devices: list[int]) -> dict[str, Any]:
    """The CPU generator's state and those of ``devices``."""
    cuda = [torch.cuda.get_rng_state(d) for d in devices]
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(devices: list[int], state: Mapping[str, Any]) -> None:
    """Put back a state from :func:`rng_state` (for the same ``devices``)."""
    torch.set_rng_state(state["cpu"])
    for d, s in zip(devices, state["cuda"], strict=True):
        torch.cuda.set_rng_state(s, d)
