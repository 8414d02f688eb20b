"""The Triton path of edgezo.passes against its torch path, on the CPU through Triton's interpreter.

``TRITON_INTERPRET=1`` is set before triton is imported, and the kernel path is
forced on CPU tensors (``passes.mode = "on"``) with small blocks (32 elements),
so that small tensors cross many program and tensor boundaries. Integer sources
(Pool, Rademacher, Uniform) and the hash words must be bit-exact; Gaussian ``z``
within the documented tolerance of torch's ``erfinv``. Also: the GPU benchmark's
CPU smoke run.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported anywhere

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgezo import ZO  # noqa: E402
from edgezo import passes as zo_passes  # noqa: E402
from edgezo.directions import LFSR, Gaussian, Pool, Rademacher, Uniform  # noqa: E402
from edgezo.directions.counter import hash_words, symmetric_unit  # noqa: E402
from edgezo.params import Segment  # noqa: E402

try:
    from edgezo.passes import triton_hash as khash
    from edgezo.passes import triton_perturb as perturb

    TRITON_ERROR = None
except ImportError as error:  # reported by every test, never skipped
    TRITON_ERROR = (
        f"triton is not importable ({error}): pip install triton (or pip install -e .[test])"
    )

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_step.py"
FLOATS = [torch.float32, torch.float16, torch.bfloat16]
#: Gaussian z = sqrt(2) erfinv(u): relative error bound vs torch (hash.ERFINV_ULPS ulps of
#: erfinv, then the product's rounding; measured max over all 2**24 u: 3.57e-7).
GAUSSIAN_RTOL = 4 * 2.0**-23


@pytest.fixture(autouse=True)
def kernel_path(monkeypatch):
    """Kernels forced on CPU tensors, 32-element blocks, a fresh plan cache."""
    if TRITON_ERROR:
        pytest.fail(TRITON_ERROR, pytrace=False)
    if not khash.interpreted():
        pytest.fail(
            "edgezo.passes.triton_hash was imported before TRITON_INTERPRET=1 was set; "
            "run tests/test_passes_triton.py in its own pytest process",
            pytrace=False,
        )
    monkeypatch.setattr(zo_passes, "mode", "on")
    monkeypatch.setattr(perturb, "BLOCK", 32)
    zo_passes.fused._plans.clear()
    yield
    zo_passes.fused._plans.clear()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (``torch.equal`` takes -0.0 == 0.0)."""
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return a.dtype == b.dtype and torch.equal(a.view(ints), b.view(ints))


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in float32 ulps (ordered integer representation)."""

    def ordered(x):
        i = x.float().view(torch.int32).long()
        return torch.where(i < 0, -(i & 0x7FFFFFFF), i)

    return (ordered(a) - ordered(b)).abs()


def source(name: str, seed: int = 3, pool_size: int = 67):
    return {
        "gaussian": lambda: Gaussian(seed),
        "rademacher": lambda: Rademacher(seed),
        "uniform": lambda: Uniform(seed),
        "uniform-perturbation": lambda: Uniform(seed, scale="perturbation"),
        "pool": lambda: Pool(pool_size, seed),
        "pool-perturbation": lambda: Pool(pool_size, seed, scale="perturbation"),
    }[name]()


def segments(sizes, dtypes, first_offset=0, seed=0):
    """Random tensors (first element -0.0: a zero multiple must keep its sign) as segments
    whose global indices start at ``first_offset``."""
    gen = torch.Generator().manual_seed(seed)
    out, offset = [], first_offset
    for n, dtype in zip(sizes, dtypes, strict=True):
        values = torch.randn(n, generator=gen)
        values[0] = -0.0
        out.append(Segment(values.to(dtype), offset, 0))
        offset += n
    return out


def clone(segs):
    return [Segment(s.param.clone(), s.offset, s.group) for s in segs]


def torch_path(src, segs, eps, passes):
    """The reference: the torch executor on the same segments."""
    zo_passes.mode = "off"
    try:
        zo_passes.apply_(src, segs, eps, passes)
    finally:
        zo_passes.mode = "on"


def pool_accepts(size: int, dim: int) -> bool:
    """Whether Pool.bind accepts ``size`` for ``dim`` (enough distinct windows)."""
    return size // math.gcd(size, dim) >= min(dim, 64)


# -- the numbers ---------------------------------------------------------------
def test_hash_words_are_bit_exact_across_a_key_block():
    """Kernel hash words equal the NumPy reference, also across the 2**32 index boundary."""
    offset, n = 2**32 - 70, 150
    got = khash.hash_words(11, 7, 2, offset, n, "cpu").numpy().view(np.uint32)
    np.testing.assert_array_equal(got, hash_words(11, 7, 2, offset, n))


@pytest.mark.parametrize("name", ["rademacher", "uniform", "uniform-perturbation"])
def test_integer_sources_sample_bit_exact(name):
    src = source(name).bind(400, 2)
    got = khash.sample(src.kernel_spec(), 5, 1, 123, 200, "cpu")
    assert torch.equal(got, src.sample(5, 1, 123, 200))


def test_gaussian_within_tolerance_on_hashed_and_extreme_inputs():
    """Hashed z, and the tails (|u| -> 1, where the polynomial switches), within GAUSSIAN_RTOL."""
    src = Gaussian(9)
    got, want = khash.sample(src.kernel_spec(), 4, 0, 10, 512, "cpu"), src.sample(4, 0, 10, 512)
    assert ((got - want).abs() <= GAUSSIAN_RTOL * want.abs()).all()
    v = np.concatenate([np.arange(512), 2**24 - 1 - np.arange(512), np.arange(0, 2**24, 2**15)])
    words = (v.astype(np.uint32) << np.uint32(8)) | np.uint32(0xA5)  # low 8 bits ignored
    got = khash.values_of_words(khash.GAUSSIAN, torch.from_numpy(words.view(np.int32)))
    want = torch.from_numpy(symmetric_unit(words)).erfinv_().mul_(math.sqrt(2.0))
    assert ((got - want).abs() <= GAUSSIAN_RTOL * want.abs()).all()
    assert got.abs().max() > 5.4  # the tails were reached


@pytest.mark.slow
def test_gaussian_erfinv_ulps_over_every_input(monkeypatch):
    """All 2**24 values of u: erfinv within ERFINV_ULPS float32 ulps of torch's."""
    monkeypatch.setattr(khash, "SAMPLE_BLOCK", 2**20)
    words = np.arange(2**24, dtype=np.uint32) << np.uint32(8)
    z = khash.values_of_words(khash.GAUSSIAN, torch.from_numpy(words.view(np.int32)))
    want = torch.from_numpy(symmetric_unit(words)).erfinv_()
    assert int(ulps(z / math.sqrt(2.0), want).max()) <= khash.ERFINV_ULPS + 1  # +1: the division
    assert ((z - want * math.sqrt(2.0)).abs() <= GAUSSIAN_RTOL * z.abs()).all()


