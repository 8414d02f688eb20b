"""A fuzzer for ZO's contract under misuse (issue 14), through the public API only.

Hypothesis draws a configuration (dtype or fixed-point format, direction source,
estimator, queries, update rule, masks, a frozen tensor, weight decay, and in a
quarter of the cases one misuse from :data:`MISUSES`) and a sequence of actions:
steps, steps whose closure returns NaN/inf, raises, raises ``KeyboardInterrupt``,
spikes the loss or writes a weight; a rebuild of the optimizer from its checkpoint
(``torch.save``, ``torch.load(weights_only=True)``); loading a foreign or damaged
checkpoint; ``p.data = ...``; and at the end, sometimes, ``model.to(another dtype)``.
It asserts, after every action:

* **errors**: every error that escapes is a documented one (:func:`check_documented`):
  a ``ValueError`` / ``TypeError`` / ``RuntimeError`` (``UntrainableError`` is a
  ``ValueError``) with a message, never a bare ``KeyError``, ``AttributeError``,
  ``IndexError``, ``ZeroDivisionError``, ``StopIteration``, ``NotImplementedError``...;
  the closure's own exception and ``KeyboardInterrupt`` propagate unchanged;
* **misuse is refused**: a configuration from :data:`MISUSES` raises a documented
  error or warns, and the message names the setting to change;
* **frozen** (``requires_grad=False``) and **masked-out** weights never change;
* **skipped steps** (non-finite loss, an exception, Ctrl-C, a documented error
  from the step) leave fixed-point weights bit-identical and float weights within
  the README's bound (:data:`SKIP_DRIFT_PER_QUERY`, :func:`skip_bound`), with no weight decay;
* **counters**: ``steps``, ``skipped`` and ``forwards`` count what happened;
* **refusals**: a closure that writes the weights, a swapped storage and a cast
  model make the step raise (a swap is then rebuilt, as the error says);
* **spikes**: an update that float16 can represent leaves the weights finite;
* **checkpoints**: a run with rebuilds, refused foreign/malformed loads and
  storage swaps ends bit-identical to the same run without them (save -> load ->
  continue equals continue; a refused load changes nothing).

Budgets: ``test_fuzz_contract_short`` runs in the default suite
(:data:`SHORT_EXAMPLES` cases, derandomized: the same cases on every run);
``test_fuzz_contract_long`` is ``-m slow``, random
(``EDGEZO_FUZZ_EXAMPLES``, default :data:`LONG_EXAMPLES`). Run with ``-s`` to see
how many cases ran and how many distinct configurations they reached, or with
``--hypothesis-show-statistics`` for the events.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import edgezo
from edgezo import ZO
from edgezo.directions import (
    LFSR,
    Gaussian,
    MomentumGuided,
    Pool,
    Rademacher,
    RNGArray,
    Uniform,
    Xorshift,
)
from edgezo.estimators import SharpnessAware
from edgezo.fixedpoint import qmax, quantize_model, trainable_parameters
from edgezo.formats import FixedPointFormat
from edgezo.updates import KernelNormalized, Momentum, masks

#: Cases in the default suite (kept well under a minute on a 2-core machine).
SHORT_EXAMPLES = 500
#: Cases of the ``-m slow`` run (override with ``EDGEZO_FUZZ_EXAMPLES``).
LONG_EXAMPLES = 10000

#: README Guarantees, "Failures": a skipped float step (non-finite loss, exception,
#: Ctrl-C) puts each weight back to within
#: ``SKIP_DRIFT_PER_QUERY * q * (finfo.eps * (|w| + max |eps z|) + finfo.tiny * finfo.eps)``,
#: about two ulps per query: each rounded addition of perturb/restore errs by half an
#: ulp of its result (README, "Floating-point drift of perturb/restore"). Here ``q``
#: counts every query slot the step uses (``SharpnessAware``'s ascent too) and the
#: perturbation reach is ``(eps + rho) max |z|`` over the step's directions.
SKIP_DRIFT_PER_QUERY = 2

#: A loss spike multiplies one forward's loss by this: ``|L+ - L-|`` of about 20, past the
#: 13 at which float16 weights used to overflow (finding 7: lr 1e-2, eps 1e-3).
SPIKE = 20.0

#: A bound on |z| where a source can no longer regenerate a past step (used loosely).
Z_CAP = 16.0

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
FIXED = ("fixed16", "fixed8")

#: Misuses (issue 14, finding 4, and the older fail-fast list): each must raise a
#: documented error or warn, with a message naming one of these words.
MISUSES: dict[str, tuple[str, ...]] = {
    "lr_bool": ("lr", "learning rate"),
    "lr_negative": ("lr", "learning rate"),
    "lr_nan": ("lr", "learning rate"),
    "eps_zero": ("eps",),
    "eps_tiny": ("eps",),  # 1e-30: rounds away at every dtype
    "eps_vanishing": ("eps",),  # 1e-9 below float64 (float32: 61 of 195 weights moved)
    "queries_zero": ("queries",),
    "queries_fraction": ("queries",),
    "seed_huge": ("seed",),  # 2**70 wraps to 0 today
    "seed_negative": ("seed",),  # -1 wraps to 2**64 - 1 today
    "pool_tiny": ("pool", "size"),  # Pool(size=2): two distinct perturbations
    "pool_fraction": ("pool", "size"),  # Pool(size=2.7) truncates to 2 today
    "weight_bits_fraction": ("weight_bits", "bits"),  # quantize_model(weight_bits=8.5)
    "momentum_one": ("momentum", "beta"),
}

SOURCES = ("gaussian", "rademacher", "uniform", "pool", "rngarray", "lfsr", "xorshift", "guided")
ESTIMATORS = ("central", "forward", "sign", "jvp", "sam")
UPDATES = ("sgd", "momentum", "kernel", "kernel-momentum")


# -- configurations ---------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """One drawn configuration (plain data: hypothesis prints it as the minimal example)."""

    dtype: str = "float32"
    source: str = "gaussian"
    seed: int = 0
    pool_size: int = 1009
    estimator: str = "central"
    rho: float = 2e-3
    queries: int = 1
    update: str = "sgd"
    lr: float = 1e-2
    eps: float = 1e-3
    weight_decay: float = 0.0
    masked: bool = False
    frozen: bool = False
    activation_bits: int | None = None
    z_bits: int = 8
    force: bool = False
    misuse: str | None = None

    @property
    def fixed(self) -> bool:
        return self.dtype in FIXED

    def key(self) -> tuple:
        """What makes two configurations different for the coverage count."""
        return (
            self.dtype,
            self.source,
            self.estimator,
            self.queries,
            self.update,
            self.masked,
            self.frozen,
            self.weight_decay > 0,
            self.misuse,
        )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    dtype = draw(st.sampled_from([*DTYPES, *FIXED]))
    config = Config(
        dtype=dtype,
        source=draw(st.sampled_from(SOURCES)),
        seed=draw(st.integers(0, 2**16)),
        pool_size=draw(st.sampled_from([1009, 4099, 65537])),
        estimator=draw(st.sampled_from(ESTIMATORS)),
        rho=draw(st.sampled_from([0.0, 2e-3, 5e-3])),
        queries=draw(st.integers(1, 3)),
        update=draw(st.sampled_from(UPDATES)),
        lr=draw(st.sampled_from([0.0, 1e-3, 1e-2, 1e-1])),
        eps=draw(st.sampled_from([1e-3, 1e-2])),
        weight_decay=draw(st.sampled_from([0.0, 0.1])),
        masked=draw(st.booleans()),
        frozen=draw(st.booleans()),
        activation_bits=draw(st.sampled_from([None, 8])),
        z_bits=draw(st.sampled_from([4, 8])),
        force=draw(st.booleans()),
    )
    if draw(st.integers(0, 3)) == 0:  # a quarter of the cases: one misuse
        config = with_misuse(config, draw(st.sampled_from(sorted(MISUSES))))
    return config


def with_misuse(config: Config, misuse: str) -> Config:
    """``config`` with the settings that make ``misuse`` (a key of :data:`MISUSES`)."""
    changes: dict[str, Any] = {
        "lr_bool": {"lr": True},
        "lr_negative": {"lr": -1e-2},
        "lr_nan": {"lr": math.nan},
        "eps_zero": {"eps": 0.0},
        "eps_tiny": {"eps": 1e-30},
        "eps_vanishing": {"eps": 1e-9, "dtype": "float32" if config.fixed else config.dtype},
        "queries_zero": {"queries": 0},
        "queries_fraction": {"queries": 1.5},
        "seed_huge": {"seed": 2**70, "source": "gaussian"},
        "seed_negative": {"seed": -1, "source": "gaussian"},
        "pool_tiny": {"pool_size": 2, "source": "pool"},
        "pool_fraction": {"pool_size": 2.7, "source": "pool"},
        "weight_bits_fraction": {"dtype": "fixed16"},
        "momentum_one": {"update": "momentum-one"},
    }[misuse]
    if misuse == "eps_vanishing" and changes["dtype"] == "float64":
        changes["dtype"] = "float32"  # 1e-9 is a fine eps in float64
    # everything else valid, so that the refusal is about the misuse
    base = replace(
        config,
        dtype="fixed16" if config.fixed else config.dtype,
        estimator="sign" if config.fixed else "central",
        update="sgd",
        lr=1e-2,
        force=False,
    )
    return replace(base, misuse=misuse, **changes)


def source(config: Config) -> Any:
    s = config.seed
    return {
        "gaussian": lambda: Gaussian(seed=s),
        "rademacher": lambda: Rademacher(seed=s),
        "uniform": lambda: Uniform(seed=s),
        "pool": lambda: Pool(size=config.pool_size, seed=s),
        "rngarray": lambda: RNGArray(n=4, rng="lfsr", bits=8, seed=s),
        "lfsr": lambda: LFSR(width=24, seed=s + 1, bits=7),
        "xorshift": lambda: Xorshift(seed=s + 1, bits=8),
        "guided": lambda: MomentumGuided(Gaussian(seed=s), alpha=0.5, beta=0.5),
    }[config.source]()


def estimator(config: Config) -> Any:
    if config.estimator == "sam":
        return SharpnessAware("sign" if config.fixed else "central", rho=config.rho)
    return config.estimator


def update(config: Config) -> dict[str, Any]:
    """ZO's keyword arguments for the update rule."""
    return {
        "sgd": {},
        "momentum": {"momentum": 0.9, "history": 3},
        "momentum-one": {"momentum": 1.0, "history": 3},
        "kernel": {"update": KernelNormalized()},
        "kernel-momentum": {"update": KernelNormalized(Momentum(0.9, 3))},
    }[config.update]


