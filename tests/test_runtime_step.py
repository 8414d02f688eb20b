"""How the fixed-point path chooses its executor (edgezo.runtime.step.compiled_step).

FixedPointFormat takes the compiled C step on the CPU when it can, and otherwise the
Python path with the reason; either way the integers are the same (the two executors
are compared bit for bit in ``test_runtime_device.py``; here, whole runs of the automatic
choice against ``EDGEZO_KERNELS=off``).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO, passes
from edgezo.directions import LFSR, Gaussian, Pool, Rademacher, RNGArray
from edgezo.directions.guided import MomentumGuided
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.formats import FixedPointFormat
from edgezo.passes import compiled
from edgezo.runtime import clib, step
from edgezo.runtime.device import DeviceFormat

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None, reason="no C compiler (cc) on PATH: the device step cannot build"
)


def trained(mode: str, directions, steps: int = 15, shape=(6, 40), per_channel=False):
    """A 16-bit linear layer after ``steps`` sign-3 steps in ``mode``: (integers, executor)."""
    passes.mode = mode
    try:
        torch.manual_seed(0)
        rows, cols = shape
        model = quantize_model(torch.nn.Linear(cols, rows), 16, None, per_channel=per_channel)
        x, y = torch.randn(32, cols), torch.randint(0, rows, (32,))
        opt = ZO(trainable_parameters(model), lr=1e-3, eps=1e-3, estimator="sign", queries=3,
                 directions=directions, formats=FixedPointFormat())  # fmt: skip
        for _ in range(steps):
            opt.step(lambda: F.cross_entropy(model(x), y))
        return [p.data.clone() for p in trainable_parameters(model)], opt.formats[0].executor
    finally:
        passes.mode = "auto"


@pytest.mark.parametrize("source", [lambda: Pool(1021, seed=1), lambda: Gaussian(seed=3)])
def test_the_compiled_step_is_chosen_and_changes_no_integer(source):
    got, executor = trained("auto", source())
    want, reference = trained("off", source())
    assert (executor, reference) == ("compiled", "python (EDGEZO_KERNELS=off)")
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert any(
        not torch.equal(a, b) for a, b in zip(got, trained("off", source(), 0)[0], strict=True)
    )


def test_a_source_the_c_step_cannot_reproduce_falls_back_with_the_reason():
    _, executor = trained("auto", MomentumGuided(Gaussian(seed=0)), steps=2)
    assert executor.startswith("python (") and "blends Gaussians in float" in executor


def test_without_a_compiler_the_python_path_runs_and_device_format_says_so(monkeypatch):
    def missing():
        raise clib.CompilerMissing("no C compiler in this test")

    monkeypatch.setattr(step, "library", missing)
    got, executor = trained("auto", Pool(1021, seed=1), steps=3)
    assert executor == "python (no C compiler in this test)"
    assert all(
        torch.equal(a, b)
        for a, b in zip(got, trained("off", Pool(1021, seed=1), 3)[0], strict=True)
    )
    model = quantize_model(torch.nn.Linear(4, 2), 16, None)
    with pytest.raises(clib.CompilerMissing, match="no C compiler"):
        ZO(trainable_parameters(model), lr=1e-3, eps=1e-3, directions=Pool(1021, seed=1),
           formats=DeviceFormat())  # fmt: skip


@pytest.mark.parametrize(
    "source",
    [lambda: Pool(1021, seed=1), lambda: LFSR(width=16, seed=77, bits=7),
     lambda: RNGArray(n=16, rng="lfsr", bits=8, seed=5), lambda: Rademacher(seed=2**40 + 1),
     lambda: Gaussian(seed=3)],
    ids=["pool", "lfsr", "array", "rademacher", "gaussian"],
)  # fmt: skip
def test_reads_and_updates_cut_for_threads_give_the_same_integers(source, monkeypatch):
    """Ranges that start inside rows (per-channel eps and factors) and far into the streams
    (each range seeks its own cursors): the same integers as the Python path."""
    monkeypatch.setattr(compiled, "SPLIT", 97)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert len(compiled.pieces(7 * 130, 3)) == 2  # whole tiles of 512: 2 ranges here
        got, executor = trained("auto", source(), 6, shape=(7, 130), per_channel=True)
    finally:
        torch.set_num_threads(threads)
    want, _ = trained("off", source(), 6, shape=(7, 130), per_channel=True)
    assert executor == "compiled"
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_a_build_without_the_native_flags_says_so(tmp_path, monkeypatch):
    """A compiler that refuses the tuning flags still builds the library, and warns (a silent
    fallback once turned the fast path off unnoticed)."""
    monkeypatch.setattr(clib, "NATIVE", ("-fthis-flag-does-not-exist",))
    with pytest.warns(UserWarning, match="built without -fthis-flag-does-not-exist"):
        clib.build(clib.compiler(), tmp_path / "step.so")
    assert (tmp_path / "step.so").stat().st_size > 0


def test_a_broken_toolchain_falls_back_loudly(monkeypatch):
    """A compiler that fails (not a missing one) warns, and training goes on in Python."""

    def broken():
        raise RuntimeError("Compiling edgezo_step.c failed (test)")

    monkeypatch.setattr(step, "library", broken)
    with pytest.warns(UserWarning, match="compiled fixed-point step is unavailable"):
        _, executor = trained("auto", Pool(1021, seed=1), steps=1)
    assert executor.startswith("python (Compiling edgezo_step.c failed")
