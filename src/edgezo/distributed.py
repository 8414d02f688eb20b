"""Data-parallel ZO over ``torch.distributed``: ranks exchange a few scalars per step, never weights.

Why it works. A ZO step is a function of the weights, the optimizer's state
(direction seed, step counter, history) and the loss values the closure
returns. If every rank starts from the same weights and the same optimizer,
and every rank sees the *same* loss values, every rank computes the same
coefficients and applies the same update: the replicas stay bit-identical
without a weight ever being sent. :class:`DataParallelZO` makes the losses the
same: each closure evaluation, on every rank, evaluates the shared perturbation
on the rank's own shard of the batch and all-gathers three float64 numbers per
rank, ``(loss, tangent, weight)``; every rank then combines the rows in rank order::

    L = sum_r w_r L_r / sum_r w_r          (float64, ranks with w_r = 0 left out)

With ``L_r`` the mean loss over rank ``r``'s examples and ``w_r`` their number,
``L`` is the mean loss over the concatenated batch, up to rounding (the sum is
grouped by shard). ``tangent`` is the forward-mode directional derivative for
the ``jvp`` estimator (combined the same way), 0 otherwise. Every rank sums the
gathered rows itself in the same order, so the result does not depend on the
backend's reduction order.

Communication per step and rank (``comm_bytes``): 24 bytes per closure
evaluation, i.e. ``48 q`` for ``central`` and ``sign`` (``q = m`` queries),
``24 (q + 1)`` for ``forward`` and ``24 q`` for ``jvp``; a data-parallel
gradient all-reduce of the same model sends ``4 d`` bytes (fp32, ``d``
parameters). The wire traffic of a ring all-gather is ``(N - 1)`` times the
payload; that of a ring all-reduce ``2 (N - 1) / N`` times.

Non-finite losses: a NaN or inf on any rank makes the combined loss non-finite
on every rank, so every rank skips the same step (``ZO``'s rule). A rank whose
``weight`` is 0 (an empty shard) is left out of the sum.

Failures. A rank whose closure raises still takes part in the exchange, with a
failure mark, then re-raises its own error; every other rank raises
:class:`DistributedZOError` naming it, and ``ZO`` restores the weights on all of
them. A rank that dies (killed, out of memory) closes its sockets: the others'
next exchange fails at once (gloo: "Connection reset by peer") and is reported
as :class:`DistributedZOError`. A rank that hangs is detected by the process
group's timeout, :data:`DEFAULT_TIMEOUT_S` (300 s) unless
``init_from_env(timeout_s=...)`` (``--timeout``) says otherwise; the error
states the group's timeout (:func:`group_timeout_s`). Under
``torchrun`` a failed worker also makes the agent stop the others.

Checkpoints: :func:`save_checkpoint` (rank 0 writes the model and optimizer
atomically, every rank waits for the result) and :func:`load_checkpoint` (every
rank reads it; ``None`` where there is none yet; a file it cannot read or that
:func:`save_checkpoint` did not write is a ``ValueError`` saying so), so a
restart of the same command resumes bit-exactly from the last checkpoint.

Usage, the example of :mod:`edgezo.studies.distributed` (each prints JSON: steps, losses,
bytes per step, replica check)::

    torchrun --nproc-per-node 2 -m edgezo.distributed --steps 100
    python -m edgezo.distributed --nproc 2 --steps 100       # spawns the ranks itself (gloo)
    python -m edgezo.distributed --nproc 2 --steps 200 --checkpoint run.pt --save-every 20

In a training script::

    ctx = init_from_env()                    # torchrun's RANK, WORLD_SIZE, MASTER_ADDR, ...
    torch.manual_seed(0)                     # the same model on every rank
    model = build_model().to(ctx.device)
    dp = DataParallelZO(mezo(model.parameters(), lr=1e-3, seed=0))   # the same seed too
    for x, y in loader:                      # the same global batches on every rank
        part = shard(len(x), ctx.rank, ctx.world)
        xs, ys = x[part.start : part.stop], y[part.start : part.stop]
        loss = dp.step(lambda: F.cross_entropy(model(xs), ys), weight=len(part))

    >>> shard(10, rank=1, world=4)
    range(3, 6)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import pickle
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.autograd.forward_ad as fwad
import torch.distributed as dist
from torch import Tensor, nn

from .cache import atomic_write
from .estimators import Closure
from .optim import ZO

DEFAULT_TIMEOUT_S = 300.0  #: seconds a collective waits for a silent peer before failing
BYTES_PER_EVALUATION = 24  #: (loss, tangent, weight) as float64, sent once per closure call
_FAILED = -1.0  # the weight slot of a rank whose closure raised
_INIT_TIMEOUT_S: dict[str, float] = {}  # the timeout init_from_env gave the default group


class DistributedZOError(RuntimeError):
    """Another rank failed, died or timed out, or the replicas disagree: every rank stops."""


# -- process group ---------------------------------------------------------------
@dataclass(frozen=True)
class RankInfo:
    """Where this process sits: its rank, the world size, and the device it should compute on."""

    rank: int
    world: int
    local_rank: int
    backend: str
    device: torch.device


def init_from_env(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> RankInfo:
    """Join the process group described by ``torchrun``'s environment variables.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (default 0), ``MASTER_ADDR``
    and ``MASTER_PORT``. ``backend`` defaults to NCCL when CUDA is available
    (one GPU per local rank), gloo otherwise. ``timeout_s`` bounds every
    collective: a peer silent for longer makes it fail instead of hang (gloo
    raises; NCCL's watchdog ends the process, and torchrun then stops the
    others). If the group already exists it is reused as it is.
    """
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"Invalid timeout_s: {timeout_s}; give the seconds to wait, > 0")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        missing = [
            k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
        ]
        if missing:
            raise RuntimeError(
                f"Missing environment variables {missing}: launch with torchrun "
                "(torchrun --nproc-per-node 2 script.py) or set RANK, WORLD_SIZE, MASTER_ADDR and "
                "MASTER_PORT yourself"
            )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        _INIT_TIMEOUT_S["default"] = timeout_s
    backend = dist.get_backend()
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )
    return RankInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def shard(length: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous part of ``range(length)``: sizes differ by at most one.

    The first ``length % world`` ranks get one element more (as ``numpy.array_split``).
    """
    if length < 0:
        raise ValueError(f"Invalid length {length}; it must be >= 0")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"Invalid rank {rank} for world size {world}; need 0 <= rank < world")
    size, extra = divmod(length, world)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (rank < extra))


