"""ParamSpace: order, offsets, masks, locating ranges."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo import ZO
from edgezo.analysis.memory import optimizer_state_bytes
from edgezo.fixedpoint import FixedPoint, FixedPointParameter
from edgezo.params import MASK_CHUNK, BitMask, ParamSpace, is_frozen
from edgezo.resume import mask_digest


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
    assert space.segments[0].mask.dense(torch.float32).tolist() == mask.view(-1).tolist()
    assert space.segments[0].mask_piece(2, 6, torch.float32).tolist() == [1, 1, 0, 0]
    assert space.segments[1].mask is None and space.segments[1].mask_piece(0, 2, torch.bool) is None


@settings(max_examples=40, deadline=None)
@given(
    n=st.one_of(st.integers(1, 70), st.integers(MASK_CHUNK - 9, MASK_CHUNK + 17)),
    density=st.floats(0.0, 1.0),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]),
    data=st.data(),
)
def test_bit_masks_are_numpy_packbits_little_and_unpack_any_piece(n, density, dtype, data):
    """The packing the C device step reads (numpy's little bit order), built a chunk at a
    time, and any piece unpacked back to the given 0/1 values."""
    seed = data.draw(st.integers(0, 2**31 - 1))
    on = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < density
    packed = BitMask.pack(on.to(dtype))
    expected = np.packbits(on.numpy(), bitorder="little")
    assert packed.bits.dtype == torch.uint8 and packed.bits.numpy().tobytes() == expected.tobytes()
    assert packed.ones == int(on.sum()) and packed.nbytes == -(-n // 8)
    start = data.draw(st.integers(0, n))
    stop = data.draw(st.integers(start, n))
    assert torch.equal(packed.unpack(start, stop), on[start:stop])
    assert torch.equal(packed.unpack(start, stop, torch.float16), on[start:stop].half())
    assert torch.equal(packed.dense(), on)
    assert mask_digest(packed) == mask_digest(on)  # checkpoints' digest unchanged by the bits


def test_masks_cost_one_bit_per_weight_and_the_given_mask_is_not_kept():
    """ZO keeps 1/8 byte per masked weight (plus a constant per tensor), and no reference
    to the float masks given: dropping them frees them."""
    a, b = torch.zeros(1000, 37), torch.zeros(5001)
    masks = [(torch.rand(p.shape, generator=torch.Generator().manual_seed(3)) < 0.3).float()
             for p in (a, b)]  # fmt: skip
    refs = [weakref.ref(m) for m in masks]
    opt = ZO([{"params": [a, b], "masks": masks}], lr=0.1)
    ones = [int(m.sum()) for m in masks]
    del masks
    gc.collect()
    assert all(r() is None for r in refs)
    kept = [s.mask for s in opt.space]
    assert [m.ones for m in kept] == ones and opt.space.trainable() == sum(ones)
    weights = a.numel() + b.numel()
    assert sum(m.nbytes for m in kept) <= weights / 8 + len(kept)
    assert optimizer_state_bytes(opt) <= weights / 8 + 64 * len(kept)
    assert opt.param_groups[0]["masks"] == kept


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
