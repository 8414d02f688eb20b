"""The executor of edgezo.passes: one entry point, one rollback, the torch path's choices.

Every source runs through the passes' contract in ``tests/test_directions_contract.py``;
the Triton path is compared with the torch path in ``tests/test_passes_triton.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgezo import passes
from edgezo.directions import Gaussian, MomentumGuided, Pool
from edgezo.params import ParamSpace, Segment
from edgezo.passes import reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def test_all_zero_passes_touch_nothing_and_generate_nothing():
    """A pass with only zero multiples is a no-op: not even ``sample`` runs (a source with
    history may no longer be able to make that step's z)."""
    src = MomentumGuided(Gaussian(seed=1), beta=0.5).bind(10)
    src.commit(0)  # z of step 0 can no longer be made
    seg = Segment(torch.ones(10), 0, 0)
    passes.apply_(src, [seg], 1e-2, [(0, 0, [0.0])])
    assert torch.equal(seg.param, torch.ones(10))
    with pytest.raises(ValueError, match="history has moved on"):
        passes.apply_(src, [seg], 1e-2, [(0, 0, [1.0])])
    assert torch.equal(seg.param, torch.ones(10))


def test_operations_are_undone_newest_first():
    log = []

    def op(name):
        return lambda undo: log.append(("undo " if undo else "do ") + name)

    def ops():
        yield op("a")
        yield op("b")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        passes.run_all_or_nothing(ops())
    assert log == ["do a", "do b", "undo b", "undo a"]


def test_a_failing_operation_is_not_undone():
    """Only completed operations are taken back (the failing one did nothing)."""
    log = []

    def failing(undo):
        log.append("undo fail" if undo else "fail")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        passes.run_all_or_nothing([lambda undo: log.append("undo a" if undo else "a"), failing])
    assert log == ["a", "fail", "undo a"]


def test_the_pool_scales_each_chunk_once_for_every_weight_that_reads_it(monkeypatch):
    """The pool's torch path: a window longer than the pool reads each pool chunk several
    times; each chunk is scaled once and added to all its readers by one operation."""
    monkeypatch.setattr(passes, "mode", "off")  # the torch path (the compiled one is one loop)
    monkeypatch.setattr(reference, "POOL_CHUNK", 8)
    monkeypatch.delattr(reference._scratch, "buffers", raising=False)  # made afresh here
    ts = [torch.zeros(130), torch.zeros(20, 2)]
    space = ParamSpace([ts])
    pool = Pool(size=67, seed=0).bind(space.dim)
    ops = list(passes.operations(pool, space.segments, 1.0, [(0, 0, [1.0, 1.0])]))
    assert len(ops) == 9  # chunks [0, 8), ..., [64, 67) serve the 170 weights
    for op in ops:
        op(False)
    assert torch.equal(torch.cat([t.view(-1) for t in ts]), pool.pool[torch.arange(170) % 67])
    assert pool._scaled is None  # no eps-scaled copy of the pool on this path
    buffers = reference._scratch.__dict__.get("buffers", {})
    assert buffers and all(b.numel() <= 8 for b in buffers.values())


def _exact_weights(shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Weights on a grid of 2**-6 in [-4, 4]: ``w + k a`` is exact in float32 for the test's
    ``a`` and ``k``, so the reference needs no rounding model of torch's ``add_``."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-256, 257, shape, generator=g).double() / 64).to(dtype)


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([67, 101, 257, 1009]),
    chunk=st.integers(1, 64),
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=4),
    dtypes=st.lists(st.sampled_from(DTYPES), min_size=4, max_size=4),
    masked=st.lists(st.floats(0.0, 1.0) | st.none(), min_size=4, max_size=4),
    k=st.sampled_from([1.0, -2.0, 0.5, -0.25]),
    step=st.integers(0, 50),
    eps=st.sampled_from([1e-3, 0.1, 0.37]),
    seed=st.integers(0, 1000),
)
def test_pool_pass_is_round_eps_z_without_a_scaled_copy(
    size, chunk, sizes, dtypes, masked, k, step, eps, seed
):
    """Any pool size, chunk size, dtypes and masks: ``w += k a m`` with ``a = round(eps z)``
    computed independently (float32 product from the exact float64 one, then the dtype),
    ``z = pool[(o + j) mod P]``, and masked-out weights untouched."""
    ts = [
        _exact_weights((n,), seed + i, dtype)
        for i, (n, dtype) in enumerate(zip(sizes, dtypes, strict=False))
    ]
    masks = {
        t: (torch.rand(t.shape, generator=torch.Generator().manual_seed(seed + 9 * i)) < m).float()
        for i, (t, m) in enumerate(zip(ts, masked, strict=False))
        if m is not None
    }
    before = [t.clone() for t in ts]
    space = ParamSpace([ts], masks=dict(masks))
    assume(space.dim % size != 0)  # a pool size dividing d is refused
    pool = Pool(size=size, seed=seed % 7).bind(space.dim)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "POOL_CHUNK", chunk)
        passes.apply_(pool, space.segments, eps, [(step, 0, [k] * len(ts))])
    o = step * space.dim % size
    for seg, t, w0 in zip(space, ts, before, strict=True):
        z = pool.pool[(o + seg.offset + torch.arange(seg.numel)) % size].double()
        if t.dtype == torch.float64:
            a = z * eps
        else:  # the float32 product is the exact float64 one, rounded once
            a = (z * float(np.float32(eps))).float().to(t.dtype).double()
        m = masks[t].double() if t in masks else 1.0
        assert torch.equal(t, (w0.double() + k * a * m).to(t.dtype))
        if t in masks:
            assert torch.equal(t[masks[t] == 0], w0[masks[t] == 0])
    assert pool._scaled is None


