"""Backbones used by the demo, the benchmarks and the studies."""

from .cnn import SmallCNN, count_parameters
from .vit import ViTConfig, ViTTiny

__all__ = ["SmallCNN", "ViTConfig", "ViTTiny", "count_parameters"]
