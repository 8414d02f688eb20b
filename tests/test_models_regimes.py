"""Regimes freeze exactly what they say; gradients (autograd) reach only what trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.models.cnn import SmallCNN
from edgezo.models.prompt import DeepPrompts
from edgezo.models.regimes import REGIMES, FrozenBatchNorm2d, count_trainable, prepare
from edgezo.models.resnet import SmallResNet
from edgezo.models.vit import ViTConfig, ViTTiny

TINY_VIT = ViTConfig(image=28, patch=7, channels=1, width=16, depth=2, heads=2, mlp=32, classes=3)
BACKBONES = ("cnn", "resnet", "vit")


def backbone(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "cnn":
        return SmallCNN(classes=3, width=4, hidden=16)
    if name == "resnet":
        return SmallResNet(classes=3, widths=(4, 8), blocks=(1, 1))
    return ViTTiny(TINY_VIT)


def batch(n: int = 6, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, classes, (n,), generator=g)


def expected_trainable(model: nn.Module, regime: str) -> set[str]:
    """The names each regime should train, from the module tree (not from prepare)."""
    every = {name for name, _ in model.named_parameters()}
    head = {name for name in every if name.startswith(("head.", "vit.head."))}
    return {"ft": every, "lp": head, "lp3": head, "vpt": head | {"prompts"}}[regime]


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(BACKBONES),
    regime=st.sampled_from(REGIMES),
    classes=st.sampled_from([None, 3, 5]),
)
def test_prepare_freezes_exactly_what_the_regime_says(name, regime, classes):
    original = backbone(name)
    snapshot = {k: v.clone() for k, v in original.state_dict().items()}
    if regime == "vpt" and name != "vit":
        with pytest.raises(TypeError, match=r"regime 'vpt' .* needs a ViTTiny backbone"):
            prepare(original, regime, classes=classes)
        return
    model, params = prepare(original, regime, classes=classes, prompt_tokens=2)
    names = [n for n, _ in params]
    assert set(names) == expected_trainable(model, regime)
    assert names == [n for n, p in model.named_parameters() if p.requires_grad]  # optimizer order
    assert count_trainable(model) == sum(p.numel() for _, p in params)
    if regime == "vpt":
        assert isinstance(model, DeepPrompts) and model.prompts.shape == (2, 2, 16)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.head.modules())
    assert n_linear == (3 if regime == "lp3" else 1)

    # autograd: a gradient for every trained parameter, none for the frozen ones
    x, y = batch(classes=classes or 3)
    logits = model(x)
    assert logits.shape == (6, classes or 3)
    F.cross_entropy(logits, y).backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in names), n
    assert all(bool(p.grad.abs().sum() > 0) for _, p in params if p.dim() > 1)  # weights, prompts

    # the pretrained model is untouched: a copy was prepared
    assert all(p.requires_grad and p.grad is None for p in original.parameters())
    assert all(torch.equal(snapshot[k], v) for k, v in original.state_dict().items())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in original.modules())


@pytest.mark.parametrize(
    ("name", "regime"), [(n, r) for n in BACKBONES for r in ("lp", "ft")] + [("vit", "vpt")]
)
def test_matching_classes_keep_the_pretrained_head(name, regime):
    original = backbone(name).eval()
    model, _ = prepare(original, regime, classes=3, prompt_tokens=0)
    model.eval()
    x, _ = batch()
    assert torch.equal(model.head.weight, original.head.weight)
    assert torch.equal(model(x), original(x))  # zero-shot = the pretrained model


def test_new_heads_come_from_the_seed_and_leave_the_global_rng_alone():
    original = backbone("vit")
    state = torch.get_rng_state()
    a, _ = prepare(original, "lp3", seed=1)
    b, _ = prepare(original, "lp3", seed=1)
    c, _ = prepare(original, "lp3", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(
        torch.equal(p, q) for p, q in zip(a.head.parameters(), b.head.parameters(), strict=True)
    )
    assert not torch.equal(a.head[0].weight, c.head[0].weight)
    p1, _ = prepare(original, "vpt", prompt_tokens=3, seed=5)
    p2, _ = prepare(original, "vpt", prompt_tokens=3, seed=5)
    assert torch.equal(p1.prompts, p2.prompts)


def test_frozen_resnet_normalizes_with_running_stats_in_train_mode():
    original = backbone("resnet")
    original.train()
    for _ in range(3):  # give the running statistics non-default values
        original(batch(seed=9)[0] * 3)
    model, _ = prepare(original, "lp")
    model.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x, _ = batch(n=8)
    alone = model.features(x[:2])
    together = model.features(x)[:2]  # other samples in the batch change nothing
    assert torch.allclose(alone, together, atol=1e-6)
    assert torch.allclose(alone, original.eval().features(x[:2]), atol=1e-6)
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())
    assert list(model.state_dict()) == list(original.state_dict())

    tuned, _ = prepare(original, "ft")  # fine-tuning keeps ordinary batch norm
    tuned.train()
    tuned(x)
    assert not torch.equal(tuned.stem[1].running_mean, original.stem[1].running_mean)


def test_vpt_trains_prompts_and_head_only():
    model, params = prepare(backbone("vit"), "vpt", prompt_tokens=4)
    w = TINY_VIT.width
    assert count_trainable(model) == TINY_VIT.depth * 4 * w + w * 3 + 3
    assert [n for n, _ in params] == ["prompts", "vit.head.weight", "vit.head.bias"]


def test_bad_regimes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"unknown regime 'lp2'; choose one of ft, lp, lp3, vpt"):
        prepare(backbone("cnn"), "lp2")
    with pytest.raises(TypeError, match=r"Sequential has no 'features'"):
        prepare(nn.Sequential(nn.Linear(2, 2)), "lp")
    with pytest.raises(ValueError, match=r"classes=0 must be a positive integer"):
        prepare(backbone("cnn"), "lp", classes=0)
    frozen_bn1d = backbone("cnn")
    frozen_bn1d.features.append(nn.BatchNorm1d(16))
    with pytest.raises(TypeError, match=r"cannot freeze BatchNorm1d at 'features.9'"):
        prepare(frozen_bn1d, "lp")


@pytest.mark.parametrize(("name", "regime"), [("vit", "vpt"), ("resnet", "lp")])
def test_prepared_models_quantize_with_the_same_trainable_set(name, regime):
    """16-bit integer weights (QZO-FF): prompts and frozen BatchNorm survive quantize_model."""
    model, params = prepare(backbone(name), regime, prompt_tokens=2)
    model.eval()
    x, _ = batch()
    quantized = quantize_model(model, weight_bits=16, activation_bits=None)
    assert sum(p.numel() for p in trainable_parameters(quantized)) == count_trainable(model)
    quantized.train()
    assert not any(m.training for m in quantized.modules() if isinstance(m, FrozenBatchNorm2d))
    assert torch.allclose(quantized(x), model(x), atol=1e-3)


@pytest.mark.parametrize("regime", ["lp", "lp3", "vpt"])
def test_new_heads_and_prompts_follow_the_models_dtype(regime):
    model, params = prepare(backbone("vit").double(), regime, classes=4, prompt_tokens=2)
    assert {p.dtype for _, p in params} == {torch.float64}
    assert model(batch()[0].double()).dtype == torch.float64
