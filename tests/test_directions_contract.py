"""The contract every direction source follows, run over the registry in ``conftest.py``.

Each test takes ``source_name`` and runs once per registered source: the numbers
are a pure function of (configuration, step, query, index), whatever the
chunking, dtype or device; a checkpoint restores them; and the passes of
:mod:`edgezo.passes` apply ``w += k round(eps z)`` exactly as ``sample`` defines
it, all or nothing. (The Triton path against the torch path:
``tests/test_passes_triton.py``.)
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import passes
from edgezo.params import ParamSpace, Segment

DIM = 10_007  # parameter count the sources are bound to
SHAPES = [(40, 50), (50,), (3000,), (7, 11), (4000,)]  # 10,007 values in all = DIM


def bound(make_source, name, queries=2):
    return make_source(name).bind(DIM, queries)


def tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in SHAPES]


# -- the numbers ----------------------------------------------------------------
def test_same_configuration_gives_same_numbers(source_name, make_source):
    a, b = bound(make_source, source_name), bound(make_source, source_name)
    assert torch.equal(a.sample(5, 1, 100, 3000), b.sample(5, 1, 100, 3000))


@settings(max_examples=10, deadline=None)
@given(step=st.integers(0, 10**6), query=st.integers(0, 1), data=st.data())
def test_numbers_do_not_depend_on_chunking(source_name, make_source, step, query, data):
    offset = data.draw(st.integers(0, DIM - 1))
    n = data.draw(st.integers(1, DIM - offset))
    src = bound(make_source, source_name)
    whole = src.sample(step, query, 0, DIM)
    assert torch.equal(src.sample(step, query, offset, n), whole[offset : offset + n])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_and_device_are_respected(source_name, make_source, dtype):
    src = bound(make_source, source_name)
    z32 = src.sample(2, 1, 17, 500)
    z = src.sample(2, 1, 17, 500, dtype=dtype, device="cpu")
    assert z.dtype == dtype and z.device.type == "cpu" and z.shape == (500,)
    torch.testing.assert_close(z.float(), z32, rtol=1e-2, atol=1e-2)


def test_state_dict_round_trip_restores_the_numbers(source_name, make_source):
    src = bound(make_source, source_name)
    src.commit(0)  # sources with history move it on here
    fresh = bound(make_source, source_name)
    fresh.load_state_dict(src.state_dict())
    assert torch.equal(fresh.sample(1, 1, 0, DIM), src.sample(1, 1, 0, DIM))
    assert fresh.config() == src.config()


def test_a_different_configuration_is_refused_on_load(source_name, make_source):
    from edgezo.directions import Gaussian

    other = Gaussian(seed=12345) if "gaussian" not in source_name else Gaussian(seed=99)
    with pytest.raises(ValueError, match="same direction source"):
        bound(make_source, source_name).load_state_dict(other.bind(DIM, 2).state_dict())


# -- the passes ------------------------------------------------------------------
@pytest.mark.parametrize("masked", [False, True])
def test_a_pass_adds_k_round_eps_z(source_name, make_source, masked):
    """``w += k round(eps z)`` (times the mask), per tensor, from ``sample``'s numbers."""
    src, eps, k = bound(make_source, source_name), 0.25, -2.0
    ts = tensors()
    mask = (torch.rand(SHAPES[2], generator=torch.Generator().manual_seed(1)) < 0.3).float()
    space = ParamSpace([ts], masks={ts[2]: mask} if masked else None)
    expected = []
    for seg, t in zip(space, ts, strict=True):
        a = (src.sample(7, 1, seg.offset, seg.numel) * eps).view_as(t)
        m = mask if masked and seg.mask is not None else 1.0
        expected.append(t + k * a * m)
    passes.apply_(src, space.segments, eps, [(7, 1, [k] * len(ts))])
    for got, want in zip(ts, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    if masked:
        assert torch.equal(ts[2][mask == 0], tensors()[2][mask == 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_brings_zeros_back_exactly(source_name, make_source, dtype):
    """+a, -2a, +a with a rounded once: zeros (e.g. fresh biases) come back to exactly 0."""
    src = bound(make_source, source_name)
    segs = [Segment(torch.zeros(3000, dtype=dtype), 500, 0)]
    passes.apply_(src, segs, 1e-3, [(3, 0, [1.0]), (3, 0, [-2.0]), (3, 0, [1.0])])
    assert torch.equal(segs[0].param, torch.zeros(3000, dtype=dtype))


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "groups-masks-dtypes"])
def test_one_call_equals_tensor_by_tensor(source_name, make_source, plain):
    """Several passes over all tensors in one call (the pool's fused views, foreach groups)
    equal the same passes applied tensor by tensor, bit for bit."""
    ts = tensors()
    if plain:
        space, multiples = ParamSpace([ts]), (0.5, 0.5)
    else:
        ts[3] = ts[3].to(torch.float64)
        mask = (torch.rand(SHAPES[2], generator=torch.Generator().manual_seed(2)) < 0.5).float()
        space = ParamSpace([ts[:3], ts[3:]], masks={ts[2]: mask})
        multiples = (0.5, -2.0)
    moves = [(s, 1, [multiples[seg.group] * f for seg in space]) for s, f in ((1, 1.0), (1, -0.5))]
    copies = [t.clone() for t in ts]
    src = bound(make_source, source_name)
    for step, query, ks in moves:
        for seg, t, k in zip(space, copies, ks, strict=True):
            one = Segment(t, seg.offset, seg.group, mask=seg.mask)
            passes.apply_(src, [one], 1e-2, [(step, query, [k])])
    passes.apply_(src, space.segments, 1e-2, moves)
    for got, want in zip(ts, copies, strict=True):
        assert torch.equal(got, want)


def test_an_interrupted_call_takes_everything_back(source_name, make_source, monkeypatch):
    """All or nothing: Ctrl-C after some operations of a multi-pass call undoes them."""
    ts = [t.double() for t in tensors()]
    space = ParamSpace([ts])
    before = [t.clone() for t in ts]
    src = bound(make_source, source_name)
    real = passes.operations

    def interrupted(*args):
        ops = list(real(*args))
        assert len(ops) >= 2
        yield from ops[: len(ops) // 2 + 1]
        raise KeyboardInterrupt

    monkeypatch.setattr(passes, "operations", interrupted)
    moves = [(2, 0, [1.0] * len(ts)), (2, 1, [-3.0] * len(ts))]
    with pytest.raises(KeyboardInterrupt):
        passes.apply_(src, space.segments, 1e-2, moves)
    for got, want in zip(ts, before, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