# -- passes ----------------------------------------------------------------------
exact_multiples = st.sampled_from([1.0, -2.0, -1.0, 0.0, 4.0])


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=4),
    dtypes=st.data(),
    first_offset=st.sampled_from([0, 2**32 - 50]),
    name=st.sampled_from(["rademacher", "uniform", "pool", "pool"]),
    pool_size=st.integers(3, 90),
    multiples=st.data(),
    npass=st.integers(1, 3),
)
def test_pass_is_bit_exact_for_integer_sources(
    sizes, dtypes, first_offset, name, pool_size, multiples, npass
):
    """Multi-tensor, multi-pass launches (mixed sizes and dtypes, pools smaller and larger
    than a block, a key-block crossing) equal the torch path bit for bit."""
    assume(name != "pool" or pool_accepts(pool_size, first_offset + sum(sizes)))
    kinds = dtypes.draw(st.lists(st.sampled_from(FLOATS), min_size=len(sizes), max_size=len(sizes)))
    segs = segments(sizes, kinds, first_offset)
    src = source(name, pool_size=pool_size).bind(first_offset + sum(sizes), 2)
    passes = [
        (
            s,
            s % 2,
            multiples.draw(st.lists(exact_multiples, min_size=len(sizes), max_size=len(sizes))),
        )
        for s in range(npass)
    ]
    want = clone(segs)
    torch_path(src, want, 1e-2, passes)
    zo_passes.apply_(src, segs, 1e-2, passes)
    for got, ref in zip(segs, want, strict=True):
        assert same_bits(got.param, ref.param)


@pytest.mark.parametrize("name", ["uniform-perturbation", "pool-perturbation"])
def test_pass_with_per_perturbation_scale_is_bit_exact(name):
    segs = segments([40, 33], [torch.float32, torch.bfloat16])
    src = source(name, pool_size=67).bind(73, 2)  # P < d: windows wrap
    passes = [(1, 0, [1.0, 1.0]), (1, 1, [-2.0, -2.0]), (0, 1, [1.0, 0.0])]
    want = clone(segs)
    torch_path(src, want, 1e-2, passes)
    zo_passes.apply_(src, segs, 1e-2, passes)
    assert all(same_bits(g.param, w.param) for g, w in zip(segs, want, strict=True))


