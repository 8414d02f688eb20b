"""edgezo.runtime: fixed-point models exported to ONNX and run in plain ONNX Runtime.

Every family is compared with the torch fixed-point forward on seeded random
inputs, at another batch size than the one exported: argmax agreement, the
largest difference in units of the logits' 8-bit step (``max|logits| / 127``)
and the share of rows that are bit-equal (run with ``-s`` to see them).
The training tests run ``qzo_ff`` with the forward in ONNX Runtime and in torch.
"""

from __future__ import annotations

import subprocess
import sys

import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgezo import ZO
from edgezo.data.text import TOPICS, topic_sentences
from edgezo.directions import Gaussian
from edgezo.fixedpoint import FixedPointFormat, quantize_model, trainable_parameters
from edgezo.formats.fixedpoint.qdq import fake_quantize
from edgezo.integrations.hf import load_minilm
from edgezo.models import SmallCNN, ViTConfig, ViTTiny
from edgezo.models.kws import CRNN, DSCNN, AudioClassifier, Featurizer
from edgezo.models.resnet import SmallResNet
from edgezo.presets import qzo_ff
from edgezo.runtime import ExportError, OnnxRuntimeModel, export_onnx

SPECTROGRAM = (1, 20, 16)  # (channel, frames, mels): small keyword-spotting inputs


