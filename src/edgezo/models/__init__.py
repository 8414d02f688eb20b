"""Backbones used by the demo, the benchmarks and the studies.

Every backbone maps inputs to an embedding with ``features(x) -> (B, feature_dim)``
and classifies it with ``head``: ``forward(x) == head(features(x))``, so the
adaptation regimes (:func:`prepare`) and few-shot classifiers work on any of them.
"""

from .cnn import SmallCNN, count_parameters
from .heads import head_sizes, linear_head, mlp_head, replace_head
from .kws import CRNN, DSCNN, AudioClassifier, Featurizer
from .prompt import DeepPrompts
from .regimes import REGIMES, FrozenBatchNorm2d, count_trainable, prepare
from .resnet import SmallResNet
from .vit import ViTConfig, ViTTiny

__all__ = [
    "CRNN",
    "DSCNN",
    "REGIMES",
    "AudioClassifier",
    "DeepPrompts",
    "Featurizer",
    "FrozenBatchNorm2d",
    "SmallCNN",
    "SmallResNet",
    "ViTConfig",
    "ViTTiny",
    "count_parameters",
    "count_trainable",
    "head_sizes",
    "linear_head",
    "mlp_head",
    "prepare",
    "replace_head",
]
