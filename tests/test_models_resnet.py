"""SmallResNet: shapes, parameter count by hand, stride-2 stages, and it trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.models.resnet import SmallResNet


def reference_parameter_count(classes, in_channels, widths, blocks) -> int:
    """Count by hand: bias-free 3x3 convs, BatchNorm (2 per channel), 1x1 shortcuts, head."""
    bn = lambda c: 2 * c  # noqa: E731
    total = in_channels * widths[0] * 9 + bn(widths[0])
    previous = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for b in range(count):
            c_in = previous if b == 0 else width
            total += c_in * width * 9 + bn(width) + width * width * 9 + bn(width)
            if b == 0 and (stage > 0 or c_in != width):
                total += c_in * width + bn(width)
        previous = width
    return total + widths[-1] * classes + classes


@settings(max_examples=12, deadline=None)
@given(
    classes=st.integers(2, 12),
    in_channels=st.sampled_from([1, 3]),
    widths=st.lists(st.integers(2, 8), min_size=1, max_size=3),
    data=st.data(),
)
def test_shapes_and_parameter_count(classes, in_channels, widths, data):
    blocks = data.draw(st.lists(st.integers(1, 2), min_size=len(widths), max_size=len(widths)))
    model = SmallResNet(classes, in_channels, tuple(widths), tuple(blocks))
    assert sum(p.numel() for p in model.parameters()) == reference_parameter_count(
        classes, in_channels, widths, blocks
    )
    x = torch.rand(3, in_channels, 28, 28)
    model.eval()
    features = model.features(x)
    assert features.shape == (3, widths[-1]) and model.feature_dim == widths[-1]
    assert torch.equal(model(x), model.head(features))
    assert model(x).shape == (3, classes)


def test_defaults_are_a_small_cifar_style_resnet():
    model = SmallResNet()
    count = sum(p.numel() for p in model.parameters())
    assert count == reference_parameter_count(10, 1, (16, 32, 64), (1, 1, 1)) == 77754
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, args, out: sizes.append(tuple(out.shape[1:])))
    model(torch.rand(2, 1, 28, 28))
    assert sizes == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]  # stride 2 after the first stage


def test_features_are_the_global_average_of_the_last_stage():
    model = SmallResNet(widths=(4, 6), blocks=(1, 1)).eval()
    seen = {}
    model.stages.register_forward_hook(lambda m, args, out: seen.update(out=out))
    features = model.features(torch.rand(2, 1, 28, 28))
    grid = seen["out"]  # (2, 6, 14, 14)
    manual = grid.sum(dim=(2, 3)) / (grid.shape[2] * grid.shape[3])
    torch.testing.assert_close(features, manual)


def test_bad_stage_lists_raise_clear_errors():
    with pytest.raises(ValueError, match=r"widths \(8, 16\) and blocks \(1,\) must be"):
        SmallResNet(widths=(8, 16), blocks=(1,))
    with pytest.raises(ValueError, match=r"needs a width >= 1 and >= 1 block"):
        SmallResNet(widths=(8,), blocks=(0,))


def test_backprop_lowers_the_loss_on_a_tiny_batch():
    torch.manual_seed(0)
    model = SmallResNet(classes=3, widths=(4, 8), blocks=(1, 1))
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