# -- exchanging scalars ------------------------------------------------------------
def _comm_device(group: Any) -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def group_timeout_s(group: Any = None) -> float | None:
    """The process group's collective timeout in seconds, or ``None`` where torch does not say.

    Read from the group's backend options (gloo and NCCL keep it there); falls back
    to what :func:`init_from_env` set for the default group.
    """
    try:
        pg = group if group is not None else dist.group.WORLD
        backend = pg._get_backend(_comm_device(group))
        return float(backend.options._timeout.total_seconds())
    except Exception:  # another torch version or backend: say what we know
        return _INIT_TIMEOUT_S.get("default") if group is None else None


def _timeout_hint(group: Any = None) -> str:
    timeout = group_timeout_s(group)
    known = f"{timeout:g} s" if timeout is not None else "its length is not known here"
    return (
        "another rank died, raised outside the closure or did not answer within the process "
        f"group's timeout ({known}; set it with init_from_env(timeout_s=...) or --timeout); "
        "see the other ranks' logs"
    )


def all_gather_floats(values: Sequence[float], group: Any = None) -> list[list[float]]:
    """Every rank's ``values`` (float64, same length everywhere), in rank order.

    A failed collective (a dead or silent peer) raises :class:`DistributedZOError`.
    """
    packet = torch.tensor(list(values), dtype=torch.float64, device=_comm_device(group))
    rows = [torch.empty_like(packet) for _ in range(dist.get_world_size(group))]
    try:
        dist.all_gather(rows, packet, group=group)
    except RuntimeError as e:  # gloo and NCCL report dead or silent peers this way
        raise DistributedZOError(f"A collective failed: {_timeout_hint(group)}. ({e})") from e
    return [row.tolist() for row in rows]


def _agree(ok: bool, what: str, group: Any = None) -> None:
    """Every rank learns whether ``what`` worked everywhere; raise on all of them if not."""
    flags = all_gather_floats([float(ok)], group)
    failed = [r for r, (flag,) in enumerate(flags) if flag != 1.0]
    if failed:
        raise DistributedZOError(f"{what} failed on rank(s) {failed}; see their errors")


# -- replica checks -------------------------------------------------------------------
def replica_digest(tensors: Iterable[Tensor]) -> int:
    """A 63-bit BLAKE2b digest of the tensors' dtypes, shapes and bytes, in order."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        t = t.detach()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def _tensors(model: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    """A module's ``state_dict`` tensors (parameters and buffers), or the tensors given."""
    if isinstance(model, nn.Module):
        return list(model.state_dict().values())
    return list(model)


