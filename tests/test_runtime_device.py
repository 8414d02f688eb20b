"""The C device step (edgezo.runtime.device) against the Python fixed-point path, bit for bit.

FixedPointFormat runs its Python executor here (``EDGEZO_KERNELS=off``, set for every
test) and DeviceFormat the C step, so each comparison is the reference against C. Two copies of a real model's integers (the 16w8a SmallCNN head, 1,290 weights)
train side by side, one with :class:`FixedPointFormat`, one with
:class:`DeviceFormat`, on the same deterministic losses (real forwards on a fixed
batch); after every step their integers must be equal. Reads are compared with
:class:`PerturbedRead` directly over random shapes, eps and seeds (hypothesis).
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO, passes
from edgezo.directions import LFSR, Gaussian, Pool, Rademacher, RNGArray, Uniform, Xorshift
from edgezo.directions.guided import MomentumGuided
from edgezo.estimators import SharpnessAware
from edgezo.fixedpoint import Requant, ZFormat, quantize_model, trainable_parameters
from edgezo.formats import FixedPointFormat
from edgezo.models import SmallCNN
from edgezo.runtime import clib
from edgezo.runtime.bundle import write_device_sources
from edgezo.runtime.clib import library
from edgezo.runtime.device import DeviceFormat, UnsupportedSource
from edgezo.runtime.zsource import DeviceSource, step_edges
from edgezo.updates.norms import KernelNormalized
from edgezo.updates.sparse import sparse_groups

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None, reason="no C compiler (cc) on PATH: the device step cannot build"
)


@pytest.fixture(autouse=True)
def python_reference(monkeypatch):
    """FixedPointFormat on its Python executor (DeviceFormat is always the C step)."""
    monkeypatch.setattr(passes, "mode", "off")


SOURCES = {
    "pool": lambda: Pool(size=1021, seed=3),
    "lfsr7": lambda: LFSR(width=16, seed=77, bits=7),
    "xorshift": lambda: Xorshift(seed=12345, bits=8),
    "array lfsr": lambda: RNGArray(n=16, rng="lfsr", bits=8, seed=5),
    "array xorshift": lambda: RNGArray(n=8, rng="xorshift", bits=6, seed=9),
    "rademacher": lambda: Rademacher(seed=2**40 + 11),
    "gaussian": lambda: Gaussian(seed=2**40 + 7),  # qzo_ff's z: a step function of the hash
    "uniform": lambda: Uniform(seed=9),
}
ESTIMATORS = {"central": ("central", 1), "forward": ("forward", 1), "sign1": ("sign", 1),
              "sign3": ("sign", 3)}  # fmt: skip


def head(per_channel: bool, seed: int = 0) -> torch.nn.Module:
    """The integer head of a 16-bit SmallCNN (1,290 weights), as the demo adapts it."""
    torch.manual_seed(seed)
    return quantize_model(SmallCNN().head, 16, None, per_channel=per_channel)


def pair(source: str, estimator: str, per_channel: bool, sparse: bool = False, **kw):
    """The same model and optimizer twice: the Python path and the C path."""
    name, queries = ESTIMATORS[estimator]
    override = kw.pop("estimator_override", None)
    out = []
    for fmt in (FixedPointFormat(), DeviceFormat()):
        model = head(per_channel)
        params = trainable_parameters(model)
        if sparse:
            params = sparse_groups(params, sparsity=0.7, rule="random", seed=1)
        lr = 1e-3 if name == "sign" else 1e-2
        opt = ZO(params, lr=lr, eps=1e-3, estimator=override or name, queries=queries,
                 directions=SOURCES[source](), formats=fmt, **kw)  # fmt: skip
        out.append((model, opt))
    assert [o.formats[0].executor for _, o in out] == [
        "python (EDGEZO_KERNELS=off)",
        "compiled",
    ]
    return out


def run(pairs, steps: int) -> None:
    """``steps`` steps of both paths on one fixed batch; integers equal after every step."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 128, generator=g), torch.randint(0, 10, (16,), generator=g)
    (pm, po), (cm, co) = pairs
    for step in range(steps):
        po.step(lambda: F.cross_entropy(pm(x), y))
        co.step(lambda: F.cross_entropy(cm(x), y))
        for a, b in zip(trainable_parameters(pm), trainable_parameters(cm), strict=True):
            assert torch.equal(a.data, b.data), f"step {step}: the C path differs"


