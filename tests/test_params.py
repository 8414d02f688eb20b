"""ParamSpace: order, offsets, masks, locating ranges."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.fixedpoint import FixedPoint, FixedPointParameter
from edgezo.params import ParamSpace, is_frozen


@settings(max_examples=50, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3), min_size=1, max_size=6),
    data=st.data(),
)
def test_offsets_tile_the_flat_vector_and_locate_is_exact(shapes, data):
    tensors = [
        torch.arange(int(torch.tensor(s).prod()), dtype=torch.float32).view(*s) for s in shapes
    ]
    split = data.draw(st.integers(0, len(tensors)))
    space = ParamSpace([tensors[:split], tensors[split:]])
    flat = torch.cat([t.reshape(-1) for t in tensors]).double()
    assert space.dim == flat.numel()
    assert [s.offset for s in space] == [
        sum(t.numel() for t in tensors[:i]) for i in range(len(tensors))
    ]
    assert [s.group for s in space] == [0] * split + [1] * (len(tensors) - split)
    offset = data.draw(st.integers(0, space.dim - 1))
    n = data.draw(st.integers(0, space.dim - offset))
    assert torch.equal(space.gather(offset, n), flat[offset : offset + n])
    pieces = list(space.locate(offset, n))
    assert sum(b - a for _, a, b in pieces) == n


def test_masks_count_trainable_elements():
    a, b = torch.zeros(3, 4), torch.zeros(5)
    mask = torch.zeros(3, 4)
    mask[0] = 1
    space = ParamSpace([[a, b]], masks={a: mask})
    assert space.trainable() == 4 + 5
    assert space.segments[0].flat_mask().tolist() == mask.view(-1).tolist()


def test_bad_masks_and_parameters_are_rejected():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="0 \\(frozen\\) or 1"):
        ParamSpace([[a]], masks={a: torch.full((3,), 0.5)})
    with pytest.raises(ValueError, match="appears twice"):
        ParamSpace([[a], [a]])


def test_the_space_sees_replaced_storage_and_in_place_writes():
    a, b = torch.zeros(2, 3), torch.zeros(4)
    space = ParamSpace([[a, b]])
    space.check_unchanged()
    versions = space.versions()
    b.add_(1.0)
    assert [s.param for s in space.written_since(versions)] == [b]
    a.data = a.data.half()
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\) changed.*dtype is now torch.float16"):
        space.check_unchanged()


def test_only_parameters_frozen_with_requires_grad_false_are_frozen():
    assert is_frozen(torch.nn.Parameter(torch.zeros(2), requires_grad=False))
    assert not is_frozen(torch.nn.Parameter(torch.zeros(2)))
    assert not is_frozen(torch.zeros(2))  # a plain tensor: False is only torch's default
    ints = torch.zeros(2, dtype=torch.int16)
    assert not is_frozen(FixedPointParameter(ints, FixedPoint(torch.tensor(0.1), 16)))
    assert is_frozen(FixedPointParameter(ints, FixedPoint(torch.tensor(0.1), 16, False)))