def _digests(tensors: list[Tensor], group: Any) -> list[int]:
    """Every rank's digest, all-gathered (as two exact float64 halves: 32 bits each)."""
    d = replica_digest(tensors)
    rows = all_gather_floats([float(d >> 32), float(d & 0xFFFFFFFF)], group)
    return [(int(hi) << 32) | int(lo) for hi, lo in rows]


def check_replicas(model: nn.Module | Iterable[Tensor], group: Any = None) -> bool:
    """Whether every rank holds bit-identical tensors (a module's parameters and buffers).

    Sends 16 bytes per rank; costs one hash over the model's bytes. A collective:
    every rank must call it.
    """
    digests = _digests(_tensors(model), group)
    return all(d == digests[0] for d in digests)


# -- the optimizer wrapper ---------------------------------------------------------------
def combine(rows: Sequence[Sequence[float]]) -> tuple[float, float]:
    """``(sum w_r L_r / sum w_r, sum w_r T_r / sum w_r)`` over rows ``(L_r, T_r, w_r)`` in order.

    Rows with ``w_r = 0`` are left out (an empty shard's loss is undefined).

    >>> combine([(1.0, 0.0, 3.0), (2.0, 0.0, 1.0), (float("nan"), 0.0, 0.0)])
    (1.25, 0.0)
    """
    used = [(loss, tangent, w) for loss, tangent, w in rows if w != 0.0]
    if not used:
        raise ValueError(
            "Every rank gave weight 0 for this evaluation: no data anywhere; pass weight = the "
            "number of examples in the rank's batch"
        )
    total = sum(w for _, _, w in used)
    return (
        sum(w * loss for loss, _, w in used) / total,
        sum(w * tangent for _, tangent, w in used) / total,
    )


def _scalar_parts(loss: Tensor | float) -> tuple[float, float | None]:
    """``(primal, tangent or None)`` of the closure's scalar loss, as Python floats."""
    if not isinstance(loss, Tensor):
        return float(loss), None
    if loss.numel() != 1:
        raise ValueError(
            f"The closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}; "
            "reduce it (e.g. .mean())"
        )
    primal, tangent = fwad.unpack_dual(loss)
    return float(primal.detach()), None if tangent is None else float(tangent.detach())


def _check_weight(weight: float | Tensor) -> float:
    w = float(weight)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(
            f"Invalid weight {weight}; pass the number of examples in this rank's batch (>= 0)"
        )
    return w