# -- bit-identical training: every source x estimator, then 1,000-step runs --------------------
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("source", list(SOURCES))
def test_every_source_and_estimator_bit_identical(source, estimator, per_channel):
    run(pair(source, estimator, per_channel), 100)


LONG_RUNS = [  # each source and each estimator trains 1,000 steps at least once
    ("pool", "sign3", True, False),  # the demo's pezo 16w8a
    ("pool", "sign3", False, True),  # sparse: 70% of the weights frozen by a 1-bit mask
    ("lfsr7", "central", False, False),
    ("xorshift", "forward", True, False),
    ("array lfsr", "sign1", False, False),
    ("array xorshift", "sign3", True, True),
    ("rademacher", "sign3", False, False),
    ("gaussian", "sign3", True, False),  # QZO-FF as qzo_ff() builds it
    ("uniform", "central", False, True),
]


@pytest.mark.parametrize("source,estimator,per_channel,sparse", LONG_RUNS)
def test_thousand_steps_bit_identical(source, estimator, per_channel, sparse):
    run(pair(source, estimator, per_channel, sparse), 1000)


def test_weight_decay_and_momentum_bit_identical():
    run(pair("pool", "central", True, weight_decay=0.05, momentum=0.9), 200)


# -- reads: PerturbedRead.read exactly, over shapes, eps, seeds and steps ----------------------
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5), cols=st.integers(1, 150), per_channel=st.booleans(),
    eps=st.floats(1e-4, 3e-2), seed=st.integers(0, 2**16), step=st.integers(0, 10**6),
    source=st.sampled_from(list(SOURCES)), nets=st.lists(st.sampled_from([-2, -1, 1, 2]),
    min_size=0, max_size=2), bits=st.sampled_from([8, 16]),
)  # fmt: skip
def test_reads_equal_perturbed_read(rows, cols, per_channel, eps, seed, step, source, nets, bits):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(cols, rows)
    reads = []
    for fmt in (FixedPointFormat(force=True), DeviceFormat(force=True)):
        model = quantize_model(layer, bits, None, per_channel=per_channel)
        opt = ZO(trainable_parameters(model), lr=1e-3, eps=eps, queries=2,
                 directions=SOURCES[source](), formats=fmt)  # fmt: skip
        bound = opt.formats[0]
        bound.perturb([((step, q), net) for q, net in enumerate(nets)])
        reads.append([p.fixed.perturbation.read(p) for p in trainable_parameters(model)])
        bound.restore()
    for a, b in zip(*reads, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(2**40), 2**40), m=st.integers(-(2**15), 2**15), k=st.integers(0, 40))
def test_requant_equals_python(x, m, k):
    want = Requant(torch.tensor(m), torch.tensor(k)).apply(torch.tensor(x))
    assert library().ez_requant(x, m, k) == int(want)


