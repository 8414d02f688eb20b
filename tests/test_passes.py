"""The executor of edgezo.passes: one entry point, one rollback, the torch path's choices.

Every source runs through the passes' contract in ``tests/test_directions_contract.py``;
the Triton path is compared with the torch path in ``tests/test_passes_triton.py``.
"""

from __future__ import annotations

import pytest
import torch

from edgezo import passes
from edgezo.directions import Gaussian, MomentumGuided, Pool
from edgezo.params import ParamSpace, Segment


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


def test_the_pool_adds_one_view_call_per_pass_on_plain_adjacent_tensors():
    """The pool's torch path: unmasked adjacent tensors of one dtype, a window that does not
    wrap: one operation (one foreach call over views of the scaled pool) per pass."""
    ts = [torch.zeros(30), torch.zeros(20, 2)]
    space = ParamSpace([ts])
    pool = Pool(size=1009, seed=0).bind(space.dim)
    ops = list(passes.operations(pool, space.segments, 1.0, [(0, 0, [1.0, 1.0])]))
    assert len(ops) == 1
    ops[0](False)
    assert torch.equal(torch.cat([t.view(-1) for t in ts]), pool.pool[:70])


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
