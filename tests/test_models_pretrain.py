"""edgezo.models.pretrain: backprop pretraining, cached by config hash and resumable."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor, nn

import edgezo.models.pretrain as pretrain_module
from edgezo import cache
from edgezo.models.portable import Adam
from edgezo.models.pretrain import pretrained
from edgezo.train import fit, warmup_cosine


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

    monkeypatch.setattr(pretrain_module, "run_portable", no_training)
    second, again = pretrained("blobnet", _net, data, progress=False, **ARGS)
    assert again.from_cache and _equal(first, second)
    assert again.train_accuracy == info.train_accuracy
    assert again.train_seconds == pytest.approx(info.train_seconds)
    assert not second.training


def _portable_reference(data: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    """ARGS's run done here, with the portable Adam and the same schedule and batches: in
    this process's kernels, so equal to the portable process's run up to float rounding."""
    torch.manual_seed(0)
    model = _net()
    opt = Adam(model.parameters(), lr=ARGS["lr"])
    fit(model, opt, data, steps=ARGS["steps"], batch_size=ARGS["batch_size"], seed=0,
        progress=False, scheduler=warmup_cosine(opt, ARGS["steps"], warmup=ARGS["steps"] // 20))  # fmt: skip
    return model.state_dict()


def test_the_portable_run_is_the_documented_recipe(cache_dir):
    """What the other process trains is what the module doc says: the seeded build, Adam, a
    warmup-cosine schedule and fit's seeded batches (checked against this process's run)."""
    data = _blobs()
    model, _ = pretrained("blobnet", _net, data, progress=False, **ARGS)
    reference = _portable_reference(data)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-6)


def test_a_different_run_misses_the_cache(cache_dir):
    data = _blobs()
    pretrained("blobnet", _net, data, progress=False, **ARGS)
    for change in ({"lr": 2e-2}, {"seed": 1}, {"steps": 61}, {"config": {"data": "other"}}):
        _, info = pretrained("blobnet", _net, data, progress=False, **{**ARGS, **change})
        assert not info.from_cache, change


class Counting(nn.Module):
    """The same net (same init) that raises inside its ``fail_at``-th forward (in the
    portable process that trains it, which counts from its own start)."""

    fail_at: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.net, self.calls = _net(), 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.net(x)


class FailsInStep45(Counting):
    fail_at = 45  # steps 1..44 are done, and fit saves them as it fails


class FailsInStep20(Counting):
    fail_at = 20  # a run from the start fails here; one resumed after step 44 needs 16 + 1 calls


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = _blobs()
    monkeypatch.setenv(cache.ENV, str(tmp_path / "a"))
    expected, _ = pretrained("blobnet", _net, data, progress=False, **ARGS)

    monkeypatch.setenv(cache.ENV, str(tmp_path / "b"))
    with pytest.raises(RuntimeError, match="portable run"):
        pretrained("blobnet", FailsInStep45, data, progress=False, **ARGS)
    assert len(list((tmp_path / "b").glob("*.ckpt"))) == 1

    resumed, info = pretrained("blobnet", FailsInStep20, data, progress=False, **ARGS)
    assert not info.from_cache
    pairs = zip(resumed.net.parameters(), expected.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not list((tmp_path / "b").glob("*.ckpt"))  # removed once the weights are cached


def test_unknown_optimizer_is_named(cache_dir):
    with pytest.raises(
        ValueError, match=r"Unknown optimizer 'lbfgs'; choose one of \['adam', 'sgd'\]"
    ):
        pretrained("blobnet", _net, _blobs(), optimizer="lbfgs", progress=False, **ARGS)


@pytest.mark.parametrize("build", [lambda: _net(), functools.partial(lambda: _net())])
def test_a_build_that_cannot_cross_a_process_is_refused_before_training(cache_dir, build):
    with pytest.raises(ValueError, match="functools.partial of one"):
        pretrained("blobnet", build, _blobs(), progress=False, **ARGS)


def test_a_result_names_the_backbones_it_rests_on(cache_dir):
    """A study's provenance lists each backbone it loaded, with the SHA-256 of its weights."""
    from edgezo.models.portable import state_digest
    from edgezo.models.pretrain import PRETRAIN_FORMAT, loaded_backbones
    from edgezo.studies.results import provenance

    model, _ = pretrained("blobnet", _net, _blobs(), progress=False, **ARGS)
    record = {"name": "blobnet", "format": PRETRAIN_FORMAT,
              "sha256": state_digest(model.state_dict())}  # fmt: skip
    assert record in loaded_backbones() and record in provenance()["backbones"]