# -- the model and its data -------------------------------------------------------------
BATCH = torch.Generator().manual_seed(1)
X = torch.randn(8, 5, generator=BATCH)
Y = torch.randint(0, 3, (8,), generator=BATCH)


def make_model(config: Config) -> nn.Module:
    """A tiny MLP (39 weights) in the configuration's dtype, or quantized."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    if config.frozen:
        net[0].bias.requires_grad_(False)
    if config.fixed:
        bits = 8.5 if config.misuse == "weight_bits_fraction" else int(config.dtype[5:])
        return quantize_model(
            net, weight_bits=bits, activation_bits=config.activation_bits, calibration=[X]
        )
    return net.to(DTYPES[config.dtype])


def model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def loss_of(model: nn.Module) -> torch.Tensor:
    return F.cross_entropy(model(X.to(model_dtype(model))).float(), Y)


def parameters(model: nn.Module, config: Config) -> list[Any]:
    """What the user gives ZO: all parameters (frozen ones included), or masked groups."""
    params = trainable_parameters(model) if config.fixed else list(model.parameters())
    if not config.masked:
        return params
    return [{"params": params, "masks": masks(params, sparsity=0.5, rule="random", seed=1)}]


def build(config: Config, model: nn.Module) -> ZO:
    """The optimizer of ``config`` over ``model`` (may raise a documented error or warn)."""
    formats = FixedPointFormat(z_bits=config.z_bits, z_max=3.5, force=config.force)
    return ZO(
        parameters(model, config),
        lr=config.lr,
        eps=config.eps,
        directions=source(config),
        estimator=estimator(config),
        queries=config.queries,
        weight_decay=config.weight_decay,
        formats=formats if config.fixed else None,
        **update(config),
    )


# -- what an error may be ---------------------------------------------------------------
#: Errors that are never a documented answer, even though some subclass an allowed type.
RAW = (
    KeyError,
    AttributeError,
    IndexError,
    ZeroDivisionError,
    StopIteration,
    NotImplementedError,
    RecursionError,
    AssertionError,
    NameError,
    UnboundLocalError,
)


#: Messages of torch internals that are not an answer a user can act on (finding 7: a loss
#: spike with float16 weights overflowed inside ``Tensor.add_``).
RAW_MESSAGES = ("cannot be converted to type",)


def check_documented(error: BaseException, where: str) -> None:
    """``error`` is edgezo's or torch's documented kind, with a message."""
    documented = isinstance(error, (ValueError, TypeError, RuntimeError))
    assert documented and not isinstance(error, RAW), (
        f"{where}: raw {type(error).__name__} escaped: {error!r}"
    )
    assert str(error).strip(), f"{where}: {type(error).__name__} without a message"
    assert not says(str(error), RAW_MESSAGES), f"{where}: a torch internal error escaped: {error}"


def says(message: str, words: tuple[str, ...]) -> bool:
    return any(w in message.lower() for w in words)


# -- one run ----------------------------------------------------------------------------
class Fault(Exception):
    """The closure's own exception: it must propagate as is."""


