"""edgezo.demo end to end (quick), and edgezo.cache, which stores the demo's backbone."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch

from edgezo import cache
from edgezo.studies import demo

# -- cache -----------------------------------------------------------------------


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("EDGEZO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "edgezo"


def test_config_key_is_the_sha256_of_canonical_json():
    config = {"steps": 10, "lr": 0.5, "name": "x", "dims": [1, 2]}
    text = '{"dims":[1,2],"lr":0.5,"name":"x","steps":10}'  # sorted keys, no spaces
    assert cache.config_key(config) == hashlib.sha256(text.encode()).hexdigest()
    assert cache.config_key(dict(reversed(list(config.items())))) == cache.config_key(config)
    assert cache.config_key({**config, "steps": 11}) != cache.config_key(config)


def test_config_key_is_stable_across_releases():
    # a literal: if this changes, every user's cache is silently invalidated
    assert cache.config_key({"a": 1}) == (
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )


def test_config_must_be_plain_json():
    with pytest.raises(TypeError, match="plain JSON"):
        cache.config_key({"t": torch.zeros(1)})
    with pytest.raises(TypeError, match="plain JSON"):
        cache.config_key({"lr": float("nan")})


def test_state_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "c"))
    config = {"model": "m", "steps": 3}
    state = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    assert cache.load_state("net", config) is None
    path = cache.save_state("net", config, state)
    assert path.parent == tmp_path / "c" and path.name.startswith("net-")
    loaded = cache.load_state("net", config)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert cache.load_state("net", {**config, "steps": 4}) is None
    assert cache.load_state("other", config) is None
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_damaged_entry_is_treated_as_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path))
    config = {"k": 1}
    cache.state_path("net", config).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load_state("net", config) is None


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cache.atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    cache.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_respects_the_umask(tmp_path, umask):
    """A new file gets 0o666 less the umask (as open() would), not mkstemp's 0o600."""
    previous = os.umask(umask)
    try:
        made = cache.atomic_write(tmp_path / "new.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(made.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "kept.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    cache.atomic_write(target, lambda f: f.write(b"new"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_bytes() == b"new"


def test_bad_entry_names_are_rejected():
    for name in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            cache.state_path(name, {})


# -- the demo --------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Two quick runs with the same seed in a fresh cache: the first pretrains, the second loads."""
    root = tmp_path_factory.mktemp("edgezo-cache")
    old = os.environ.get("EDGEZO_CACHE")
    os.environ["EDGEZO_CACHE"] = str(root)
    try:
        lines: list[str] = []
        out = root / "out"
        first = demo.run_demo(quick=True, seed=0, progress=False, echo=lines.append, out=out)
        second = demo.run_demo(quick=True, seed=0, progress=False, echo=None, out=None)
    finally:
        if old is None:
            del os.environ["EDGEZO_CACHE"]
        else:
            os.environ["EDGEZO_CACHE"] = old
    return root, first, second, lines


def test_quick_demo_adapts_every_method(quick_runs):
    _, first, _, _ = quick_runs
    assert list(first["methods"]) == [
        "mezo", "pezo", "qzo-ff 16w8a", "pezo 16w8a", "pezo 16w8a (onnxruntime)",
    ]  # fmt: skip
    assert first["pretrain"]["clean_test_acc"] > 0.9  # the backbone is a real MNIST model
    zero_shot = first["zero_shot_acc"]
    assert zero_shot < first["pretrain"]["clean_test_acc"] - 0.3  # the shift hurts
    for name, m in first["methods"].items():
        if name in demo.QUANTIZED:  # its own start: the 16w8a copy, close to the float model
            assert abs(m["before"] - zero_shot) < 0.02, (name, m)
        else:
            assert m["before"] == zero_shot
        assert m["after"] > zero_shot + 0.2, (name, m)  # ZO recovers a large part
        assert m["after"] > m["before"] + 0.2, (name, m)
        assert m["steps"] == demo.QUICK.steps and m["skipped"] == 0
        # central estimate: two forwards per step; sign-m-SPSA: two per query
        per_step = 2 * demo.QUICK.qzo_queries if name in demo.QUANTIZED else 2
        assert m["forwards"] == per_step * m["steps"]
        assert m["last_loss"] < m["first_loss"]
    assert first["adapted"]["names"] == ["head.weight", "head.bias"]
    assert first["adapted"]["numel"] == 128 * 10 + 10


def test_the_device_row_trains_like_the_simulated_row(quick_runs):
    """Forwards in ONNX Runtime and the C step follow pezo 16w8a's run: the integer step is
    bit-identical (tests/test_runtime_device.py), ORT's float sums may differ from torch's in
    the last bits of a loss (an 8-bit activation code at a rounding boundary), which moves the
    run only if a query's loss difference is that small; the issue's bound: 0.5 points."""
    _, first, _, _ = quick_runs
    simulated = first["methods"]["pezo 16w8a"]
    device = first["methods"]["pezo 16w8a (onnxruntime)"]
    assert device["before"] == simulated["before"]
    losses = [
        (a["loss"], b["loss"]) for a, b in zip(device["history"], simulated["history"], strict=True)
    ]
    assert len(losses) == demo.QUICK.steps
    assert all(abs(a - b) <= 1e-3 * abs(b) for a, b in losses)
    assert abs(device["after"] - simulated["after"]) <= 0.005


def test_pretraining_is_cached_and_runs_are_deterministic(quick_runs):
    root, first, second, _ = quick_runs
    assert not first["pretrain"]["cached"] and second["pretrain"]["cached"]
    assert len(list(Path(root).glob("smallcnn-mnist-*.pt"))) == 1
    assert second["pretrain"]["clean_test_acc"] == first["pretrain"]["clean_test_acc"]
    for name in demo.METHODS:
        assert second["methods"][name]["after"] == first["methods"][name]["after"]


def test_demo_prints_a_table(quick_runs):
    _, first, _, lines = quick_runs
    text = "\n".join(lines)
    assert text.startswith(first["table"])
    header = next(line for line in first["table"].splitlines() if line.startswith("method"))
    assert header.split() == ["method", "before", "after", "steps", "forwards", "wall", "s"]
    assert any(line.startswith("mezo") for line in first["table"].splitlines())
    assert any(line.startswith("pezo") for line in first["table"].splitlines())
    assert any(line.startswith("qzo-ff 16w8a") for line in first["table"].splitlines())
    assert any(line.startswith("pezo 16w8a") for line in first["table"].splitlines())
    assert "16-bit weights, 8-bit activations" in first["table"]
    assert "total wall time" in text
    figure = Path(first["figure"])
    assert f"training curves: {figure}" in first["table"] and figure.stat().st_size > 10_000


def test_adaptation_changes_only_the_head():
    torch.manual_seed(0)
    backbone = demo.SmallCNN().eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    config = demo.DemoConfig(steps=3, batch=8)
    model, stats = demo.adapt(backbone, "pezo", x, y, config, seed=0, progress=False)
    assert stats["forwards"] == 6
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # the backbone itself is untouched
    after = model.state_dict()
    for k in before:
        changed = not torch.equal(after[k], before[k])
        assert changed == k.startswith("head."), k
    assert not model.training


def test_qzo_ff_adapts_only_the_heads_integers():
    torch.manual_seed(0)
    backbone = demo.SmallCNN().eval()
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    config = demo.DemoConfig(steps=3, batch=8)
    method = "qzo-ff 16w8a"
    model, params = demo.starting_model(backbone, method, x, config)
    assert [p.fixed.bits for p in params] == [16, 16]
    assert [p.dtype for p in params] == [torch.int16, torch.int16]
    assert [tuple(p.shape) for p in params] == [(10, 128), (10,)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model, stats = demo.adapt(
        backbone, method, x, y, config, seed=0, progress=False, start=(model, params)
    )
    assert stats["forwards"] == 3 * 2 * config.qzo_queries
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:  # integers (and the activation scales) change only in the head
        changed = not torch.equal(after[k], before[k])
        assert changed == (k in ("head.weight_q", "head.bias_q")), k
    assert all(p.dtype == torch.float32 for p in backbone.parameters())  # the float original


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="Unknown method"):
        demo.starting_model(demo.SmallCNN(), "sgd", torch.rand(8, 1, 28, 28), demo.QUICK)


def test_bad_steps_are_rejected():
    with pytest.raises(ValueError, match="steps"):
        demo.run_demo(steps=0, quick=True, progress=False, echo=None)


def test_unwritable_cache_only_warns(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("EDGEZO_CACHE", str(blocker / "sub"))  # a directory under a file
    config = demo.DemoConfig(pretrain_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, cached, _ = demo.pretrain(config, progress=False)
    assert not cached and isinstance(model, demo.SmallCNN)
    assert any("EDGEZO_CACHE" in str(w.message) for w in caught)


# -- status lines without progress bars -------------------------------------------------
def test_first_run_pretraining_says_so_even_without_bars(monkeypatch, tmp_path, capsys):
    """A first run's pretraining takes a minute or more: it is announced on stderr."""
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "fit", lambda *args, **kwargs: None)  # the training itself
    images = torch.zeros(8, 28, 28, dtype=torch.uint8)
    monkeypatch.setattr(demo, "load_mnist", lambda split: (images, torch.zeros(8).long()))
    config = demo.DemoConfig(pretrain_steps=2, pretrain_batch=4)
    demo.pretrain(config, progress=False)
    assert "pretraining SmallCNN on MNIST with backprop (2 steps; first run" in (
        capsys.readouterr().err
    )
    demo.pretrain(config, progress=False)  # cached: nothing to announce
    assert capsys.readouterr().err == ""


def test_study_backbone_pretraining_and_runs_are_announced(monkeypatch, tmp_path, capsys):
    from edgezo.studies.common import pretrained_announced
    from edgezo.studies.parallel import Workers

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    train = (torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g))
    kwargs = {"config": {"k": 1}, "steps": 2, "batch_size": 4, "lr": 1e-2, "progress": False}
    pretrained_announced("tiny", functools.partial(torch.nn.Linear, 3, 2), train, **kwargs)
    assert "pretraining tiny with backprop (2 steps; first run only" in capsys.readouterr().err
    pretrained_announced("tiny", functools.partial(torch.nn.Linear, 3, 2), train, **kwargs)
    assert "pretraining" not in capsys.readouterr().err  # found in the cache
    with Workers(1, desc="cells", progress=False) as workers:
        assert workers.map(abs, [(-1,), (-2,)]) == [1, 2]
    assert "cells: 2 runs on 1 process(es) ..." in capsys.readouterr().err
