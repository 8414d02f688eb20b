"""Checkpoints of a :func:`~edgezo.train.fit` run: written atomically, resumed bit-exactly.

A checkpoint holds the model, optimizer, scheduler, sampler and generator states,
the step, the history and the weight trajectory, plus the settings (its identity)
that must match for a later call to resume it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cache import atomic_write
from .results import RunState
from .rng import rng_state, set_rng_state
from .sampler import EpochSampler

#: Bump when the checkpoint layout changes.
CHECKPOINT_FORMAT = 1


def checkpoint_identity(
    n: int,
    sampler: EpochSampler,
    seed: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    snapshot_every: int | None,
) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed by a call with these settings."""
    return {
        "format": CHECKPOINT_FORMAT,
        "n": n,
        "batch_size": sampler.batch_size,
        "seed": seed,
        "optimizer": type(optimizer).__name__,
        "scheduler": None if scheduler is None else type(scheduler).__name__,
        "snapshot_every": snapshot_every,
    }


@dataclass
class Resumable:
    """The objects whose states a checkpoint holds beside the loop's :class:`RunState`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: EpochSampler
    devices: list[int]  # whose generators the model's randomness uses

    def state_dicts(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(self.devices),
        }

    def load_state_dicts(self, entry: dict[str, Any], path: Path) -> None:
        """Load every part from ``entry``; a part that does not fit is named in a ``ValueError``."""
        parts: dict[str, Callable[[Any], Any]] = {
            "model": self.model.load_state_dict,
            "optimizer": self.optimizer.load_state_dict,
            "sampler": self.sampler.load_state_dict,
            "rng": lambda state: set_rng_state(self.devices, state),
        }
        if self.scheduler is not None:
            parts["scheduler"] = self.scheduler.load_state_dict
        for name, load in parts.items():
            try:
                load(entry[name])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
                raise ValueError(
                    f"Checkpoint {path} does not fit this run's {name}: "
                    f"{' '.join(str(e).split())[:500]}. Resume with the {name} it was written "
                    "with, or pass a new checkpoint_path to start over"
                ) from e


def save_checkpoint(
    path: Path, identity: dict[str, Any], parts: Resumable, state: RunState
) -> None:
    """Write ``parts`` and ``state`` to ``path`` atomically (a crash keeps the previous file)."""
    entry = {
        "identity": identity,
        **parts.state_dicts(),
        "step": state.step,
        "forwards": state.forwards,
        "seconds": state.seconds,
        "history": state.history,
        "trajectory": torch.stack(state.trajectory) if state.trajectory else None,
        "trajectory_steps": state.trajectory_steps,
    }
    atomic_write(path, lambda f: torch.save(entry, f))


def load_checkpoint(path: Path, identity: dict[str, Any], steps: int, parts: Resumable) -> RunState:
    """Resume ``parts`` from ``path`` and return the loop's state, if the settings match."""
    entry = read_checkpoint(path)
    _check_resumable(path, entry, identity, steps)
    parts.load_state_dicts(entry, path)
    trajectory = entry["trajectory"]
    return RunState(
        step=entry["step"],
        forwards=entry["forwards"],
        seconds=entry["seconds"],
        history=entry["history"],
        trajectory=[] if trajectory is None else list(trajectory.unbind(0)),
        trajectory_steps=list(entry["trajectory_steps"]),
    )


#: What every checkpoint of this module holds.
KEYS = ("identity", "model", "optimizer", "scheduler", "sampler", "rng", "step", "forwards",
        "seconds", "history", "trajectory", "trajectory_steps")  # fmt: skip


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, or a ``ValueError`` saying why it cannot be resumed from."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage, truncated, a pickle of arbitrary objects, unreadable
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(
            f"Cannot resume from {path}: it is not a readable checkpoint ({reason}). Delete it, "
            "or pass another checkpoint_path to start over"
        ) from e
    missing = [k for k in KEYS if not isinstance(entry, dict) or k not in entry]
    if missing or not isinstance(entry["identity"], dict):
        raise ValueError(
            f"{path} is not a checkpoint of edgezo.train.fit (it has no {', '.join(missing)}"
            f"{'' if missing else 'identity dict'}); pass another checkpoint_path, or move the "
            "file away to start over"
        )
    return entry


def _check_resumable(
    path: Path, entry: dict[str, Any], identity: dict[str, Any], steps: int
) -> None:
    """Refuse a checkpoint written with other settings, or past the run's last step."""
    for key, theirs in entry["identity"].items():
        if identity.get(key) != theirs:
            raise ValueError(
                f"Checkpoint {path} was written with {key} = {theirs!r}, "
                f"but this run has {key} = {identity.get(key)!r}; pass the same settings to "
                "resume, or a new checkpoint_path to start over"
            )
    if entry["step"] > steps:
        raise ValueError(
            f"Checkpoint {path} is at step {entry['step']}, past steps = "
            f"{steps}; ask for at least {entry['step']} steps"
        )
