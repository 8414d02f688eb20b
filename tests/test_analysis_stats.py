"""edgezo.analysis.stats: intervals against hand computations and printed t tables, the
bootstrap against a plain-loop model of itself, the equivalence decision by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.analysis import stats as S

#: Two-sided 95% quantiles of Student's t, from a printed table (3 decimals).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}


@pytest.mark.parametrize("df, t", sorted(T_TABLE.items()))
def test_t_quantiles_match_the_printed_table(df, t):
    assert S.t_quantile(df) == pytest.approx(t, abs=5e-4)


def test_t_interval_by_hand():
    # mean 0.63; deviations -0.03, -0.01, 0.04: s = sqrt(26e-4 / 2); half = t(2) s / sqrt(3)
    iv = S.t_interval([0.60, 0.62, 0.67])
    half = 4.303 * math.sqrt(26e-4 / 2) / math.sqrt(3)
    assert iv.mean == pytest.approx(0.63)
    assert iv.low == pytest.approx(0.63 - half, abs=1e-5)
    assert iv.high == pytest.approx(0.63 + half, abs=1e-5)
    assert (iv.n, iv.method) == (3, S.T_SEEDS)
    assert iv.text() == f"63.00 [{100 * (0.63 - half):.2f}, {100 * (0.63 + half):.2f}]"


def test_one_value_is_a_point_and_bad_values_are_refused():
    iv = S.t_interval([0.5])
    assert (iv.low, iv.high, iv.method, iv.text()) == (0.5, 0.5, S.POINT, "50.00")
    with pytest.raises(ValueError, match="non-finite"):
        S.t_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        S.t_interval([])


def test_t_intervals_cover_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 4000
    hits = 0
    for _ in range(trials):
        iv = S.t_interval(rng.normal(0.7, 0.01, size=3))
        hits += iv.low <= 0.7 <= iv.high
    # binomial(4000, 0.95): sd 0.0034, so +-0.015 is over 4 sd
    assert abs(hits / trials - 0.95) < 0.015


def loop_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap's statistics written as plain loops, from the same draws."""
    rng = np.random.default_rng(seed)
    seeds, examples = a.shape
    pick_s = rng.integers(0, seeds, size=(resamples, seeds))
    pick_e = rng.integers(0, examples, size=(resamples, examples))
    out = []
    for r in range(resamples):
        total = 0.0
        for s in pick_s[r]:
            total += sum(a[s, e] - b[s, e] for e in pick_e[r]) / examples
        out.append(total / seeds)
    return np.array(out)


def test_bootstrap_equals_its_loop_model():
    rng = np.random.default_rng(1)
    a = rng.random((3, 40)) < 0.7
    b = rng.random((3, 40)) < 0.6
    iv = S.bootstrap_interval(a, b, resamples=200, seed=5)
    stats = loop_bootstrap(a.astype(float), b.astype(float), 200, 5)
    low, high = np.percentile(stats, [2.5, 97.5])
    assert (iv.low, iv.high) == pytest.approx((low, high), abs=1e-12)
    assert iv.mean == pytest.approx(a.mean() - b.mean())
    assert (iv.n, iv.method) == (3, S.BOOTSTRAP)


def test_bootstrap_of_one_seed_matches_the_binomial_normal_interval():
    rng = np.random.default_rng(2)
    correct = rng.random(2000) < 0.8
    iv = S.bootstrap_interval(correct[None, :])
    p = correct.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / 2000)
    assert iv.high - iv.low == pytest.approx(2 * half, rel=0.1)


def test_a_paired_bootstrap_sees_that_two_runs_differ_in_few_examples():
    rng = np.random.default_rng(3)
    b = rng.random((3, 1000)) < 0.6
    a = b.copy()
    a[:, :30] = True  # a gets up to 30 more right in every seed, the rest as b
    iv = S.bootstrap_interval(a, b)
    gain = a.mean() - b.mean()
    assert iv.low > 0 and iv.low <= gain <= iv.high
    assert iv.high - iv.low < 0.02  # an unpaired interval would be ~0.04 wide


def test_a_constant_difference_has_no_width_and_shapes_must_agree():
    a = np.ones((2, 10))
    iv = S.bootstrap_interval(a, np.zeros((2, 10)))
    assert (iv.low, iv.mean, iv.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="same seeds x examples"):
        S.bootstrap_interval(a, np.zeros((3, 10)))


