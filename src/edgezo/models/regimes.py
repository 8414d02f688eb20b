"""What trains when a pretrained backbone adapts: the regimes of QZO-FF (PAPERS.md B).

- ``ft``: full fine-tuning, every parameter;
- ``lp``: linear probing, a 1-layer head on the frozen backbone;
- ``lp3``: probing with a new 3-layer MLP head (:func:`~edgezo.models.heads.mlp_head`);
- ``vpt``: deep visual prompt tuning (:class:`~edgezo.models.prompt.DeepPrompts`),
  prompts and the linear head on a frozen ViT.

:func:`prepare` returns a deep copy, so one pretrained backbone serves every method
and regime. Frozen parameters get ``requires_grad=False``; the BatchNorm layers of a
frozen backbone become :class:`FrozenBatchNorm2d`, which always normalizes with the
pretrained running statistics (in ``train()`` mode too), so a frozen backbone computes
the same features whatever the batch and never changes.

    >>> from edgezo.models.resnet import SmallResNet
    >>> model, params = prepare(SmallResNet(), "lp", classes=5)
    >>> [name for name, _ in params], count_trainable(model)
    (['head.weight', 'head.bias'], 325)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .cnn import count_parameters
from .heads import head_sizes, linear_head, mlp_head, replace_head
from .prompt import DeepPrompts
from .vit import ViTTiny

REGIMES = ("ft", "lp", "lp3", "vpt")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode: it normalizes with its running statistics
    and never updates them. Same parameters, buffers and state_dict keys (``prepare``
    turns a frozen BatchNorm2d into one by switching its class, keeping its tensors)."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


def prepare(
    model: nn.Module,
    regime: str,
    classes: int | None = None,
    prompt_tokens: int = 8,
    seed: int = 0,
) -> tuple[nn.Module, list[tuple[str, nn.Parameter]]]:
    """A deep copy of ``model`` set up for ``regime``, and its trainable ``(name, parameter)``s.

    Heads: ``lp``, ``vpt`` and ``ft`` keep the pretrained head when it fits (``classes``
    is ``None`` or equals its output count; for ``lp`` and ``vpt`` it must also be a
    single ``nn.Linear``), else they get a new linear head; ``lp3`` always gets a new
    3-layer MLP head. New heads and prompts are drawn from ``seed`` (the global RNG is
    left as it was). ``model`` itself is not modified.

    Returns ``(model, params)``: ``params`` (in ``named_parameters`` order) is what an
    optimizer gets; every other parameter has ``requires_grad=False``.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")
    for attribute in ("features", "head", "feature_dim"):
        if not hasattr(model, attribute):
            raise TypeError(
                f"{type(model).__name__} has no {attribute!r}; use an edgezo backbone "
                "(SmallCNN, SmallResNet, ViTTiny)"
            )
    if regime == "vpt" and not isinstance(model, ViTTiny):
        raise TypeError(
            f"regime 'vpt' (deep prompt tuning) needs a ViTTiny backbone, got "
            f"{type(model).__name__}; use 'ft', 'lp' or 'lp3' for it"
        )
    model = copy.deepcopy(model)
    like = next(model.parameters())  # new heads are drawn on the CPU, then moved to the model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = _new_head(model, regime, classes)
        if head is not None:
            replace_head(model, head.to(like.device, like.dtype))
        if regime == "vpt":
            model = DeepPrompts(model, prompt_tokens)
    model.requires_grad_(regime == "ft")
    model.head.requires_grad_(True)
    if isinstance(model, DeepPrompts):
        model.prompts.requires_grad_(True)
    if regime != "ft":
        _freeze_batchnorm(model)
    return model, [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _new_head(model: nn.Module, regime: str, classes: int | None) -> nn.Module | None:
    """The head ``regime`` needs on ``model``, or ``None`` to keep the pretrained one."""
    _, pretrained = head_sizes(model.head)
    classes = pretrained if classes is None else classes
    if regime == "lp3":
        return mlp_head(model.feature_dim, classes, layers=3)
    fits = classes == pretrained and (regime == "ft" or isinstance(model.head, nn.Linear))
    return None if fits else linear_head(model.feature_dim, classes)


def _freeze_batchnorm(model: nn.Module) -> None:
    """Turn every BatchNorm with no trainable parameter into a :class:`FrozenBatchNorm2d`."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or any(
            p.requires_grad for p in module.parameters()
        ):
            continue
        if not isinstance(module, nn.BatchNorm2d):
            raise TypeError(
                f"cannot freeze {type(module).__name__} at {name!r}: only BatchNorm2d is "
                "supported; put the model in eval() yourself or train it with regime 'ft'"
            )
        module.__class__ = FrozenBatchNorm2d  # a subclass with no new state: same tensors
        module.eval()


def count_trainable(model: nn.Module) -> int:
    """Number of elements with ``requires_grad`` (what :func:`prepare` leaves trainable)."""
    return count_parameters(model)
