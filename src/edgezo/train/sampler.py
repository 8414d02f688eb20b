"""Batches: :class:`EpochSampler`, a fresh seeded permutation of the training set per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


class EpochSampler:
    """Index batches of ``batch_size``: a new permutation of ``range(n)`` every epoch.

    Epoch ``e`` uses the ``e``-th ``torch.randperm(n, generator=g)`` of one
    generator ``g`` seeded with ``seed``; its first ``n // batch_size`` batches
    are used, in order. The state is the generator's state at the start of the
    epoch and the position in it, so saving it costs no copy of the permutation.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"Invalid batch_size: {batch_size}; use an integer >= 1")
        if batch_size > n:
            raise ValueError(
                f"batch_size = {batch_size} exceeds the {n} training samples; use batch_size <= {n}"
            )
        self.n, self.batch_size = int(n), int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = -1
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_start = self.generator.get_state()
        self._permutation = torch.randperm(self.n, generator=self.generator)
        self.epoch += 1
        self.position = 0

    def next(self) -> Tensor:
        """The next batch of indices (``int64 (batch_size,)``)."""
        if self.position + self.batch_size > self.n:
            self._new_epoch()
        idx = self._permutation[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "epoch": self.epoch,
            "position": self.position,
            "epoch_start": self._epoch_start,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise ValueError(
                f"Sampler state is for n = {state['n']}, batch_size = {state['batch_size']}; "
                f"this sampler has n = {self.n}, batch_size = {self.batch_size}"
            )
        self.generator.set_state(state["epoch_start"])
        self._new_epoch()
        self.epoch, self.position = state["epoch"], state["position"]
