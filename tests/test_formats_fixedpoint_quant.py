"""Integer arithmetic of the fixed-point path (PAPERS.md B) against plain-Python references.

Every expected value here is computed from the paper's formulas with Python
integers, ``fractions.Fraction`` or NumPy, never by calling the code under test:
``dw = w_max / (2**(b-1) - 1)``, ``w_q = sat(round(w / dw))`` and the
multiply-and-shift ``round_half_up(acc * m / 2**k)`` with ``m / 2**k ~ factor``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgezo.fixedpoint import Requant, qmax, quantize, saturate, symmetric_scale
from edgezo.formats.fixedpoint.quant import storage_dtype

M_BITS = 15  # the multiplier of the requantization: 15 bits plus sign


# -- references ---------------------------------------------------------------------------
def ref_qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def ref_scale(w: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    """``dw = max|w| / qmax`` per tensor or per row (dim 0), float32; a zero row gets 1 / qmax."""
    w32 = w.astype(np.float32)
    rows = w32.reshape(w32.shape[0], -1) if per_channel and w32.ndim >= 2 else w32.reshape(1, -1)
    wmax = np.abs(rows).max(axis=1)
    scale = wmax / np.float32(ref_qmax(bits))
    tiny = np.finfo(np.float32).tiny
    scale = np.where(scale >= tiny, scale, np.float32(1.0) / np.float32(ref_qmax(bits)))
    return scale.astype(np.float32)


def ref_quantize(w: np.ndarray, scale_rows: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    """``sat(round_half_even(w / dw))`` as int64."""
    w32 = w.astype(np.float32)
    rows = w32.reshape(w32.shape[0], -1) if per_channel and w32.ndim >= 2 else w32.reshape(1, -1)
    q = np.rint(rows / scale_rows[:, None])  # np.rint: round half to even
    m = ref_qmax(bits)
    return np.clip(q, -m, m).astype(np.int64).reshape(w.shape)


def ref_multiplier(factor: float, m_bits: int = M_BITS) -> tuple[int, int]:
    """``(m, k)``: the largest ``k <= 62`` with ``|factor| * 2**k <= 2**m_bits - 1``, ``m = round(factor * 2**k)``."""
    f = Fraction(factor)
    if f == 0:
        return 0, 0
    k = 0
    while k < 62 and abs(f) * 2 ** (k + 1) <= 2**m_bits - 1:
        k += 1
    return round(f * 2**k), k


def ref_round_half_up(x: int, m: int, k: int) -> int:
    """``floor(x * m / 2**k + 1/2)`` exactly."""
    return math.floor(Fraction(x * m, 2**k) + Fraction(1, 2))


# -- qmax, storage, saturation --------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 4, 7, 8, 12, 16, 24, 32])
def test_qmax_and_storage_dtype(bits):
    assert qmax(bits) == ref_qmax(bits)
    dtype = storage_dtype(bits)
    assert torch.iinfo(dtype).bits >= bits
    smaller = {torch.int8: None, torch.int16: 8, torch.int32: 16}[dtype]
    assert smaller is None or bits > smaller  # the smallest that holds it


@pytest.mark.parametrize("bits", [0, 1, 33])
def test_invalid_bit_widths_raise(bits):
    with pytest.raises(ValueError, match="bit width"):
        qmax(bits)


@given(
    values=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=20),
    bits=st.integers(2, 32),
)
def test_saturate_is_symmetric_clamp(values, bits):
    m = ref_qmax(bits)
    out = saturate(torch.tensor(values, dtype=torch.int64), bits)
    assert out.tolist() == [max(-m, min(m, v)) for v in values]


# -- scales and quantization ------------------------------------------------------------------
weights = st.integers(1, 4).flatmap(
    lambda rows: st.integers(1, 6).flatmap(
        lambda cols: st.lists(
            # tiny values are flushed to 0: subnormal scales are tested on their own below
            st.floats(-100, 100, allow_nan=False, width=32).map(
                lambda v: 0.0 if abs(v) < 1e-20 else v
            ),
            min_size=rows * cols,
            max_size=rows * cols,
        ).map(lambda v: np.array(v, dtype=np.float32).reshape(rows, cols))
    )
)


@settings(max_examples=80, deadline=None)
@given(
    w=weights,
    bits=st.integers(2, 16),
    per_channel=st.booleans(),
    magnitude=st.sampled_from([1e-4, 1e-2, 1.0, 1e3]),
)
def test_max_scale_and_quantize_match_the_paper(w, bits, per_channel, magnitude):
    w = (w * np.float32(magnitude)).astype(np.float32)
    t = torch.from_numpy(w)
    scale = symmetric_scale(t, bits, per_channel, "max")
    expect = ref_scale(w, bits, per_channel)
    if per_channel:
        assert tuple(scale.shape) == (w.shape[0], 1)
    else:
        assert scale.shape == ()
    assert scale.dtype == torch.float32
    np.testing.assert_array_equal(scale.reshape(-1).numpy(), expect)
    q = quantize(t, scale, bits)
    assert q.dtype == storage_dtype(bits)
    np.testing.assert_array_equal(
        q.numpy().astype(np.int64), ref_quantize(w, expect, bits, per_channel)
    )
    # max scale never clips: |w - dw * w_q| <= dw / 2, up to the float32 rounding of w / dw
    # (relative 2**-24 of at most qmax)
    err = np.abs(w.astype(np.float64) - q.numpy() * scale.numpy().astype(np.float64))
    bound = scale.numpy().astype(np.float64) * (0.5 + ref_qmax(bits) * 2.0**-23)
    assert np.all(err <= bound)
    # the extreme value maps to +/- qmax exactly (the scale uses the whole range)
    rows = q.numpy().reshape(w.shape[0], -1) if per_channel else q.numpy().reshape(1, -1)
    wrows = w.reshape(rows.shape)
    for r, wr in zip(rows, wrows, strict=True):
        if np.abs(wr).max() > 0:
            assert np.abs(r).max() == ref_qmax(bits)


def test_zero_tensor_gets_a_unit_range_and_zero_ints():
    """A fresh zero bias must stay trainable: w_max = 1, so dw = 1 / qmax (not 1)."""
    w = torch.zeros(3, 4)
    assert float(symmetric_scale(w, 8)) == pytest.approx(1 / 127)
    s = symmetric_scale(w, 16, per_channel=True)
    assert s.reshape(-1).tolist() == pytest.approx([1 / 32767] * 3)
    assert quantize(w, s, 16).abs().sum() == 0


def test_headroom_widens_the_range():
    w = torch.tensor([0.5, -1.0, 0.25])
    assert float(symmetric_scale(w, 16, headroom=2.0)) == pytest.approx(2.0 / 32767)
    with pytest.raises(ValueError, match="headroom"):
        symmetric_scale(w, 16, headroom=0.5)


@pytest.mark.parametrize("bits", [8, 16])
def test_subnormal_tensor_gets_a_positive_scale(bits):
    """A tensor with ``0 < max|w| < qmax * 2**-149`` must not get ``dw = 0`` (w / dw = inf)."""
    w = torch.tensor([7e-45, -3e-45, 0.0])
    scale = symmetric_scale(w, bits)
    assert float(scale) > 0
    q = quantize(w, scale, bits)
    assert torch.isfinite(q.float() * scale).all()


def test_quantize_rounds_half_to_even_and_saturates():
    scale = torch.tensor(0.5)
    w = torch.tensor([0.25, 0.75, -0.25, -0.75, 1.25, 100.0, -100.0])
    # w / dw = 0.5, 1.5, -0.5, -1.5, 2.5 -> 0, 2, 0, -2, 2 (half to even); 200 -> 127
    assert quantize(w, scale, 8).tolist() == [0, 2, 0, -2, 2, 127, -127]


@settings(max_examples=60, deadline=None)
@given(
    w=weights,
    bits=st.integers(8, 16),
    per_channel=st.booleans(),
    method=st.sampled_from(["max", "mse"]),
)
def test_dequantize_then_quantize_round_trips(w, bits, per_channel, method):
    t = torch.from_numpy(w)
    scale = symmetric_scale(t, bits, per_channel, method)
    q = quantize(t, scale, bits)
    deq = q.float() * scale  # what a layer reads
    # own reference: round(deq / dw) recovers the integers
    back = np.rint(deq.numpy() / scale.numpy()).astype(np.int64)
    np.testing.assert_array_equal(back, q.numpy().astype(np.int64))
    assert torch.equal(quantize(deq, scale, bits), q)


@settings(max_examples=60, deadline=None)
@given(w=weights, bits=st.integers(2, 16), per_channel=st.booleans())
def test_mse_scale_error_is_at_most_the_max_scale_error(w, bits, per_channel):
    t = torch.from_numpy(w)

    def sq_err(method):
        s = symmetric_scale(t, bits, per_channel, method)
        q = quantize(t, s, bits)
        e = (q.double() * s.double() - t.double()).square()
        return e.reshape(e.shape[0], -1).sum(1) if per_channel else e.sum().reshape(1)

    e_max, e_mse = sq_err("max"), sq_err("mse")
    assert torch.all(e_mse <= e_max * (1 + 1e-5) + 1e-30)
    # and the mse clip lies in [0.5, 1] x max|w| (the documented search range)
    s_max = symmetric_scale(t, bits, per_channel, "max").reshape(-1)
    s_mse = symmetric_scale(t, bits, per_channel, "mse").reshape(-1)
    ratio = s_mse / s_max
    assert torch.all((ratio >= 0.5 - 1e-6) & (ratio <= 1 + 1e-6))


def test_mse_scale_beats_max_on_an_outlier():
    # one outlier: clipping it shrinks dw and lowers the total squared error at 4 bits
    w = torch.cat([torch.linspace(-1, 1, 200), torch.tensor([2.2])])
    s_max, s_mse = symmetric_scale(w, 4, method="max"), symmetric_scale(w, 4, method="mse")
    assert float(s_mse) < float(s_max)

    def err(s):
        return float((quantize(w, s, 4).double() * s.double() - w.double()).square().sum())

    assert err(s_mse) < err(s_max)


def test_invalid_scale_method_raises():
    with pytest.raises(ValueError, match="scale method"):
        symmetric_scale(torch.ones(3), 8, method="median")


# -- multiply-and-shift -------------------------------------------------------------------------
factors = st.floats(1e-7, 1e5, allow_nan=False).flatmap(lambda f: st.sampled_from([f, -f]))


@settings(max_examples=150, deadline=None)
@given(factor=factors, acc=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=8))
def test_requant_matches_multiply_and_shift_reference(factor, acc):
    m_ref, k_ref = ref_multiplier(factor)
    # log2 in the implementation may land on the other side of the 15-bit boundary only
    # when factor * 2**k is within float rounding of 2**15 - 1: skip those
    assume(abs(abs(factor) * 2.0 ** (k_ref + 1) - (2**M_BITS - 1)) > 1e-6 * 2**M_BITS)
    r = Requant.of(factor)
    assert (int(r.m), int(r.k)) == (m_ref, k_ref)
    if abs(factor) <= 2**M_BITS - 1:
        assert abs(int(r.m)) <= 2**M_BITS - 1
    if k_ref < 62 and abs(factor) < 2**M_BITS - 1:
        assert abs(int(r.m)) >= 2 ** (M_BITS - 1)  # as exact as 15 bits allow
        assert abs(float(r.value) - factor) <= abs(factor) * 2.0**-M_BITS
    out = r.apply(torch.tensor(acc, dtype=torch.int64))
    assert out.dtype == torch.int64
    assert out.tolist() == [ref_round_half_up(a, m_ref, k_ref) for a in acc]


def test_requant_rounds_half_up():
    r = Requant.of(0.5)  # exact: m / 2**k == 1/2
    assert float(r.value) == 0.5
    assert r.apply(torch.tensor([1, 3, -1, -3, 2, -2])).tolist() == [1, 2, 0, -1, 1, -1]


def test_requant_per_channel_factors_broadcast():
    f = torch.tensor([[0.25], [3.0], [-1e-3]], dtype=torch.float64)
    acc = torch.tensor([[5, -7], [5, -7], [1000, -1000]])
    out = Requant.of(f).apply(acc)
    expect = []
    for row, fac in zip(acc.tolist(), f.reshape(-1).tolist(), strict=True):
        m, k = ref_multiplier(fac)
        expect.append([ref_round_half_up(a, m, k) for a in row])
    assert out.tolist() == expect


def test_requant_of_dz_gives_the_papers_constants():
    dz = 3.5 / 127
    assert dz == pytest.approx(0.0276, abs=1e-4)  # PAPERS.md B
    assert round(1 / dz) == 36  # 1_q
    r = Requant.of(dz)
    assert (int(r.m), int(r.k)) == ref_multiplier(dz) == (28898, 20)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_requant_rejects_non_finite_factors(bad):
    with pytest.raises(ValueError, match="non-finite"):
        Requant.of(bad)
