"""Does ZO's gap to backprop close with more steps? ``edgezo run convergence --seeds 0,1,2``.

docs/studies.md explains ZO's misses in cross-domain prompt tuning and keyword
fine-tuning by the studies' small step budgets (1,000 and 300 ZO steps). This
study tests that explanation on cells of each, run far past the budget:

* ``vision``: two cross-domain cells (:mod:`edgezo.studies.cross_domain`): the studies'
  ViT pretrained with backprop on MNIST, adapted to scikit-learn's 8x8 digits
  by linear probing (``lp``: the head, on features computed once; study budget 1,000 BP /
  5,000 ZO steps, here 10,000 / 50,000) and by deep prompt tuning (:data:`VPT`: study
  budget 300 BP / 1,000 ZO steps, here 1,500 / 10,000), the head starting as the
  nearest-class-mean classifier.
* ``audio``: the kws-personalize cell (:mod:`edgezo.studies.kws_personalize`) where ZO
  was furthest below backprop: the CRNN fine-tuned as a whole (``ft``) on the flite
  voices, clean. Its study budget: 100 BP / 300 ZO steps.

Per cell the zero-shot model (the start of every run), backprop (Adam) and ``zo``
(MeZO-style ZO-SGD) run with the lrs their study chose on validation data (probing: the
full cross-domain run's grid search; fine-tuning: the study's fixed lrs, from a sweep on
validation clips, ``benchmarks/kws_lr.py``; a grid at 10,000 steps would cost more than
the study itself), batch as in the study, and every ``eval_every``
steps the loop evaluates the validation and test sets (probing: on the cached features,
as the study does): each run's curve is step ->
accuracy, with step 0 the zero-shot model. The seed draws the data subsets, the
batch order and the perturbations; the backbones are the same for every seed
(pretrained once with ``pretrain_seed``): the question is the adaptation's step
budget, not the pretraining.

Each row of ``results.json`` is one (cell, method, seed) with its ``curve`` and the
study's ``budget`` (steps); :mod:`edgezo.analysis.convergence` reads the accuracy at
the budget, at fixed step marks and at the end, and decides whether the gap to
backprop narrows. After ``--seeds`` the merged folder also gets ``curves.png`` (mean
and 95% t-band over the seeds) and ``results.md`` with those tables.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..data.images import as_input, image_size, load_images
from ..models.regimes import prepare as prepare_regime
from ..train import evaluate
from . import audio, kws_personalize
from .common import (
    Budget,
    Data,
    Options,
    Outcome,
    Study,
    adapt,
    backbone,
    features,
    prototype_head,
    subsets,
    tested,
)
from .methods import Settings
from .results import StudyWriter

METHODS = ("zero-shot", "backprop", "zo")


@dataclass(frozen=True)
class Run:
    """One method's run in a cell: ``steps`` at ``lr``, evaluated every ``eval_every``
    steps; ``budget`` is the steps its study gave it (where the gap is compared first)."""

    steps: int
    lr: float
    budget: int
    eval_every: int

    def check(self, name: str) -> None:
        """Fail, saying what to change, when the budget is not on the curve's grid."""
        if min(self.steps, self.lr, self.budget, self.eval_every) <= 0:
            raise ValueError(f"{name}: steps, lr, budget and eval_every must be > 0 ({self})")
        if (
            self.budget > self.steps
            or self.budget % self.eval_every
            or self.steps % self.eval_every
        ):
            raise ValueError(
                f"{name}: steps ({self.steps}) and the study's budget ({self.budget} steps, at "
                f"most steps) must be multiples of eval_every ({self.eval_every}), so that the "
                "curve has a point at both; change eval_every"
            )


@dataclass(frozen=True)
class VisionCell:
    """The cross-domain cell: backbone, target, regime, data sizes and each method's run.
    lrs: the full cross-domain run's validation choice for digits ``lp`` (docs/studies.md)."""

    arch: str = "vit"
    source: str = "mnist"
    target: str = "digits"
    regime: str = "lp"
    pretrain_steps: int = 2000
    train: int = 1000
    val: int = 250
    test: int = 2000  # at most the target's test split (digits: 539)
    batch: int = 64
    runs: dict[str, Run] = field(
        default_factory=lambda: {
            "backprop": Run(steps=10_000, lr=3e-2, budget=1000, eval_every=100),
            "zo": Run(steps=50_000, lr=1e-2, budget=5000, eval_every=500),
        }
    )

    @property
    def name(self) -> str:
        return f"cross-domain {self.arch} {self.source}->{self.target} {self.regime}"


