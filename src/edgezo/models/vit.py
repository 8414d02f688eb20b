"""A ViT-tiny-style encoder (width 192, 12 layers, 3 heads): about 5.3M parameters.

Reads top to bottom: patch embedding, class token, pre-norm transformer blocks
(``torch.nn.functional.scaled_dot_product_attention``), a linear head. It is the
"ViT-tiny-like" model of the benchmarks and, later, of prompt tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ViTConfig:
    image: int = 32  # input side in pixels
    patch: int = 4  # patch side: (32 / 4)^2 = 64 patches + 1 class token = 65 tokens
    channels: int = 3
    width: int = 192  # ViT-tiny
    depth: int = 12
    heads: int = 3
    mlp: int = 768  # 4 x width
    classes: int = 10


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.width, cfg.mlp), nn.GELU(), nn.Linear(cfg.mlp, cfg.width)
        )

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)  # 3 x (B, T, C)
        q, k, v = (u.view(b, t, self.heads, c // self.heads).transpose(1, 2) for u in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class ViTTiny(nn.Module):
    """Vision transformer: ``(B, C, H, W)`` images -> ``(B, classes)`` logits."""

    def __init__(self, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ViTConfig()
        self.cfg = cfg
        tokens = (cfg.image // cfg.patch) ** 2 + 1
        self.embed = nn.Conv2d(cfg.channels, cfg.width, cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos = nn.Parameter(torch.randn(1, tokens, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.ln = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)  # (B, T-1, C)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x[:, 0]))
