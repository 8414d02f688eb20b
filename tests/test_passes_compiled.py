"""The compiled CPU path of edgezo.passes (``passes/compiled.py``) against its torch path.

Rademacher and Uniform must give the torch reference's bits (float32 with any multiple;
float16/bfloat16 with the optimizer's exact multiples, and within one ulp of the weight
otherwise); Gaussian ``z`` within ``compiled.ERFINV_ULPS`` float32 ulps of torch's
``erfinv`` over every possible ``u``. Also: offsets across the ``2**32`` key blocks,
taking back, the executor's choice per tensor, the fallback without a compiler, and
whole ZO steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO, passes
from edgezo.directions import Gaussian, Pool, Rademacher, Uniform
from edgezo.directions.counter import hash_words, symmetric_unit
from edgezo.params import Segment
from edgezo.passes import compiled

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
#: Multiples whose products with a 16-bit ``a`` are exact (the optimizer's +1, -2, +1).
EXACT = [1.0, -1.0, 2.0, -2.0, -4.0]
#: Offsets near and across the 2**32 boundaries, where the keys change.
BASES = [0, 12_345, 2**32 - 1_000, 2**33 - 7, 3 * 2**32]


@pytest.fixture(autouse=True)
def compiled_path(monkeypatch):
    """The library built (every test reports a missing compiler), ``auto`` mode."""
    if compiled.library() is None:
        pytest.fail(f"compiled passes unavailable: {compiled.BUILD['error']}", pytrace=False)
    monkeypatch.setattr(passes, "mode", "auto")


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (``torch.equal`` takes -0.0 == 0.0)."""
    ints = {2: torch.int16, 4: torch.int32}[a.element_size()]
    return a.dtype == b.dtype and torch.equal(a.view(ints), b.view(ints))


def ordered(x: torch.Tensor) -> torch.Tensor:
    """Float bits as integers ordered like the floats (ulp distances are differences)."""
    ints = {2: torch.int16, 4: torch.int32}[x.element_size()]
    i = x.view(ints).long()
    return torch.where(i < 0, -(i & (2 ** (8 * x.element_size() - 1) - 1)), i)


def applied(source, weights, base, eps, moves, mode):
    """Copies of ``weights`` (adjacent from global index ``base``) after ``apply_`` in ``mode``."""
    passes.mode = mode
    out, offset, segs = [], base, []
    for w in weights:
        out.append(w.clone())
        segs.append(Segment(out[-1], offset, 0))
        offset += w.numel()
    passes.apply_(source, segs, eps, moves)
    assert passes.last_executor == ("torch" if mode == "off" else "compiled")
    return out


def make_source(kind: str, seed: int):
    if kind == "uniform-perturbation":
        return Uniform(seed, scale="perturbation").bind(5_000)
    return {"rademacher": Rademacher, "uniform": Uniform, "gaussian": Gaussian}[kind](seed)


@st.composite
def cases(draw, kinds, exact_only):
    dtype = draw(st.sampled_from(FLOATS))
    sizes = draw(st.lists(st.integers(1, 2_000), min_size=1, max_size=3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 100)))
    weights = [(torch.randn(n, generator=g) * 0.1).to(dtype) for n in sizes]
    exact = exact_only and dtype != torch.float32
    mult = st.sampled_from(EXACT) if exact else st.floats(-3, 3).filter(lambda k: k != 0)
    moves = draw(
        st.lists(
            st.tuples(st.integers(0, 2**40), st.integers(0, 3), st.lists(mult, min_size=3)),
            min_size=1,
            max_size=3,
        )
    )
    moves = [(s, q, ks[: len(sizes)]) for s, q, ks in moves]
    base = draw(st.sampled_from(BASES)) - draw(st.integers(0, 1_500))
    eps = draw(st.floats(1e-4, 1.0))
    kind = draw(st.sampled_from(kinds))
    return make_source(kind, draw(st.integers(0, 2**64 - 1))), weights, max(base, 0), eps, moves


@settings(max_examples=60, deadline=None)
@given(cases(["rademacher", "uniform", "uniform-perturbation"], exact_only=True))
def test_integer_sources_give_the_references_bits(case):
    """Shapes, dtypes, eps, several passes, seeds, offsets across 2**32: the same bits."""
    source, weights, base, eps, moves = case
    want = applied(source, weights, base, eps, moves, "off")
    got = applied(source, weights, base, eps, moves, "auto")
    assert all(same_bits(a, b) for a, b in zip(got, want, strict=True))