@dataclass(frozen=True)
class AudioCell:
    """The kws-personalize cell: keyword data, backbone, group, condition, regime, clips
    per class and each method's run (lrs: the study's fixed ft lrs,
    :data:`~.kws_personalize.FT_LRS`)."""

    data: audio.AudioData = audio.AudioData()
    arch: str = "crnn"
    group: str = "flite"
    condition: str = "clean"
    regime: str = "ft"
    shots: int = 5
    val: int = 5
    test: int = 20
    batch: int = 32
    runs: dict[str, Run] = field(
        default_factory=lambda: {
            "backprop": Run(steps=1000, lr=1e-3, budget=100, eval_every=50),
            "zo": Run(steps=10_000, lr=1e-4, budget=300, eval_every=100),
        }
    )

    @property
    def name(self) -> str:
        return f"kws-personalize {self.arch} {self.group} {self.condition} {self.regime}"


#: The prompt-tuning cell (lrs: the full run's validation choice for digits ``vpt``): a ViT
#: forward per ZO query, about 45 ms per step on one thread.
VPT = VisionCell(
    regime="vpt",
    runs={
        "backprop": Run(steps=1500, lr=3e-3, budget=300, eval_every=100),
        "zo": Run(steps=10_000, lr=1e-3, budget=1000, eval_every=250),
    },
)


@dataclass(frozen=True)
class Config:
    """The cells to run (``vision``: any number of cross-domain cells; ``audio``: ``None`` to
    leave it out), the step marks the tables show, the backbones' pretraining seed."""

    vision: tuple[VisionCell, ...] = (VisionCell(), VPT)
    audio: AudioCell | None = AudioCell()
    marks: tuple[int, ...] = (1000, 3000, 10_000)
    pretrain_seed: int = 0

    def __post_init__(self) -> None:
        names = [cell.name for cell in self.cells]
        if len(set(names)) != len(names):
            raise ValueError(f"every cell needs its own name (regime, target), got {names}")
        for cell in self.cells:
            if set(cell.runs) != {"backprop", "zo"}:
                raise ValueError(
                    f"{cell.name}: runs must name backprop and zo, got {sorted(cell.runs)}"
                )
            for method, run in cell.runs.items():
                run.check(f"{cell.name} {method}")

    @property
    def cells(self) -> tuple[VisionCell | AudioCell, ...]:
        """Every cell, in the order they run: the vision cells, then the audio cell."""
        return (*self.vision, *(() if self.audio is None else (self.audio,)))


FULL = Config()
#: ``--quick``: the studies' backbones, the quick keyword set, small sets and budgets (seconds).
QUICK = Config(
    vision=(VisionCell(
        target="digits", regime="lp", train=200, val=100, test=200, batch=32,
        runs={"backprop": Run(steps=200, lr=3e-2, budget=50, eval_every=25),
              "zo": Run(steps=1000, lr=1e-2, budget=250, eval_every=50)},
    ),),
    audio=AudioCell(
        data=audio.QUICK_DATA, shots=3, val=3, test=6, batch=36,
        runs={"backprop": Run(steps=10, lr=1e-3, budget=5, eval_every=5),
              "zo": Run(steps=30, lr=1e-4, budget=10, eval_every=10)},
    ),
    marks=(10, 30, 100),
)  # fmt: skip


#: A cell ready to run: ``(model to adapt, train, val, test, head_only)``.
Prepared = tuple[nn.Module, Data, Data, Data, bool]


def vision_cell(cell: VisionCell, seed: int, pretrain_seed: int, progress: bool) -> Prepared:
    """``(model to adapt, train, val, test, head_only)`` of the cross-domain cell: its
    regime on the pretrained backbone, the head set to the class means of the features."""
    source = backbone(cell.arch, cell.source, steps=cell.pretrain_steps, seed=pretrain_seed,
                      progress=progress)  # fmt: skip
    size = image_size(cell.source)
    x, y = load_images(cell.target, "train")
    xt, yt = load_images(cell.target, "test")
    train, val = subsets(as_input(x, size), y, (cell.train, cell.val), seed)
    (test,) = subsets(as_input(xt, size), yt, (min(cell.test, len(xt)),), seed)
    model, _ = prepare_regime(source, cell.regime, classes=10, seed=seed)
    prototype_head(model.head, features(model, train[0]), train[1])
    return model, train, val, test, cell.regime in ("lp", "lp3")


