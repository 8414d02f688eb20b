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
* Interruptions: a first Ctrl-C (or SIGTERM) lets the current step finish, then
  ``fit`` saves a checkpoint, says where (stderr) and raises ``KeyboardInterrupt``
  (:class:`~edgezo.train.interrupt.Terminated`, a subclass, for SIGTERM); a second
  one stops at once. A Ctrl-C or SIGTERM during a checkpoint write waits for the
  file to be complete (only in the main thread; elsewhere an interrupted save
  keeps the previous file, with a warning). Any exception (or ``KeyboardInterrupt``) raised inside a step saves a
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

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..optim import ZO
from .checkpoints import Resumable, checkpoint_identity, load_checkpoint, save_checkpoint
from .evaluation import Data, LossFn, evaluate
from .interrupt import signals_deferred, stop_after_step
from .log import JsonlLog
from .results import FitResult, RunState, flat_weights
from .rng import cuda_devices, rng_state, seeded_rng, set_rng_state
from .sampler import EpochSampler


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
    _check_settings(train, scheduler, checkpoint_path, steps, eval_every=eval_every,
                    checkpoint_every=checkpoint_every, snapshot_every=snapshot_every)  # fmt: skip
    x, y = train
    loop = _Loop(model, optimizer, x, y, steps=int(steps), loss_fn=loss_fn,
                 eval_sets=dict(eval_sets or {}), eval_every=eval_every, scheduler=scheduler,
                 sampler=EpochSampler(len(x), batch_size, seed),
                 checkpoint_path=None if checkpoint_path is None else Path(checkpoint_path),
                 checkpoint_every=checkpoint_every, snapshot_every=snapshot_every,
                 params=list(params) if params is not None else _optimizer_params(optimizer),
                 seed=int(seed))  # fmt: skip
    with seeded_rng(model, int(seed)):
        return loop.run(Path(log_path) if log_path is not None else None, progress)


def _check_settings(
    train: Data,
    scheduler: Any,
    checkpoint_path: str | os.PathLike[str] | None,
    steps: int,
    **periods: int | None,
) -> None:
    """Refuse settings :func:`fit` cannot run, with what to change (``periods``: ``*_every``)."""
    _check_positive("steps", steps)
    for name, value in periods.items():
        if value is not None:
            _check_positive(name, value)
    if periods["checkpoint_every"] is not None and checkpoint_path is None:
        raise ValueError("checkpoint_every needs a checkpoint_path to write to")
    x, y = train
    if len(x) != len(y):
        raise ValueError(f"train has {len(x)} inputs but {len(y)} labels")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError(
            "ReduceLROnPlateau needs a metric; fit steps its scheduler once per step without one. "
            "Use a step-based scheduler (e.g. warmup_cosine)"
        )


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
    state: RunState = field(default_factory=RunState)
    consistent: bool = True  # the model, optimizer, sampler and state agree on a step
    inexact: str = ""  # why not, after a failed step
    shown_eval: dict[str, str] = field(default_factory=dict)  # the progress bar's last evaluation

    def __post_init__(self) -> None:
        self.devices = cuda_devices(self.model)  # whose generators the model's randomness uses

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
            with JsonlLog(log_path, logged) as log, stop_after_step() as stop:
                while self.state.step < self.steps:
                    self._one_step(bar, started)
                    if self.state.step < self.steps:  # the last record waits for _finish
                        log.write_new(self.state.history)
                    if stop:
                        raise stop.exception()
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
        return self.state.result()

    def _one_step(self, bar: Any, started: float) -> None:
        state = self.state
        before = (self.sampler.state_dict(), rng_state(self.devices))
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
                set_rng_state(self.devices, before[1])
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

    # checkpoints -----------------------------------------------------------------------
    def _resumable(self) -> Resumable:
        return Resumable(self.model, self.optimizer, self.scheduler, self.sampler, self.devices)

    def _identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this call."""
        return checkpoint_identity(len(self.x), self.sampler, self.seed, self.optimizer,
                                   self.scheduler, self.snapshot_every)  # fmt: skip

    def _save_checkpoint(self, redeliver: bool = True) -> None:
        """Save; a Ctrl-C or SIGTERM meanwhile waits for the file (then acts, if ``redeliver``)."""
        with signals_deferred(str(self.checkpoint_path), redeliver):
            save_checkpoint(self.checkpoint_path, self._identity(), self._resumable(), self.state)

    def _load_checkpoint(self) -> None:
        self.state = load_checkpoint(
            self.checkpoint_path, self._identity(), self.steps, self._resumable()
        )

    def _save_on_interrupt(self) -> None:
        """Save at the last completed step, unless the weights no longer are exactly that step's.

        Says where the run can be resumed from; an interruption that still gets into the
        save (where signals cannot wait: outside the main thread) keeps the previous file.
        """
        if not self.consistent:
            warnings.warn(
                f"Interrupted inside step {self.state.step + 1}: {self.inexact}, so "
                f"{self._kept()}. A first Ctrl-C always stops cleanly after the current step.",
                stacklevel=4,
            )
            return
        try:
            self._save_checkpoint(redeliver=False)  # already stopping: a second signal waits
        except BaseException as e:  # noqa: BLE001 - the original exception goes on instead
            failure = (
                "Interrupted again while saving the checkpoint"
                if isinstance(e, KeyboardInterrupt)
                else f"Could not save the checkpoint ({type(e).__name__}: {e})"
            )
            warnings.warn(f"{failure}, so {self._kept()}.", stacklevel=4)
            return
        tqdm.write(
            f"Saved a checkpoint at step {self.state.step} to {self.checkpoint_path}; call fit "
            "again with the same settings to resume from it",
            file=sys.stderr,
        )

    def _kept(self) -> str:
        """What is left to resume from when the interrupt save cannot be made."""
        if self.checkpoint_path.exists():
            return f"{self.checkpoint_path} keeps its last complete checkpoint (rerun to resume)"
        return "no checkpoint was written (set checkpoint_every to lose less)"


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
