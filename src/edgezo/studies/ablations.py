"""The untested claims, at equal forward passes: ``edgezo run ablations --seeds 0,1,2,3,4``.

The setting is the demo's (:mod:`edgezo.studies.demo`): SmallCNN pretrained with
backprop on MNIST (cached), deployed behind a washed-out, noisy camera, adapted on
labelled shifted train images and tested on the shifted test set. Every row of a
family spends the same number of forward passes (counted by :func:`edgezo.train.fit`,
stored per row as ``forwards``), so a method with more forwards per step gets fewer
steps. Families:

* ``m``: QZO-FF's sign-m-SPSA on the 16w8a head for m = 1, 2, 3, 5, each with
  ``steps = head_forwards / (2 m)`` (QZO-FF: m = 3 beats m = 1 by 1.22%);
* ``z``: ZO-SGD (central estimate, one query, fp32 head) with z from a Gaussian,
  Rademacher, uniform, PeZO's pool of ``pool_size`` numbers, PeZO's rotating array of
  ``rngs`` 32-bit LFSRs (:class:`~edgezo.directions.RNGArray`) and one 32-bit LFSR;
* ``budget``: ZO with three queries and fp32 sign-3-SPSA beside the ``m`` family's
  QZO-FF m = 3 (16w8a) and the ``z`` family's Gaussian ZO (one query, hence three
  times the steps); backprop with SGD and with Adam, as many steps as the others
  have forwards (each step one forward and one backward);
* ``whole``: every weight of the 16w8a SmallCNN (206,922) trained by sign-3-SPSA,
  plain and with each of QZO-FF's enhancements: momentum-guided sampling,
  sharpness-aware perturbation (8 forwards per step: fewer steps), kernel-wise
  normalization, 90% sparse updates (top-k per tensor);
* ``zero-shot``: the fp32 and 16w8a models untrained, the vacuity reference.

The head rows train on features computed once per image by their own backbone (fp32
or 16w8a; :func:`edgezo.studies.common.features`), as ``benchmarks/fixedpoint.py``
does; the whole-network rows run the whole model at every forward. Each row's lr is
the best of its family's grid on a validation split (the last ``validation``
shifted train images, disjoint from the adaptation images), per seed
(:func:`~edgezo.studies.common.best_lr`); the test set is never used to choose.
The seed draws the batch order and the perturbations; the backbone and the
shift are the demo's (fixed), so a seed's rows share them and differences are
paired by seed. :data:`COMPARISONS` are the differences the docs decide on their
t-intervals (:mod:`edgezo.analysis.ablations`).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..directions import LFSR, Gaussian, MomentumGuided, Pool, Rademacher, Ramp, RNGArray, Uniform
from ..estimators import SharpnessAware
from ..fixedpoint import quantize_model, trainable_parameters
from ..optim import ZO
from ..presets import qzo_ff
from ..train import FitResult, fit
from ..updates import KernelNormalized, sparse_groups
from . import demo
from .common import Data, Options, Outcome, Study, best_lr, calibration_batches, features, tested
from .results import StudyWriter

#: ``(a, b)``: the differences ``a - b`` (rows named by family and label) the docs decide.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("m/sign-3", "m/sign-1"),
    ("m/sign-2", "m/sign-1"),
    ("m/sign-5", "m/sign-3"),
    ("z/rademacher", "z/gaussian"),
    ("z/uniform", "z/gaussian"),
    ("z/pezo pool", "z/gaussian"),
    ("z/pezo rng array", "z/gaussian"),
    ("z/lfsr", "z/gaussian"),
    ("m/sign-3", "z/gaussian"),
    ("m/sign-3", "budget/zo q=3"),
    ("z/gaussian", "budget/zo q=3"),
    ("budget/fp32 sign-3", "m/sign-3"),
    ("budget/backprop adam", "budget/backprop sgd"),
    ("budget/backprop sgd", "z/gaussian"),
    ("whole/momentum-guided", "whole/sign-3"),
    ("whole/sharpness-aware", "whole/sign-3"),
    ("whole/kernel-wise norm", "whole/sign-3"),
    ("whole/90% sparse", "whole/sign-3"),
    ("m/sign-3", "zero-shot/16w8a"),
    ("z/gaussian", "zero-shot/fp32"),
    ("whole/sign-3", "zero-shot/16w8a"),
)


@dataclass(frozen=True)
class Config:
    """A run of the study; the forward budgets must be multiples of every row's forwards
    per step (head: 2, 4, 6, 10; whole network: 6 and 8)."""

    demo: demo.DemoConfig = demo.FULL  # backbone, shift, train/test sizes
    validation: int = 2000  # the last shifted train images: lr choice only
    batch: int = 64
    head_forwards: int = 6000  # per head row (sign-3: 1000 steps, as benchmarks/fixedpoint.py)
    whole_forwards: int = 1200  # per whole-network row (sign-3: 200 steps)
    ms: tuple[int, ...] = (1, 2, 3, 5)
    sign_eps: float = 1e-2  # the demo's qzo_eps
    central_eps: float = 1e-3  # the demo's eps
    pool_size: int = 1021  # the demo's PeZO pool (fewer numbers than the head's 1,290 weights)
    rngs: int = 16  # PeZO's array: registers (pezo(reuse="array")'s default)
    sparsity: float = 0.9
    guided_alpha: float = 0.5
    guided_beta: float = 0.5  # final beta of the ramp from 1 (as benchmarks/fixedpoint.py)
    rho_multiple: int = 5  # sharpness-aware radius rho = rho_multiple * eps
    sign_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    central_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    sgd_grid: tuple[float, ...] = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    adam_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    whole_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)  # whole network
    whole_sparse_grid: tuple[float, ...] = (1e-2, 3e-2, 1e-1)  # 10% of the weights move: larger
    whole_kernel_grid: tuple[float, ...] = (1e-2, 3e-2, 1e-1)  # relative steps (Eq. 9)
    families: tuple[str, ...] = ("m", "z", "budget", "whole")
    comparisons: tuple[tuple[str, str], ...] = COMPARISONS


FULL = Config()
#: For tests: the demo's quick backbone, small sets, tiny budgets, one lr per row.
QUICK = Config(
    demo=replace(demo.QUICK, train_samples=1000, test_samples=500),
    validation=500,
    head_forwards=120,
    whole_forwards=48,
    sign_grid=(3e-3,),
    central_grid=(3e-3, 1e-2),  # two values: the lr choice runs too
    sgd_grid=(1e-1,),
    adam_grid=(1e-2,),
    whole_grid=(3e-3,),
    whole_sparse_grid=(1e-2,),
    whole_kernel_grid=(3e-2,),
)

#: ``(params, lr, seed) -> optimizer``.
Make = Callable[[list[Any], float, int], Any]


@dataclass(frozen=True)
class Row:
    """One row of the table: what it trains (``start``: ``head fp32``, ``head 16w8a``, ``whole
    16w8a`` or a zero-shot model) and how (``make``, its lr ``grid``; ``None``: zero-shot)."""

    family: str
    label: str
    method: str  # zero-shot, backprop or zo (the results' method column)
    start: str
    budget: int  # forward passes
    grid: tuple[float, ...] = ()
    make: Make | None = None

    @property
    def name(self) -> str:
        return f"{self.family}/{self.label}"


# -- the optimizers ------------------------------------------------------------------------------
def sign(m: int, eps: float, **kwargs: Any) -> Make:
    """QZO-FF's sign-m-SPSA (Gaussian z, 8-bit on the fixed-point path); ``force``: a 16-bit
    step coarser than the update (a head's large biases) keeps its value, as on the device."""
    return lambda p, lr, seed: qzo_ff(p, lr=lr, eps=eps, seed=seed, queries=m, force=True, **kwargs)


def central(source: Callable[[int], Any], eps: float, queries: int = 1) -> Make:
    """ZO-SGD: the central estimate with z from ``source(seed)``."""
    return lambda p, lr, seed: ZO(p, lr=lr, eps=eps, directions=source(seed), queries=queries)


def backprop(kind: str) -> Make:
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    return lambda p, lr, seed: optimizers[kind](p, lr=lr)


def sparse(eps: float, sparsity: float) -> Make:
    """sign-3-SPSA on the largest ``1 - sparsity`` of each tensor (top-k masks)."""
    return lambda p, lr, seed: qzo_ff(sparse_groups(p, sparsity=sparsity, rule="topk"), lr=lr,
                                      eps=eps, seed=seed, force=True)  # fmt: skip


def guided(eps: float, cfg: Config) -> Make:
    """sign-3-SPSA with momentum-guided z: beta 1 for the first 10% of steps, then a ramp to
    ``guided_beta`` over 20% (as ``benchmarks/fixedpoint.py``)."""
    steps = cfg.whole_forwards // 6
    ramp = Ramp(final=cfg.guided_beta, steps=max(1, steps // 5), start=steps // 10)
    return lambda p, lr, seed: ZO(
        p, lr=lr, eps=eps, estimator="sign", queries=3,
        directions=MomentumGuided(Gaussian(seed), alpha=cfg.guided_alpha, beta=ramp),
    )  # fmt: skip


def sharpness(eps: float, rho_multiple: int) -> Make:
    """sign-3-SPSA at a sharpness-aware ascent point (2 more forwards per step)."""
    estimator = SharpnessAware("sign", rho=rho_multiple * eps)
    return lambda p, lr, seed: ZO(p, lr=lr, eps=eps, directions=Gaussian(seed),
                                  estimator=estimator, queries=3)  # fmt: skip


def rows(cfg: Config) -> list[Row]:
    """The study's rows, zero-shot first, then each family of ``cfg.families``."""
    out = [Row("zero-shot", "fp32", "zero-shot", "head fp32", 0),
           Row("zero-shot", "16w8a", "zero-shot", "whole 16w8a", 0)]  # fmt: skip
    builders = {"m": m_rows, "z": z_rows, "budget": budget_rows, "whole": whole_rows}
    for family in cfg.families:
        if family not in builders:
            raise ValueError(f"Unknown family {family!r}; choose from {', '.join(builders)}")
        out += builders[family](cfg)
    return out


def m_rows(cfg: Config) -> list[Row]:
    return [Row("m", f"sign-{m}", "zo", "head 16w8a", cfg.head_forwards, cfg.sign_grid,
                sign(m, cfg.sign_eps)) for m in cfg.ms]  # fmt: skip


def z_rows(cfg: Config) -> list[Row]:
    sources: dict[str, Callable[[int], Any]] = {
        "gaussian": Gaussian,
        "rademacher": Rademacher,
        "uniform": Uniform,
        "pezo pool": lambda s: Pool(cfg.pool_size, s),
        "pezo rng array": lambda s: RNGArray(n=cfg.rngs, rng="lfsr", bits=8, seed=s),
        "lfsr": lambda s: LFSR(width=32, seed=s + 1, bits=8),  # 0 is the lock-up state
    }
    return [Row("z", label, "zo", "head fp32", cfg.head_forwards, cfg.central_grid,
                central(source, cfg.central_eps)) for label, source in sources.items()]  # fmt: skip


def budget_rows(cfg: Config) -> list[Row]:
    f, grid = cfg.head_forwards, cfg.central_grid
    return [
        Row("budget", "zo q=3", "zo", "head fp32", f, grid, central(Gaussian, cfg.central_eps, 3)),
        Row("budget", "fp32 sign-3", "zo", "head fp32", f, cfg.sign_grid, sign(3, cfg.sign_eps)),
        Row("budget", "backprop sgd", "backprop", "head fp32", f, cfg.sgd_grid, backprop("sgd")),
        Row("budget", "backprop adam", "backprop", "head fp32", f, cfg.adam_grid, backprop("adam")),
    ]


def whole_rows(cfg: Config) -> list[Row]:
    f, eps, grid = cfg.whole_forwards, cfg.sign_eps, cfg.whole_grid
    return [
        Row("whole", "sign-3", "zo", "whole 16w8a", f, grid, sign(3, eps)),
        Row("whole", "momentum-guided", "zo", "whole 16w8a", f, grid, guided(eps, cfg)),
        Row("whole", "sharpness-aware", "zo", "whole 16w8a", f, grid,
            sharpness(eps, cfg.rho_multiple)),
        Row("whole", "kernel-wise norm", "zo", "whole 16w8a", f, cfg.whole_kernel_grid,
            sign(3, eps, update=KernelNormalized())),
        Row("whole", "90% sparse", "zo", "whole 16w8a", f, cfg.whole_sparse_grid,
            sparse(eps, cfg.sparsity)),
    ]  # fmt: skip


# -- the models and their data -------------------------------------------------------------------
@dataclass
class Start:
    """A model a row starts from (never trained itself: rows train copies) and its sets."""

    model: nn.Module
    sets: dict[str, Data]  # train, val, test: images, or the backbone's features for heads
    quantized: bool

    def copy(self) -> tuple[nn.Module, list[Any]]:
        """A fresh copy to train and the tensors it trains (all of them, or their integers)."""
        model = copy.deepcopy(self.model).eval()
        if self.quantized:
            return model, list(trainable_parameters(model))
        for p in model.parameters():
            p.requires_grad_(True)
        return model, list(model.parameters())


def starts(cfg: Config, backbone: nn.Module, data: dict[str, Data]) -> dict[str, Start]:
    """The models the rows start from: the fp32 and the 16w8a head on their own backbone's
    features, and the whole 16w8a SmallCNN on images. The 16w8a models quantize every weight
    (activations calibrated on shifted train batches, as the demo does)."""
    sets = {"train": data["train"], "val": data["validation"], "test": data["test"]}
    x_train = data["train"][0]
    whole = copy.deepcopy(backbone)
    for p in whole.parameters():
        p.requires_grad_(True)
    calibration = calibration_batches(x_train, cfg.demo.calibration_batches, cfg.batch)
    q_whole = quantize_model(whole, weight_bits=16, activation_bits=8, calibration=calibration)
    q_head = demo.quantize_backbone(backbone, x_train, replace(cfg.demo, batch=cfg.batch))

    def on_features(model: nn.Module) -> dict[str, Data]:
        return {k: (features(model, x), y) for k, (x, y) in sets.items()}

    return {
        "head fp32": Start(backbone.head, on_features(backbone), quantized=False),
        "head 16w8a": Start(q_head.head, on_features(q_head), quantized=True),
        "whole 16w8a": Start(q_whole.eval(), sets, quantized=True),
    }


# -- running a row -------------------------------------------------------------------------------
def forwards_per_step(optimizer: Any) -> int:
    """Forward passes of one step: the estimator's for ZO, one for backprop."""
    if isinstance(optimizer, ZO):
        return optimizer.estimator.forwards(optimizer.queries)
    return 1


def train(row: Row, start: Start, lr: float, seed: int, batch: int) -> tuple[nn.Module, FitResult]:
    """A copy of ``start`` trained by ``row`` at ``lr`` for ``row.budget`` forwards (the steps
    follow from the optimizer's forwards per step), validated at the end."""
    assert row.make is not None
    model, params = start.copy()
    optimizer = row.make(params, lr, seed)
    per_step = forwards_per_step(optimizer)
    if row.budget % per_step:
        raise ValueError(f"row {row.name!r}: its budget of {row.budget} forwards is not a multiple"
                         f" of its {per_step} forwards per step; change the Config's budget")  # fmt: skip
    result = fit(model, optimizer, start.sets["train"], steps=row.budget // per_step,
                 batch_size=batch, eval_sets={"val": start.sets["val"]}, seed=seed,
                 progress=False)  # fmt: skip
    return model, result


def run_row(row: Row, start: Start, seed: int, batch: int) -> Outcome:
    """``row``'s outcome for ``seed``: its lr chosen on validation, its test accuracy."""
    if row.make is None:
        return Outcome(row.method, None, **tested(start.model, start.sets["test"]))
    runs: dict[float, tuple[nn.Module, FitResult, float]] = {}

    def score(lr: float) -> float:
        started = time.perf_counter()
        model, result = train(row, start, lr, seed, batch)
        runs[lr] = (model, result, time.perf_counter() - started)
        return result.final["val"]["accuracy"]

    lr = best_lr(row.grid, score)
    model, result, seconds = runs[lr]
    return Outcome(row.method, lr, **tested(model, start.sets["test"]),
                   val_accuracy=result.final["val"]["accuracy"], steps=result.steps,
                   forwards=result.forwards, seconds=seconds)  # fmt: skip


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Every row of ``cfg`` for ``opts.seed``; writes ``results.json`` and ``results.md``."""
    started = time.perf_counter()
    backbone, _, _ = demo.pretrain(cfg.demo, progress=opts.progress)
    data = demo.load_data(cfg.demo, validation=cfg.validation)
    models = starts(cfg, backbone, data)
    writer = StudyWriter("ablations", opts.out, ("family", "row"), ("zero-shot", "backprop", "zo"),
                         claims=())  # fmt: skip
    for row in rows(cfg):
        outcome = run_row(row, models[row.start], opts.seed, cfg.batch)
        writer.add(outcome, family=row.family, row=row.label, start=row.start, grid=list(row.grid))
        if opts.progress:
            print(f"ablations seed {opts.seed}: {row.name} {100 * outcome.accuracy:.2f}% "
                  f"(lr {outcome.lr}, {outcome.forwards} forwards)", file=sys.stderr, flush=True)  # fmt: skip
    notes = f"Study wall time: {time.perf_counter() - started:.0f} s."
    return writer.finish(config=cfg, quick=opts.quick, seed=opts.seed, notes=notes)


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`
#: (one process: ``jobs`` is not used).
run = Study(QUICK, FULL, run_config)
