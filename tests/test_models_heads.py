"""Heads (1- and 3-layer probes) and the backbone convention forward == head(features)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo.models.cnn import SmallCNN
from edgezo.models.heads import head_sizes, linear_head, mlp_head, replace_head
from edgezo.models.prompt import DeepPrompts
from edgezo.models.resnet import SmallResNet
from edgezo.models.vit import ViTConfig, ViTTiny

TINY_VIT = ViTConfig(image=28, patch=7, channels=1, width=16, depth=2, heads=2, mlp=32, classes=3)


def backbones() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    vit = ViTTiny(TINY_VIT)
    return {
        "cnn": SmallCNN(classes=3, width=4, hidden=16),
        "resnet": SmallResNet(classes=3, widths=(4, 8), blocks=(1, 1)),
        "vit": vit,
        "vpt": DeepPrompts(ViTTiny(TINY_VIT), tokens=2),
    }


class OldSmallCNN(nn.Module):
    """SmallCNN as the demo cached it (before feature_dim), verbatim."""

    def __init__(self, classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.features(x))


def test_old_smallcnn_state_dict_loads_and_gives_the_same_logits():
    torch.manual_seed(1)
    old = OldSmallCNN()
    new = SmallCNN()
    new.load_state_dict(old.state_dict())  # strict: same keys, same shapes
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(new(x), old(x))
    assert new.feature_dim == 128 and new.features(x).shape == (4, 128)


@pytest.mark.parametrize("name", ["cnn", "resnet", "vit", "vpt"])
def test_every_backbone_is_head_of_features(name):
    model = backbones()[name].eval()
    x = torch.rand(5, 1, 28, 28)
    features = model.features(x)
    assert features.shape == (5, model.feature_dim)
    assert isinstance(model.head, nn.Module)
    assert torch.equal(model(x), model.head(features))


@settings(max_examples=15, deadline=None)
@given(
    in_features=st.integers(1, 20),
    classes=st.integers(1, 12),
    layers=st.integers(1, 4),
    hidden=st.one_of(st.none(), st.integers(1, 20)),
)
def test_mlp_head_has_the_documented_layers_and_parameters(in_features, classes, layers, hidden):
    head = mlp_head(in_features, classes, layers=layers, hidden=hidden)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == layers
    assert [type(m) for m in head.modules()].count(nn.ReLU) == layers - 1
    h = hidden or in_features
    sizes = [in_features] + [h] * (layers - 1) + [classes]
    expected = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    assert sum(p.numel() for p in head.parameters()) == expected
    assert head_sizes(head) == (in_features, classes)
    assert head(torch.rand(7, in_features)).shape == (7, classes)


def test_three_layer_head_is_not_linear_but_one_layer_is():
    torch.manual_seed(0)
    a, b = torch.randn(64, 8), torch.randn(64, 8)
    lin, mlp = linear_head(8, 4), mlp_head(8, 4, layers=3)
    assert isinstance(lin, nn.Linear) and isinstance(mlp_head(8, 4, layers=1), nn.Linear)
    zero = torch.zeros(1, 8)
    additive = lambda f: f(a + b) - f(a) - f(b) + f(zero)  # noqa: E731  # 0 for an affine map
    assert additive(lin).abs().max() < 1e-5
    assert additive(mlp).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["cnn", "resnet", "vit", "vpt"])
def test_replace_head_swaps_the_head_in_place(name):
    model = backbones()[name].eval()
    old, head = model.head, mlp_head(model.feature_dim, 6)
    assert replace_head(model, head) is model
    assert model.head is head
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), head(model.features(x)))
    # the new head is the model's only head: its parameters are in, the old one's are out
    params = {id(p) for p in model.parameters()}
    assert {id(p) for p in head.parameters()} <= params
    assert not {id(p) for p in old.parameters()} & params


def test_bad_heads_raise_clear_errors():
    with pytest.raises(ValueError, match=r"layers=0 must be a positive integer"):
        mlp_head(8, 3, layers=0)
    with pytest.raises(ValueError, match=r"classes=0 must be a positive integer"):
        linear_head(8, 0)
    model = SmallCNN(width=4, hidden=16)
    with pytest.raises(
        ValueError, match=r"takes 8 features but SmallCNN gives 16; build it with in_features=16"
    ):
        replace_head(model, linear_head(8, 3))
    with pytest.raises(TypeError, match=r"Sequential has no head/feature_dim"):
        replace_head(nn.Sequential(nn.Linear(2, 2)), linear_head(2, 2))
    with pytest.raises(ValueError, match=r"has no nn.Linear layer"):
        head_sizes(nn.ReLU())