@dataclass
class Run:
    """A model, its optimizer and what the invariants compare against."""

    config: Config
    model: nn.Module
    opt: ZO
    initial: list[torch.Tensor]
    masks: list[torch.Tensor | None]
    frozen: list[bool]
    swapped: bool = False
    log: list[str] = field(default_factory=list)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.model.parameters())


def start(config: Config) -> Run | None:
    """Build model and optimizer; ``None`` if the configuration was (rightly) refused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = make_model(config)
            opt = build(config, model)
        except Exception as error:  # noqa: BLE001 (the contract is what we check)
            check_documented(error, f"building {config}")
            event(f"refused: {type(error).__name__}: {str(error)[:48]}")
            if config.misuse:
                assert says(str(error), MISUSES[config.misuse]), (
                    f"{config.misuse}: the error does not say what to change: {error}"
                )
            return None
    if config.misuse:
        warned = [str(w.message) for w in caught if says(str(w.message), MISUSES[config.misuse])]
        assert warned, f"misuse {config.misuse} accepted without an error or a warning: {config}"
        return None
    return Run(config, model, opt, *reference(model, opt))


def reference(model: nn.Module, opt: ZO) -> tuple[list, list, list]:
    """Initial values, each tensor's mask (1 = trained) and whether it is frozen."""
    tensors = list(model.parameters())
    initial = [p.detach().clone() for p in tensors]
    by_id = {id(s.param): s.mask.dense().view(s.shape) for s in opt.space if s.mask is not None}
    given = {id(p) for g in opt.param_groups for p in g["params"]}
    frozen = [
        id(p) not in given or (p.is_floating_point() and not p.requires_grad) for p in tensors
    ]
    return initial, [by_id.get(id(p)) for p in tensors], frozen