@settings(max_examples=25, deadline=None)
@given(cases(["rademacher", "uniform", "gaussian"], exact_only=False))
def test_any_multiple_is_within_a_rounding_per_pass(case):
    """float16/bfloat16 with an inexact product ``k a``: torch's scalar tail (the last
    elements of each piece) rounds differently from its vector body, which the compiled
    path follows: one rounding of the weight dtype per pass apart. Gaussian adds
    ERFINV_ULPS of z. Integer sources on float32 stay exact."""
    source, weights, base, eps, moves = case
    want = applied(source, weights, base, eps, moves, "off")
    got = applied(source, weights, base, eps, moves, "auto")
    zmax = {Gaussian: 6.0, Rademacher: 1.0}.get(type(source), 1.8)
    step = eps * zmax * max(abs(k) for _, _, ks in moves for k in ks)
    for a, b in zip(got, want, strict=True):
        if a.dtype == torch.float32 and not isinstance(source, Gaussian):
            assert same_bits(a, b)
            continue
        unit = {torch.float32: 2.0**-20, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[a.dtype]
        tol = 2 * len(moves) * unit
        torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol * (step + 1e-3))


def test_gaussian_z_is_within_the_documented_ulps_of_torch():
    """Every u the hash can make (2**24 of them): Giles' erfinv vs torch's, in float32 ulps."""
    lib = compiled.library()
    words = np.arange(1 << 24, dtype=np.uint32) << np.uint32(8)
    z = np.empty(words.size, dtype=np.float32)
    assert lib.ezh_values(1, words.ctypes.data, z.ctypes.data, words.size) == 0
    want = torch.from_numpy(symmetric_unit(words)).erfinv_().mul_(math.sqrt(2.0))
    distance = (ordered(torch.from_numpy(z)) - ordered(want)).abs()
    assert int(distance.max()) <= compiled.ERFINV_ULPS
    assert not torch.isfinite(torch.from_numpy(z)).logical_not().any()


@pytest.mark.parametrize("kind", ["rademacher", "uniform", "gaussian"])
def test_the_vectorised_loop_makes_the_same_z_as_the_checked_map(kind):
    """``0 + 1 * round(1 * z)`` from the pass loop is the z of ``ezh_values`` (whose every
    value the exhaustive test checks), across a 2**32 block."""
    source, base, n = make_source(kind, 21), 2**32 - 40_000, 80_000
    got = applied(source, [torch.zeros(n)], base, 1.0, [(5, 2, [1.0])], "auto")[0]
    words = hash_words(source.seed, 5, 2, base, n)
    z = np.empty(n, dtype=np.float32)
    assert (
        compiled.library().ezh_values(compiled.KINDS[kind], words.ctypes.data, z.ctypes.data, n)
        == 0
    )
    assert same_bits(got, torch.from_numpy(z))


@pytest.mark.parametrize("dtype", FLOATS)
def test_gaussian_step_is_within_ulps_of_round_eps_z(dtype):
    """``a = round(eps z)`` from a zero weight: ERFINV_ULPS + 1 float32 ulps (the product's
    rounding), at most one ulp of a 16-bit weight."""
    source, w = Gaussian(3), [torch.zeros(50_000, dtype=dtype)]
    moves = [(7, 1, [1.0])]
    want = applied(source, w, 2**32 - 20_000, 0.01, moves, "off")[0]
    got = applied(source, w, 2**32 - 20_000, 0.01, moves, "auto")[0]
    limit = compiled.ERFINV_ULPS + 1 if dtype == torch.float32 else 1
    assert int((ordered(got) - ordered(want)).abs().max()) <= limit


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_conversions_round_as_torch(dtype):
    """Every 16-bit pattern to float32 and back; float32 values around every rounding
    boundary, tiny, huge and special ones to 16 bits: torch's bits (NaN: a NaN)."""
    lib = compiled.library()
    code = compiled.DTYPES[dtype]
    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    wide = every.float()
    ints = wide.view(torch.int32)
    near = torch.cat([ints - 1, ints, ints + 1, ints + 2**12, ints + 2**15, ints - 2**15])
    x = torch.cat([near.view(torch.float32), torch.randn(100_000) * 1e-5, torch.randn(1000) * 7e4])
    x = torch.cat([x, torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 65520.0, 2**-25])])
    bits = np.empty(x.numel(), dtype=np.uint16)
    back, rounded = np.empty(x.numel(), np.float32), np.empty(x.numel(), np.float32)
    pointers = [a.ctypes.data for a in (x.numpy(), bits, back, rounded)]
    assert lib.ezh_convert(code, *pointers, x.numel()) == 0
    got, want = torch.from_numpy(bits.view(np.int16)).view(dtype), x.to(dtype)
    nan = want.isnan()
    assert torch.equal(got.isnan(), nan)
    assert same_bits(got[~nan], want[~nan])
    for widened in (torch.from_numpy(back), torch.from_numpy(rounded)):
        assert torch.equal(widened.isnan(), nan)
        assert same_bits(widened[~nan], want.float()[~nan])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ["rademacher", "uniform", "gaussian"])
