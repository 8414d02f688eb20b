"""Evaluation: mean loss and top-1 accuracy of a model on a labelled set, without autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
Data = tuple[Tensor, Tensor]


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