def check_frozen_and_masked(run: Run, where: str) -> None:
    for p, init, mask, frozen in zip(
        run.tensors(), run.initial, run.masks, run.frozen, strict=True
    ):
        if frozen:
            assert torch.equal(p.detach(), init), f"{where}: a frozen tensor changed"
        elif mask is not None:
            keep = ~mask
            assert torch.equal(p.detach()[keep], init[keep]), f"{where}: a masked weight changed"


def skip_bound(run: Run, before: torch.Tensor, z_max: float) -> torch.Tensor:
    """The documented drift of a skipped step (:data:`SKIP_DRIFT_PER_QUERY`), elementwise."""
    rho = run.config.rho if run.config.estimator == "sam" else 0.0
    slots = run.opt.queries + run.opt.estimator.extra_queries
    info = torch.finfo(before.dtype)
    reach = before.double().abs() + (run.opt.eps + rho) * z_max
    return SKIP_DRIFT_PER_QUERY * slots * (info.eps * reach + info.tiny * info.eps)


def largest_z(opt: ZO, step: int) -> float:
    slots = opt.queries + opt.estimator.extra_queries
    return max(
        float(opt.directions.sample(step, q, 0, opt.space.dim).double().abs().max())
        for q in range(slots)
    )


def check_skipped(run: Run, before: list[torch.Tensor], step: int, where: str) -> None:
    """A skipped step: fixed point bit-identical, float within :func:`skip_bound`."""
    z_max = None
    for p, old in zip(run.tensors(), before, strict=True):
        now = p.detach()
        if not old.is_floating_point() or torch.equal(now, old):
            assert torch.equal(now, old), f"{where}: fixed-point weights changed on a skipped step"
            continue
        z_max = largest_z(run.opt, step) if z_max is None else z_max
        drift = (now.double() - old.double()).abs()
        excess = drift - skip_bound(run, old, z_max)
        assert bool((excess <= 0).all()), (
            f"{where}: a skipped step moved float weights by up to {float(drift.max()):.3g} "
            f"({float(excess.max()):.3g} beyond the documented bound)"
        )