def test_taking_back_is_the_references_take_back(kind, dtype):
    """``op(True)`` after ``op(False)``: the reference's own round trip, bit for bit for
    integer sources; a zero weight always comes back to exactly zero."""
    source = make_source(kind, 11)
    w = (torch.randn(3_001) * 0.1).to(dtype)
    k = -0.3 if dtype == torch.float32 else -2.0  # exact products on 16-bit weights
    moves = [(2, 0, [1.0, 1.0]), (2, 1, [k, 0.0])]
    results = {}
    for mode in ("off", "auto"):
        passes.mode = mode
        ws = [w.clone(), torch.zeros(77, dtype=dtype)]
        segs = [Segment(ws[0], 2**32 - 1_500, 0), Segment(ws[1], 2**32 + 1_501, 0)]
        ops = list(passes.operations(source, segs, 1e-2, moves))
        for op in ops:
            op(False)
        for op in reversed(ops):
            op(True)
        assert same_bits(ws[1], torch.zeros(77, dtype=dtype))
        results[mode] = ws[0]
    if kind != "gaussian":
        assert same_bits(results["auto"], results["off"])


def test_masked_tensors_take_the_torch_path_and_others_do_not_change():
    """The choice is per tensor: a masked tensor goes to torch, its neighbours stay compiled
    and get the same bits as alone."""
    source, ws = (
        Gaussian(5),
        [torch.randn(100), torch.randn(300), torch.randn(50, dtype=torch.float64)],
    )
    mask = (torch.rand(300) < 0.5).float()
    segs = [Segment(ws[0], 0, 0), Segment(ws[1], 100, 0, mask=mask), Segment(ws[2], 400, 0)]
    alone = ws[0].clone()
    passes.apply_(source, [Segment(alone, 0, 0)], 1e-2, [(1, 0, [1.0])])
    frozen = ws[1][mask == 0].clone()
    passes.apply_(source, segs, 1e-2, [(1, 0, [1.0, 1.0, 1.0])])
    assert passes.last_executor == "compiled+torch"
    assert same_bits(ws[0], alone)
    assert torch.equal(ws[1][mask == 0], frozen)


def test_without_a_compiler_the_torch_path_runs(monkeypatch):
    """No compiler: ``library()`` is None (nothing raised) and the reference runs."""
    monkeypatch.setattr(compiled.clib.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    assert compiled.library.__wrapped__() is None
    assert "C compiler" in compiled.BUILD["error"]
    monkeypatch.setattr(compiled, "library", lambda: None)
    w = [torch.randn(1000)]
    got = applied(Rademacher(1), w, 0, 1e-2, [(0, 0, [1.0])], "off")
    passes.mode = "auto"
    again = [w[0].clone()]
    passes.apply_(Rademacher(1), [Segment(again[0], 0, 0)], 1e-2, [(0, 0, [1.0])])
    assert passes.last_executor == "torch"
    assert same_bits(again[0], got[0])


def test_kernels_off_forces_torch_and_empty_tensors_are_no_ops():
    applied(Uniform(2), [torch.randn(10)], 0, 1e-2, [(0, 0, [1.0])], "off")
    assert passes.last_executor == "torch"
    got = applied(Uniform(2), [torch.ones(0), torch.ones(3)], 0, 1e-2, [(0, 0, [1.0, 0.0])], "auto")
    assert torch.equal(got[1], torch.ones(3))


@pytest.mark.parametrize("name", ["rademacher", "uniform", "gaussian"])
def test_zo_steps_equal_the_torch_path(name):
    """Central, 2 queries, momentum replay: same weights as EDGEZO_KERNELS=off (bit for bit
    for Rademacher and Uniform; within a few float32 ulps for Gaussian)."""

    def train(mode):
        passes.mode = mode
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
        x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
        opt = ZO(model.parameters(), lr=0.05, eps=1e-2, queries=2, momentum=0.9, history=2,
                 directions=make_source(name, 4))  # fmt: skip
        for _ in range(3):
            opt.step(lambda: F.cross_entropy(model(x), y))
        assert passes.last_executor == ("torch" if mode == "off" else "compiled")
        return [p.detach().clone() for p in model.parameters()]

    want, got = train("off"), train("auto")
    for a, b in zip(got, want, strict=True):
        if name == "gaussian":
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        else:
            assert same_bits(a, b)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ["rademacher", "uniform", "gaussian"])
