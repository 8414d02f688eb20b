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
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import cache
from ..train import evaluate, fit, warmup_cosine

#: Bump when the recipe changes in a way the cache key does not capture.
PRETRAIN_FORMAT = 1
#: Training samples the reported train accuracy is measured on (the first ones).
ACCURACY_SAMPLES = 10_000

OPTIMIZERS: dict[str, Callable[[list[Tensor], float], torch.optim.Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
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
        build: makes the untrained model (called under a seeded random state).
        train: ``(x, y)`` with integer class labels.
        config: plain-JSON description of everything else that defines the
            weights (data set, model size); part of the cache key.
        steps, batch_size, lr, seed: the training run (see the module doc).
        progress: show the training's progress bar.
        optimizer: ``"adam"`` or ``"sgd"``.

    Returns:
        The model in ``eval()`` mode and its :class:`PretrainInfo`.
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
        recorded = cache.load_state(f"{name}-info", key) or {}
        accuracy = recorded.get("train_accuracy")
        accuracy = _train_accuracy(model, train) if accuracy is None else float(accuracy)
        info = PretrainInfo(
            from_cache=True,
            seconds=time.perf_counter() - started,
            train_seconds=float(recorded.get("train_seconds", torch.tensor(float("nan")))),
            train_accuracy=accuracy,
            path=cache.state_path(name, key),
        )
        return model.eval(), info
    checkpoint = cache.state_path(name, key).with_suffix(".ckpt")
    opt = OPTIMIZERS[optimizer]([p for p in model.parameters() if p.requires_grad], lr)
    fit(model, opt, train, steps=steps, batch_size=batch_size, seed=seed, progress=progress,
        scheduler=warmup_cosine(opt, steps, warmup=steps // 20), checkpoint_path=checkpoint,
        checkpoint_every=max(1, steps // 10))  # fmt: skip
    accuracy = _train_accuracy(model, train)
    seconds = time.perf_counter() - started
    _store(name, key, model, {"train_accuracy": accuracy, "train_seconds": seconds}, checkpoint)
    info = PretrainInfo(False, seconds, seconds, accuracy, cache.state_path(name, key))
    return model.eval(), info


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