def test_pool_pass_equals_the_scaled_table_for_any_multiple():
    """Bit for bit what the path did with a whole eps-scaled copy of the pool:
    ``w.add_(table[window], alpha=k)`` (float32, a multiple whose product rounds)."""
    ts = [torch.randn(5000, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    space = ParamSpace([ts])
    pool = Pool(size=1013, seed=3).bind(space.dim)
    k, eps = -0.123456789, 1e-3
    table = pool.pool * eps  # the old table, round(eps * pool) in float32
    o = pool.offset(4, 0)
    want = [
        t.clone().add_(table[(o + seg.offset + torch.arange(seg.numel)) % 1013], alpha=k)
        for seg, t in zip(space, ts, strict=True)
    ]
    passes.apply_(pool, space.segments, eps, [(4, 0, [k] * 3)])
    assert all(torch.equal(t, w) for t, w in zip(ts, want, strict=True))


def test_a_source_without_kernel_spec_uses_sample(monkeypatch):
    """The reference path needs nothing but ``sample``: a source overriding it is obeyed."""

    class Ones(Gaussian):
        def sample(self, step, query, offset, n, *, dtype=torch.float32, device=None):
            return torch.ones(n, dtype=dtype, device=device)

        def kernel_spec(self):
            return None

    seg = Segment(torch.zeros(5), 0, 0, mask=torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]))
    passes.apply_(Ones(0).bind(5), [seg], 0.5, [(0, 0, [2.0]), (1, 0, [-4.0])])
    assert seg.param.tolist() == [-1.0, 0.0, -1.0, -1.0, 0.0]


def test_invalid_kernel_mode_is_refused(monkeypatch):
    monkeypatch.setattr(passes, "mode", "sometimes")
    with pytest.raises(ValueError, match=r"kernel mode 'sometimes'.*EDGEZO_KERNELS"):
        passes.apply_(Gaussian(0).bind(3), [Segment(torch.zeros(3), 0, 0)], 1.0, [(0, 0, [1.0])])


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([1, 9, 1000, reference.CHUNK + 37]),
    density=st.floats(0.0, 1.0),
    dtype=st.sampled_from(DTYPES[:3]),
    k=st.sampled_from([1.0, -2.0, 0.3]),
    seed=st.integers(0, 1000),
)
def test_masked_sampled_pass_equals_the_dense_mask_formula(n, density, dtype, k, seed):
    """With the mask kept as bits and unpacked per chunk, a pass gives the bits of the
    formula with a dense mask of the weight dtype: ``w.addcmul_(round(eps z), m, k)``;
    masked-out weights keep their bits."""
    if dtype != torch.float32 and k == 0.3:
        k = 1.0  # float16/bfloat16 adds are exact in this test only for exact products
    w = _exact_weights((n,), seed, dtype)
    mask = (torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)) < density).to(dtype)
    seg = Segment(w, 11, 0, mask=mask)
    src = Gaussian(seed=seed).bind(n + 11)
    eps = 0.01
    a = (src.sample(3, 0, 11, n) * eps).to(dtype)
    want = w.clone().addcmul_(a, mask, value=k)
    passes.apply_(src, [seg], eps, [(3, 0, [k])])
    assert torch.equal(w, want)
    assert torch.equal(w[mask == 0], _exact_weights((n,), seed, dtype)[mask == 0])