# -- a hand-worked case: rounding half up, saturation, masks --------------------------------
def c_call(fn: str, weights: list[int], table: list[int], net: int, **kw) -> list[int]:
    """Run ``ez_read`` or ``ez_update`` on int16 ``weights`` with a pool ``table`` (one term)."""
    tab = np.array(table, dtype=np.int8)
    w = np.array(weights, dtype=np.int16)
    src = clib.Source(kind=0, n_regs=1, size=len(table), table=tab.ctypes.data)
    mask = np.array([kw.get("mask", 0xFF)], dtype=np.uint8)
    t = clib.Tensor(data=w.ctypes.data, elem=2, rows=1, cols=len(w), qmax=32767,
                    mask=mask.ctypes.data)  # fmt: skip
    cursors, words = (clib.Cursor * 1)(), np.zeros(1, dtype=np.uint32)
    work = clib.Work(ctypes.cast(cursors, ctypes.c_void_p), words.ctypes.data, 1, 1)
    terms = (clib.Term * 1)(clib.Term(base=0, net=net))
    m, k = np.array([kw.get("m", 1)], dtype=np.int64), np.array([kw.get("k", 0)], dtype=np.int32)
    if fn == "update":
        f = clib.Factors(m.ctypes.data, k.ctypes.data, 1)
        assert library().ez_update(ctypes.byref(src), ctypes.byref(t), ctypes.byref(f),
                                   terms, 1, ctypes.byref(work)) == 0  # fmt: skip
        return w.tolist()
    out, eps = np.zeros_like(w), np.array([kw["eps"]], dtype=np.int32)
    rp = clib.ReadParams(kw["one"], int(m[0]), int(k[0]), eps.ctypes.data, 1)
    assert library().ez_read(ctypes.byref(src), ctypes.byref(t), out.ctypes.data,
                             ctypes.byref(rp), terms, 1, ctypes.byref(work)) == 0  # fmt: skip
    return out.tolist()


def test_hand_worked_rounding_and_saturation():
    # update, m/2**k = 1/2: change = (g + 1) >> 1 with g = -100 * z
    # z = 127: g = -12700, change = -6350, 32760 + 6350 saturates at 32767
    # z = -127: change = 6350, -32760 - 6350 saturates at -32767
    # z = 3: g = -300, change = -150 -> 10 + 150 = 160;  z = 1: g = -100, -> -50 -> 50
    # z = -1: g = 100, change = (100 + 1) >> 1 = 50 -> -50
    assert c_call("update", [32760, -32760, 10, 0, 0], [127, -127, 3, 1, -1], -100, k=1) == [
        32767, -32767, 160, 50, -50]  # fmt: skip
    # half up for negatives too: g = -3 (z = 3, n = -1): (-3 + 1) >> 1 = -1 -> w = 1
    assert c_call("update", [0], [3], -1, k=1) == [1]
    # mask bits 0b101: the middle weight is frozen
    assert c_call("update", [0, 0, 0], [1, 1, 1], -4, mask=0b101) == [4, 0, 4]
    # read: acc = 1000 * 36 + 2 * 127 = 36254; (36254 + 16) >> 5 = 1133 (1132.94 rounded)
    # acc = 1000 * 36 - 2 * 127 = 35746; (35746 + 16) >> 5 = 1117 (1117.06)
    # acc = 32767 * 36 + 2 * 127 at k = 0 saturates: 32767
    assert c_call("read", [1000, 1000], [127, -127], 1, one=36, eps=2, k=5) == [1133, 1117]
    assert c_call("read", [32767], [127], 1, one=36, eps=2, k=0) == [32767]


# -- state, sources, refusals -----------------------------------------------------------------
def test_demo_head_state_is_small():
    """pezo 16w8a's head: pool 1021 + cursors + constants, well under 8 KB."""
    model = head(per_channel=False)
    opt = ZO(trainable_parameters(model), lr=5e-4, eps=1e-3, estimator="sign", queries=3,
             directions=Pool(size=1021, seed=0), formats=DeviceFormat())  # fmt: skip
    state = opt.formats[0].state_bytes()
    assert 1021 < state <= 8 * 1024, state


def test_c_sources_have_no_floating_point():
    for name in clib.SOURCES:
        text = (clib.SOURCE_DIR / name).read_text()
        assert not re.search(r"\b(float|double)\b", text), name


