"""ZO's constructor refuses degenerate settings, or warns with the reason.

Bools are not numbers here (``lr=True`` is a mistake, not 1.0), and an ``eps`` that
rounds away at the weights' dtype is caught before training: a warning names the
tensor and the smallest eps that works, and an eps that vanishes for every weight
(so every estimate would be exactly 0) is an error.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from edgezo import ZO
from edgezo.directions import Gaussian
from edgezo.presets import mezo, pezo, qzo_ff


def linear(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(64, 3).to(dtype)  # 195 weights, |w| <= 1/8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": True},
        {"eps": True},
        {"weight_decay": True},
        {"momentum": True},
        {"queries": True},
        {"momentum": 0.9, "history": True},
    ],
)
def test_bools_are_refused_for_every_number(kwargs):
    with pytest.raises(TypeError, match="bool"):
        ZO(linear().parameters(), directions=Gaussian(0), **kwargs)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"eps": "0.1"}, TypeError),
        ({"lr": "0.1"}, ValueError),
        ({"momentum": 0.9, "history": 2.5}, ValueError),
        ({"queries": 2.5}, ValueError),
        ({"eps": float("nan")}, ValueError),
    ],
)
def test_other_non_numbers_get_a_clear_error(kwargs, error):
    with pytest.raises(error, match="Invalid"):
        ZO(linear().parameters(), directions=Gaussian(0), **kwargs)


def test_a_bool_lr_in_a_group_is_refused():
    model = linear()
    with pytest.raises(TypeError, match="bool"):
        ZO([{"params": list(model.parameters()), "lr": True}], directions=Gaussian(0))


def test_an_eps_below_half_an_ulp_of_many_weights_warns_naming_the_tensor():
    model = linear()
    with pytest.warns(UserWarning) as record:
        ZO(model.parameters(), eps=1e-9, directions=Gaussian(0))
    weight = [w for w in record if "shape (3, 64)" in str(w.message)]
    assert len(weight) == 1, [str(w.message) for w in record]
    message = str(weight[0].message)
    assert "eps=1e-09" in message and "float32" in message and "use eps >= " in message
    assert weight[0].filename == __file__  # points at the user's ZO(...) call


def test_the_suggested_eps_perturbs_every_weight():
    model = linear()
    with pytest.warns(UserWarning) as record:
        ZO(model.parameters(), eps=1e-9, directions=Gaussian(0))
    suggested = float(str(record[0].message).split("use eps >= ")[1].split()[0].rstrip(",;:"))
    for p in model.parameters():
        assert not bool(((p + suggested) == p).any())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ZO(model.parameters(), eps=suggested, directions=Gaussian(0))


def test_an_eps_that_vanishes_for_every_weight_is_an_error():
    with pytest.raises(ValueError, match="eps=1e-30.*every"):
        ZO(linear().parameters(), eps=1e-30, directions=Gaussian(0))


@pytest.mark.parametrize("dtype, eps", [(torch.float32, 1e-3), (torch.float64, 1e-9)])
def test_a_usable_eps_gives_no_warning(dtype, eps):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ZO(linear(dtype).parameters(), eps=eps, directions=Gaussian(0))


def test_bfloat16_weights_near_one_warn_at_the_default_eps():
    """bf16 has 8 bits of mantissa: 1 + 1e-3 rounds to 1 (a LayerNorm's weights)."""
    norm = torch.nn.LayerNorm(16).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="bfloat16"):
        ZO(norm.parameters(), eps=1e-3, directions=Gaussian(0))


def test_masked_out_weights_do_not_count():
    model = linear()
    with torch.no_grad():
        model.weight[0, 0] = 1e4  # eps=1e-3 vanishes at 1e4 in float32 (ulp 1e-3)
    masks = [torch.ones_like(model.weight), None]
    masks[0][0, 0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ZO([{"params": list(model.parameters()), "masks": masks}], eps=1e-3, directions=Gaussian(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: mezo(ps, seed=2**70),
        lambda ps: mezo(ps, seed=-1),
        lambda ps: pezo(ps, seed=2**64, pool_size=1009),
        lambda ps: pezo(ps, reuse="array", seed=-1),
        lambda ps: pezo(ps, reuse="array", rngs=True),
        lambda ps: pezo(ps, pool_size=1009.5),
        lambda ps: qzo_ff(ps, z_bits=8.5),
        lambda ps: qzo_ff(ps, queries=True),
        lambda ps: qzo_ff(ps, force="no"),
    ],
)
def test_presets_pass_bad_settings_on_to_a_clear_error(make):
    with pytest.raises((TypeError, ValueError), match="Invalid"):
        make(linear().parameters())
