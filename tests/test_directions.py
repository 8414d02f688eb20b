"""Direction sources: each source's own rules and statistics (the shared contract, over every
source: tests/test_directions_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import passes
from edgezo.directions import Gaussian, Pool, Rademacher, Uniform
from edgezo.directions.counter import hash_words, keys
from edgezo.params import Segment

DIM = 10_007  # parameter count the stream sources are bound to


# -- statistics (the structural contract: tests/test_directions_contract.py) ------
def test_perturbations_differ_between_steps_and_queries(make_source, unit_source_name):
    src = make_source(unit_source_name).bind(DIM, 2)
    z = {k: src.sample(*k, 0, DIM).double() for k in [(0, 0), (0, 1), (1, 0), (997, 1)]}
    keys_ = list(z)
    for i, a in enumerate(keys_):
        for b in keys_[i + 1 :]:
            corr = float((z[a] * z[b]).mean())
            # independent unit-variance vectors: correlation ~ N(0, 1/d); 6 sigma
            assert abs(corr) < 6 / math.sqrt(DIM), (a, b, corr)


def test_values_have_zero_mean_and_unit_second_moment(make_source, unit_source_name):
    src = make_source(unit_source_name).bind(1 << 18)
    z = src.sample(1, 0, 0, 1 << 18).double()
    n = z.numel()
    # CLT: mean ~ N(0, 1/n); second moment ~ N(1, Var(z^2)/n) with Var(z^2) <= 2
    # (Gaussian 2, uniform 0.8, Rademacher 0). Pools repeat values, so use the
    # number of distinct values for their bound.
    distinct = min(n, getattr(src, "size", n))
    assert abs(float(z.mean())) < 6 / math.sqrt(distinct)
    assert abs(float(z.square().mean()) - 1) < 6 * math.sqrt(2 / distinct)


def test_stream_sources_need_binding():
    with pytest.raises(RuntimeError, match="bind"):
        Pool(size=100, seed=0).sample(0, 0, 0, 10)


@pytest.mark.parametrize("bad", [0, -5])
def test_bind_rejects_bad_dimensions(bad):
    with pytest.raises(ValueError, match="at least one trainable"):
        Gaussian(0).bind(bad)
    with pytest.raises(ValueError, match="queries"):
        Gaussian(0).bind(10, queries=bad)


# -- the counter hash, against a scalar reference -----------------------------
def _lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _reference_word(seed, step, query, i):
    k1, k2 = keys(seed, step, query, i >> 32)
    return _lowbias32(_lowbias32((i & 0xFFFFFFFF) ^ k1) ^ k2)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    step=st.integers(0, 2**40),
    offset=st.integers(0, 2**40),
)
def test_hash_words_match_scalar_reference(seed, step, offset):
    # 40-bit offsets also exercise pieces that cross a 2**32 block boundary
    offset = max(0, offset - 3) if offset % 7 else (offset | 0xFFFFFFFF) - 2
    got = hash_words(seed, step, 1, offset, 6)
    want = [_reference_word(seed, step, 1, offset + j) for j in range(6)]
    assert got.tolist() == want


def _ks_statistic(sample: torch.Tensor, cdf) -> float:
    x, _ = torch.sort(sample.double())
    n = x.numel()
    f = cdf(x)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n - f
    lower = f - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(upper, lower).max())


def test_gaussian_passes_kolmogorov_smirnov():
    z = Gaussian(seed=11).sample(2, 0, 0, 200_000)
    d = _ks_statistic(z, lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))))
    assert d < 1.95 / math.sqrt(z.numel())  # critical value at alpha = 0.001


def test_uniform_passes_kolmogorov_smirnov_and_is_bounded():
    z = Uniform(seed=11).sample(2, 0, 0, 200_000)
    a = math.sqrt(3)
    assert float(z.abs().max()) <= a
    d = _ks_statistic(z, lambda x: (x + a) / (2 * a))
    assert d < 1.95 / math.sqrt(z.numel())


def test_rademacher_is_plus_minus_one():
    z = Rademacher(seed=1).sample(0, 0, 0, 100_000)
    assert set(z.unique().tolist()) == {-1.0, 1.0}


def test_uniform_perturbation_scale_gives_exact_norm():
    src = Uniform(seed=2, scale="perturbation").bind(5000)
    for step in range(3):
        z = src.sample(step, 0, 0, 5000).double()
        assert float(z.square().sum()) == pytest.approx(5000, rel=1e-6)


def test_dtype_and_device_are_respected():
    z = Gaussian(0).sample(0, 0, 0, 10, dtype=torch.float16)
    assert z.dtype == torch.float16
    assert torch.equal(z, Gaussian(0).sample(0, 0, 0, 10).half())


# -- the pool: PeZO's pre-generation rules ------------------------------------
def test_pool_offsets_follow_pezo_rule():
    d, p, q = 2501, 1000, 3
    pool = Pool(size=p, seed=0).bind(d, q)
    o = 0
    for t in range(20):  # o_{t+1} = (o_t + d) mod P, t = step * q + query
        step, query = divmod(t, q)
        assert pool.offset(step, query) == o
        expected = torch.stack([pool.pool[(o + j) % p] for j in range(0, d, 97)])
        assert torch.equal(pool.sample(step, query, 0, d)[::97], expected)
        o = (o + d) % p


def test_pool_repeats_after_its_distinct_perturbations():
    pool = Pool(size=1000, seed=0).bind(10_007)  # offsets cycle through 1000 / gcd(10007, 1000)
    period = pool.distinct_perturbations
    assert period == 1000
    assert torch.equal(pool.sample(3, 0, 0, 500), pool.sample(3 + period, 0, 0, 500))
    assert not torch.equal(pool.sample(3, 0, 0, 500), pool.sample(4, 0, 0, 500))


def test_pool_scale_rules():
    raw = Uniform(seed=5).sample(0, 0, 0, 777)
    unit = Pool(size=777, seed=5, scale="unit")
    assert torch.equal(unit.pool, raw)  # the pool is the uniform stream of its seed
    normalised = Pool(size=777, seed=5, scale="pool")
    assert float(normalised.pool.double().square().mean()) == pytest.approx(1, abs=1e-6)
    per = Pool(size=777, seed=5, scale="perturbation").bind(2000)
    for step in range(4):
        z = per.sample(step, 0, 0, 2000).double()
        assert float(z.square().sum()) == pytest.approx(2000, rel=1e-6)


def test_pool_rejects_identical_perturbations():
    with pytest.raises(ValueError, match="every perturbation would read the same numbers"):
        Pool(size=100, seed=0).bind(dim=5000)
    assert Pool(size=101, seed=0).bind(dim=5000).distinct_perturbations == 101


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 1}, "at least 2"),
        ({"distribution": "cauchy"}, "distribution"),
        ({"scale": "magic"}, "scale rule"),
    ],
)
def test_pool_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Pool(**{"size": 64, "seed": 0, **kwargs})


def test_pool_pass_reads_views_without_copying_the_pool():
    pool = Pool(size=4096, seed=1).bind(10_001)
    target = [Segment(torch.zeros(3000), 0, 0)]
    passes.apply_(pool, target, 1.0, [(0, 0, [1.0])])
    assert torch.equal(target[0].param, pool.pool[:3000])
    # a window that wraps around the end of the pool: two slices
    target = [Segment(torch.zeros(3000), 0, 0)]
    passes.apply_(pool, target, 1.0, [(1, 0, [1.0])])  # o_1 = 10001 mod 4096 = 1809
    assert torch.equal(
        target[0].param, torch.cat([pool.pool[1809:], pool.pool[: 3000 - (4096 - 1809)]])
    )


def test_checkpoint_config_is_checked():
    a, b = Pool(size=100, seed=1), Pool(size=100, seed=2)
    with pytest.raises(ValueError, match="same direction source"):
        b.load_state_dict(a.state_dict())
    Pool(size=100, seed=1).load_state_dict(a.state_dict())


# -- the pool never collapses to a handful of perturbations (issue 13, defect 1) -------
#: Parameter counts of real layers: 768 x 768 (16 windows of a 2**20 pool), 2**18 (4), ...
COLLAPSING_DIMS = [589_824, 262_144, 768 * 3072, 3 * 2**19]


@pytest.fixture(scope="module")
def default_pool():
    return Pool(seed=0)


def test_the_default_pool_size_is_a_prime_near_two_to_the_twenty(default_pool):
    size = default_pool.size
    assert abs(size - 2**20) < 64
    assert all(size % f for f in range(2, math.isqrt(size) + 1))


@pytest.mark.parametrize("dim", COLLAPSING_DIMS)
def test_the_default_pool_uses_every_window(default_pool, dim):
    assert default_pool.bind(dim).distinct_perturbations == default_pool.size


@pytest.mark.parametrize("dim", COLLAPSING_DIMS)
def test_the_pezo_preset_default_uses_every_window(dim):
    from edgezo import presets

    opt = presets.pezo([torch.nn.Parameter(torch.zeros(dim))], seed=0)
    assert opt.directions.distinct_perturbations == opt.directions.size


@pytest.mark.parametrize(("size", "dim", "windows"), [(2**20, 589_824, 16), (2**20, 262_144, 4)])
def test_a_pool_with_few_windows_is_refused(size, dim, windows):
    with pytest.raises(ValueError, match=rf"only {windows} distinct perturbations.*coprime"):
        Pool(size=size, seed=0).bind(dim)


def test_a_tiny_pool_is_refused_unless_the_model_is_tinier():
    with pytest.raises(ValueError, match="only 2 distinct perturbations"):
        Pool(size=2, seed=0).bind(195)
    assert Pool(size=8, seed=0).bind(5).distinct_perturbations == 8  # 8 windows >= d = 5


def test_a_pool_sharing_a_factor_with_d_warns_and_says_what_to_use():
    with pytest.warns(UserWarning, match=r"shares the factor 2 .* 512 of its 1024 windows.*size="):
        Pool(size=1024, seed=0).bind(2410)


@pytest.mark.parametrize(
    ("size", "error"),
    [(2.7, ValueError), (True, TypeError), ("1024", TypeError), (None, TypeError)],
)
def test_pool_size_must_be_a_whole_number(size, error):
    with pytest.raises(error, match="pool size"):
        Pool(size=size, seed=0)
    assert Pool(size=1021.0, seed=0).size == 1021


# -- seeds: the source's real range, never wrapped ----------------------------------------
@pytest.mark.parametrize("make", [Gaussian, Rademacher, Uniform, lambda s: Pool(size=101, seed=s)])
@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_a_seed_outside_64_bits_is_refused_not_wrapped(make, seed):
    """``seed=2**70`` used to equal ``seed=0`` and ``-1`` to equal ``2**64 - 1``."""
    with pytest.raises(ValueError, match=r"seed.*2\*\*64"):
        make(seed)


@pytest.mark.parametrize("make", [Gaussian, Rademacher, Uniform, lambda s: Pool(size=101, seed=s)])
@pytest.mark.parametrize("seed", [True, 1.5, "1"])
def test_a_seed_that_is_not_an_integer_is_refused(make, seed):
    with pytest.raises(TypeError, match="seed"):
        make(seed)


def test_the_ends_of_the_seed_range_and_numpy_integers_are_accepted():
    import numpy as np

    assert Gaussian(2**64 - 1).seed == 2**64 - 1
    assert Gaussian(np.int64(7)).seed == 7 and type(Gaussian(np.int64(7)).seed) is int
    assert Pool(size=101, seed=0).seed == 0
    assert Gaussian(3.0).seed == 3  # an integral float is an integer
