"""A small CNN for 28x28 grayscale digits (MNIST, Fashion-MNIST): the demo's backbone."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer classifier; about 207k parameters at the defaults.

    Shapes: input ``(B, 1, 28, 28)`` -> features ``(B, hidden)`` -> logits ``(B, classes)``.
    ``features`` is the backbone (an ``nn.Sequential``, so ``features(x)`` works as for
    every edgezo backbone), ``head`` the part a linear probe adapts; ``feature_dim`` is
    ``hidden``.

    Args:
        classes: number of output classes.
        width: channels of the first conv (the second has ``2 * width``).
        hidden: width of the feature vector before the classifier.
    """

    def __init__(self, classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.feature_dim = hidden
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),  # (B, hidden)
        )  # fmt: skip
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