@pytest.mark.parametrize("dtype", FLOATS)
def test_gaussian_pass_adds_rounded_eps_z_of_the_kernel(dtype):
    """The Gaussian pass is exactly ``w += k round(eps z)`` with the kernel's own z, pass by pass."""
    segs = segments([45, 20], [dtype, dtype], first_offset=7)
    src, eps = Gaussian(5), 3e-2
    passes = [(2, 0, [1.0, -2.0]), (2, 1, [4.0, 1.0])]
    want = clone(segs)
    for step, query, ks in passes:
        for seg, k in zip(want, ks, strict=True):
            z = khash.sample(src.kernel_spec(), step, query, seg.offset, seg.numel, "cpu")
            seg.param.add_((z * eps).to(dtype), alpha=k)
    zo_passes.apply_(src, segs, eps, passes)
    assert all(same_bits(g.param, w.param) for g, w in zip(segs, want, strict=True))


@pytest.mark.parametrize("name", ["pool", "uniform"])
def test_fused_restore_and_update_equals_separate_passes(name):
    """Restore (-1) and update (an inexact multiple) of several queries in one launch equal
    the torch path's separate passes (float32: both are FMAs); float16/bfloat16 equal the
    float64 formula round(fp32(w + k a)) that defines the kernel (the CPU's add_ rounds k)."""
    src, eps = source(name, pool_size=67).bind(90, 2), 1e-2
    passes = [(4, 0, [-1.0, -1.0]), (4, 0, [-0.3712, -0.0917]), (4, 1, [0.25, 1.37])]
    segs = segments([50, 40], [torch.float32, torch.float32])
    want = clone(segs)
    torch_path(src, want, eps, passes)
    zo_passes.apply_(src, segs, eps, passes)
    assert all(same_bits(g.param, w.param) for g, w in zip(segs, want, strict=True))
    for dtype in (torch.float16, torch.bfloat16):
        segs = segments([50, 40], [dtype, dtype])
        want = [s.param.double() for s in segs]
        for step, query, ks in passes:
            for i, (seg, k) in enumerate(zip(segs, ks, strict=True)):
                z = src.sample(step, query, seg.offset, seg.numel)
                a = (z * eps).to(dtype).double()
                want[i] = (want[i] + float(np.float32(k)) * a).float().to(dtype).double()
        zo_passes.apply_(src, segs, eps, passes)
        assert all(torch.equal(s.param.double(), w) for s, w in zip(segs, want, strict=True))


def test_interrupted_launch_takes_back_the_groups_done(monkeypatch):
    """All or nothing: an interrupt at the second dtype group leaves the weights as they were."""
    segs = segments([30, 30], [torch.float32, torch.float16])
    for seg in segs:  # integers and eps = 1 with z = +/-1: every step is exact
        seg.param.copy_(seg.param.mul(8).round())
    before = [s.param.clone() for s in segs]
    calls, launch = [], perturb.counter_passes_

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        launch(*args, **kwargs)

    monkeypatch.setattr(perturb, "counter_passes_", failing)
    with pytest.raises(KeyboardInterrupt):
        zo_passes.apply_(Rademacher(1), segs, 1.0, [(0, 0, [1.0, 1.0]), (0, 1, [2.0, 2.0])])
    assert len(calls) == 3  # group 1, group 2 (interrupted), undo of group 1
    # by value: the -0.0 comes back as +0.0, as (-0.0 + 1) - 1 does in any float arithmetic
    assert all(torch.equal(s.param, b) for s, b in zip(segs, before, strict=True))


def test_every_registered_kernel_source_matches_its_torch_path(kernel_source_name, make_source):
    """The contract registry (conftest.py): every source with a kernel spec, several passes
    over mixed dtypes, equal to the torch path (bit for bit; Gaussian within GAUSSIAN_RTOL)."""
    segs = segments([60, 50, 40], [torch.float32, torch.bfloat16, torch.float32], first_offset=0)
    src = make_source(kernel_source_name).bind(150, 2)
    passes = [(3, 0, [1.0, 1.0, -2.0]), (3, 1, [-2.0, 4.0, 1.0]), (4, 0, [-0.375, 0.0, 1.0])]
    want = clone(segs)
    torch_path(src, want, 1e-2, passes)
    zo_passes.apply_(src, segs, 1e-2, passes)
    for got, ref in zip(segs, want, strict=True):
        if src.kernel_spec().kind == "gaussian":
            torch.testing.assert_close(got.param, ref.param, rtol=0, atol=1e-5)
        else:
            assert same_bits(got.param, ref.param)