# -- helpers -------------------------------------------------------------------------------------
def batch(shape: tuple[int, ...], n: int, seed: int) -> Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def head_only(model: nn.Module) -> nn.Module:
    """Freeze all but ``head``: the linear probe that the demo trains."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head"))
    return model.eval()


def agreement(ort: Tensor, ref: Tensor) -> tuple[float, float]:
    """(argmax agreement, max |diff| in units of the logits' 8-bit step ``max|ref| / 127``)."""
    step = float(ref.abs().max()) / 127
    same = float((ort.argmax(-1) == ref.argmax(-1)).float().mean())
    return same, float((ort - ref).abs().max()) / step


#: How far ONNX Runtime's and torch's float kernels may round apart on one output (their sums
#: run in other orders, which differ by CPU): outputs here are below 1, float32's ulp there
#: is 6e-8, and a few ulps of the accumulated products reach it.
FLOAT_ROUNDING = 1e-6


def same_floats(ort: Tensor, ref: Tensor) -> None:
    """The same computation to float rounding (not bit for bit: the kernels differ by CPU)."""
    torch.testing.assert_close(ort, ref, rtol=0, atol=FLOAT_ROUNDING)


def assert_agrees(ort_net: OnnxRuntimeModel, qmodel: nn.Module, *inputs: Tensor) -> None:
    with torch.no_grad():
        ref = qmodel(*inputs)
    ref = getattr(ref, "logits", ref)
    out = ort_net(*inputs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    same, steps = agreement(out, ref)
    exact = float((out == ref).all(-1).float().mean())
    print(f"argmax {same:.2%}, max |diff| {steps:.2e} output steps, rows bit-equal {exact:.1%}")
    assert same >= 0.999
    # float sums in another order (MLAS vs torch's kernels) can move an activation that sits
    # within an ulp of a rounding boundary to the next 8-bit code: a fraction of a logit step
    assert steps <= 1.0


def smallcnn(
    weight_bits: int = 16, activation_bits: int | None = 8, per_channel: bool = False
) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    net = head_only(SmallCNN(classes=10, width=4, hidden=16))
    x = batch((1, 28, 28), 64, seed=1)
    return quantize_model(net, weight_bits, activation_bits, per_channel, calibration=[x]), x


# -- the graph -------------------------------------------------------------------------------------
def test_graph_takes_trainable_integers_as_inputs_and_reads_them_with_dequantize_linear():
    qmodel, x = smallcnn()
    model = export_onnx(qmodel, x[:4])
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 21
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    int16 = onnx.TensorProto.INT16
    assert list(inputs) == ["x", "head.weight_q", "head.bias_q"]
    assert inputs["head.weight_q"].elem_type == int16 and inputs["head.bias_q"].elem_type == int16
    assert inputs["x"].shape.dim[0].dim_param == "batch"  # dynamic batch
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    assert initializers["features.0.weight_q"] == int16  # frozen integers are constants
    assert "head.weight_q" not in initializers
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear") >= 10 and ops.count("QuantizeLinear") == 4
    assert {"Clip", "Conv", "Gemm"} <= set(ops)
    assert {d for n in model.graph.node for d in [n.domain] if d} == set()  # standard ops only


@pytest.mark.parametrize("bits,dtype", [(12, onnx.TensorProto.INT16), (20, None)])
def test_wider_activations_use_int16_or_float_rounding(bits, dtype):
    qmodel, x = smallcnn(activation_bits=bits)
    model = export_onnx(qmodel, x[:4])
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    if dtype is None:
        assert not quantize and "Round" in {n.op_type for n in model.graph.node}
    else:
        assert len(quantize) == 4
    assert_agrees(OnnxRuntimeModel(qmodel, x[:4]), qmodel, batch((1, 28, 28), 50, seed=2))


def test_save_writes_the_graph_and_integer_inputs_are_named_after_parameters(tmp_path):
    qmodel, x = smallcnn()
    ort_net = OnnxRuntimeModel(qmodel, x[:2], threads=1)
    ort_net.save(tmp_path / "net.onnx")
    assert onnx.load(tmp_path / "net.onnx").graph.input[1].name == "head.weight_q"
    assert ort_net.input_names == ["x"]
    assert ort_net.parameter_names == ["head.weight_q", "head.bias_q"]
    assert ort_net.session.get_session_options().intra_op_num_threads == 1
    assert ort_net.eval() is ort_net and ort_net.train() is ort_net


def test_importing_the_runtime_package_needs_neither_onnx_nor_onnxruntime():
    code = (
        "import sys, edgezo.runtime as r; "
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules; "
        "assert r.ExportError.__name__ == 'ExportError'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class FakeQuantizer(nn.Module):
    def __init__(self, bits: int, scale: float) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, x: Tensor) -> Tensor:
        return fake_quantize(x, self.scale, self.bits)


@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's opset-21 and deprecation notes
@pytest.mark.parametrize("bits", [4, 8, 12, 16, 20])
def test_exported_activation_quantizer_equals_torch_bit_for_bit(bits, tmp_path):
    """Ties round half to even and the range stays symmetric, in every spelling of qdq."""
    scale, m = 0.037, 2 ** (bits - 1) - 1
    k = torch.arange(-300, 300, dtype=torch.float32)
    x = torch.cat([k * scale, (k + 0.5) * scale, torch.tensor([m, m + 0.5, m + 3.0]) * scale,
                   -torch.tensor([m, m + 0.5, m + 3.0]) * scale,
                   batch((), 2000, seed=bits) * (m * scale)])  # fmt: skip
    module = FakeQuantizer(bits, scale)
    torch.onnx.export(module, (x,), tmp_path / "q.onnx", dynamo=False, opset_version=21,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    session = onnxruntime.InferenceSession(tmp_path / "q.onnx", providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    assert ("QuantizeLinear" in ops) == (bits <= 16)
    out = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert torch.equal(out, module(x))


# -- agreement with the torch fixed-point forward, per family ----------------------------------------
@pytest.mark.parametrize(
    "weight_bits,activation_bits,per_channel",
    [(16, 8, False), (8, 8, False), (16, 8, True), (8, 8, True), (16, None, False)],
    ids=["16w8a", "8w8a", "16w8a-channel", "8w8a-channel", "16w-float"],
)
def test_smallcnn_matches_torch(weight_bits, activation_bits, per_channel):
    qmodel, x = smallcnn(weight_bits, activation_bits, per_channel)
    ort_net = OnnxRuntimeModel(qmodel, x[:4])
    assert_agrees(ort_net, qmodel, batch((1, 28, 28), 1000, seed=2))  # another batch size


def randomize_norms(model: nn.Module) -> nn.Module:
    """Norm layers start at weight 1, bias 0 and neutral statistics: make them generic."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


class AttentionClassifier(nn.Module):
    """``nn.MultiheadAttention`` self-attention, mean over tokens, a linear head."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.mha(x, x, x, need_weights=False)[0].mean(dim=1))


FAMILIES = {
    "resnet": (lambda: SmallResNet(classes=5, widths=(4, 8), blocks=(1, 1)), (1, 28, 28)),
    "vit": (
        lambda: ViTTiny(
            ViTConfig(image=8, patch=4, channels=3, width=16, depth=2, heads=2, mlp=32, classes=5)
        ),
        (3, 8, 8),
    ),  # fmt: skip
    "crnn": (lambda: CRNN(classes=5, mels=16, channels=(4, 8, 8), hidden=12), SPECTROGRAM),
    "dscnn": (lambda: DSCNN(classes=5, channels=8, blocks=2), SPECTROGRAM),
    "mha": (AttentionClassifier, (6, 8)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
def test_family_matches_torch(family, per_channel):
    make, shape = FAMILIES[family]
    torch.manual_seed(0)
    net = randomize_norms(make()).eval()  # whole model trainable: every integer is an input
    x = batch(shape, 32, seed=1)
    qmodel = quantize_model(net, 16, 8, per_channel, calibration=[x])
    ort_net = OnnxRuntimeModel(qmodel, x[:4])
    assert len(ort_net.parameter_names) == len(trainable_parameters(qmodel))
    assert_agrees(ort_net, qmodel, batch(shape, 200, seed=2))


SEQUENCE = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}


@pytest.fixture(scope="module")
def minilm():
    """MiniLM-L6 with a 4-topic head (the only trainable part), and 64 tokenized sentences."""
    tokenizer, model = load_minilm(num_labels=len(TOPICS), seed=0)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("classifier"))
    sentences, labels = topic_sentences("train", size=64, seed=0)
    encoded = tokenizer(sentences, padding=True, return_tensors="pt")
    return model.eval(), encoded["input_ids"], encoded["attention_mask"], torch.tensor(labels)


def minilm_in_ort(minilm, activation_bits: int | None) -> tuple[nn.Module, OnnxRuntimeModel]:
    """The whole model quantized (16-bit weights), exported with 2 sentences cut to 9 tokens."""
    model, ids, mask, _ = minilm
    qmodel = quantize_model(model, 16, activation_bits, calibration=[ids])
    ort_net = OnnxRuntimeModel(qmodel, (ids[:2, :9], mask[:2, :9]), SEQUENCE)
    assert ort_net.input_names == ["input_ids", "attention_mask"]
    assert ort_net.parameter_names == ["classifier.weight_q", "classifier.bias_q"]
    return qmodel, ort_net


def test_minilm_with_float_activations_matches_torch_at_any_batch_and_length(minilm):
    qmodel, ort_net = minilm_in_ort(minilm, None)
    _, ids, mask, _ = minilm
    assert_agrees(ort_net, qmodel, ids, mask)  # 64 sentences padded to their longest
    by_name = ort_net(attention_mask=mask[:3], input_ids=ids[:3])  # as ort_net(**tokenized)
    assert torch.equal(by_name, ort_net(ids[:3], mask[:3]))
    with pytest.raises(TypeError, match=r"unknown or repeated \['token_type_ids'\]"):
        ort_net(ids, mask, token_type_ids=mask)


def test_minilm_16w8a_differs_only_where_an_8bit_activation_code_flips(minilm):
    """Not bit-equal: ONNX Runtime's LayerNorm, Softmax, GELU and MatMul round differently
    from torch's by float ulps (by how much, and in which rows, depends on the CPU's kernels);
    an activation within an ulp of a rounding boundary of its 8-bit quantizer gets the next
    code, and six layers carry that on (to tens of logit steps, and this untrained head's
    nearly tied logits can swap). The predicted class still agrees on nine rows in ten; with
    float activations everything agrees to float rounding (the test above)."""
    qmodel, ort_net = minilm_in_ort(minilm, 8)
    _, ids, mask, _ = minilm
    with torch.no_grad():
        ref = qmodel(ids, attention_mask=mask).logits
    out = ort_net(ids, mask)
    same, steps = agreement(out, ref)
    exact = float((out == ref).all(-1).float().mean())
    print(f"argmax {same:.2%}, max |diff| {steps:.2e} output steps, rows bit-equal {exact:.1%}")
    assert same >= 0.9


def test_training_minilm_through_onnx_runtime_takes_the_torch_steps(minilm):
    """Bit equality of the step needs equal losses; here it needs only the same sign of
    every query's loss difference (sign-m-SPSA), checked at the very same perturbed points."""
    qmodel, ort_net = minilm_in_ort(minilm, 8)
    _, ids, mask, labels = minilm
    ids, mask, labels = ids[:8], mask[:8], labels[:8]
    losses: list[tuple[float, float]] = []

    def closure() -> Tensor:
        loss = F.cross_entropy(ort_net(ids, mask), labels)
        with torch.no_grad():
            torch_loss = F.cross_entropy(qmodel(ids, attention_mask=mask).logits, labels)
        losses.append((float(loss), float(torch_loss)))
        return loss

    before = qmodel.classifier.weight_q.clone()
    opt = qzo_ff(trainable_parameters(qmodel), lr=1e-2, eps=1e-2, seed=0)
    for _ in range(3):
        opt.step(closure)
    pairs = zip(losses[0::2], losses[1::2], strict=True)  # (plus, minus) per query
    agree = [(p[0] > m[0]) == (p[1] > m[1]) for p, m in pairs]
    print(f"loss-difference signs agree on {sum(agree)} of {len(agree)} queries")
    assert sum(agree) >= len(agree) - 1
    assert qmodel.classifier.weight_q.dtype == torch.int16
    assert not torch.equal(before, qmodel.classifier.weight_q)


# -- the current integers, zero-copy, and ZO through ONNX Runtime --------------------------------------
def test_current_integers_are_read_in_place_without_a_copy():
    qmodel, x = smallcnn()
    ort_net = OnnxRuntimeModel(qmodel, x[:4])
    weight = qmodel.head.weight_q
    binding = ort_net.session.io_binding()
    assert ort_net.bind(binding, "head.weight_q", weight.data).data_ptr() == weight.data_ptr()
    before = ort_net(x)
    weight.data[3].add_(2000)  # in place: the same memory, no new session
    after = ort_net(x)
    with torch.no_grad():
        same_floats(after, qmodel(x))
    assert (after - before).abs().max() > 1e3 * FLOAT_ROUNDING  # the change, not rounding


def test_a_perturbed_read_is_what_onnx_runtime_sees_during_a_step():
    qmodel, x = smallcnn()
    ort_net = OnnxRuntimeModel(qmodel, x[:8])
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    params = trainable_parameters(qmodel)
    opt = ZO(params, lr=1e-3, eps=1e-3, directions=Gaussian(5), estimator="central",
             formats=FixedPointFormat())  # fmt: skip
    with torch.no_grad():
        plain = qmodel(x)
    seen = []

    def closure() -> Tensor:
        assert all(p.fixed.perturbation is not None for p in params)
        out = ort_net(x)
        with torch.no_grad():
            same_floats(out, qmodel(x))  # the same perturbed integers in both
        seen.append(bool((out - plain).abs().max() > 100 * FLOAT_ROUNDING))
        return F.cross_entropy(out, y)

    opt.step(closure)
    assert len(seen) == 2 and all(seen)  # both points of the central difference were perturbed
    assert all(p.fixed.perturbation is None for p in params)


def train(qmodel: nn.Module, forward, x: Tensor, y: Tensor, steps: int = 30) -> list[float]:
    opt = qzo_ff(trainable_parameters(qmodel), lr=1e-2, eps=1e-2, seed=0)
    return [float(opt.step(lambda: F.cross_entropy(forward(x), y))) for _ in range(steps)]


def test_training_through_onnx_runtime_gives_torchs_integers_bit_for_bit():
    """The losses are the same to float rounding (bit for bit on some CPUs: an AMD EPYC with
    AVX2 rounds ORT's kernels an ulp apart from torch's), every sign(L+ - L-) agrees, and so
    the trained integers are the same bit for bit."""
    qmodel, x = smallcnn()
    twin = quantize_model(head_only(SmallCNN(classes=10, width=4, hidden=16)), 16, 8,
                          calibration=[x])  # fmt: skip
    twin.load_state_dict(qmodel.state_dict())
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    ort_losses = train(qmodel, OnnxRuntimeModel(qmodel, x[:4]), x, y)
    torch_losses = train(twin, twin, x, y)
    torch.testing.assert_close(ort_losses, torch_losses, rtol=1e-6, atol=0)  # step after step
    assert ort_losses[-1] < ort_losses[0]
    for (name, p), q in zip(qmodel.named_parameters(), twin.parameters(), strict=True):
        assert p.dtype in (torch.int16, torch.int8) and torch.equal(p, q), name


# -- errors ----------------------------------------------------------------------------------------
class Spectrum(nn.Module):
    """Magnitudes of a real FFT: ``aten::fft_rfft`` has no ONNX export."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.fft.rfft(x).abs()


def test_an_unsupported_module_is_named_with_its_op():
    x = batch((8,), 4, seed=0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU(), Spectrum()), nn.Linear(5, 2))
    qmodel = quantize_model(net, 16, None)
    with pytest.raises(ExportError, match=r"module '1\.1' uses 'fft_rfft' \(aten::fft_rfft\)"):
        export_onnx(qmodel, x)


def test_a_float_model_is_refused_with_the_fix():
    with pytest.raises(ExportError, match="quantize_model"):
        export_onnx(nn.Linear(3, 2), torch.zeros(1, 3))
    qmodel, x = smallcnn()
    with pytest.raises(TypeError, match=r"takes 1 input\(s\) \['x'\], got 2"):
        OnnxRuntimeModel(qmodel, x[:2])(x, x)
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['image'\]; .* are \['x'\]"):
        export_onnx(qmodel, x[:2], dynamic_axes={"image": {2: "height"}})


def test_integers_the_forward_never_reads_are_not_inputs():
    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3), nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.used(x)

    qmodel = quantize_model(Partly(), 16, None)
    ort_net = OnnxRuntimeModel(qmodel, batch((4,), 2, seed=0))
    assert ort_net.parameter_names == ["used.weight_q", "used.bias_q"]
    assert_agrees(ort_net, qmodel, batch((4,), 5, seed=1))


def test_the_audio_front_end_is_named_and_the_classifier_on_features_exports():
    crnn = CRNN(classes=5, mels=16, channels=(4, 8, 8), hidden=12)
    audio = batch((3200,), 2, seed=0)
    qmodel = quantize_model(AudioClassifier(crnn, Featurizer(n_mels=16)).eval(), 16, None)
    with pytest.raises(ExportError, match=r"module 'featurizer' cannot be exported.*STFT"):
        export_onnx(qmodel, audio)
    features = qmodel.featurizer(audio)
    assert_agrees(OnnxRuntimeModel(qmodel.backbone, features), qmodel.backbone, features)