def test_threads_and_pieces_do_not_change_the_bits(kind, dtype, monkeypatch):
    """A tensor cut into pieces for threads (across a 2**32 block here) gets the same bits as
    one piece on one thread: every element is computed alone."""
    w = [(torch.randn(5_000) * 0.1).to(dtype)]
    moves, base = [(9, 0, [1.0]), (9, 1, [-0.7])], 2**32 - 2_100
    one = applied(make_source(kind, 3), w, base, 0.05, moves, "auto")
    monkeypatch.setattr(compiled, "SPLIT", 600)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert len(compiled.pieces(5_000, 3)) == 3
        cut = applied(make_source(kind, 3), w, base, 0.05, moves, "auto")
    finally:
        torch.set_num_threads(threads)
    assert same_bits(cut[0], one[0])


def test_an_interrupt_while_pieces_run_takes_the_tensor_back(monkeypatch):
    """Ctrl-C in the caller's thread while a tensor's pieces run: every piece finishes, is
    taken back, and the interrupt propagates (zeros come back to exactly zero)."""
    real = compiled._wait_all

    def interrupted(futures):
        real(futures)
        return KeyboardInterrupt()

    monkeypatch.setattr(compiled, "_wait_all", interrupted)
    monkeypatch.setattr(compiled, "SPLIT", 600)
    w, threads = torch.zeros(5_000), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            passes.apply_(Gaussian(1), [Segment(w, 2**32 - 2_000, 0)], 0.1, [(0, 0, [1.0])])
    finally:
        torch.set_num_threads(threads)
    assert passes.last_executor == "compiled"
    assert same_bits(w, torch.zeros(5_000))


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([67, 1009, 4099]),
    sizes=st.lists(st.integers(1, 3_000), min_size=1, max_size=3),
    dtype=st.sampled_from(FLOATS),
    moves=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.sampled_from(EXACT)),
                   min_size=1, max_size=3),
    base=st.sampled_from(BASES),
    eps=st.floats(1e-4, 1.0),
    scale=st.sampled_from(["unit", "perturbation"]),
    seed=st.integers(0, 50),
)  # fmt: skip
def test_the_pool_gives_the_torch_paths_bits(size, sizes, dtype, moves, base, eps, scale, seed):
    """PeZO's pool in the C loop: windows that wrap the pool, several passes, offsets past
    2**32, the per-perturbation factor, 16-bit weights: the torch path's bits."""
    g = torch.Generator().manual_seed(seed)
    weights = [(torch.randn(n, generator=g) * 0.1).to(dtype) for n in sizes]
    dim = sum(sizes) + 1
    pool = Pool(size=size, seed=seed, scale=scale).bind(dim + (dim % size == 0), 3)
    passes_ = [(s, q, [k] * len(sizes)) for s, q, k in moves]
    want = applied(pool, weights, base, eps, passes_, "off")
    got = applied(pool, weights, base, eps, passes_, "auto")
    assert all(same_bits(a, b) for a, b in zip(got, want, strict=True))


def test_the_pool_in_pieces_for_threads_and_taken_back(monkeypatch):
    """Cut for three threads, then taken back: the same bits, and zeros back to zero."""
    pool = Pool(size=1009, seed=2).bind(5_001, 1)
    w = [torch.randn(5_000), torch.zeros(1)]
    one = applied(pool, w, 7, 0.05, [(3, 0, [1.0, 1.0]), (3, 0, [-0.3, 0.0])], "auto")
    monkeypatch.setattr(compiled, "SPLIT", 600)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        cut = applied(pool, w, 7, 0.05, [(3, 0, [1.0, 1.0]), (3, 0, [-0.3, 0.0])], "auto")
        zero = [torch.zeros(5_000)]
        ops = list(passes.operations(pool, [Segment(zero[0], 7, 0)], 0.05, [(3, 0, [1.0])]))
        for op in ops:
            op(False)
        assert not torch.equal(zero[0], torch.zeros(5_000))
        for op in reversed(ops):
            op(True)
    finally:
        torch.set_num_threads(threads)
    assert all(same_bits(a, b) for a, b in zip(cut, one, strict=True))
    assert same_bits(zero[0], torch.zeros(5_000))