# -- actions ----------------------------------------------------------------------------
class Closure:
    """The loss, with an optional fault on call ``at``: nan/inf, raise, Ctrl-C or a spike."""

    def __init__(
        self, model: nn.Module, fault: str | None, at: int, target: torch.Tensor | None = None
    ) -> None:
        self.model, self.fault, self.at, self.target = model, fault, at, target
        self.calls = 0
        self.losses: list[float] = []
        self.raised: BaseException | None = None

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        loss = self.faulty(loss_of(self.model))
        self.losses.append(float(loss.detach()))
        return loss

    def faulty(self, loss: torch.Tensor) -> torch.Tensor:
        if self.calls != self.at or self.fault is None:
            return loss
        if self.fault == "write":  # a closure that changes a trained weight (finding 5)
            with torch.no_grad():
                self.target.add_(1)
            return loss
        if self.fault in ("raise", "interrupt"):
            self.raised = Fault("boom") if self.fault == "raise" else KeyboardInterrupt()
            raise self.raised
        return loss * {"nan": math.nan, "inf": math.inf, "spike": SPIKE}[self.fault]


def counters(opt: ZO) -> tuple[int, int, int]:
    return opt.steps, opt.skipped, opt.forwards


def trained_element(opt: ZO) -> torch.Tensor:
    """A one-element view of a weight that trains (mask 1), for a closure to write."""
    seg = opt.space.segments[0]
    index = 0 if seg.mask is None else int(seg.mask.dense().nonzero()[0, 0])
    return seg.param.detach().view(-1)[index : index + 1]