@pytest.mark.parametrize(
    "low, high, verdict",
    [
        (-0.9, 0.5, S.REPRODUCED),  # shortfall at most 0.9 < 1
        (-1.0, 0.5, S.REPRODUCED),  # exactly the margin
        (-1.2, 0.5, S.INCONCLUSIVE),  # straddles -1
        (-3.0, -1.1, S.NOT_REPRODUCED),  # wholly more than 1 below
        (-3.0, -1.0, S.INCONCLUSIVE),  # touches the margin
    ],
)
def test_equivalence_decisions_by_hand(low, high, verdict):
    iv = S.Interval((low + high) / 2, low, high, 3, S.T_SEEDS)
    assert S.decide(iv, 1.0) == verdict


@settings(max_examples=60, deadline=None)
@given(st.floats(-20, 20), st.floats(0, 10), st.floats(0, 10), st.floats(0, 5))
def test_a_wider_margin_never_turns_a_pass_into_a_fail(centre, width, margin, more):
    iv = S.Interval(centre, centre - width, centre + width, 3, S.T_SEEDS)
    order = {S.NOT_REPRODUCED: 0, S.INCONCLUSIVE: 1, S.REPRODUCED: 2}
    assert order[S.decide(iv, margin + more)] >= order[S.decide(iv, margin)]
    point = S.Interval(centre, centre, centre, 1, S.POINT)
    assert S.decide(point, margin) in (S.REPRODUCED, S.NOT_REPRODUCED)
    with pytest.raises(ValueError, match="margin"):
        S.decide(iv, -1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_packed_flags_read_back(flags):
    text = S.pack_correct(flags)
    assert S.unpack_correct(text, len(flags)).tolist() == flags
    with pytest.raises(ValueError, match="not the"):
        S.unpack_correct(text, len(flags) + 8)


def test_direction_is_the_sign_of_an_interval_that_excludes_zero():
    def interval(low: float, high: float, n: int = 3) -> S.Interval:
        return S.Interval((low + high) / 2, low, high, n, S.T_SEEDS)

    assert S.direction(interval(0.1, 2.0)) == 1
    assert S.direction(interval(-2.0, -0.1)) == -1
    assert S.direction(interval(-0.1, 2.0)) == 0 and S.direction(interval(0.0, 1.0)) == 0
    assert S.direction(interval(1.0, 1.0, n=1)) == 0  # one seed: no interval, no direction


def test_a_difference_of_two_rates_by_hand():
    # 0.30 and 0.20 on 1,000 examples each: se = sqrt((0.21 + 0.16) / 1000) = 0.019235
    d = S.proportion_difference(0.30, 0.20, 1000)
    half = 1.959964 * math.sqrt(0.37 / 1000)
    assert (d.mean, d.low, d.high) == pytest.approx((0.1, 0.1 - half, 0.1 + half))
    assert S.direction(d) == 1 and S.direction(S.proportion_difference(0.5, 0.49, 1000)) == 0
    with pytest.raises(ValueError, match="at least 2 examples"):
        S.proportion_difference(0.5, 0.5, 1)


def test_two_rate_intervals_cover_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    n, p_a, p_b, trials = 500, 0.6, 0.45, 2000
    a = rng.binomial(n, p_a, trials) / n
    b = rng.binomial(n, p_b, trials) / n
    covered = []
    for x, y in zip(a, b, strict=True):
        d = S.proportion_difference(x, y, n)
        covered.append(d.low <= p_a - p_b <= d.high)
    assert 0.93 <= np.mean(covered) <= 0.97  # binomial sd of the share: 0.005


def test_an_accuracy_interval_is_the_t_interval_cut_to_0_1():
    values = [0.90, 1.0, 1.0]  # mean 0.9667, s = 0.0577, half = 4.303 * s / sqrt 3 = 0.1434
    whole, cut = S.t_interval(values), S.accuracy_interval(values)
    assert whole.high == pytest.approx(1.1101, abs=1e-4) and cut.high == 1.0
    assert (cut.mean, cut.low, cut.n, cut.method) == (whole.mean, whole.low, 3, S.T_SEEDS)
    low = S.accuracy_interval([0.0, 0.0, 0.1])
    assert low.low == 0.0 and low.high == pytest.approx(S.t_interval([0.0, 0.0, 0.1]).high)
    inside = [0.50, 0.60, 0.55]  # [0.426, 0.674]: kept as it is
    assert S.accuracy_interval(inside) == S.t_interval(inside)