def test_c_compiles_strict_c99(tmp_path):
    src = clib.SOURCE_DIR / "edgezo_step.c"
    cmd = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(src),
           "-o", str(tmp_path / "s.o")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.mark.parametrize(
    "directions,match",
    [
        (lambda: MomentumGuided(Gaussian(seed=0)), "blends Gaussians in float"),
        (lambda: Uniform(seed=0, scale="perturbation"), "own float factor"),
        (lambda: Pool(size=1021, scale="perturbation"), "float factor"),
        (lambda: LFSR(width=16, bits=14), "bits <= 12"),
    ],
)
def test_refusals_say_why(directions, match):
    """What the integer step cannot reproduce bit for bit is refused, with the reason."""
    with pytest.raises(UnsupportedSource, match=match):
        ZO(trainable_parameters(head(False)), lr=1e-3, eps=1e-3, estimator="sign",
           directions=directions(), formats=DeviceFormat())  # fmt: skip


@pytest.mark.parametrize("kind", [Gaussian, Uniform])
@pytest.mark.parametrize("bits,z_max", [(8, 3.5), (6, 2.0)])
def test_step_edges_give_every_hash_values_z_q(kind, bits, z_max):
    """The device's ``z_min + #{edges <= v}`` equals ZFormat's ``z_q`` for all 2**24 ``v``."""
    source = kind(seed=0)
    zf = ZFormat.of(source, bits, z_max)
    edges, z_min = step_edges(kind, zf.dz, zf.bits)
    v = np.arange(1 << 24, dtype=np.uint32)
    device = z_min + np.searchsorted(edges, v, side="right")
    words = v << np.uint32(8)
    qmax = 2 ** (bits - 1) - 1
    want = torch.round(source.map_words(words) / zf.dz).clamp_(-qmax, qmax).int().numpy()
    assert np.array_equal(device, want)
    assert len(edges) <= 2 * qmax


def test_no_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "")
    monkeypatch.setattr(clib.shutil, "which", lambda name: None)
    with pytest.raises(clib.CompilerMissing, match="needs a C compiler"):
        clib.compiler()


def test_config_is_fixed_point_formats():
    assert DeviceFormat(z_bits=8, z_max=3.5).config() == FixedPointFormat(8, 3.5).config()


# -- the bundle: generated header + main.c, compiled and run, equal to the Python step --------
def fnv(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


@pytest.mark.parametrize(
    "source,per_channel,sparse",
    [
        ("pool", True, True),
        ("array lfsr", False, False),
        ("rademacher", True, False),
        ("gaussian", False, False),
    ],  # fmt: skip
)
def test_bundle_step_equals_python(tmp_path, source, per_channel, sparse):
    pairs = pair(source, "sign3", per_channel, sparse)
    run(pairs, 5)  # away from step 0
    model, opt = pairs[0]  # the Python path
    out = write_device_sources(opt, tmp_path / "bundle", model)
    exe = tmp_path / "step"
    cmd = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
           str(out / "main.c"), str(out / "edgezo_step.c"), "-o", str(exe)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    signs, step = [1, -1, 0], opt.steps
    losses = iter([2.0, 1.0, 1.0, 2.0, 1.0, 1.0])  # per query: L+, L-  -> signs +1, -1, 0
    reads = [2166136261]
    params = trainable_parameters(model)

    def closure():
        for p in params:
            reads[0] = fnv(reads[0], p.fixed.perturbation.read(p).numpy().tobytes())
        return torch.tensor(next(losses))

    opt.step(closure)
    done = subprocess.run([str(exe), str(out / "weights.bin"), str(step), *map(str, signs),
                           str(tmp_path / "out.bin")], check=True, capture_output=True, text=True)  # fmt: skip
    assert f"reads {reads[0]:08x}" in done.stdout
    want = b"".join(p.data.numpy().tobytes() for p in params)
    assert (tmp_path / "out.bin").read_bytes() == want
    info = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in info["tensors"]] == ["weight_q", "bias_q"]
    assert not re.search(r"\b(float|double)\b", (out / "edgezo_model.h").read_text())