def step_writing(run: Run, at: int, where: str) -> None:
    """A closure that writes the weights must be refused, not trained through."""
    closure = Closure(run.model, "write", at, trained_element(run.opt))
    try:
        run.opt.step(closure)
    except Exception as error:  # noqa: BLE001
        check_documented(error, where)
        event("closure write refused")
        raise Refused("write", error) from error
    assert closure.calls < at, f"{where}: a closure that wrote the weights went unnoticed"


def step(run: Run, fault: str | None, at: int) -> None:
    """One ``opt.step`` with the invariants; after a storage swap, a refusal rebuilds and retries."""
    where = f"step {run.opt.steps} ({fault or 'plain'} at call {at})"
    if fault == "write":
        return step_writing(run, at, where)
    before = [p.detach().clone() for p in run.tensors()]
    (steps, skipped, forwards), closure = counters(run.opt), Closure(run.model, fault, at)
    try:
        loss = run.opt.step(closure)
    except BaseException as error:  # noqa: BLE001
        assert run.opt.forwards - forwards == closure.calls, f"{where}: forwards miscounted"
        assert counters(run.opt)[:2] == (steps, skipped), f"{where}: an error counted a step"
        check_skipped(run, before, steps, where)
        if error is closure.raised:
            event(f"skipped: {fault}")
            return
        assert not isinstance(error, KeyboardInterrupt), (
            f"{where}: a KeyboardInterrupt not raised by the closure"
        )
        check_documented(error, where)
        event(f"step refused: {type(error).__name__}")
        if run.swapped:  # the documented answer to a storage swap: rebuild, as the error says
            rebuild(run)
            run.swapped = False
            return step(run, fault, at)
        raise Refused(where, error) from error
    check_stepped(run, before, (steps, skipped, forwards), closure, loss, where)


class Refused(Exception):
    """A documented error from a step of a valid configuration: the run ends there."""


def check_stepped(
    run: Run, before: list, old: tuple, closure: Closure, loss: Any, where: str
) -> None:
    steps, skipped, forwards = old
    opt = run.opt
    assert isinstance(loss, torch.Tensor) and loss.dtype == torch.float32 and loss.numel() == 1
    assert opt.steps == steps + 1, f"{where}: steps not counted"
    assert opt.forwards - forwards == closure.calls, f"{where}: forwards miscounted"
    if opt.skipped == skipped + 1:
        event("skipped: non-finite")
        check_skipped(run, before, steps, where)
        return
    assert opt.skipped == skipped, f"{where}: skipped miscounted"
    assert closure.calls == opt.estimator.forwards(opt.queries), f"{where}: forwards per step"
    assert math.isfinite(float(loss)) or closure.fault == "spike", f"{where}: loss {loss}"
    representable = update_reach(run, before, closure, steps) < 0.5
    for p in run.tensors():
        if not p.is_floating_point():
            assert int(p.abs().max()) <= qmax(p.fixed.bits), f"{where}: integers out of range"
        elif representable:  # (an update past the dtype's range is the user's divergence)
            assert bool(p.isfinite().all()), f"{where}: an update made a weight non-finite"


def update_reach(run: Run, before: list, closure: Closure, step: int) -> float:
    """A generous bound on ``|w'|`` over the largest finite float the weights hold.

    ``lr |c| max|z|`` per query, ``|c| <= (max L - min L) / eps``, momentum's replays at
    most 1 / (1 - 0.9) times that, kernel-wise normalization ``||w||`` instead of ``max|z|``.
    """
    if run.config.estimator == "jvp":  # c is a directional derivative: not bounded by losses
        return math.inf
    finite = [x for x in closure.losses if math.isfinite(x)]
    spread = max(finite) - min(finite) if finite else 0.0
    floats = [b for b in before if b.is_floating_point()]
    if not floats:
        return 0.0
    w_max = max(float(b.double().abs().max()) for b in floats)
    w_norm = math.sqrt(sum(float(b.double().square().sum()) for b in floats))
    largest = min(torch.finfo(b.dtype).max for b in floats)
    c = spread / run.opt.eps
    slots = run.opt.queries + run.opt.estimator.extra_queries
    try:
        z_max = largest_z(run.opt, step)
    except ValueError:  # a source with history (MomentumGuided) has moved past the step
        z_max = Z_CAP
    move = run.opt.param_groups[0]["lr"] * c * 10 * slots * (z_max + w_norm)
    return (w_max + move) / largest


