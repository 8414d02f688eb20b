"""fit(): one training loop for backprop and every ZO method, with logs, evaluation and resume.

The same loop drives any ``torch.optim`` optimizer (backprop: the closure runs
``zero_grad``, the forward and ``backward``) and :class:`~edgezo.ZO` (the closure
is a forward only, called by ``ZO.step`` without autograd), so backprop and
zeroth-order runs see the same batches in the same order and are logged,
evaluated and checkpointed the same way.

* Batches: :class:`EpochSampler`, a fresh permutation of the training set per
  epoch from a ``torch.Generator`` seeded by ``seed`` (the last incomplete batch
  of an epoch is dropped: every step sees ``batch_size`` samples).
* Mode: backprop steps run in ``model.train()``; ZO steps in ``model.eval()``
  (as MeZO's trainer does): dropout would give the perturbed forwards different
  masks, and batch norm would update its running statistics with perturbed
  weights. Evaluation always runs in ``model.eval()``.
* Randomness inside the model (dropout) comes from the global torch generator,
  which ``fit`` forks and seeds with ``seed`` (the caller's generator is left as
  it was), so a run is a function of its arguments.
* Checkpoints (written atomically) hold the model, optimizer, scheduler,
  sampler and generator states, the step, the history and the weight trajectory;
  ``fit`` with an existing ``checkpoint_path`` resumes and ends with the weights
  of an uninterrupted run, bit for bit.
* Interruptions: a first Ctrl-C lets the current step finish, then ``fit``
  saves a checkpoint and raises ``KeyboardInterrupt``; a second one stops at
  once. Any exception (or ``KeyboardInterrupt``) raised inside a step saves a
  checkpoint at the last completed step before it propagates, where the
  weights are exactly that step's: always for backprop failing in its forward or
  backward and for fixed-point ZO; not for float ZO, whose undo of a
  perturbation is exact only within rounding (README: floating-point drift),
  nor for a backprop update cut half-way. Then the last periodic checkpoint
  (``checkpoint_every``) stays, with a warning.

Example:
    >>> import torch, torch.nn.functional as F
    >>> from edgezo import presets
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(64, 3, generator=g), torch.randint(0, 2, (64,), generator=g)
    >>> model = torch.nn.Linear(3, 2)
    >>> opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    >>> result = fit(model, opt, (x, y), steps=20, batch_size=16,
    ...              eval_sets={"train": (x, y)}, progress=False)
    >>> result.steps, result.forwards, sorted(result.final["train"])
    (20, 40, ['accuracy', 'loss'])
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..cache import atomic_write
from ..fixedpoint import FixedPointParameter
from ..optim import ZO

#: Bump when the checkpoint layout changes.
CHECKPOINT_FORMAT = 1

LossFn = Callable[[Tensor, Tensor], Tensor]
Data = tuple[Tensor, Tensor]


# -- results ---------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What :func:`fit` returns.

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
        return _dumps(data)


@dataclass
class _State:
    """What the loop carries from step to step (and saves in a checkpoint)."""

    step: int = 0
    forwards: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    trajectory: list[Tensor] = field(default_factory=list)
    trajectory_steps: list[int] = field(default_factory=list)


# -- batches ---------------------------------------------------------------------------------
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


# -- evaluation ------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 1000,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, float]:
    """Mean loss and (for integer class labels) top-1 accuracy of ``model`` on ``(x, y)``.

    Runs in ``model.eval()`` without autograd, ``batch_size`` samples at a time,
    and puts the model back in the mode it was in. ``loss_fn`` must average over
    its batch (the default ``F.cross_entropy`` does); the batches' means are
    weighted by their sizes.

    Returns:
        ``{"accuracy": fraction correct, "loss": mean loss}`` (no ``accuracy``
        when ``y`` is not an integer tensor, e.g. regression targets).
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"evaluate needs as many labels as inputs (> 0): got {len(x)} and {len(y)}"
        )
    was_training = model.training
    model.eval()
    try:
        total_loss, correct = 0.0, 0
        classes = not (y.is_floating_point() or y.is_complex())
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            out = model(xb)
            total_loss += float(loss_fn(out, yb)) * len(xb)
            if classes:
                correct += int((out.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    result = {"loss": total_loss / len(x)}
    if classes:
        result = {"accuracy": correct / len(x), **result}
    return result


# -- schedules -------------------------------------------------------------------------------
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


# -- grid search -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GridResult:
    """What :func:`grid_search` returns.

    Attributes:
        best: the parameters of the best finite score (the first one on a tie).
        score: that score.
        table: every combination in the order run, each with its ``score``.
    """

    best: dict[str, Any]
    score: float
    table: list[dict[str, Any]]


def grid_search(
    grid: Mapping[str, Sequence[Any]], run: Callable[[dict[str, Any]], float], maximize: bool = True
) -> GridResult:
    """Run ``run(params)`` for every combination of ``grid`` and pick the best score.

    Combinations are taken in ``itertools.product`` order of the grid's keys as
    given (the last key varies fastest), so the table and the tie-break are
    deterministic. Non-finite scores (a diverged run) never win.

    Example:
        >>> grid_search({"lr": [0.1, 0.3, 1.0]}, lambda p: -(p["lr"] - 0.3) ** 2).best
        {'lr': 0.3}
    """
    if not grid:
        raise ValueError("grid_search needs a non-empty grid, e.g. {'lr': [1e-3, 1e-2]}")
    values: list[list[Any]] = []
    for name, options in grid.items():
        if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
            raise TypeError(f"grid[{name!r}] must be a list of values, got {options!r}")
        options = list(options)
        if not options:
            raise ValueError(f"grid[{name!r}] has no values; give at least one")
        values.append(options)
    if "score" in grid:
        raise ValueError("'score' is the name of the result column; rename that grid parameter")
    table = []
    for combo in itertools.product(*values):
        params = dict(zip(grid, combo, strict=True))
        table.append({**params, "score": float(run(dict(params)))})
    finite = [row for row in table if math.isfinite(row["score"])]
    if not finite:
        raise ValueError(
            "Every grid point gave a non-finite score (diverged?); try smaller learning rates"
        )
    pick = max if maximize else min
    best = pick(finite, key=lambda row: row["score"])
    return GridResult({k: v for k, v in best.items() if k != "score"}, best["score"], table)


# -- fit -------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Data,
    *,
    steps: int,
    batch_size: int,
    loss_fn: LossFn = F.cross_entropy,
    eval_sets: Mapping[str, Data] | None = None,
    eval_every: int | None = None,
    scheduler: Any = None,
    log_path: str | os.PathLike[str] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    progress: bool = True,
    snapshot_every: int | None = None,
    params: Iterable[Tensor] | None = None,
) -> FitResult:
    """Train ``model`` for ``steps`` optimizer steps on batches of ``train``.

    Args:
        model: the model (float, or fixed point from
            :func:`edgezo.fixedpoint.quantize_model` with a ZO optimizer).
        optimizer: any ``torch.optim`` optimizer (backprop) or :class:`~edgezo.ZO`.
        train: ``(x, y)``, indexed along dim 0.
        steps: total optimizer steps (a resumed run continues up to it).
        batch_size: samples per step.
        loss_fn: ``loss_fn(model(x), y)`` -> scalar mean loss.
        eval_sets: named ``(x, y)`` sets, evaluated every ``eval_every`` steps
            and after the last step (:func:`evaluate`).
        eval_every: evaluation period in steps (``None``: only at the end).
        scheduler: a ``torch.optim.lr_scheduler`` scheduler, stepped after every
            optimizer step (e.g. :func:`warmup_cosine`).
        log_path: JSONL file, one record per step (see :class:`FitResult`);
            rewritten from the checkpoint's history on resume.
        checkpoint_path: resume from this file if it exists; save to it every
            ``checkpoint_every`` steps, on an interruption, and at the end.
        checkpoint_every: checkpoint period in steps (``None``: only on an
            interruption and at the end).
        seed: the batch order and the model's own randomness (dropout).
        progress: show a tqdm bar (on stderr).
        snapshot_every: keep the flat trained weights at step 0, every
            ``snapshot_every`` steps and at the end (:attr:`FitResult.trajectory`).
        params: the tensors a snapshot holds (default: the optimizer's).
    """
    _check_positive("steps", steps)
    for name, value in (
        ("eval_every", eval_every),
        ("checkpoint_every", checkpoint_every),
        ("snapshot_every", snapshot_every),
    ):
        if value is not None:
            _check_positive(name, value)
    if checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("checkpoint_every needs a checkpoint_path to write to")
    x, y = train
    if len(x) != len(y):
        raise ValueError(f"train has {len(x)} inputs but {len(y)} labels")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError(
            "ReduceLROnPlateau needs a metric; fit steps its scheduler once per step without one. "
            "Use a step-based scheduler (e.g. warmup_cosine)"
        )
    loop = _Loop(
        model,
        optimizer,
        x,
        y,
        steps=int(steps),
        loss_fn=loss_fn,
        eval_sets=dict(eval_sets or {}),
        eval_every=eval_every,
        scheduler=scheduler,
        sampler=EpochSampler(len(x), batch_size, seed),
        checkpoint_path=None if checkpoint_path is None else Path(checkpoint_path),
        checkpoint_every=checkpoint_every,
        snapshot_every=snapshot_every,
        params=list(params) if params is not None else _optimizer_params(optimizer),
        seed=int(seed),
    )
    with _seeded_rng(model, int(seed)):
        return loop.run(Path(log_path) if log_path is not None else None, progress)


@dataclass
class _Loop:
    """The settings, state and steps of one :func:`fit` call (split up to keep each part small)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    x: Tensor
    y: Tensor
    steps: int
    loss_fn: LossFn
    eval_sets: dict[str, Data]
    eval_every: int | None
    scheduler: Any
    sampler: EpochSampler
    checkpoint_path: Path | None
    checkpoint_every: int | None
    snapshot_every: int | None
    params: list[Tensor]
    seed: int
    state: _State = field(default_factory=_State)
    consistent: bool = True  # the model, optimizer, sampler and state agree on a step
    inexact: str = ""  # why not, after a failed step
    shown_eval: dict[str, str] = field(default_factory=dict)  # the progress bar's last evaluation

    def __post_init__(self) -> None:
        self.devices = _cuda_devices(self.model)  # whose generators the model's randomness uses

    @property
    def zo(self) -> bool:
        return isinstance(self.optimizer, ZO)

    # the run ---------------------------------------------------------------------------
    def run(self, log_path: Path | None, progress: bool) -> FitResult:
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._load_checkpoint()
        elif self.snapshot_every:
            self._snapshot()
        self.model.train(not self.zo)  # evaluate() puts this mode back after each evaluation
        bar = tqdm(total=self.steps, initial=self.state.step, desc=_describe(self.optimizer),
                   disable=not progress, dynamic_ncols=True)  # fmt: skip
        started = time.perf_counter() - self.state.seconds  # wall time goes on from a resume
        try:
            history = self.state.history
            finished = self.state.step == self.steps  # resumed after the last step: its record
            logged = history[:-1] if finished else history  # is written after _finish
            with _JsonlLog(log_path, logged) as log, _stop_after_step() as stop_requested:
                while self.state.step < self.steps:
                    self._one_step(bar, started)
                    if self.state.step < self.steps:  # the last record waits for _finish
                        log.write_new(self.state.history)
                    if stop_requested():
                        raise KeyboardInterrupt
                self._finish()
                log.write_new(self.state.history)
            self.state.seconds = time.perf_counter() - started
        except BaseException:
            if self.checkpoint_path is not None:
                self._save_on_interrupt()
            raise
        finally:
            bar.close()
        if self.checkpoint_path is not None:
            self._save_checkpoint()
        return self._result()

    def _one_step(self, bar: Any, started: float) -> None:
        state = self.state
        before = (self.sampler.state_dict(), _rng_state(self.devices))
        idx = self.sampler.next()
        lr = self.optimizer.param_groups[0]["lr"]
        self.consistent = False
        closure, calls = self._closure(self.x[idx], self.y[idx])
        try:
            loss = self.optimizer.step(closure)
        except BaseException:
            self.inexact = self._inexact_failure(calls[0])
            if not self.inexact:  # the weights are as before the step: so is the rest
                self.sampler.load_state_dict(before[0])
                _set_rng_state(self.devices, before[1])
                self.consistent = True
            raise
        if self.scheduler is not None:
            self.scheduler.step()
        state.step += 1
        state.forwards += calls[0]
        state.seconds = time.perf_counter() - started
        self.consistent = True
        record: dict[str, Any] = {"step": state.step, "loss": float(loss), "lr": lr,
                                  "wall_s": state.seconds, "forwards": state.forwards}  # fmt: skip
        if self.zo:
            record["skipped"] = self.optimizer.skipped
        state.history.append(record)  # before evaluating: an interruption keeps the step
        if self.eval_every and state.step % self.eval_every == 0 and state.step < self.steps:
            record.update(self._evaluate())  # the last step is evaluated by _finish
        if self.snapshot_every and state.step % self.snapshot_every == 0:
            self._snapshot()
        bar.update(1)
        bar.set_postfix(loss=_smoothed_loss(state.history), **self.shown_eval, refresh=False)
        if self.checkpoint_every and state.step % self.checkpoint_every == 0:
            self._save_checkpoint()

    def _inexact_failure(self, completed_calls: int) -> str:
        """Why the weights may differ from the step's start after a failed step ('' if not)."""
        if self.zo and not self.optimizer.space.float_segments:
            return ""  # fixed point: perturb and undo are integer-exact
        if self.zo:
            return (
                "ZO put the float weights back within rounding (perturb/undo is not bit-exact "
                "in floating point)"
            )
        if completed_calls:
            return "the weights may be half updated"
        return ""  # backprop failed in its first forward/backward: no weight has changed

    def _closure(self, xb: Tensor, yb: Tensor) -> tuple[Callable[[], Tensor], list[int]]:
        """The step's closure and a counter of its completed calls."""
        calls = [0]
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer

        def forward() -> Tensor:  # ZO: called by ZO.step under torch.no_grad
            loss = loss_fn(model(xb), yb)
            calls[0] += 1
            return loss

        def forward_backward() -> Tensor:  # backprop: torch.optim calls it with grad enabled
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            calls[0] += 1
            return loss.detach()

        return (forward if self.zo else forward_backward), calls

    def _finish(self) -> None:
        """Evaluate and snapshot after the last step (once, also when resuming a finished run)."""
        if self.eval_sets and not any(k.startswith("eval/") for k in self.state.history[-1]):
            self.state.history[-1].update(self._evaluate())
        if self.snapshot_every and self.state.trajectory_steps[-1] != self.steps:
            self._snapshot()

    def _evaluate(self) -> dict[str, float]:
        if not self.eval_sets:  # eval_every without eval_sets: nothing to evaluate
            return {}
        out = {}
        for name, (ex, ey) in self.eval_sets.items():
            metrics = evaluate(self.model, ex, ey, loss_fn=self.loss_fn)
            out.update({f"eval/{name}/{k}": v for k, v in metrics.items()})
        name, (ex, ey) = next(iter(self.eval_sets.items()))
        key = "accuracy" if f"eval/{name}/accuracy" in out else "loss"
        self.shown_eval = {f"{name} {key[:3]}": f"{out[f'eval/{name}/{key}']:.4f}"}
        return out

    def _snapshot(self) -> None:
        self.state.trajectory.append(flat_weights(self.params))
        self.state.trajectory_steps.append(self.state.step)

    def _result(self) -> FitResult:
        state = self.state
        final: dict[str, dict[str, float]] = {}
        last = state.history[-1] if state.history else {}
        for key, value in last.items():
            if key.startswith("eval/"):
                _, name, metric = key.split("/", 2)
                final.setdefault(name, {})[metric] = value
        trajectory = torch.stack(state.trajectory) if state.trajectory else None
        return FitResult(state.history, final, state.step, state.seconds, state.forwards,
                         trajectory, list(state.trajectory_steps))  # fmt: skip

    # checkpoints -----------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this call."""
        return {
            "format": CHECKPOINT_FORMAT,
            "n": len(self.x),
            "batch_size": self.sampler.batch_size,
            "seed": self.seed,
            "optimizer": type(self.optimizer).__name__,
            "scheduler": None if self.scheduler is None else type(self.scheduler).__name__,
            "snapshot_every": self.snapshot_every,
        }

    def _save_checkpoint(self) -> None:
        state = self.state
        entry = {
            "identity": self._identity(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(self.devices),
            "step": state.step,
            "forwards": state.forwards,
            "seconds": state.seconds,
            "history": state.history,
            "trajectory": torch.stack(state.trajectory) if state.trajectory else None,
            "trajectory_steps": state.trajectory_steps,
        }
        atomic_write(self.checkpoint_path, lambda f: torch.save(entry, f))

    def _save_on_interrupt(self) -> None:
        """Save at the last completed step, unless the weights no longer are exactly that step's."""
        if self.consistent:
            self._save_checkpoint()
            return
        kept = (
            f"{self.checkpoint_path} keeps its last checkpoint (rerun to resume from it)"
            if self.checkpoint_path.exists()
            else "no checkpoint was written (set checkpoint_every to lose less)"
        )
        warnings.warn(
            f"Interrupted inside step {self.state.step + 1}: {self.inexact}, so {kept}. "
            "A first Ctrl-C always stops cleanly after the current step.",
            stacklevel=4,
        )

    def _load_checkpoint(self) -> None:
        entry = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        mine = self._identity()
        for key, theirs in entry["identity"].items():
            if mine.get(key) != theirs:
                raise ValueError(
                    f"Checkpoint {self.checkpoint_path} was written with {key} = {theirs!r}, "
                    f"but this run has {key} = {mine.get(key)!r}; pass the same settings to "
                    "resume, or a new checkpoint_path to start over"
                )
        if entry["step"] > self.steps:
            raise ValueError(
                f"Checkpoint {self.checkpoint_path} is at step {entry['step']}, past steps = "
                f"{self.steps}; ask for at least {entry['step']} steps"
            )
        self.model.load_state_dict(entry["model"])
        self.optimizer.load_state_dict(entry["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(entry["scheduler"])
        self.sampler.load_state_dict(entry["sampler"])
        _set_rng_state(self.devices, entry["rng"])
        trajectory = entry["trajectory"]
        self.state = _State(
            step=entry["step"],
            forwards=entry["forwards"],
            seconds=entry["seconds"],
            history=entry["history"],
            trajectory=[] if trajectory is None else list(trajectory.unbind(0)),
            trajectory_steps=list(entry["trajectory_steps"]),
        )


# -- helpers ---------------------------------------------------------------------------------
def flat_weights(params: Iterable[Tensor]) -> Tensor:
    """The tensors as one float32 CPU vector (fixed-point weights as ``scale * q``)."""
    parts = []
    for p in params:
        value = p.dequantize() if isinstance(p, FixedPointParameter) else p
        parts.append(value.detach().reshape(-1).to("cpu", torch.float32))
    return torch.cat(parts) if parts else torch.zeros(0)


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"Invalid {name}: {value}; use an integer >= 1")


def _describe(optimizer: torch.optim.Optimizer) -> str:
    if isinstance(optimizer, ZO):
        return f"ZO {optimizer.estimator.name}"
    return f"{type(optimizer).__name__} (backprop)"


def _smoothed_loss(history: list[dict[str, Any]], window: int = 20) -> str:
    """The bar's loss: the mean finite loss of the last ``window`` steps."""
    losses = [r["loss"] for r in history[-window:] if math.isfinite(r["loss"])]
    return f"{sum(losses) / len(losses):.4f}" if losses else "nan"


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})


@contextlib.contextmanager
def _seeded_rng(model: nn.Module, seed: int) -> Iterator[None]:
    """Run with the global generators forked (the caller's state is kept) and seeded."""
    devices = _cuda_devices(model)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for d in devices:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


@contextlib.contextmanager
def _stop_after_step() -> Iterator[Callable[[], bool]]:
    """A first Ctrl-C lets the current step finish (then fit saves and stops); a second stops now.

    A ZO step interrupted half-way is undone only within rounding in floating
    point, so stopping at a step boundary is what makes a resume bit-exact.
    Only in the main thread, and only if nobody else handles SIGINT.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return
    requested: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        tqdm.write("Stopping after this step (Ctrl-C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _rng_state(devices: list[int]) -> dict[str, Any]:
    cuda = [torch.cuda.get_rng_state(d) for d in devices]
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(devices: list[int], state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    for d, s in zip(devices, state["cuda"], strict=True):
        torch.cuda.set_rng_state(s, d)


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``, containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False)


class _JsonlLog:
    """The JSONL log: rewritten from the history it starts with, then appended to."""

    def __init__(self, path: Path | None, history: list[dict[str, Any]]) -> None:
        self.path, self.written, self.file = path, 0, None
        if path is not None:
            text = "".join(_dumps(r) + "\n" for r in history)
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))
            self.written = len(history)

    def __enter__(self) -> _JsonlLog:
        if self.path is not None:
            self.file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return self

    def write_new(self, history: list[dict[str, Any]]) -> None:
        """Append the records of ``history`` not written yet."""
        if self.file is not None:
            self.file.write("".join(_dumps(r) + "\n" for r in history[self.written :]))
        self.written = len(history)

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()
