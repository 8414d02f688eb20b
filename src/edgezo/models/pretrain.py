"""pretrained(): a backbone trained with backprop once, then loaded from the cache.

No hub: every pretrained backbone is trained here by :func:`edgezo.train.fit`
and stored in :mod:`edgezo.cache` (``$EDGEZO_CACHE``) under a hash of what
defines it: the name, the caller's ``config``, ``steps``, ``batch_size``, ``lr``,
``seed``, the optimizer and :data:`PRETRAIN_FORMAT`. ``config`` must name
everything else that changes the weights (the data set and its split, the
model's size): the training tensors themselves are not hashed.

The recipe: the model is built by ``build()`` under ``torch.manual_seed(seed)``
(the caller's random state is kept), then trained for ``steps`` steps by Adam
(or SGD with momentum 0.9) with :func:`~edgezo.train.warmup_cosine` (warmup:
the first 5% of the steps), batches from ``fit``'s seeded sampler. An
interrupted pretraining leaves a checkpoint next to the cache entry, and the
next call with the same arguments resumes it.

The same bytes on any x86-64 CPU: building and training run in a portable process
(:func:`edgezo.models.portable.run_portable`: one thread, aten's scalar kernels, MKL's
compatible path, no oneDNN), with :class:`edgezo.models.portable.Adam`. So ``build`` must
cross a process: a module-level function or class, or a ``functools.partial`` of one, not a
lambda. The training tensors cross as they are: the backbone is as portable as they are
(images scaled by 1/255 are; features a float pipeline computed are only as portable as
that pipeline). Portable kernels are slower than torch's own (docs/studies.md, "Backbones
across machines"), once per machine: the weights are cached.
"""

from __future__ import annotations

import functools
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import cache
from ..train import evaluate, fit, warmup_cosine
from .portable import Adam, run_portable, state_digest

#: Bump when the recipe changes in a way the cache key does not capture.
PRETRAIN_FORMAT = 3  # 2: trained in a portable process; 3: the DS-CNN channels-first there
#: Training samples the reported train accuracy is measured on (the first ones).
ACCURACY_SAMPLES = 10_000

OPTIMIZERS: dict[str, Callable[[list[Tensor], float], torch.optim.Optimizer]] = {
    "adam": lambda params, lr: Adam(params, lr=lr),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
}


@dataclass(frozen=True)
class PretrainInfo:
    """How :func:`pretrained` got its model.

    Attributes:
        from_cache: loaded from the cache (no training in this call).
        seconds: wall time of this call (training, or loading).
        train_seconds: wall time the training took when it ran.
        train_accuracy: top-1 accuracy on the first :data:`ACCURACY_SAMPLES`
            training samples after pretraining.
        path: the cache entry of the weights.
    """

    from_cache: bool
    seconds: float
    train_seconds: float
    train_accuracy: float
    path: Path


