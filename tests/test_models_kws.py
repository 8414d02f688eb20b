"""edgezo.models.kws: keyword-spotting backbones, their GRU, and the raw-audio front end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgezo import ZO
from edgezo.data.features import log_mel, mfcc
from edgezo.directions import Rademacher
from edgezo.fixedpoint import quantize_model
from edgezo.models.cnn import count_parameters
from edgezo.models.kws import CRNN, DSCNN, GRU, AudioClassifier, Featurizer

# small inputs keep the tests fast: 24 frames x 16 mel bands, 5 classes
FRAMES, MELS, CLASSES = 24, 16, 5
BUILDERS = {
    "crnn": lambda: CRNN(classes=CLASSES, mels=MELS, channels=(4, 8, 8), hidden=12),
    "dscnn": lambda: DSCNN(classes=CLASSES, channels=8, blocks=2),
}


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, FRAMES, MELS, generator=g), torch.randint(
        0, CLASSES, (n,), generator=g
    )


# -- the GRU ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("inputs", "hidden"), [(3, 5), (20, 8)])
def test_gru_matches_torch_nn_gru(inputs, hidden):
    torch.manual_seed(0)
    ours, ref = GRU(inputs, hidden), nn.GRU(inputs, hidden, batch_first=True)
    with torch.no_grad():
        ours.inputs.weight.copy_(ref.weight_ih_l0)
        ours.inputs.bias.copy_(ref.bias_ih_l0)
        ours.hidden.weight.copy_(ref.weight_hh_l0)
        ours.hidden.bias.copy_(ref.bias_hh_l0)
    x = torch.randn(4, 7, inputs)
    torch.testing.assert_close(ours(x), ref(x)[0], rtol=1e-5, atol=1e-6)


def test_gru_initialization_is_nn_grus_uniform():
    gru = GRU(10, 25)
    for p in gru.parameters():
        p = p.detach()
        assert float(p.abs().max()) <= 1 / 5  # 1 / sqrt(hidden)
        assert float(p.abs().max()) > 0.18  # and spans it (thousands of draws)


# -- the backbones ------------------------------------------------------------------------------
def test_default_crnn_is_the_papers_size_and_its_count_is_the_layout():
    model = CRNN()
    convs = 9 * (1 * 16 + 16 * 32 + 32 * 32)  # 3x3 kernels, no bias
    norms = 2 * (16 + 32 + 32)
    gru = 3 * 64 * (32 * 5 + 64 + 2)  # input 32 channels x 40 / 8 bands, hidden 64, two biases
    head = 64 * 12 + 12
    assert count_parameters(model) == convs + norms + gru + head == 58300
    assert 200_000 < 4 * count_parameters(model) < 260_000  # "250 kB" of fp32 weights
    assert model(torch.zeros(2, 1, 101, 40)).shape == (2, 12)


def test_default_dscnn_count_is_the_layout():
    model = DSCNN()
    stem = 10 * 4 * 64 + 2 * 64
    block = 9 * 64 + 2 * 64 + 64 * 64 + 2 * 64  # depthwise, BN, pointwise, BN
    assert count_parameters(model) == stem + 4 * block + 64 * 12 + 12 == 23180
    assert model(torch.zeros(2, 1, 101, 40)).shape == (2, 12)
    # Hello Edge's own input: 10 MFCCs
    assert model(torch.zeros(2, 1, 101, 10)).shape == (2, 12)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "portable"])
def test_dscnn_runs_channels_last_only_with_onednn_and_both_layouts_agree(onednn):
    """Channels-last is oneDNN's fast layout and torch's own conv's slow one: a portable run
    (oneDNN off) keeps channels-first; the features agree to float rounding either way."""
    model, (x, _) = DSCNN().eval(), batch()
    seen = []
    model.blocks.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    features, other = (features_with_onednn(model, x, on) for on in (onednn, not onednn))
    last = seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert last == onednn
    torch.testing.assert_close(features, other, rtol=1e-5, atol=1e-6)


def features_with_onednn(model: nn.Module, x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``model.features(x)`` with oneDNN on or off (as a portable run sets it), then restored."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        return model.features(x)
    finally:
        torch.backends.mkldnn.enabled = before


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_forward_is_head_of_features(name):
    model = BUILDERS[name]().eval()
    x, _ = batch()
    features = model.features(x)
    assert features.shape == (6, model.feature_dim)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == model.feature_dim
    torch.testing.assert_close(model(x), model.head(features), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_backprop_steps_lower_the_loss(name):
    torch.manual_seed(1)
    model = BUILDERS[name]()
    x, y = batch(n=16, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_in_place_weight_changes_are_what_the_next_forward_reads(name):
    """As ZO perturbs: each tensor changed in place (the GRU's too), the output follows exactly."""
    torch.manual_seed(3)
    model = BUILDERS[name]().eval()
    x, _ = batch()
    before = model(x).detach()
    for pname, p in model.named_parameters():
        saved = p.detach().clone()
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
        perturbed = model(x).detach()
        assert not torch.allclose(perturbed, before, atol=1e-5), pname
        fresh = BUILDERS[name]().eval()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(fresh(x), perturbed, rtol=0, atol=0)
        with torch.no_grad():
            p.copy_(saved)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_forward_gradient_through_the_model_is_autograds(name):
    """ZO's ``jvp`` estimator (forward-mode AD on in-place dual weights) gives grad . z."""
    torch.manual_seed(4)
    model = BUILDERS[name]().eval()
    x, y = batch()

    def closure():
        return F.cross_entropy(model(x), y)

    params = list(model.parameters())
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), params)
    true = torch.cat([g.reshape(-1) for g in grads]).double()
    before = torch.cat([p.detach().reshape(-1) for p in params]).double()
    src = Rademacher(seed=0)
    opt = ZO(params, lr=1.0, estimator="jvp", directions=src)
    opt.step(closure)
    after = torch.cat([p.detach().reshape(-1) for p in params]).double()
    z = src.sample(0, 0, 0, opt.space.dim).double()
    coefficient = float((before - after) @ z / (z @ z))
    assert coefficient == pytest.approx(float(true @ z), rel=1e-3, abs=1e-6)