def checkpoint(opt: ZO) -> dict[str, Any]:
    """``opt.state_dict()`` through ``torch.save`` and ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def rebuild(run: Run) -> None:
    """A new optimizer over the same model, resumed from the old one's checkpoint."""
    state = checkpoint(run.opt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = build(run.config, run.model)
    except Exception as error:  # noqa: BLE001 (checks of the current weights may refuse)
        check_documented(error, "rebuilding the optimizer")
        event(f"rebuild refused: {type(error).__name__}")
        raise Refused("rebuild", error) from error
    opt.load_state_dict(state)  # its own checkpoint: always accepted
    run.opt = opt
    run.swapped = False


FOREIGN = ("eps", "queries", "seed", "estimator", "update", "z_bits")


def foreign(run: Run, what: str) -> None:
    """Loading a checkpoint of a differently built optimizer must be refused with the reason."""
    c = run.config
    other = {
        "eps": replace(c, eps=c.eps * 2),
        "queries": replace(c, queries=c.queries % 3 + 1),
        "seed": replace(c, seed=c.seed + 1),
        "estimator": replace(c, estimator="forward" if c.estimator != "forward" else "central"),
        "update": replace(c, update="momentum" if c.update == "sgd" else "sgd"),
        "z_bits": replace(c, z_bits=12 - c.z_bits),
    }[what]
    if what == "z_bits" and not c.fixed:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = checkpoint(build(other, run.model))
    except Exception:  # noqa: BLE001 (that variant cannot be built: nothing to load)
        return
    event(f"foreign checkpoint: {what}")
    expect_refusal(run, state, f"a checkpoint with another {what}")


MALFORMED = ("no zo", "no steps", "no directions", "no update", "bad steps", "bad groups")


def malformed(run: Run, what: str) -> None:
    """A damaged checkpoint gets a documented error, and the optimizer is left as it was."""
    state = checkpoint(run.opt)
    zo = state["zo"]
    if what == "no zo":
        del state["zo"]
    elif what.startswith("no "):
        del zo[what[3:]]
    elif what == "bad steps":
        zo["steps"] = "three"
    else:
        state["param_groups"] = [{"lr": 0.1}]
    event(f"malformed checkpoint: {what}")
    expect_refusal(run, state, f"a checkpoint with {what}")


def expect_refusal(run: Run, state: dict[str, Any], what: str) -> None:
    old = counters(run.opt)
    try:
        run.opt.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        check_documented(error, f"loading {what}")
        assert counters(run.opt) == old, f"a refused load of {what} changed the counters"
        return
    raise AssertionError(f"loading {what} was accepted silently")


def swap(run: Run) -> None:
    """``p.data = p.data.clone()`` on a trained tensor: the optimizer must notice."""
    p = next(s.param for s in run.opt.space)
    p.data = p.data.clone()
    run.swapped = True
    event("storage swapped")


ACTIONS = st.one_of(
    st.tuples(st.just("step"), st.none(), st.just(0)),
    st.tuples(
        st.just("step"),
        st.sampled_from(["nan", "inf", "raise", "interrupt", "spike", "write"]),
        st.integers(1, 4),
    ),
    st.tuples(st.just("rebuild"), st.none(), st.just(0)),
    st.tuples(st.just("foreign"), st.sampled_from(FOREIGN), st.just(0)),
    st.tuples(st.just("malformed"), st.sampled_from(MALFORMED), st.just(0)),
    st.tuples(st.just("swap"), st.none(), st.just(0)),
)


def act(run: Run, action: tuple, twin: bool) -> None:
    """Do ``action``; the twin run skips what must not change the numbers."""
    kind, arg, at = action
    if kind == "step":
        step(run, arg, at)
    elif not twin:
        run.log.append(kind if arg is None else f"{kind} ({arg})")
        {
            "rebuild": lambda: rebuild(run),
            "foreign": lambda: foreign(run, arg),
            "malformed": lambda: malformed(run, arg),
            "swap": lambda: swap(run),
        }[kind]()
    check_frozen_and_masked(run, f"after {action}")


def retype(run: Run) -> None:
    """``model.half()`` / ``.double()`` after building: the next step must be refused."""
    target = torch.float64 if model_dtype(run.model) != torch.float64 else torch.float32
    run.model.to(target)
    closure = Closure(run.model, None, 0)
    with pytest.raises(Exception) as info:  # noqa: PT011 (any documented kind)
        run.opt.step(closure)
    check_documented(info.value, "a step after model.to(another dtype)")
    event("retype refused")


def play(config: Config, actions: list[tuple], twin: bool) -> tuple[Run | None, int]:
    """The run after ``actions`` and how many it did: a documented refusal ends it (-1: one
    the twin cannot follow: a rebuild refused by checks of the weights reached, or a
    closure's write refused)."""
    run = start(config)
    if run is None:
        return None, 0
    for done, action in enumerate(actions, 1):
        try:
            act(run, action, twin)
        except Refused as refusal:  # a refused rebuild ends the run where the twin cannot follow
            return run, -1 if refusal.args[0] in ("rebuild", "write") else done
    return run, len(actions)


def weights(run: Run) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.tensors()]