def test_bundle_refuses_a_step_main_c_cannot_run(tmp_path):
    (model, opt), _ = pair("pool", "central", False)
    with pytest.raises(ValueError, match="estimator='central'"):
        write_device_sources(opt, tmp_path, model)


@settings(max_examples=40, deadline=None)
@given(
    factor=st.one_of(st.floats(1e-6, 3.0), st.floats(2e4, 1e5)),  # k >= 1, and k = 0
    seed=st.integers(0, 2**16),
    sparse=st.booleans(),
)
def test_decay_equals_python(factor, seed, sparse):
    """The block multiply-and-shift (k >= 1 and k = 0) on every int16, extremes included."""
    done = []
    for fmt in (FixedPointFormat(force=True), DeviceFormat(force=True)):
        model = head(per_channel=True, seed=seed)
        params = trainable_parameters(model)
        params[0].data.view(-1)[:4] = torch.tensor([32767, -32767, 1, -1], dtype=torch.int16)
        groups = sparse_groups(params, 0.5, "random", seed=seed) if sparse else params
        opt = ZO(groups, lr=1e-3, eps=1e-3, directions=Pool(1021, seed=0), formats=fmt)
        opt.formats[0].decay([factor])
        done.append([p.data.clone() for p in params])
    for a, b in zip(*done, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("pos", [0, 2**32 - 5, 3 * 10**12 + 7])
def test_far_stream_positions_equal_python(source, pos):
    """Jumps far into a stream (GF(2) powers), and the counter hash across a 2**32 block."""
    directions = SOURCES[source]().bind(1, 1)  # d = 1: z(step, 0)[0] is stream position step
    zf = ZFormat.of(directions, 8, 3.5)
    src = DeviceSource.of(directions, zf)
    got = np.zeros(10, dtype=np.int32)
    status = library().ez_stream(ctypes.byref(src.source), pos, got.ctypes.data, 10,
                                 ctypes.byref(src.work(1)))  # fmt: skip
    assert status == 0
    if src.counter:
        want = zf.integers(directions, 0, 0, pos, 10)
    else:
        want = torch.cat([zf.integers(directions, pos + i, 0, 0, 1) for i in range(10)])
    assert got.tolist() == want.tolist()


def test_checkpoints_move_between_python_and_c():
    (pm, po), (cm, co) = pair("pool", "sign3", True)
    run([(pm, po), (cm, co)], 20)
    state = po.state_dict()
    co.load_state_dict(state)  # same settings: FixedPointFormat's config
    run([(pm, po), (cm, co)], 20)


@pytest.mark.parametrize("steps", [1, 3, 8, 11, 16, 29])
def test_lfsr_cycles_of_any_length_equal_python(steps):
    """The LFSR's cycle in chunks of up to 8 steps (table) plus single steps."""
    lfsr = LFSR(width=29, seed=12345, bits=6, steps_per_cycle=steps).bind(1, 1)
    zf = ZFormat.of(lfsr, 8, 3.5)
    src = DeviceSource.of(lfsr, zf)
    got = np.zeros(300, dtype=np.int32)
    assert library().ez_stream(ctypes.byref(src.source), 10**9, got.ctypes.data, 300,
                               ctypes.byref(src.work(1))) == 0  # fmt: skip
    assert (
        got.tolist()
        == lfsr.integers(10**9, 0, 0, 1).tolist() + lfsr.signed(10**9 + 1, 299).tolist()
    )


def test_sharpness_aware_and_kernel_normalized_bit_identical():
    """Two directions active at once (the ascent and the estimate), and 8-bit coefficients."""
    run(pair("array lfsr", "sign3", True, estimator_override=SharpnessAware("sign", rho=5e-3)), 60)
    run(pair("pool", "sign3", False, update=KernelNormalized()), 60)