def test_fixed_point_quantization_reaches_every_crnn_weight_and_the_recurrent_state():
    torch.manual_seed(5)
    model = BUILDERS["crnn"]().eval()
    x, _ = batch()
    reference = model(x).detach()
    quantized = quantize_model(model, weight_bits=16, activation_bits=None)
    floats = [n for n, p in quantized.named_parameters() if p.dtype.is_floating_point]
    assert floats == []  # the GRU's Linear layers included
    torch.testing.assert_close(quantized(x), reference, rtol=0, atol=2e-3)  # 16-bit rounding
    # 16w8a: the recurrent state entering every step's product is an 8-bit multiple of its scale
    w8a8 = quantize_model(model, weight_bits=16, activation_bits=8, calibration=[x])
    seen = []
    w8a8.gru.hidden.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    w8a8(x)
    scale = w8a8.gru.hidden._edgezo_input_scale
    assert len(seen) == FRAMES // 4  # one recurrent product per GRU step
    for h in seen[1:]:  # (h_0 = 0)
        steps = h / scale
        torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)
        assert float(steps.abs().max()) <= 127


# -- raw audio ----------------------------------------------------------------------------------
def test_featurizer_is_log_mel_or_mfcc_with_a_channel():
    audio = torch.randn(3, 16000) * 0.1
    torch.testing.assert_close(Featurizer()(audio), log_mel(audio).unsqueeze(1), rtol=0, atol=0)
    torch.testing.assert_close(
        Featurizer(n_mfcc=10)(audio), mfcc(audio, n_mfcc=10).unsqueeze(1), rtol=0, atol=0
    )
    assert Featurizer(n_mels=32, hop=320)(audio).shape == (3, 1, 51, 32)
    assert list(Featurizer().parameters()) == []
    with pytest.raises(ValueError, match=r"raw audio \(B, T\); got shape \(16000,\)"):
        Featurizer()(audio[0])


def test_audio_classifier_runs_the_backbone_on_features():
    torch.manual_seed(6)
    backbone = CRNN(classes=4, mels=16, channels=(4, 8, 8), hidden=12).eval()
    featurizer = Featurizer(n_mels=16)
    model = AudioClassifier(backbone, featurizer)
    audio = torch.randn(2, 8000) * 0.1
    spectrogram = featurizer(audio)
    torch.testing.assert_close(model(audio), backbone(spectrogram), rtol=0, atol=0)
    torch.testing.assert_close(model.features(audio), backbone.features(spectrogram), rtol=0, atol=0)  # fmt: skip
    assert model.head is backbone.head and model.feature_dim == 12
    assert count_parameters(model) == count_parameters(backbone)
    assert set(model.state_dict()) == {f"backbone.{k}" for k in backbone.state_dict()}


def test_bad_crnn_settings_say_what_to_change():
    with pytest.raises(ValueError, match="pools frequency by 8, give >= 8"):
        CRNN(mels=4)
    with pytest.raises(ValueError, match="3 conv blocks; got channels=\\(8, 8\\)"):
        CRNN(channels=(8, 8))