STATS: Counter = Counter()


def fuzz_case(config: Config, actions: list[tuple], retype_at_end: bool) -> None:
    """One case: the run with every action, its twin without the checkpoint actions."""
    STATS["cases"] += 1
    STATS[("config",) + config.key()] += 1
    event(f"dtype={config.dtype} source={config.source} estimator={config.estimator}")
    run, done = play(config, actions, twin=False)
    if run is None:
        return
    STATS["trained"] += 1
    if done < 0:
        return
    twin, _ = play(config, actions[:done], twin=True)
    assert twin is not None
    for a, b in zip(weights(run), weights(twin), strict=True):
        assert torch.equal(a, b), f"{run.log} changed the weights (vs the same run without them)"
    assert counters(run.opt) == counters(twin.opt), f"{run.log} changed the counters"
    if retype_at_end and not config.fixed:
        retype(run)


def report() -> str:
    distinct = sum(1 for k in STATS if isinstance(k, tuple))
    return (
        f"fuzz: {STATS['cases']} cases, {STATS['trained']} trained, "
        f"{distinct} distinct configurations"
    )


@pytest.fixture(scope="module", autouse=True)
def _print_counts():
    yield
    print("\n" + report())


CASE = dict(
    config=configs(),
    actions=st.lists(ACTIONS, max_size=8),
    retype_at_end=st.booleans(),
)
COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@settings(max_examples=SHORT_EXAMPLES, derandomize=True, **COMMON)
@given(**CASE)
def test_fuzz_contract_short(config: Config, actions: list[tuple], retype_at_end: bool) -> None:
    fuzz_case(config, actions, retype_at_end)


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("EDGEZO_FUZZ_EXAMPLES", LONG_EXAMPLES)), **COMMON)
@given(**CASE)
def test_fuzz_contract_long(config: Config, actions: list[tuple], retype_at_end: bool) -> None:
    fuzz_case(config, actions, retype_at_end)


def test_public_api_is_what_the_fuzzer_drives() -> None:
    """The fuzzer reaches ZO through the names users import."""
    assert edgezo.ZO is ZO and callable(edgezo.presets.mezo)
