"""ViTTiny: the old forward is kept, features are the normed class token, small preset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.models.vit import ViTConfig, ViTTiny

TINY = ViTConfig(image=8, patch=4, channels=1, width=16, depth=2, heads=2, mlp=32, classes=3)


def reference_parameter_count(cfg: ViTConfig) -> int:
    """Count by hand: patch conv, class token, positions, blocks, final norm, head."""
    w, tokens = cfg.width, (cfg.image // cfg.patch) ** 2 + 1
    embed = cfg.channels * cfg.patch**2 * w + w
    block = (
        2 * 2 * w + (w * 3 * w + 3 * w) + (w * w + w) + (w * cfg.mlp + cfg.mlp) + (cfg.mlp * w + w)
    )
    return embed + w + tokens * w + cfg.depth * block + 2 * w + w * cfg.classes + cfg.classes


def old_forward(model: ViTTiny, x: torch.Tensor) -> torch.Tensor:
    """ViTTiny.forward before features() existed (the benchmarks' model), verbatim."""
    x = model.embed(x).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls.expand(x.shape[0], -1, -1), x], dim=1) + model.pos
    for block in model.blocks:
        x = block(x)
    return model.head(model.ln(x[:, 0]))


def test_default_config_is_unchanged_vit_tiny():
    cfg = ViTConfig()
    assert (cfg.image, cfg.patch, cfg.channels, cfg.width, cfg.depth, cfg.heads, cfg.mlp) == (
        32, 4, 3, 192, 12, 3, 768,
    )  # fmt: skip
    model = ViTTiny()
    assert sum(p.numel() for p in model.parameters()) == reference_parameter_count(cfg)
    block_keys = [
        "ln1.weight", "ln1.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
        "ln2.weight", "ln2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
    ]  # fmt: skip
    expected = ["cls", "pos", "embed.weight", "embed.bias"]
    expected += [f"blocks.{i}.{k}" for i in range(12) for k in block_keys]
    expected += ["ln.weight", "ln.bias", "head.weight", "head.bias"]
    assert list(model.state_dict()) == expected


@settings(max_examples=10, deadline=None)
@given(
    patch=st.sampled_from([2, 4, 7]),
    width_per_head=st.integers(1, 8),
    heads=st.integers(1, 3),
    depth=st.integers(1, 3),
    batch=st.integers(1, 4),
)
def test_forward_is_head_of_features_and_matches_old_forward(
    patch, width_per_head, heads, depth, batch
):
    image = 4 * patch if patch != 7 else 28
    cfg = ViTConfig(image=image, patch=patch, channels=1, width=width_per_head * heads, depth=depth,
                    heads=heads, mlp=8, classes=5)  # fmt: skip
    torch.manual_seed(0)
    model = ViTTiny(cfg)
    x = torch.rand(batch, 1, image, image)
    features = model.features(x)
    assert features.shape == (batch, cfg.width) and model.feature_dim == cfg.width
    assert torch.equal(model(x), model.head(features))
    assert torch.equal(model(x), old_forward(model, x))
    assert sum(p.numel() for p in model.parameters()) == reference_parameter_count(cfg)


def test_features_are_the_normed_class_token():
    torch.manual_seed(0)
    model = ViTTiny(TINY)
    seen = {}
    model.ln.register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    x = torch.rand(3, 1, 8, 8)
    features = model.features(x)
    last = model.blocks[-1](model.blocks[0](model.embed_tokens(x)))
    assert torch.equal(seen["inp"], last[:, 0])
    # LayerNorm by hand: zero mean, unit variance, then the affine map
    mean, var = last[:, 0].mean(-1, keepdim=True), last[:, 0].var(-1, unbiased=False, keepdim=True)
    manual = (last[:, 0] - mean) / torch.sqrt(var + model.ln.eps) * model.ln.weight + model.ln.bias
    torch.testing.assert_close(features, manual)


def test_small_preset_is_a_28x28_grayscale_model():
    cfg = ViTConfig.small()
    assert (cfg.image, cfg.channels) == (28, 1) and 96 <= cfg.width <= 128 and 4 <= cfg.depth <= 6
    assert cfg.tokens == (28 // cfg.patch) ** 2 + 1
    assert ViTConfig.small(classes=7).classes == 7
    model = ViTTiny(cfg)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_attention_runs_through_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    ViTTiny(TINY)(torch.rand(2, 1, 8, 8))
    assert calls == [(2, TINY.heads, TINY.tokens, TINY.width // TINY.heads)] * TINY.depth


def test_bad_config_and_input_raise_clear_errors():
    with pytest.raises(ValueError, match=r"image=28 is not a multiple of patch=5"):
        ViTConfig(image=28, patch=5)
    with pytest.raises(ValueError, match=r"width=100 is not a multiple of heads=3"):
        ViTConfig(width=100, heads=3)
    with pytest.raises(
        ValueError, match=r"expects images of shape \(B, 1, 8, 8\), got \(2, 1, 28, 28\)"
    ):
        ViTTiny(TINY)(torch.rand(2, 1, 28, 28))


def test_backprop_lowers_the_loss_on_a_tiny_batch():
    torch.manual_seed(0)
    model = ViTTiny(TINY)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