# -- selection -------------------------------------------------------------------
def test_selection_rules():
    """Torch path for CPU tensors under 'auto', masks, float64; no Triton for hardware RNGs."""
    plain = segments([10], [torch.float32])
    plan = zo_passes.fused.plan
    assert plan(plain, "on") is not None
    assert plan(plain, "auto") is None  # CPU tensors: the torch path
    masked = [Segment(torch.ones(4), 0, 0, mask=torch.tensor([1.0, 0.0, 1.0, 1.0]))]
    assert plan(masked, "on") is None
    assert plan(segments([4], [torch.float64]), "on") is None
    lfsr = LFSR(seed=3).bind(10)
    assert lfsr.kernel_spec().kind == "registers"  # no Triton kernel reads it, even when forced
    ops = zo_passes.operations(lfsr, plain, 1.0, [(0, 0, [1.0])])
    assert zo_passes.last_executor != "triton"
    assert all(
        op.func.__module__ in ("edgezo.passes.streams", "edgezo.passes.reference") for op in ops
    )
    zo_passes.mode = "sometimes"
    with pytest.raises(ValueError, match=r"kernel mode 'sometimes'.*auto.*on.*off"):
        zo_passes.apply_(Gaussian(0), segments([3], [torch.float32]), 1.0, [(0, 0, [1.0])])


# -- a whole step ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pool", "rademacher", "uniform", "gaussian"])
def test_zo_steps_through_kernels_equal_the_cpu_path(name):
    """Central, 2 queries, momentum replay (multi-pass updates): same losses and weights as the
    torch path (bit for bit for integer sources, GAUSSIAN_RTOL-level for Gaussian)."""

    def train(mode):
        zo_passes.mode = mode
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
        x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
        opt = ZO(
            model.parameters(),
            lr=0.05,
            eps=1e-2,
            queries=2,
            momentum=0.9,
            history=2,
            directions=source(name, pool_size=47),  # d = 43
        )
        losses = [float(opt.step(lambda: F.cross_entropy(model(x), y))) for _ in range(2)]
        return losses, [p.detach().clone() for p in model.parameters()]

    want_losses, want = train("off")
    losses, got = train("on")
    if name == "gaussian":
        assert losses == pytest.approx(want_losses, rel=1e-5)
        assert all(torch.allclose(g, w, rtol=0, atol=1e-6) for g, w in zip(got, want, strict=True))
    else:
        assert losses == want_losses
        assert all(same_bits(g, w) for g, w in zip(got, want, strict=True))


# -- the GPU benchmark, CPU smoke run -----------------------------------------------
def test_gpu_benchmark_runs_on_cpu_and_reports_its_keys():
    """``--model tiny --device cpu``: the torch path end to end; JSON with every section."""
    env = {**os.environ, "EDGEZO_KERNELS": "auto"}
    env.pop("TRITON_INTERPRET", None)
    args = ["--model", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["device"]["type"] == "cpu" and result["kernels"] is False
    assert result["model"]["params"] > 0
    for key in ("forward", "mezo_step", "edgezo_step_gaussian", "edgezo_step_pool"):
        assert result["ms"][key] > 0
    for key in ("mezo_step", "edgezo_step_gaussian", "edgezo_step_pool"):
        assert result["step_over_two_forwards"][key] > 0
    for key in ("memory", "mezo", "gaussian", "pool"):
        assert result["pass_ms"][key] > 0
    assert result["peak_memory"] is None  # CPU: no allocator statistics


def test_a_cpu_step_does_not_import_triton():
    """On CPU the torch path runs and triton stays unloaded (it costs ~80 MB of resident memory)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from edgezo import ZO\n"
        "from edgezo.directions import Gaussian, Pool\n"
        "m = torch.nn.Linear(8, 2)\n"
        "for d in (Gaussian(0), Pool(1001, 0)):\n"
        "    ZO(m.parameters(), lr=1e-3, directions=d).step(lambda: m(torch.ones(1, 8)).sum())\n"
        "print('triton' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEZO_KERNELS", "TRITON_INTERPRET")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
