"""What a run produces and carries: :class:`FitResult`, the loop's :class:`RunState`, flat weights."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..params import is_fixed_point
from .log import dumps


@dataclass
class FitResult:
    """What :func:`~edgezo.train.fit` returns.

    Attributes:
        history: one dict per step (the JSONL log's records): ``step``, ``loss``,
            ``lr``, ``wall_s``, ``forwards`` (ZO: also ``skipped``), and
            ``eval/<name>/accuracy`` / ``eval/<name>/loss`` on evaluation steps.
        final: ``{name: {"accuracy": ..., "loss": ...}}`` after the last step
            (empty without ``eval_sets``).
        steps: optimizer steps taken in total (including those before a resume).
        seconds: wall time of the run (steps, evaluations, checkpoints), summed over
            resumed runs; each record's ``wall_s`` is this clock at its step.
        forwards: forward passes of the training closure (ZO: the steps' queries;
            backprop: one per step, each followed by a backward).
        trajectory: ``(S, D)`` float32 flat trained weights every ``snapshot_every``
            steps (fixed-point weights dequantized), or ``None``.
        trajectory_steps: the step of each trajectory row (0: the initial weights).
    """

    history: list[dict[str, Any]]
    final: dict[str, dict[str, float]]
    steps: int
    seconds: float
    forwards: int
    trajectory: Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        """The result as JSON (non-finite numbers as ``null``; the trajectory by its shape only)."""
        data = {
            "history": self.history,
            "final": self.final,
            "steps": self.steps,
            "seconds": self.seconds,
            "forwards": self.forwards,
            "trajectory_shape": None if self.trajectory is None else list(self.trajectory.shape),
            "trajectory_steps": self.trajectory_steps,
        }
        return dumps(data)


@dataclass
class RunState:
    """What the loop carries from step to step (and saves in a checkpoint)."""

    step: int = 0
    forwards: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    trajectory: list[Tensor] = field(default_factory=list)
    trajectory_steps: list[int] = field(default_factory=list)

    def result(self) -> FitResult:
        """The :class:`FitResult` of this state (``final``: the last record's evaluations)."""
        final: dict[str, dict[str, float]] = {}
        last = self.history[-1] if self.history else {}
        for key, value in last.items():
            if key.startswith("eval/"):
                _, name, metric = key.split("/", 2)
                final.setdefault(name, {})[metric] = value
        trajectory = torch.stack(self.trajectory) if self.trajectory else None
        return FitResult(self.history, final, self.step, self.seconds, self.forwards,
                         trajectory, list(self.trajectory_steps))  # fmt: skip


def flat_weights(params: Iterable[Tensor]) -> Tensor:
    """The tensors as one float32 CPU vector (fixed-point weights as ``scale * q``)."""
    parts = []
    for p in params:
        value = p.dequantize() if is_fixed_point(p) else p
        parts.append(value.detach().reshape(-1).to("cpu", torch.float32))
    return torch.cat(parts) if parts else torch.zeros(0)
