"""Classifier heads for probing a frozen backbone: 1-layer (linear) and multi-layer (MLP).

QZO-FF (PAPERS.md B) probes with 1 and 3 layers ("LP" and "LP, 3 layers"). Every edgezo
backbone computes ``forward(x) = head(features(x))``, so swapping ``model.head`` is all
a new task needs.

    >>> mlp_head(64, 10)
    Sequential(
      (0): Linear(in_features=64, out_features=64, bias=True)
      (1): ReLU()
      (2): Linear(in_features=64, out_features=64, bias=True)
      (3): ReLU()
      (4): Linear(in_features=64, out_features=10, bias=True)
    )
"""

from __future__ import annotations

from torch import nn


def _check_sizes(**sizes: int | None) -> None:
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be a positive integer")


def linear_head(in_features: int, classes: int) -> nn.Linear:
    """A 1-layer head: ``(B, in_features) -> (B, classes)``."""
    _check_sizes(in_features=in_features, classes=classes)
    return nn.Linear(in_features, classes)


def mlp_head(
    in_features: int, classes: int, layers: int = 3, hidden: int | None = None
) -> nn.Module:
    """``layers`` linear layers with ReLU between them; ``hidden`` (default ``in_features``)
    is the width of the inner layers. ``layers=1`` is :func:`linear_head`."""
    _check_sizes(in_features=in_features, classes=classes, layers=layers, hidden=hidden)
    if layers == 1:
        return linear_head(in_features, classes)
    hidden = hidden or in_features
    modules: list[nn.Module] = [nn.Linear(in_features, hidden)]
    for _ in range(layers - 2):
        modules += [nn.ReLU(), nn.Linear(hidden, hidden)]
    modules += [nn.ReLU(), nn.Linear(hidden, classes)]
    return nn.Sequential(*modules)


def head_sizes(head: nn.Module) -> tuple[int, int]:
    """``(in_features, classes)`` of a head: its first and last ``nn.Linear``."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head {type(head).__name__} has no nn.Linear layer; use linear_head")
    return linears[0].in_features, linears[-1].out_features


def replace_head(model: nn.Module, head: nn.Module) -> nn.Module:
    """Put ``head`` on ``model`` in place (``model.head = head``) and return ``model``.

    The head's input width must be ``model.feature_dim``.
    """
    if not hasattr(model, "head") or not hasattr(model, "feature_dim"):
        raise TypeError(
            f"{type(model).__name__} has no head/feature_dim; use an edgezo backbone "
            "(SmallCNN, SmallResNet, ViTTiny, DeepPrompts)"
        )
    in_features, _ = head_sizes(head)
    if in_features != model.feature_dim:
        raise ValueError(
            f"the head takes {in_features} features but {type(model).__name__} gives "
            f"{model.feature_dim}; build it with in_features={model.feature_dim}"
        )
    model.head = head
    return model