def audio_cell(cell: AudioCell, seed: int, pretrain_seed: int, progress: bool) -> Prepared:
    """``(model to adapt, train, val, test, head_only)`` of the kws-personalize cell: the
    group's clips split per class (``shots`` / ``val`` / ``test``) in its condition, as that
    study draws them (:func:`~.kws_personalize.target_sets`)."""
    data = audio.load_data(cell.data)
    source, _ = audio.backbone(cell.arch, data, cell.data, seed=pretrain_seed, progress=progress)
    study = kws_personalize.Config(data=cell.data, groups=(cell.group,),
                                   conditions=(cell.condition,), shots=cell.shots, val=cell.val,
                                   test=cell.test)  # fmt: skip
    sets = kws_personalize.target_sets(data, study, seed)[cell.group, cell.condition]
    model, _ = prepare_regime(source, cell.regime, seed=seed)
    if cell.regime == "ft":
        audio.freeze_batchnorm_statistics(model)
    return model, sets["train"], sets["val"], sets["test"], cell.regime == "lp"


def curve_of(start: Mapping[str, Any], history: list[dict[str, Any]]) -> dict[str, list]:
    """A run's curve, ``{"step", "val", "test", "val_loss"}`` lists: step 0 is ``start`` (the
    zero-shot model's evaluation), then every record of ``history`` with an evaluation."""
    curve: dict[str, list] = {"step": [0], "val": [start["val"]["accuracy"]],
                              "test": [start["test"]["accuracy"]],
                              "val_loss": [start["val"]["loss"]]}  # fmt: skip
    for record in history:
        if "eval/test/accuracy" in record:
            curve["step"].append(record["step"])
            curve["val"].append(record["eval/val/accuracy"])
            curve["test"].append(record["eval/test/accuracy"])
            curve["val_loss"].append(record["eval/val/loss"])
    return curve


def run_cell(prepared: Prepared, runs: Mapping[str, Run], batch: int, seed: int,
             progress: bool) -> list[tuple[Outcome, dict[str, Any]]]:  # fmt: skip
    """Zero-shot, backprop and ZO in one cell: ``(outcome, extra row fields)`` per method; the
    zero-shot model's evaluation is every curve's step 0."""
    model, train, val, test, head_only = prepared
    start = {k: evaluate(model, *d) for k, d in (("val", val), ("test", test))}
    out = [(Outcome("zero-shot", None, **tested(model, test), val_accuracy=start["val"]["accuracy"]),
            {"budget": 0})]  # fmt: skip
    for method, run in runs.items():
        budget = Budget(steps=run.steps, zo_steps=run.steps, batch=batch,
                        eval_points=run.steps // run.eval_every)  # fmt: skip
        started = time.perf_counter()
        net, result = adapt(method, model, train, {"val": val, "test": test}, Settings(lr=run.lr),
                            budget, seed=seed, head_only=head_only, progress=progress)  # fmt: skip
        seconds = time.perf_counter() - started
        assert result is not None  # backprop and zo always train
        outcome = Outcome(method, run.lr, **tested(net, test),
                          val_accuracy=result.final["val"]["accuracy"], steps=result.steps,
                          forwards=result.forwards, seconds=seconds, history=result.history)  # fmt: skip
        out.append((outcome, {"budget": run.budget, "curve": curve_of(start, result.history)}))
    return out


def run_config(cfg: Config, opts: Options) -> dict[str, Any]:
    """Run every cell of ``cfg`` for one seed; write ``results.json``, ``results.md`` and the
    per-cell curves under ``opts.out``."""
    started = time.perf_counter()
    pretrain_seed = cfg.pretrain_seed if opts.pretrain_seed is None else opts.pretrain_seed
    writer = StudyWriter("convergence", opts.out, keys=("cell",), methods=METHODS, claims=())
    for cell in cfg.cells:
        prepare = vision_cell if isinstance(cell, VisionCell) else audio_cell
        prepared = prepare(cell, opts.seed, pretrain_seed, opts.progress)
        for outcome, extra in run_cell(prepared, cell.runs, cell.batch, opts.seed, opts.progress):
            writer.add(outcome, cell=cell.name, **extra)
    writer.extra["seconds"] = time.perf_counter() - started
    return writer.finish(config=cfg, quick=opts.quick, seed=opts.seed,
                         notes=f"Backbones pretrained with seed {pretrain_seed}.")  # fmt: skip


#: ``run(quick, out, seed=0, progress=True, config=None, jobs=1)``: see :class:`~.common.Study`.
run = Study(QUICK, FULL, run_config)
