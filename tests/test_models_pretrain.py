"""edgezo.models.pretrain: backprop pretraining, cached by config hash and resumable."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import edgezo.models.pretrain as pretrain_module
from edgezo import cache
from edgezo.models.pretrain import pretrained


def _blobs(n: int = 240) -> tuple[Tensor, Tensor]:
    """Three well-separated Gaussian blobs in 2-D: a net should fit them almost perfectly."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    return centers[y] + 0.5 * torch.randn(n, 2, generator=g), y


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


ARGS = {"config": {"data": "blobs", "hidden": 16}, "steps": 60, "batch_size": 32, "lr": 1e-2}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_second_call_loads_the_same_weights_from_the_cache(cache_dir, monkeypatch):
    data = _blobs()
    first, info = pretrained("blobnet", _net, data, progress=False, **ARGS)
    assert not info.from_cache and info.path.is_file() and info.path.parent == cache_dir
    x, y = data
    with torch.no_grad():
        assert info.train_accuracy == (first(x).argmax(1) == y).double().mean().item()
    assert info.train_accuracy > 0.95

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be trained again")

    monkeypatch.setattr(pretrain_module, "fit", no_training)
    second, again = pretrained("blobnet", _net, data, progress=False, **ARGS)
    assert again.from_cache and _equal(first, second)
    assert again.train_accuracy == info.train_accuracy
    assert again.train_seconds == pytest.approx(info.train_seconds)
    assert not second.training


@pytest.mark.parametrize(
    "change", [{"lr": 2e-2}, {"seed": 1}, {"steps": 61}, {"config": {"data": "other"}}]
)
def test_a_different_run_misses_the_cache(cache_dir, change):
    data = _blobs()
    pretrained("blobnet", _net, data, progress=False, **ARGS)
    _, info = pretrained("blobnet", _net, data, progress=False, **{**ARGS, **change})
    assert not info.from_cache


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = _blobs()
    monkeypatch.setenv(cache.ENV, str(tmp_path / "a"))
    expected, _ = pretrained("blobnet", _net, data, progress=False, **ARGS)

    class Counting(nn.Module):  # the same net (same init), counting its forwards
        fail_at: int | None = None

        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = _net(), 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt
            return self.net(x)

    class Failing(Counting):
        fail_at = 45  # inside step 45: steps 1..44 are done

    monkeypatch.setenv(cache.ENV, str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        pretrained("blobnet", Failing, data, progress=False, **ARGS)
    assert len(list((tmp_path / "b").glob("*.ckpt"))) == 1

    resumed, info = pretrained("blobnet", Counting, data, progress=False, **ARGS)
    assert not info.from_cache
    assert resumed.calls == (60 - 44) + 1  # the remaining steps, then the train accuracy
    pairs = zip(resumed.net.parameters(), expected.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not list((tmp_path / "b").glob("*.ckpt"))  # removed once the weights are cached


def test_unknown_optimizer_is_named(cache_dir):
    with pytest.raises(
        ValueError, match=r"Unknown optimizer 'lbfgs'; choose one of \['adam', 'sgd'\]"
    ):
        pretrained("blobnet", _net, _blobs(), optimizer="lbfgs", progress=False, **ARGS)
