"""Learning-rate schedules stepped once per optimizer step (backprop and ZO alike)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, steps: int, warmup: int = 0, min_factor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay, stepped once per optimizer step.

    The learning rate of step ``s`` (0-based) is ``lr * (s + 1) / warmup`` for
    ``s < warmup``, then ``lr * (m + (1 - m) * (1 + cos(pi * (s - warmup) / (steps - warmup))) / 2)``
    with ``m = min_factor``: it reaches ``lr * m`` after the last step. Works with
    :class:`~edgezo.ZO` as with any ``torch.optim`` optimizer.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"Invalid steps: {steps}; use an integer >= 1")
    if int(warmup) != warmup or not 0 <= warmup < steps:
        raise ValueError(f"Invalid warmup: {warmup}; use an integer in [0, steps) = [0, {steps})")
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"Invalid min_factor: {min_factor}; use a number in [0, 1]")
    decay = steps - warmup

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / decay))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