class DataParallelZO:
    """Run a :class:`~edgezo.ZO` optimizer data-parallel: one replica per rank, scalars exchanged.

    Every rank must build the same model and the same optimizer (same seed);
    the constructor checks this (one hash of the weights and the optimizer's
    state, all-gathered) and raises :class:`DistributedZOError` where they differ.

    Args:
        optimizer: the rank's ``ZO`` optimizer (any estimator, direction source,
            update rule; float or fixed point).
        group: the process group (default: the global one).

    Attributes:
        comm_bytes: payload bytes this rank has sent in :meth:`step` so far.
        step_bytes: the same, for the last step.
        comm_seconds: time spent in those exchanges (including waiting for slower ranks).
    """

    def __init__(self, optimizer: ZO, group: Any = None) -> None:
        if not isinstance(optimizer, ZO):
            raise TypeError(
                f"DataParallelZO wraps an edgezo.ZO optimizer (e.g. edgezo.presets.mezo(...)), "
                f"got {type(optimizer).__name__}"
            )
        if not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialized: call edgezo.distributed.init_from_env() "
                "first (under torchrun), or torch.distributed.init_process_group(...)"
            )
        self.optimizer, self.group = optimizer, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.comm_bytes = self.step_bytes = 0
        self.comm_seconds = 0.0
        self._check_same_start()

    def _params(self) -> list[Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _check_same_start(self) -> None:
        state = json.dumps(self.optimizer.state_dict(), sort_keys=True, default=repr).encode()
        tensors = [*self._params(), torch.frombuffer(bytearray(state), dtype=torch.uint8)]
        digests = _digests(tensors, self.group)
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise DistributedZOError(
                f"Rank(s) {differ} start from other weights or another optimizer state than rank 0: "
                "build the model and the optimizer identically on every rank (torch.manual_seed(s) "
                "before both, the same direction seed), or load the same checkpoint"
            )

    def step(self, closure: Closure, weight: float | Tensor = 1.0) -> Tensor:
        """One ZO step on every rank; returns the combined loss (float32, the same everywhere).

        Args:
            closure: the mean loss over this rank's examples (no autograd needed).
            weight: this rank's share of the global batch, normally its number of
                examples (only ratios matter; equal shards can keep the default).
        """
        self.step_bytes = 0
        loss = self.optimizer.step(lambda: self._evaluate(closure, weight))
        self.comm_bytes += self.step_bytes
        return loss

    def _evaluate(self, closure: Closure, weight: float | Tensor) -> Tensor:
        """The closure's loss combined over the ranks (a collective; every rank calls it)."""
        error: BaseException | None = None
        tangent: float | None = None
        try:
            primal, tangent = _scalar_parts(closure())
            packet = [primal, tangent or 0.0, _check_weight(weight)]
        except BaseException as e:  # tell the others before raising: they must not wait
            error, packet = e, [math.nan, math.nan, _FAILED]
        start = time.perf_counter()
        try:
            rows = all_gather_floats(packet, self.group)
        except DistributedZOError:
            if error is not None:
                raise error from None  # this rank's own failure is the more useful report
            raise
        finally:
            self.comm_seconds += time.perf_counter() - start
            self.step_bytes += BYTES_PER_EVALUATION
        if error is not None:
            raise error
        failed = [r for r, row in enumerate(rows) if row[2] == _FAILED]
        if failed:
            raise DistributedZOError(
                f"Rank(s) {failed} failed while evaluating the closure at step "
                f"{self.optimizer.steps}; this rank stops too (the weights are restored). "
                "The failing rank's log has the cause."
            )
        loss, slope = combine(rows)
        value = torch.tensor(loss, dtype=torch.float64)
        if tangent is None:
            return value
        return fwad.make_dual(value, torch.tensor(slope, dtype=torch.float64))

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (identical on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)


# -- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    dp: DataParallelZO,
    extra: dict[str, Any] | None = None,
) -> None:
    """Rank 0 writes ``{model, optimizer, extra}`` atomically; every rank returns once it is complete.

    ``extra`` is plain data (``torch.load(weights_only=True)`` reads it back).
    If rank 0 cannot write, every rank raises.
    """
    ok, error = True, None
    if dp.rank == 0:
        state = {"model": model.state_dict(), "optimizer": dp.state_dict(), "extra": extra or {}}
        try:
            atomic_write(path, lambda f: torch.save(state, f))
        except Exception as e:
            ok, error = False, e
    try:
        _agree(ok, f"Writing the checkpoint {path}", dp.group)
    except DistributedZOError:
        if error is not None:
            raise error from None
        raise


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, dp: DataParallelZO
) -> dict[str, Any] | None:
    """Load ``path`` on every rank; returns its ``extra``, or ``None`` if no rank has the file.

    The path must be readable by every rank (on several machines, a shared
    filesystem); a file only some ranks see is an error on all of them.
    """
    exists = Path(path).is_file()
    rows = all_gather_floats([float(exists)], dp.group)
    have = [r for r, (flag,) in enumerate(rows) if flag == 1.0]
    if not have:
        return None
    if len(have) != dp.world:
        raise DistributedZOError(
            f"Checkpoint {path} exists on rank(s) {have} only: put it where every rank reads it "
            "(a shared filesystem)"
        )
    error: Exception | None = None
    extra: dict[str, Any] = {}
    try:
        state = _read_checkpoint(path)
        model.load_state_dict(state["model"])
        dp.load_state_dict(state["optimizer"])
        extra = state["extra"]
    except Exception as e:
        error = e
    try:
        _agree(error is None, f"Loading the checkpoint {path}", dp.group)
    except DistributedZOError:
        if error is not None:
            raise error from None
        raise
    return extra


def load_failure(error: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words (not torch's advice to unpickle unsafely)."""
    if isinstance(error, pickle.UnpicklingError):
        return "its content is not a file that torch.save wrote"
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``{model, optimizer, extra}`` of a :func:`save_checkpoint` file, or a ``ValueError``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Checkpoint {path} is not readable ({load_failure(e)}); "
            "give a file that edgezo.distributed.save_checkpoint wrote"
        ) from e
    if not (isinstance(state, dict) and {"model", "optimizer", "extra"} <= state.keys()):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"Checkpoint {path} was not written by edgezo.distributed.save_checkpoint: it holds "
            f"{found}, not ['extra', 'model', 'optimizer']"
        )
    return state


def free_port() -> int:
    """A TCP port on the loopback that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":  # python -m edgezo.distributed: the example (edgezo.studies.distributed)
    import importlib

    sys.exit(importlib.import_module("edgezo.cli.distributed").main())
