"""A small CIFAR-style ResNet (He et al. 2016, section 4.2) for 28x28 grayscale images.

A 3x3 stem, then one stage per entry of ``widths``: ``blocks[i]`` BasicBlocks, the
first of every stage after the first with stride 2 (28 -> 14 -> 7 at the defaults),
then global average pooling. At the defaults (8 conv layers, about 78k parameters)
it pretrains on MNIST on 2 CPU cores in a few minutes; ``blocks=(2, 2, 2)`` doubles
the depth (about 0.17M parameters).

    >>> import torch
    >>> model = SmallResNet()
    >>> model.features(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers and a shortcut: ``relu(x' + bn(conv(relu(bn(conv(x))))))``.

    The shortcut ``x'`` is ``x``, or a strided 1x1 conv + BatchNorm where the stride or
    the width changes (the paper's option B).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet: ``(B, in_channels, H, W)`` -> features ``(B, widths[-1])`` -> ``(B, classes)``.

    Args:
        classes: number of output classes.
        in_channels: input channels (1 for MNIST and Fashion-MNIST).
        widths: channels of each stage; every stage after the first halves H and W.
        blocks: BasicBlocks per stage (same length as ``widths``).
    """

    def __init__(
        self,
        classes: int = 10,
        in_channels: int = 1,
        widths: tuple[int, ...] = (16, 32, 64),
        blocks: tuple[int, ...] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if not widths or len(widths) != len(blocks):
            raise ValueError(
                f"SmallResNet: widths {tuple(widths)} and blocks {tuple(blocks)} must be non-empty "
                "and of the same length (one entry per stage)"
            )
        if min(widths) < 1 or min(blocks) < 1:
            raise ValueError(
                f"SmallResNet: every stage needs a width >= 1 and >= 1 block, got widths "
                f"{tuple(widths)}, blocks {tuple(blocks)}"
            )
        self.feature_dim = widths[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        previous = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            first_stride = 1 if i == 0 else 2
            stage = [BasicBlock(previous, width, first_stride)]
            stage += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(widths[-1], classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-out) init for the convs, as in the paper; BatchNorm at weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """Global average of the last stage: ``(B, widths[-1])``."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
