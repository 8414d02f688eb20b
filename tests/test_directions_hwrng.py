"""Hardware RNG sources (LFSR, Xorshift, RNGArray) against independent scalar references.

The references below re-implement the bit-level definitions of the module
docstring with plain Python integers, one register step at a time; they share
no code with :mod:`edgezo.directions.hwrng` (which uses GF(2) matrix jumps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.directions.hwrng import LFSR, MAXIMAL_TAPS, RNGArray, Xorshift

M32 = 0xFFFFFFFF


# -- independent references ---------------------------------------------------------------
class RefLFSR:
    """Right-shifting Galois LFSR, ``steps`` steps per cycle, low ``bits`` bits out."""

    def __init__(self, width: int, taps: int, seed: int, bits: int, steps: int) -> None:
        self.s, self.taps, self.bits, self.steps = seed, taps, bits, steps

    def next(self) -> int:
        for _ in range(self.steps):
            lsb = self.s & 1
            self.s >>= 1
            if lsb:
                self.s ^= self.taps
        return self.s & ((1 << self.bits) - 1)


class RefXorshift:
    """xorshift32 (13, 17, 5), high ``bits`` bits out."""

    def __init__(self, seed: int, bits: int) -> None:
        self.x, self.bits = seed, bits

    def next(self) -> int:
        x = self.x
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        self.x = x
        return x >> (32 - self.bits)


def ref_outputs(gen: RefLFSR | RefXorshift, count: int) -> list[int]:
    return [gen.next() for _ in range(count)]


def ref_array(gens: list, cycles: int) -> list[int]:
    """PeZO's on-the-fly array, literally: all registers clock, outputs in array order, rotate."""
    arr, out = list(gens), []
    for _ in range(cycles):
        out.extend(g.next() for g in arr)
        arr.append(arr.pop(0))
    return out


def ref_v(u: list[int], bits: int) -> list[int]:
    return [2 * x + 1 - 2**bits for x in u]


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return z ^ (z >> 31)


# -- GF(2) matrices as lists of row words (row i bit k = M[i, k]), for the period check --------
def step_matrix(width: int, taps: int) -> list[int]:
    """Rows of the single-step matrix, built from the bit-level rule ``s' = (s >> 1) ^ (s_0 * taps)``."""
    rows = []
    for i in range(width):
        row = 1 << (i + 1) if i + 1 < width else 0  # s'_i gets s_{i+1}
        if (taps >> i) & 1:
            row ^= 1  # ... xor s_0 where the tap mask has bit i
        rows.append(row)
    return rows


def mat_mul(a: list[int], b: list[int]) -> list[int]:
    out = []
    for row in a:
        acc, k = 0, 0
        while row:
            if row & 1:
                acc ^= b[k]
            row, k = row >> 1, k + 1
        out.append(acc)
    return out


def mat_pow(squares: list[list[int]], e: int) -> list[int]:
    """``M**e`` from ``squares[i] = M**(2**i)``."""
    result = [1 << i for i in range(len(squares[0]))]
    i = 0
    while e:
        if e & 1:
            result = mat_mul(result, squares[i])
        e, i = e >> 1, i + 1
    return result


def prime_factors(n: int) -> set[int]:
    out, p = set(), 2
    while p * p <= n:
        while n % p == 0:
            out.add(p)
            n //= p
        p += 1
    if n > 1:
        out.add(n)
    return out