def pretrained(
    name: str,
    build: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor],
    *,
    config: Mapping[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    progress: bool = True,
    optimizer: str = "adam",
) -> tuple[nn.Module, PretrainInfo]:
    """The model ``build()`` pretrained with backprop on ``train``: from the cache, or trained now.

    Args:
        name: the cache entry's name (a file-name stem, e.g. ``"smallcnn-mnist"``).
        build: makes the untrained model (called under a seeded random state, in the
            portable process: a module-level function or class, or a partial of one).
        train: ``(x, y)`` with integer class labels.
        config: plain-JSON description of everything else that defines the
            weights (data set, model size); part of the cache key.
        steps, batch_size, lr, seed: the training run (see the module doc).
        progress: show the training's progress bar.
        optimizer: ``"adam"`` or ``"sgd"``.

    Returns:
        The model in ``eval()`` mode and its :class:`PretrainInfo`.

    Raises:
        ValueError: ``build`` cannot be loaded in another process (a lambda), or the optimizer
            is unknown.
        RuntimeError: the portable process failed (its output went to stderr).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    started = time.perf_counter()
    key = cache_config(name, config, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                       optimizer=optimizer)  # fmt: skip
    model = _build(build, seed)
    state = cache.load_state(name, key)
    if state is not None:
        model.load_state_dict(state)
        return note_backbone(name, model), _cached_info(name, key, model, train, started)
    checkpoint = cache.state_path(name, key).with_suffix(".ckpt")
    training = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "optimizer": optimizer, "progress": progress}  # fmt: skip
    state, accuracy = train_portable(build, train, training, checkpoint)
    model.load_state_dict(state)
    seconds = time.perf_counter() - started
    _store(name, key, model, {"train_accuracy": accuracy, "train_seconds": seconds}, checkpoint)
    info = PretrainInfo(False, seconds, seconds, accuracy, cache.state_path(name, key))
    return note_backbone(name, model), info


def _cached_info(name: str, key: dict[str, Any], model: nn.Module, train: tuple[Tensor, Tensor],
                 started: float) -> PretrainInfo:  # fmt: skip
    """The :class:`PretrainInfo` of a model loaded from the cache (its recorded numbers)."""
    recorded = cache.load_state(f"{name}-info", key) or {}
    accuracy = recorded.get("train_accuracy")
    return PretrainInfo(
        from_cache=True,
        seconds=time.perf_counter() - started,
        train_seconds=float(recorded.get("train_seconds", torch.tensor(float("nan")))),
        train_accuracy=_train_accuracy(model, train) if accuracy is None else float(accuracy),
        path=cache.state_path(name, key),
    )


def train_portable(
    build: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor],
    training: Mapping[str, Any],
    checkpoint: Path | None = None,
    prefix: Sequence[str] = (),
) -> tuple[dict[str, Tensor], float]:
    """Build and train the model in a portable process (see the module doc): its
    ``state_dict`` and its train accuracy.

    Args:
        training: :func:`pretrained`'s ``steps``, ``batch_size``, ``lr``, ``seed``,
            ``optimizer`` and ``progress``.
        checkpoint: where the run resumes from and saves to (``None``: no checkpoints).
        prefix: a command to run the process under (an emulated CPU, for tests).
    """
    _check_crosses(build)
    with tempfile.TemporaryDirectory(prefix="edgezo-pretrain-") as tmp:
        job = Path(tmp) / "job.pt"
        torch.save({"build": build, "train": train}, job)
        arguments = {**training, "job": str(job),
                     "checkpoint": None if checkpoint is None else str(checkpoint)}  # fmt: skip
        out = run_portable(f"{__name__}:{_train_job.__name__}", arguments, prefix=prefix)
    accuracy = float(out.pop(ACCURACY_KEY))
    return out, accuracy


#: The key :func:`_train_job` returns the train accuracy under, beside the ``state_dict``.
ACCURACY_KEY = "__edgezo_train_accuracy__"


def _train_job(job: str, checkpoint: str | None, steps: int, batch_size: int, lr: float,
               seed: int, optimizer: str, progress: bool) -> dict[str, Tensor]:  # fmt: skip
    """In the portable process: build, train, and return the ``state_dict`` and accuracy."""
    parts = torch.load(job, weights_only=False)  # written by train_portable, just now
    model = _build(parts["build"], seed)
    opt = OPTIMIZERS[optimizer]([p for p in model.parameters() if p.requires_grad], lr)
    fit(model, opt, parts["train"], steps=steps, batch_size=batch_size, seed=seed,
        progress=progress, scheduler=warmup_cosine(opt, steps, warmup=steps // 20),
        checkpoint_path=checkpoint, checkpoint_every=max(1, steps // 10) if checkpoint else None)  # fmt: skip
    accuracy = _train_accuracy(model, parts["train"])
    return {**model.state_dict(), ACCURACY_KEY: torch.tensor(accuracy, dtype=torch.float64)}


def _check_crosses(build: Callable[[], nn.Module]) -> None:
    """Fail, saying what to pass instead, if ``build`` cannot be loaded in another process."""
    function = build.func if isinstance(build, functools.partial) else build
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", "")
    if module in (None, "__main__") or "<" in name:
        raise ValueError(
            f"pretraining runs in a portable process, which cannot load build={build!r} "
            f"({module}.{name}): pass a function or class defined at the top of an importable "
            "module, or a functools.partial of one (not a lambda, a local function or __main__)"
        )


#: The backbones :func:`pretrained` returned in this process: ``(name, sha256)`` -> record.
_LOADED: dict[tuple[str, str], dict[str, Any]] = {}


def note_backbone(name: str, model: nn.Module, recipe: int = PRETRAIN_FORMAT) -> nn.Module:
    """``model`` in eval mode, noted for :func:`loaded_backbones` with its pretraining
    recipe's format and the SHA-256 of its weights (``recipe``: the demo's backbone notes its
    own :data:`edgezo.studies.demo.PRETRAIN_FORMAT`)."""
    digest = state_digest(model.state_dict())
    _LOADED[name, digest] = {"name": name, "format": recipe, "sha256": digest}
    return model.eval()


def loaded_backbones() -> list[dict[str, Any]]:
    """Every backbone :func:`pretrained` returned in this process (name, the format of its
    pretraining recipe, SHA-256 of the weights: :func:`~edgezo.models.portable.state_digest`),
    in name order: what a result rests on, for its provenance."""
    return [_LOADED[k] for k in sorted(_LOADED)]


def cache_config(name: str, config: Mapping[str, Any], **training: Any) -> dict[str, Any]:
    """The cache key's config: the caller's ``config`` with the training run and the format."""
    return {
        "what": "edgezo.models.pretrained",
        "name": name,
        "format": PRETRAIN_FORMAT,
        "config": dict(config),
        **training,
    }


def _build(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _train_accuracy(model: nn.Module, train: tuple[Tensor, Tensor]) -> float:
    x, y = train
    return evaluate(model, x[:ACCURACY_SAMPLES], y[:ACCURACY_SAMPLES])["accuracy"]


def _store(
    name: str, key: dict[str, Any], model: nn.Module, numbers: dict[str, float], checkpoint: Path
) -> None:
    """Cache the weights and their numbers, then drop the training checkpoint."""
    try:
        cache.save_state(name, key, model.state_dict())
        cache.save_state(
            f"{name}-info",
            key,
            {k: torch.tensor(v, dtype=torch.float64) for k, v in numbers.items()},
        )
        checkpoint.unlink(missing_ok=True)
    except OSError as e:  # the model is still returned; only the next call pays again
        warnings.warn(
            f"Could not cache the pretrained {name!r} in {cache.cache_dir()} ({e}); "
            f"set {cache.ENV} to a writable directory",
            stacklevel=3,
        )
