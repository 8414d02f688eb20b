"""End to end on fixed-point weights: checkpoint resume, the QZO-FF preset, training.

Integer-level references live in ``test_fixedpoint_zo.py`` (perturbation and
update), ``test_fixedpoint_model.py`` (forward) and ``test_fixedpoint_quant.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgezo import ZO
from edgezo.directions import LFSR, Gaussian, Pool
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.presets import qzo_ff

SOURCES = {
    "gaussian": lambda: Gaussian(seed=11),
    "pool": lambda: Pool(size=1009, seed=11),
    "lfsr7": lambda: LFSR(bits=7, seed=11),
}


# ================================================================================================
# the preset and the paper's 8-bit failure
# ================================================================================================
@pytest.mark.parametrize("bits,raises", [(8, True), (16, False)])
def test_paper_configuration_8bit_weights_raise_16bit_train(bits, raises):
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    net = quantize_model(nn.Linear(4, 4), bits, 8, calibration=[x])
    params = trainable_parameters(net)
    if raises:
        with pytest.raises(ValueError, match="cannot train") as err:
            qzo_ff(params, lr=1e-4, eps=1e-3, seed=0)
        assert "8-bit tensor of shape (4, 4)" in str(err.value)
        assert "eps_q = 0" in str(err.value)
        qzo_ff(params, lr=1e-4, eps=1e-3, seed=0, force=True)
    else:
        opt = qzo_ff(params, lr=1e-4, eps=1e-3, seed=0)
        assert opt.queries == 3 and opt.estimator.name == "sign"


# ================================================================================================
# checkpoint resume is bit-exact
# ================================================================================================
class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize(
    "source,estimator,momentum",
    [("gaussian", "sign", 0.0), ("pool", "central", 0.0), ("lfsr7", "sign", 0.9)],
)
def test_checkpoint_resume_is_bit_exact(source, estimator, momentum):
    torch.manual_seed(0)
    x, y = torch.randn(12, 6), torch.randint(0, 3, (12,))
    base = MLP()

    def fresh():
        net = quantize_model(base, 16, 8, calibration=[x])
        opt = ZO(
            trainable_parameters(net),
            lr=2e-2,
            eps=1e-3,
            directions=SOURCES[source](),
            estimator=estimator,
            queries=3,
            momentum=momentum,
        )
        return net, opt

    def run(net, opt, steps):
        return [float(opt.step(lambda: F.cross_entropy(net(x), y))) for _ in range(steps)]

    net, opt = fresh()
    run(net, opt, 6)
    saved = copy.deepcopy((net.state_dict(), opt.state_dict()))
    losses = run(net, opt, 6)
    net2, opt2 = fresh()
    net2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    losses2 = run(net2, opt2, 6)
    assert losses2 == losses
    for p, p2 in zip(trainable_parameters(net), trainable_parameters(net2), strict=True):
        assert torch.equal(p.data, p2.data)
    assert not torch.equal(net.a.weight_q.data, saved[0]["a.weight_q"])  # it trained meanwhile


# ================================================================================================
# 16-bit trains like float; 8-bit (forced) stalls
# ================================================================================================
def regression_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    teacher = (torch.rand(4, 8, generator=g) * 2 - 1) * 0.6  # inside the student's weight range
    y = x @ teacher.T
    student = nn.Linear(8, 4)
    with torch.no_grad():
        student.weight.copy_(torch.rand(4, 8, generator=g) * 2 - 1)
        student.bias.uniform_(-1, 1, generator=g)
    return student, x, y


def train(model: nn.Module, params, x: Tensor, y: Tensor, steps: int, **kw) -> tuple[float, float]:
    opt = qzo_ff(params, lr=2e-2, eps=1e-3, seed=5, **kw)  # sign-m-SPSA, m = 3

    def loss():
        return F.mse_loss(model(x), y)

    with torch.no_grad():
        start = float(loss())
    for _ in range(steps):
        opt.step(loss)
    with torch.no_grad():
        return start, float(loss())


def test_16w8a_trains_like_float_and_8bit_forced_stalls():
    student, x, y = regression_task()
    steps = 100
    f = copy.deepcopy(student)
    f_start, f_end = train(f, list(f.parameters()), x, y, steps)
    q16 = quantize_model(student, 16, 8, calibration=[x])
    scales = [p.fixed.scale.clone() for p in trainable_parameters(q16)]
    q_start, q_end = train(q16, trainable_parameters(q16), x, y, steps)
    for p, s in zip(trainable_parameters(q16), scales, strict=True):
        assert torch.equal(p.fixed.scale, s) and p.dtype == torch.int16  # dw stays fixed
    q8 = quantize_model(student, 8, 8, calibration=[x])
    with pytest.raises(ValueError, match="cannot train"):
        qzo_ff(trainable_parameters(q8), lr=2e-2, eps=1e-3, seed=5)
    e_start, e_end = train(q8, trainable_parameters(q8), x, y, steps, force=True)

    assert f_end < 0.5 * f_start  # the float run trains
    assert q_end < 0.5 * q_start  # so does 16w8a ...
    assert abs(q_end - f_end) <= 0.05 * (f_start - f_end)  # ... and ends near it
    assert e_end >= 0.95 * e_start  # 8-bit: eps_q = 0, every sign is 0, nothing moves
    assert e_end > q_end + 0.5 * (q_start - q_end)
