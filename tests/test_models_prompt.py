"""Deep visual prompt tuning: data flow per layer (hooks), exactness, init, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo.models.prompt import DeepPrompts
from edgezo.models.resnet import SmallResNet
from edgezo.models.vit import ViTConfig, ViTTiny

TINY = ViTConfig(image=8, patch=4, channels=1, width=16, depth=3, heads=2, mlp=32, classes=3)


def tiny_vit(seed: int = 0, cfg: ViTConfig = TINY) -> ViTTiny:
    torch.manual_seed(seed)
    return ViTTiny(cfg).eval()


@settings(max_examples=8, deadline=None)
@given(depth=st.integers(1, 3), batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_zero_tokens_is_the_base_vit_bit_for_bit(depth, batch, seed):
    vit = tiny_vit(seed, ViTConfig(**{**TINY.__dict__, "depth": depth}))
    x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    prompted = DeepPrompts(vit, tokens=0)
    assert torch.equal(prompted.features(x), vit.features(x))
    assert torch.equal(prompted(x), vit(x))


def test_every_block_sees_class_token_then_its_own_prompts_then_the_patches():
    """VPT-deep, eq. 5: block i gets [x_{i-1}, P_i, E_{i-1}]; block i's prompt outputs are dropped."""
    vit, tokens = tiny_vit(), 2
    prompted = DeepPrompts(vit, tokens=tokens)
    inputs, outputs = [], []

    def record(module, args, out):
        inputs.append(args[0])
        outputs.append(out)

    for block in vit.blocks:
        block.register_forward_hook(record)
    x = torch.rand(4, 1, 8, 8)
    features = prompted.features(x)
    patches = TINY.tokens - 1
    assert [tuple(h.shape) for h in inputs] == [(4, 1 + tokens + patches, TINY.width)] * TINY.depth
    embedded = vit.embed_tokens(x)
    for i, h in enumerate(inputs):
        assert torch.equal(h[:, 1 : 1 + tokens], prompted.prompts[i].expand(4, -1, -1))
        before = embedded if i == 0 else outputs[i - 1]
        skip = 0 if i == 0 else tokens  # the previous block's prompt outputs
        assert torch.equal(h[:, :1], before[:, :1])
        assert torch.equal(h[:, 1 + tokens :], before[:, 1 + skip :])
    assert torch.equal(features, vit.ln(outputs[-1][:, 0]))


def test_prompts_carry_no_position_so_their_order_does_not_matter():
    vit = tiny_vit()
    prompted = DeepPrompts(vit, tokens=4)
    x = torch.rand(3, 1, 8, 8)
    shuffled = DeepPrompts(vit, tokens=4)
    with torch.no_grad():
        shuffled.prompts.copy_(prompted.prompts[:, torch.tensor([2, 0, 3, 1])])
    assert torch.allclose(shuffled(x), prompted(x), atol=1e-5)
    assert not torch.allclose(prompted(x), vit(x), atol=1e-3)  # prompts change the output


def test_gradient_reaches_every_layer_prompts_and_not_the_frozen_vit():
    vit = tiny_vit()
    vit.requires_grad_(False)
    prompted = DeepPrompts(vit, tokens=2)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    loss = F.cross_entropy(prompted(torch.rand(4, 1, 8, 8)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    per_layer = prompted.prompts.grad.abs().sum(dim=(1, 2))
    assert per_layer.shape == (TINY.depth,) and bool((per_layer > 0).all())
    assert all(p.grad is None for p in vit.parameters())
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())


def test_prompts_start_uniform_xavier():
    cfg = ViTConfig.small()
    torch.manual_seed(0)
    prompts = DeepPrompts(ViTTiny(cfg), tokens=8).prompts.detach()
    bound = math.sqrt(6.0 / (cfg.channels * cfg.patch**2 + cfg.width))
    assert prompts.shape == (cfg.depth, 8, cfg.width)
    assert prompts.abs().max() <= bound and prompts.abs().max() > 0.99 * bound
    # U(-b, b): mean 0, standard deviation b / sqrt(3); 4608 samples
    assert abs(prompts.mean().item()) < 0.05 * bound
    assert abs(prompts.std().item() / (bound / math.sqrt(3)) - 1) < 0.05


def test_head_is_the_wrapped_vits_and_assignable():
    vit = tiny_vit()
    prompted = DeepPrompts(vit, tokens=2)
    assert prompted.head is vit.head and prompted.feature_dim == vit.feature_dim
    new = nn.Linear(TINY.width, 7)
    prompted.head = new
    assert vit.head is new and prompted(torch.rand(2, 1, 8, 8)).shape == (2, 7)
    assert [k for k in prompted.state_dict() if "head" in k] == ["vit.head.weight", "vit.head.bias"]


def test_attention_stays_in_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    DeepPrompts(tiny_vit(), tokens=3)(torch.rand(2, 1, 8, 8))
    assert calls == [(2, TINY.heads, TINY.tokens + 3, TINY.width // TINY.heads)] * TINY.depth


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match=r"DeepPrompts wraps a ViTTiny, got SmallResNet"):
        DeepPrompts(SmallResNet(), tokens=2)
    with pytest.raises(ValueError, match=r"tokens=-1 must be >= 0"):
        DeepPrompts(tiny_vit(), tokens=-1)
