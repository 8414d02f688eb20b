"""Deep visual prompt tuning (VPT-deep; Jia et al., "Visual Prompt Tuning", ECCV 2022).

Every transformer layer ``i`` of a frozen :class:`~edgezo.models.vit.ViTTiny` gets
``tokens`` learnable prompt tokens ``P_i``, inserted after the class token (paper, eq. 5):

    [x_i, _, E_i] = L_i([x_{i-1}, P_{i-1}, E_{i-1}])

The prompt outputs of one layer (``_``) are discarded and replaced by the next layer's
prompts; the prompts carry no position embedding (they are inserted after it is added).
The features are the class token after the final norm, as for the ViT. Only the
prompts and the head are trained; the wrapped ViT's weights are used as they are.

    >>> import torch
    >>> from edgezo.models.vit import ViTConfig, ViTTiny
    >>> model = DeepPrompts(ViTTiny(ViTConfig.small()), tokens=8)
    >>> tuple(model.prompts.shape), model(torch.zeros(2, 1, 28, 28)).shape
    ((4, 8, 96), torch.Size([2, 10]))
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .vit import ViTTiny


class DeepPrompts(nn.Module):
    """A ViT with ``tokens`` learnable prompt tokens before every block: ``(depth, tokens, width)``.

    ``head`` is the wrapped ViT's head (reading and assigning ``model.head`` both go
    to ``model.vit.head``); ``forward(x) == head(features(x))``. With ``tokens=0`` the
    output equals the ViT's bit for bit.

    Prompts start from the uniform Xavier rule of the VPT code,
    ``U(-b, b)`` with ``b = sqrt(6 / (channels * patch**2 + width))``: the fan-in and
    fan-out of the patch embedding (VPT writes ``3 * patch**2`` for RGB images). They
    are drawn from the CPU generator, then moved to the ViT's device and dtype.
    """

    def __init__(self, vit: ViTTiny, tokens: int = 8) -> None:
        super().__init__()
        if not isinstance(vit, ViTTiny):
            raise TypeError(
                f"DeepPrompts wraps a ViTTiny, got {type(vit).__name__}; prompt tuning needs "
                "a transformer backbone (use linear probing for CNNs and ResNets)"
            )
        if tokens < 0:
            raise ValueError(f"DeepPrompts: tokens={tokens} must be >= 0 (prompts per layer)")
        cfg = vit.cfg
        self.vit = vit
        self.tokens = tokens
        self.feature_dim = vit.feature_dim
        bound = math.sqrt(6.0 / (cfg.channels * cfg.patch**2 + cfg.width))
        prompts = torch.empty(cfg.depth, tokens, cfg.width).uniform_(-bound, bound)  # CPU RNG
        self.prompts = nn.Parameter(prompts.to(vit.cls.device, vit.cls.dtype))

    @property
    def head(self) -> nn.Module:
        """The classifier on the features: the wrapped ViT's ``head``."""
        return self.vit.head

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "head":  # the head lives in the ViT, so there is only one
            self.vit.head = value
        else:
            super().__setattr__(name, value)

    def features(self, x: Tensor) -> Tensor:
        """The class token after the final norm: ``(B, width)``."""
        h = self.vit.embed_tokens(x)  # (B, 1 + patches, width)
        batch = h.shape[0]
        previous = 0  # prompt outputs of the previous layer, replaced by this layer's prompts
        for block, prompt in zip(self.vit.blocks, self.prompts, strict=True):
            h = torch.cat([h[:, :1], prompt.expand(batch, -1, -1), h[:, 1 + previous :]], dim=1)
            h = block(h)  # (B, 1 + tokens + patches, width)
            previous = self.tokens
        return self.vit.ln(h[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