def is_maximal(width: int, taps: int) -> bool:
    """Order of the step matrix is exactly ``2**w - 1`` (so every non-zero state has that period)."""
    order = 2**width - 1
    squares = [step_matrix(width, taps)]
    for _ in range(width):
        squares.append(mat_mul(squares[-1], squares[-1]))
    identity = [1 << i for i in range(width)]
    if mat_pow(squares, order) != identity:
        return False
    return all(mat_pow(squares, order // p) != identity for p in prime_factors(order))


def brute_period(width: int, taps: int) -> int:
    s, k = 1, 0
    while True:
        lsb = s & 1
        s = (s >> 1) ^ (taps if lsb else 0)
        k += 1
        if s == 1:
            return k


# -- the tap table ---------------------------------------------------------------------------
def test_tap_table_covers_3_to_32_in_galois_form():
    assert sorted(MAXIMAL_TAPS) == list(range(3, 33))
    for w, taps in MAXIMAL_TAPS.items():
        assert 2 ** (w - 1) <= taps < 2**w, w
    assert MAXIMAL_TAPS[32] == 0x80200003  # XAPP052: 32, 22, 2, 1
    assert MAXIMAL_TAPS[16] == 0xD008  # XAPP052: 16, 15, 13, 4


@pytest.mark.parametrize("width", range(3, 17))
def test_taps_maximal_by_brute_force(width):
    assert brute_period(width, MAXIMAL_TAPS[width]) == 2**width - 1


@pytest.mark.parametrize("width", range(3, 33))
def test_taps_maximal_algebraically(width):
    assert is_maximal(width, MAXIMAL_TAPS[width])


def test_period_checks_reject_non_maximal_taps():
    # x^4+x^3+x^2+x+1 is irreducible but not primitive (period 5); mask 0x80000000 is a rotation
    assert brute_period(4, 0b1111) == 5
    assert not is_maximal(4, 0b1111)
    assert not is_maximal(32, 0x80000000)
    assert not is_maximal(16, 0xB401)  # a reducible polynomial (even number of terms)


# -- single generators against the scalar references ---------------------------------------------
LFSR_CASES = [  # width, seed, bits, steps
    (32, 1, 8, None),
    (32, 0xDEADBEEF, 8, None),
    (32, 12345, 1, None),
    (16, 0xACE1, 4, None),
    (16, 7, 8, 1),
    (9, 300, 5, 3),
    (3, 5, 3, 2),
    (24, 2**24 - 1, 24, None),
]


@pytest.mark.parametrize("width, seed, bits, steps", LFSR_CASES)
@pytest.mark.parametrize("start", [0, 1, 37, 1000])
def test_lfsr_matches_scalar_reference(width, seed, bits, steps, start):
    g = LFSR(width=width, seed=seed, bits=bits, steps_per_cycle=steps)
    ref = RefLFSR(width, MAXIMAL_TAPS[width], seed, bits, steps or bits)
    u = ref_outputs(ref, start + 300)
    assert g.raw(start, 300).tolist() == u[start:]
    assert g.state(start + 299) == ref.s and g.state(-1) == seed
    z = g.stream(start, 300, dtype=torch.float64, device="cpu")
    expected = torch.tensor(ref_v(u[start:], bits), dtype=torch.float64) * math.sqrt(
        3 / (4**bits - 1)
    )
    assert torch.equal(z, expected)


@pytest.mark.parametrize("seed, bits", [(1, 8), (2463534242, 8), (0xFFFFFFFF, 1), (99, 24)])
@pytest.mark.parametrize("start", [0, 1, 37, 1000])
def test_xorshift_matches_scalar_reference(seed, bits, start):
    g = Xorshift(seed=seed, bits=bits)
    ref = RefXorshift(seed, bits)
    u = ref_outputs(ref, start + 300)
    assert g.raw(start, 300).tolist() == u[start:]
    assert g.state(start + 299) == ref.x
    z = g.stream(start, 300, dtype=torch.float32, device="cpu")
    expected = torch.tensor(ref_v(u[start:], bits), dtype=torch.float64) * math.sqrt(
        3 / (4**bits - 1)
    )
    torch.testing.assert_close(z, expected.float())


def test_xorshift_known_values():
    # Marsaglia's xorshift32 from x = 1: 270369, 67634689, 2647435461
    assert Xorshift(seed=1, bits=24).raw(0, 3).tolist() == [
        270369 >> 8,
        67634689 >> 8,
        2647435461 >> 8,
    ]


def test_custom_taps_are_used():
    taps = 0xB400  # 16, 14, 13, 11 (Wikipedia's Galois example), also maximal
    g = LFSR(width=16, taps=taps, seed=0xACE1, bits=8)
    assert g.raw(0, 200).tolist() == ref_outputs(RefLFSR(16, taps, 0xACE1, 8, 8), 200)


GENERATORS = [
    lambda: LFSR(width=32, seed=0x1234567, bits=8),
    lambda: LFSR(width=16, seed=77, bits=3, steps_per_cycle=5),
    lambda: Xorshift(seed=42, bits=8),
    lambda: RNGArray(n=16, rng="lfsr", seed=3),
    lambda: RNGArray(n=5, rng="xorshift", seed=2**64 - 8, bits=6),
    lambda: RNGArray(n=3, rng="lfsr", width=12, seed=1, bits=4),
]


@pytest.mark.parametrize("make", GENERATORS)
def test_moderately_large_start_equals_long_prefix(make):
    g, start = make(), 200_003
    assert np.array_equal(g.raw(start, 5000), g.raw(0, start + 5000)[start:])


@pytest.mark.parametrize("make", GENERATORS)
@pytest.mark.parametrize("start", [0, 10**12, 2**61 + 12345])
def test_jump_ahead_consistent_with_pieces(make, start):
    g = make()
    whole = g.raw(start, 10_000)
    cuts = [0, 1, 17, 4096, 4097, 9999, 10_000]
    pieces = [g.raw(start + a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    assert np.array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize(
    "make, period",
    [
        (lambda: LFSR(width=16, seed=0xACE1, bits=8), 2**16 - 1),  # gcd(8, 65535) = 1
        (lambda: LFSR(width=32, seed=5, bits=8), 2**32 - 1),
        (lambda: Xorshift(seed=12345, bits=8), 2**32 - 1),  # xorshift32 has full period
    ],
)
def test_huge_start_by_periodicity(make, period):
    """An independent check of a ~1e12 jump: the output sequence repeats with the register period."""
    g = make()
    m = 10**12 // period + 1
    assert np.array_equal(g.raw(m * period + 11, 500), g.raw(11, 500))
    assert not np.array_equal(g.raw(m * period + 12, 500), g.raw(11, 500))


# -- RNGArray: PeZO's rotation -----------------------------------------------------------------
ARRAY_CASES = [  # n, rng, bits, width, steps
    (16, "lfsr", 8, 32, None),
    (3, "lfsr", 4, 12, 2),
    (1, "lfsr", 8, 16, None),
    (5, "xorshift", 8, 32, None),
    (7, "xorshift", 3, 32, None),
]


def _ref_gens(arr: RNGArray, rng: str, bits: int, width: int, steps: int | None) -> list:
    if rng == "lfsr":
        return [RefLFSR(width, MAXIMAL_TAPS[width], s, bits, steps or bits) for s in arr.seeds]
    return [RefXorshift(s, bits) for s in arr.seeds]


@pytest.mark.parametrize("n, rng, bits, width, steps", ARRAY_CASES)
def test_rng_array_rotation_matches_literal_list_rotation(n, rng, bits, width, steps):
    kw = {"width": width, "steps_per_cycle": steps} if rng == "lfsr" else {}
    arr = RNGArray(n=n, rng=rng, bits=bits, seed=11, **kw)
    ref = ref_array(_ref_gens(arr, rng, bits, width, steps), cycles=100)
    for start in (0, 1, n, 2 * n + 1, 37):
        stop = min(len(ref), start + 250)
        assert arr.raw(start, stop - start).tolist() == ref[start:stop], start
    assert arr.signed(0, len(ref)).tolist() == ref_v(ref, bits)


def test_rng_array_position_map_differs_from_unrotated():
    """The rotation matters: without it position j would always be fed by register j."""
    arr = RNGArray(n=4, rng="xorshift", seed=0)
    cycles = np.stack([g.raw(0, 8) for g in arr.generators], axis=1)  # (cycle, register)
    assert not np.array_equal(arr.raw(0, 32), cycles.reshape(-1))
    rotated = np.stack([np.roll(cycles[c], -c) for c in range(8)])
    assert np.array_equal(arr.raw(0, 32), rotated.reshape(-1))


def test_rng_array_huge_start_by_periodicity():
    """Registers repeat every P cycles and the rotation every n: S repeats every n * (n * P)."""
    arr = RNGArray(n=4, rng="lfsr", width=16, seed=5)
    shift = arr.n * arr.n * (2**16 - 1)
    m = 10**12 // shift + 1
    assert np.array_equal(arr.raw(m * shift + 3, 777), arr.raw(3, 777))


def test_rng_array_seed_derivation_rule():
    for seed, width in [(0, 32), (123, 16), (2**64 - 1, 8), (2**63 + 5, 32)]:
        arr = RNGArray(n=6, rng="lfsr", seed=seed, width=width)
        expected = [splitmix64(splitmix64(seed % 2**64) ^ r) % (2**width - 1) + 1 for r in range(6)]
        assert arr.seeds == expected
        assert arr.config()["seeds"] == expected
        assert [g.seed for g in arr.generators] == expected


def test_reference_splitmix64_known_value():
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # first SplitMix64 output from state 0


# -- chunk independence through the Directions API ------------------------------------------------
SOURCES = {
    "lfsr": lambda: LFSR(width=32, seed=99, bits=8),
    "xorshift": lambda: Xorshift(seed=7, bits=8),
    "array": lambda: RNGArray(n=16, rng="lfsr", seed=1),
    "array-xs": lambda: RNGArray(n=5, rng="xorshift", seed=2, bits=5),
}
_BUILT = {name: make() for name, make in SOURCES.items()}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(SOURCES)),
    dim=st.integers(1, 400),
    queries=st.integers(1, 3),
    step=st.integers(0, 10**9),
    data=st.data(),
)
def test_sample_chunk_independent(name, dim, queries, step, data):
    src = _BUILT[name].bind(dim, queries)
    query = data.draw(st.integers(0, queries - 1))
    offset = data.draw(st.integers(0, dim - 1))
    n = data.draw(st.integers(0, dim - offset))
    whole = src.sample(step, query, 0, dim)
    assert torch.equal(src.sample(step, query, offset, n), whole[offset : offset + n])
    ints = src.integers(step, query, 0, dim)
    assert torch.equal(src.integers(step, query, offset, n), ints[offset : offset + n])
    # consecutive perturbations read consecutive windows of one stream
    t = step * queries + query
    assert torch.equal(whole, src.stream(t * dim, dim, dtype=torch.float32, device="cpu"))


# -- output mapping -------------------------------------------------------------------------------
MAPPING_SOURCES = [
    lambda b: LFSR(width=32, seed=31337, bits=b),
    lambda b: Xorshift(seed=31337, bits=b),
    lambda b: RNGArray(n=16, rng="lfsr", seed=4, bits=b),
    lambda b: RNGArray(n=8, rng="xorshift", seed=4, bits=b),
]


@pytest.mark.parametrize("make", MAPPING_SOURCES)
@pytest.mark.parametrize("bits", [1, 3, 8, 12])
def test_output_mapping_and_moments(make, bits):
    n = 2**18
    src = make(bits).bind(dim=n)
    v = src.integers(0, 0, 0, n)
    assert v.dtype == torch.int32
    assert bool((v & 1).bool().all())  # odd
    assert int(v.abs().max()) <= 2**bits - 1
    if bits <= 8:  # every one of the 2**bits levels occurs
        levels = torch.bincount(((v + 2**bits - 1) // 2).long(), minlength=2**bits)
        assert levels.numel() == 2**bits and bool((levels > 0).all())
    z = src.sample(0, 0, 0, n)
    assert src.scale == math.sqrt(3 / (4**bits - 1))
    assert torch.equal(z, v.to(torch.float32) * src.scale)
    # For i.i.d. unit-variance values, mean(z) has sd 1/sqrt(N) and mean(z^2) has sd
    # sqrt((E z^4 - 1)/N) <= sqrt(0.8/N) (uniform: E z^4 = 9/5; fewer levels: less).
    # 5 sd gives a false-alarm rate ~6e-7 if the streams were ideal random draws.
    zd = z.double()
    assert abs(float(zd.mean())) < 5 / math.sqrt(n)
    assert abs(float(zd.square().mean()) - 1) < 5 * math.sqrt(0.8 / n)


def test_float_dtypes_and_device():
    g = LFSR(seed=3).bind(dim=1000)
    v = g.integers(2, 0, 0, 1000).double()
    z64 = g.sample(2, 0, 0, 1000, dtype=torch.float64)
    assert z64.dtype == torch.float64
    assert torch.equal(z64, v * math.sqrt(3 / (4**8 - 1)))
    z16 = g.sample(2, 0, 0, 1000, dtype=torch.float16, device="cpu")
    assert z16.dtype == torch.float16
    torch.testing.assert_close(z16, z64.half())


# -- configuration and errors -------------------------------------------------------------------
def test_config_rebuilds_the_same_numbers():
    for src in [LFSR(width=20, seed=9, bits=6, steps_per_cycle=7), Xorshift(seed=5, bits=4)]:
        cfg = src.config()
        kw = {k: v for k, v in cfg.items() if k not in ("type", "shifts")}
        twin = type(src)(**kw)
        assert np.array_equal(twin.raw(100, 50), src.raw(100, 50))
    arr = RNGArray(n=4, rng="lfsr", width=24, seed=17, steps_per_cycle=3)
    cfg = arr.config()
    assert cfg["type"] == "RNGArray" and cfg["n"] == 4 and cfg["taps"] == MAXIMAL_TAPS[24]
    twin = RNGArray(**{k: v for k, v in cfg.items() if k not in ("type", "seeds")})
    assert np.array_equal(twin.raw(0, 64), arr.raw(0, 64))
    for value in cfg.values():
        assert isinstance(value, (int, str, list, type(None)))
    assert "seeds" not in repr(arr)


def test_checkpoint_config_mismatch_is_rejected():
    a, b = LFSR(seed=1), LFSR(seed=2)
    a.load_state_dict(LFSR(seed=1).state_dict())
    with pytest.raises(ValueError, match="Checkpoint was written"):
        a.load_state_dict(b.state_dict())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LFSR(seed=0), r"seed 0.*lock-up"),
        (lambda: Xorshift(seed=0), r"seed 0.*lock-up"),
        (lambda: LFSR(width=16, seed=2**16), r"1 <= seed < 2\*\*16"),
        (lambda: Xorshift(seed=2**32), r"1 <= seed < 2\*\*32"),
        (lambda: LFSR(width=2), r"Invalid LFSR width 2.*3\.\.32"),
        (lambda: LFSR(width=33), r"Invalid LFSR width 33"),
        (lambda: LFSR(width=4, bits=5), r"bits=5 for a 4-bit register.*must not exceed the width"),
        (lambda: LFSR(bits=0), r"Invalid bits=0"),
        (lambda: Xorshift(bits=25), r"Invalid bits=25.*float32"),
        (lambda: LFSR(width=8, taps=0x7F), r"Invalid taps mask 0x7f.*bit 7 must be set"),
        (lambda: LFSR(width=8, taps=0x1B8), r"Invalid taps mask"),
        (lambda: LFSR(steps_per_cycle=0), r"steps_per_cycle=0"),
        (lambda: RNGArray(rng="mt19937"), r"Invalid rng 'mt19937'"),
        (lambda: RNGArray(rng="xorshift", width=16), r"xorshift registers are 32 bits"),
        (lambda: RNGArray(n=0), r"n=0"),
        (
            lambda: RNGArray(n=8, width=3, bits=2),
            r"8 registers cannot have distinct seeds in 3 bits",
        ),
        (lambda: RNGArray(width=40), r"Invalid LFSR width 40"),
    ],
)
def test_invalid_settings_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_invalid_window_and_unbound_use():
    g = LFSR()
    with pytest.raises(ValueError, match=r"start and n must be >= 0"):
        g.raw(-1, 3)
    with pytest.raises(RuntimeError, match=r"bind"):
        g.sample(0, 0, 0, 3)


# -- settings: bools and fractions refused, seeds in the register's range ---------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LFSR(seed=True), "seed"),
        (lambda: LFSR(seed=1.5), "seed"),
        (lambda: Xorshift(seed=True), "seed"),
        (lambda: LFSR(bits=True), "bits"),
        (lambda: LFSR(bits=7.5), "bits"),
        (lambda: Xorshift(bits=8.5), "bits"),
        (lambda: LFSR(width=True), "width"),
        (lambda: LFSR(width=16.5), "width"),
        (lambda: LFSR(steps_per_cycle=2.5), "steps_per_cycle"),
        (lambda: LFSR(steps_per_cycle=True), "steps_per_cycle"),
        (lambda: RNGArray(n=True), "n"),
        (lambda: RNGArray(n=2.5), "n"),
        (lambda: RNGArray(seed=2**64), "seed"),
        (lambda: RNGArray(seed=-1), "seed"),
        (lambda: RNGArray(seed=True), "seed"),
        (lambda: RNGArray(bits=True), "bits"),
    ],
)
def test_hardware_sources_refuse_bools_fractions_and_wrapping_seeds(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_hardware_sources_accept_integral_numbers():
    assert LFSR(width=16, seed=np.int64(5), bits=4.0).config()["bits"] == 4
    assert RNGArray(n=4, seed=2**64 - 1).seed == 2**64 - 1
