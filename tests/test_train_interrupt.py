"""edgezo.train under misuse: a second Ctrl-C while saving, SIGTERM, foreign checkpoints, batch norm.

Each test here failed before issue 14's fixes: a Ctrl-C during fit's interrupt save
ended in a raw RuntimeError from the zip writer, SIGTERM killed a run without a
checkpoint, and an unreadable or foreign checkpoint gave a raw unpickling error or
``KeyError``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgezo.train.checkpoints
from edgezo import presets
from edgezo.train import fit

N, FEATURES, CLASSES, STEPS, BATCH = 64, 4, 3, 12, 8
SRC = Path(__file__).resolve().parents[1] / "src"


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=g)
    return x, (x @ torch.randn(FEATURES, CLASSES, generator=g)).argmax(1)


def _model(hidden: int = 8) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


def _fit(path: Path, loss_fn=F.cross_entropy, model: nn.Module | None = None) -> nn.Module:
    model = model or _model()
    opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    fit(model, opt, _data(), steps=STEPS, batch_size=BATCH, loss_fn=loss_fn,
        checkpoint_path=path, progress=False)  # fmt: skip
    return model


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def interactive_sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal (see tests/test_train_loop.py)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _CtrlCAt:
    """A loss function that sends this process SIGINT during the ``at``-th forward."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, out, target):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return F.cross_entropy(out, target)


# -- a second Ctrl-C while fit saves ----------------------------------------------------------
def test_a_second_ctrl_c_during_the_interrupt_save_waits_for_the_save(
    tmp_path, monkeypatch, interactive_sigint, capsys
):
    real_save = torch.save
    saves = []

    def save_hit_by_ctrl_c(obj, f):  # the second Ctrl-C arrives in the middle of the save
        saves.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, f)

    monkeypatch.setattr(edgezo.train.checkpoints.torch, "save", save_hit_by_ctrl_c)
    path = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt) as info:
        _fit(path, loss_fn=_CtrlCAt(9))  # step 5's first forward: stops after step 5
    assert type(info.value) is KeyboardInterrupt  # not a RuntimeError from the zip writer
    monkeypatch.setattr(edgezo.train.checkpoints.torch, "save", real_save)
    assert saves and torch.load(path, weights_only=True)["step"] == 5
    err = capsys.readouterr().err
    assert f"Saved a checkpoint at step 5 to {path}" in err and "waits for the save" in err
    assert _same(_fit(path), _fit(tmp_path / "uninterrupted.pt"))  # and it resumes exactly


def test_an_interruption_that_escapes_the_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Where the save cannot defer signals (another thread), an interruption in it is reported."""
    path = tmp_path / "ck.pt"

    def run(steps: int, loss_fn=F.cross_entropy) -> None:
        model = _model()
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), _data(), steps=steps,
            batch_size=BATCH, loss_fn=loss_fn, checkpoint_path=path, progress=False)  # fmt: skip

    run(STEPS)  # a complete checkpoint at step STEPS

    def interrupted(obj, f):
        f.write(b"half a zip")
        raise KeyboardInterrupt

    def fail(out, target):  # backprop failing in its forward: fit saves at the last step
        raise RuntimeError("boom")

    monkeypatch.setattr(edgezo.train.checkpoints.torch, "save", interrupted)
    with (
        pytest.warns(UserWarning, match=f"Interrupted again while saving.*{path} keeps its last"),
        pytest.raises(RuntimeError, match="boom"),  # the original error, not the save's
    ):
        run(STEPS + 4, loss_fn=fail)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == STEPS  # the previous one survived


# -- SIGTERM ----------------------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch, torch.nn.functional as F
    from edgezo import presets
    from edgezo.train import fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x @ torch.randn(4, 3, generator=g)).argmax(1)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    calls = [0]

    def loss_fn(out, target):
        calls[0] += 1
        if calls[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGTERM)
        return F.cross_entropy(out, target)

    opt = presets.mezo(model.parameters(), lr=1e-2, seed=0)
    fit(model, opt, (x, y), steps=12, batch_size=8, loss_fn=loss_fn,
        checkpoint_path=sys.argv[1], progress=False)
    torch.save(model.state_dict(), sys.argv[1] + ".final")
    """
)


def _script(tmp_path: Path, checkpoint: Path, term_at: int) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(term_at)],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip


def test_sigterm_stops_after_the_step_with_a_resumable_checkpoint(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    cut = _script(tmp_path, checkpoint, term_at=9)  # inside step 5: it finishes, then stops
    assert cut.returncode != 0
    assert "Terminated" in cut.stderr and "SIGTERM" in cut.stderr
    assert f"Saved a checkpoint at step 5 to {checkpoint}" in cut.stderr
    assert torch.load(checkpoint, weights_only=True)["step"] == 5
    resumed = _script(tmp_path, checkpoint, term_at=0)
    assert resumed.returncode == 0, resumed.stderr
    full = _script(tmp_path, tmp_path / "full.pt", term_at=0)
    assert full.returncode == 0, full.stderr
    a = torch.load(f"{checkpoint}.final", weights_only=True)
    b = torch.load(tmp_path / "full.pt.final", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_cli_reports_sigterm_with_exit_code_143(monkeypatch, capsys):
    import edgezo.studies.demo
    from edgezo import cli
    from edgezo.train.interrupt import Terminated

    def terminated(**kwargs):
        raise Terminated("stopped by SIGTERM after step 3")

    monkeypatch.setattr(edgezo.studies.demo, "run_demo", terminated)
    assert cli.main(["demo", "--quick", "--out", "/tmp"]) == 143
    assert "edgezo: terminated (SIGTERM)" in capsys.readouterr().err


# -- unreadable and foreign checkpoints -------------------------------------------------------
def test_an_unreadable_checkpoint_says_what_to_do(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"not a readable checkpoint.*another checkpoint_path"):
        _fit(path)


def test_a_foreign_checkpoint_is_named_as_such(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_model().state_dict(), path)  # a model's weights, not a fit checkpoint
    with pytest.raises(ValueError, match=r"not a checkpoint of edgezo.train.fit"):
        _fit(path)


def test_a_checkpoint_of_another_model_says_which_part_differs(tmp_path):
    path = tmp_path / "ck.pt"
    _fit(path, model=_model(hidden=8))
    with pytest.raises(ValueError, match=r"does not fit this run's model"):
        _fit(path, model=_model(hidden=16))


# -- batch norm under ZO ------------------------------------------------------------------------
def test_zo_fit_leaves_batch_norm_statistics_alone():
    """ZO steps run in eval mode (as MeZO's): the perturbed forwards never move running stats,
    even when the caller left the model in training mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    fit(model, presets.mezo(model.parameters(), lr=1e-2, seed=0), _data(), steps=5,
        batch_size=BATCH, progress=False)  # fmt: skip
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert int(after["1.num_batches_tracked"]) == 0
