"""Memory accounting: hand-counted activation sets, weight formats, optimizer state (the
``edgezo memory`` command: tests/cli/test_memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo import ZO
from edgezo.analysis.memory import (
    LiveTensors,
    backprop_forward_peak_bytes,
    forward_peak_activation_bytes,
    measure_peak_rss,
    memory_table,
    optimizer_state_bytes,
    saved_activation_bytes,
    weight_bytes,
    zo_step_scratch_bytes,
)
from edgezo.cli import memory as memory_cli
from edgezo.directions import Gaussian, MomentumGuided, Pool
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats.fixedpoint import integer as fixed_integer
from edgezo.models import SmallCNN, ViTConfig, ViTTiny
from edgezo.presets import qzo_ff

F32 = 4
sizes = st.integers(1, 9)


def mlp(n_in: int, hidden: int, n_out: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), act, nn.Linear(hidden, n_out))


# -- saved activations: what autograd keeps, counted by hand ---------------------------
@settings(max_examples=20, deadline=None)
@given(b=sizes, n_in=sizes, hidden=sizes, n_out=sizes, act=st.sampled_from(["relu", "gelu"]))
def test_saved_bytes_of_a_two_layer_mlp_match_the_hand_count(b, n_in, hidden, n_out, act):
    # Linear1 (addmm) keeps its input x for dW1 (x needs no grad, so W1 is not kept).
    # ReLU keeps its output r; GELU keeps its input h. Linear2 keeps its input a for dW2
    # (for ReLU the very tensor ReLU kept: one storage) and W2 to pass the gradient on
    # (a parameter: weights, not counted).
    net = mlp(n_in, hidden, n_out, nn.ReLU() if act == "relu" else nn.GELU())
    x = torch.randn(b, n_in)
    kept = n_in + hidden if act == "relu" else n_in + 2 * hidden
    assert saved_activation_bytes(net, x) == b * kept * F32
    assert saved_activation_bytes(net, x, width=2) == b * kept * 2
    # linear probing: only Linear2 trains, so only its input is kept
    assert saved_activation_bytes(net, x, list(net[2].parameters())) == b * hidden * F32
    assert all(p.requires_grad for p in net.parameters())  # flags restored
    # live during that forward: x; h and a (ReLU frees h once the next layer runs: its
    # output was kept instead); then the output beside what the graph keeps
    live = n_in + max(2 * hidden, hidden + n_out) if act == "relu" else n_in + 2 * hidden + n_out
    assert backprop_forward_peak_bytes(net, x) == b * live * F32


def test_saved_bytes_reject_tensors_that_are_not_model_parameters():
    net = mlp(3, 4, 2, nn.ReLU())
    with pytest.raises(ValueError, match=r"params must be parameters of the model"):
        saved_activation_bytes(net, torch.randn(2, 3), [torch.zeros(3, requires_grad=True)])


# -- forward peak: the largest live set, counted by hand ---------------------------------
@settings(max_examples=20, deadline=None)
@given(b=sizes, n_in=sizes, hidden=sizes, n_out=sizes, inplace=st.booleans())
def test_forward_peak_of_a_two_layer_mlp_matches_the_hand_count(b, n_in, hidden, n_out, inplace):
    # The input x lives throughout. Out of place: h = Linear1(x) is alive while ReLU
    # makes r, then freed; r is alive while Linear2 makes the output. In place: only h.
    net = mlp(n_in, hidden, n_out, nn.ReLU(inplace=inplace))
    x = torch.randn(b, n_in)
    live = n_in + hidden + n_out if inplace else n_in + max(2 * hidden, hidden + n_out)
    assert forward_peak_activation_bytes(net, x) == b * live * F32
    assert forward_peak_activation_bytes(net, x, width=1) == b * live


def test_live_tensors_keeps_a_storage_while_a_view_of_it_lives():
    x = torch.ones(100)
    with LiveTensors() as live:
        y = (x + 1).view(10, 10)  # the sum's tensor dies, its storage lives on in the view
        z = y * 2
        del y
    assert live.peak() == 2 * 400
    assert live.current == 400  # z
    assert z.shape == (10, 10)


def registry_models():
    return [(name, *memory_cli.build(name, "ft", batch=1)) for name in sorted(memory_cli.MODELS)]


def test_forward_peak_is_below_the_backprop_memory_on_every_registered_model():
    for name, model, x in registry_models():
        forward = forward_peak_activation_bytes(model, x)
        assert forward < backprop_forward_peak_bytes(model, x), name
        assert forward < saved_activation_bytes(model, x), name


# -- a real ZO step: scratch equals the forward's -----------------------------------------
def small_vit() -> nn.Module:
    return ViTTiny(ViTConfig(width=48, depth=2, heads=3, mlp=192))


@pytest.mark.parametrize("estimator,queries", [("central", 1), ("sign", 3)])
@pytest.mark.parametrize("make", [SmallCNN, small_vit])
def test_zo_step_scratch_is_within_5_percent_of_the_forward_peak(make, estimator, queries):
    torch.manual_seed(0)
    model = make()
    side = 28 if isinstance(model, SmallCNN) else 32
    x = torch.randn(2, 1 if side == 28 else 3, side, side)
    y = torch.tensor([0, 1])
    opt = ZO(model.parameters(), lr=1e-4, eps=1e-3, estimator=estimator, queries=queries)
    before = [p.clone() for p in model.parameters()]
    step = zo_step_scratch_bytes(opt, lambda: F.cross_entropy(model(x), y), model, x)
    forward = forward_peak_activation_bytes(model, x)
    assert abs(step - forward) <= 0.05 * forward, (step, forward)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_qzo_ff_step_needs_little_more_than_its_forward(per_channel):
    """The integer step works in chunks: beyond the forward's scratch it holds the perturbed
    integers of one tensor (as the forward holds its float weights) and a chunk's int64/int32
    temporaries, never an int64 copy of a whole tensor (here 4 CHUNKs: unchunked, ~3x)."""
    torch.manual_seed(0)
    net = mlp(256, 256, 10, nn.ReLU())
    x = torch.randn(1, 256)
    q = quantize_model(net, 16, 8, per_channel=per_channel, calibration=[x])
    opt = qzo_ff(list(trainable_parameters(q)), lr=1e-3, eps=1e-3, seed=0, force=True)
    before = q[0].weight_q.data.clone()
    step = zo_step_scratch_bytes(opt, lambda: F.cross_entropy(q(x), torch.tensor([3])), q, x)
    forward = forward_peak_activation_bytes(q, x)
    w = q[0].weight_q
    chunk_temporaries = 4 * fixed_integer.CHUNK * 8  # a few int64-sized arrays of one chunk
    assert step <= forward + w.numel() * w.element_size() + chunk_temporaries, (step, forward)
    assert not torch.equal(before, q[0].weight_q.data)


# -- weights -------------------------------------------------------------------------------
def test_weight_bytes_of_float_formats():
    net = mlp(5, 7, 3, nn.ReLU())
    numel = 5 * 7 + 7 + 7 * 3 + 3
    assert weight_bytes(net) == weight_bytes(net, "fp32") == 4 * numel
    assert weight_bytes(net, "bf16") == 2 * numel
    assert weight_bytes(net, "int8") == numel + 4 * 4  # one float32 scale per tensor
    with pytest.raises(ValueError, match=r"Unknown number format 'fp8'.*choose one of"):
        weight_bytes(net, "fp8")


@settings(max_examples=8, deadline=None)
@given(bits=st.sampled_from([8, 16]), per_channel=st.booleans(), hidden=sizes)
def test_weight_bytes_of_a_quantized_model_are_its_integers_and_scales(bits, per_channel, hidden):
    net = mlp(6, hidden, 3, nn.ReLU())
    q = quantize_model(net, bits, 8, per_channel=per_channel, calibration=[torch.randn(4, 6)])
    expected = 0
    for n_in, n_out in ((6, hidden), (hidden, 3)):
        integers = (n_in * n_out + n_out) * bits // 8
        weight_scales = n_out if per_channel else 1  # a bias (1-D) always has one scale
        expected += integers + 4 * (weight_scales + 1) + 4  # + the layer's input scale
    assert weight_bytes(q) == expected
    with pytest.raises(ValueError, match=r"already quantized.*fmt=None"):
        weight_bytes(q, "int16")


# -- optimizer state -------------------------------------------------------------------------
def one_backprop_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    F.mse_loss(model(torch.randn(3, 4)), torch.zeros(3, 2)).backward()
    opt.step()


def test_backprop_optimizer_state_bytes():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    n, tensors = sum(p.numel() for p in net.parameters()), 4
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    one_backprop_step(net, sgd)
    assert optimizer_state_bytes(sgd) == 0
    heavy = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    one_backprop_step(net, heavy)
    assert optimizer_state_bytes(heavy) == 4 * n
    adam = torch.optim.Adam(net.parameters())
    one_backprop_step(net, adam)
    assert optimizer_state_bytes(adam) == 8 * n + 4 * tensors  # two moments, a step each


def test_zo_state_bytes_say_what_each_source_and_rule_keeps():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    n = sum(p.numel() for p in net.parameters())
    x, y = torch.randn(3, 4), torch.zeros(3, 2)

    def closure():
        return F.mse_loss(net(x), y)

    assert optimizer_state_bytes(ZO(net.parameters(), directions=Gaussian(seed=0))) == 0
    guided = ZO(net.parameters(), directions=MomentumGuided(Gaussian(seed=0), beta=0.5))
    guided.step(closure)
    assert optimizer_state_bytes(guided) == n  # z_t as int8: 1 byte per weight
    pooled = ZO(net.parameters(), directions=Pool(size=101, seed=0))
    pooled.step(closure)
    assert optimizer_state_bytes(pooled) == 404  # the pool alone: no eps-scaled copy on the CPU
    replay = ZO(net.parameters(), momentum=0.9, history=4, queries=2)
    for _ in range(6):
        replay.step(closure)
    assert optimizer_state_bytes(replay) == 3 * (1 + 2) * 8  # 3 past steps: step + 2 coefficients
    masks = [torch.ones_like(p) for p in net.parameters()]
    sparse = ZO([{"params": list(net.parameters()), "masks": masks}])
    # 1 bit per weight, rounded up to whole bytes per tensor
    assert optimizer_state_bytes(sparse) == sum(-(-p.numel() // 8) for p in net.parameters())


# -- the table and the CLI ---------------------------------------------------------------------
def test_memory_table_rows_count_the_measurements_at_their_widths():
    net = mlp(8, 16, 4, nn.ReLU())
    x = torch.randn(5, 8)
    n = sum(p.numel() for p in net.parameters())
    rows = {r.name: r for r in memory_table(net, x, bp_optimizer="adam")}
    saved, peak = (8 + 16) * 5, (8 + 2 * 16) * 5  # elements, from the hand counts above
    bp32, bp16, zo = rows["BP fp32"], rows["BP fp16"], rows["ZO fp32"]
    assert (bp32.weights, bp32.scratch, bp32.gradients, bp32.optimizer_state) == (
        4 * n,
        4 * saved,
        4 * n,
        8 * n,
    )
    assert (bp16.weights, bp16.scratch, bp16.gradients) == (2 * n, 2 * saved, 2 * n)
    assert (zo.weights, zo.scratch, zo.gradients, zo.optimizer_state) == (4 * n, 4 * peak, 0, 0)
    q, sparse = rows["QZO-FF 16w8a"], rows["QZO-FF 16w8a + 90% sparse"]
    assert (q.weights, q.scratch) == (2 * n + 4 * 4, peak)
    assert (sparse.scratch, sparse.optimizer_state) == (peak, (n + 7) // 8)
    with pytest.raises(ValueError, match=r"Unknown memory rows \['bp-int4'\]"):
        memory_table(net, x, rows=["bp-int4"])
    with pytest.raises(ValueError, match=r"Unknown backprop optimizer 'lion'"):
        memory_table(net, x, bp_optimizer="lion")


# -- measured peak resident set ---------------------------------------------------------------
def test_measure_peak_rss_rejects_unknown_modes():
    with pytest.raises(ValueError, match=r"Unknown mode 'train'; choose from"):
        measure_peak_rss(nn.Linear(2, 2), torch.randn(1, 2), "train")


@pytest.mark.slow
def test_backprop_process_peaks_above_inference_by_its_saved_activations():
    # 6 x (1024 -> 1024, ReLU) on 1024 rows: backprop keeps about 29 MB of activations and
    # 25 MB of gradients, inference about 17 MB live at most.
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Sequential(nn.Linear(1024, 1024), nn.ReLU()) for _ in range(6)])
    x = torch.randn(1024, 1024)
    grew = {}
    for mode in ("inference", "bp-fp32"):
        r = measure_peak_rss(net, x, mode, steps=2)
        assert r["peak_rss_source"] == "VmHWM"
        grew[mode] = r["peak_rss_bytes"] - r["rss_after_setup_bytes"]
    assert grew["bp-fp32"] > grew["inference"] + saved_activation_bytes(net, x) // 2


@pytest.mark.slow
def test_memory_benchmark_quick_run_prints_its_json():
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--quick", "--no-rss"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    vit = data["settings"]["vit-tiny-32"]
    assert vit["bp_saved_mb"]["fp32"] > vit["zo_forward_peak_mb"]["fp32"] > 0
    assert abs(data["zo_step"]["float_step_over_forward"] - 1.0) <= 0.05
