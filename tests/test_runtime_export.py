"""edgezo.runtime.export and ``edgezo export``: a directory a device can train from.

The exported ``model.onnx`` is run by a fresh ONNX Runtime session on the
integers of ``weights.bin`` (as a device would, with nothing of edgezo loaded),
and ``main.c`` compiled with ``cc -std=c99 -Wall -Werror`` applies one step for
the loss signs those forwards give: both must equal edgezo's Python path.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from edgezo import ZO, cli
from edgezo.directions import Pool
from edgezo.fixedpoint import quantize_model, trainable_parameters
from edgezo.models import SmallCNN
from edgezo.runtime import DeviceFormat, OnnxRuntimeModel, export_for_device
from edgezo.studies import demo

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None, reason="no C compiler (cc) on PATH: the device step cannot build"
)
FILES = {"model.onnx", "edgezo_step.c", "edgezo_step.h", "edgezo_model.h", "main.c",
         "weights.bin", "manifest.json", "README.md"}  # fmt: skip


def head_model(seed: int = 0):
    torch.manual_seed(seed)
    net = SmallCNN(classes=10, width=4, hidden=16).eval()
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("head"))
    x = torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(seed + 1))
    qmodel = quantize_model(net, 16, 8, calibration=[x[:64]])
    return qmodel, x, torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(2))


def pezo_16w8a(qmodel) -> ZO:
    return ZO(trainable_parameters(qmodel), lr=3e-3, eps=1e-2, estimator="sign", queries=3,
              directions=Pool(1021, seed=0), formats=DeviceFormat())  # fmt: skip


def device_forward(out, manifest: dict, x: torch.Tensor) -> np.ndarray:
    """``model.onnx`` in a fresh session, fed the integers of ``weights.bin`` (no edgezo)."""
    blob, offset, feed = (out / "weights.bin").read_bytes(), 0, {}
    for name, t in zip(manifest["onnx"]["integer_inputs"], manifest["tensors"], strict=True):
        count = int(np.prod(t["shape"]))
        values = np.frombuffer(blob, dtype=t["dtype"], count=count, offset=offset)
        feed[name] = values.reshape(t["shape"])
        offset += values.nbytes
    feed[manifest["onnx"]["inputs"][0]] = x.numpy()
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, feed)[0]


def test_exported_graph_and_c_step_train_like_the_python_path(tmp_path):
    qmodel, x, y = head_model()
    opt = pezo_16w8a(qmodel)
    manifest = export_for_device(qmodel, opt, x[:1], tmp_path / "device")
    out = tmp_path / "device"
    assert {p.name for p in out.iterdir()} == FILES
    assert manifest["onnx"]["integer_inputs"] == ["head.weight_q", "head.bias_q"]
    assert json.loads((out / "manifest.json").read_text())["onnx"]["opset"] >= 21
    # the device's forward (fresh session, weights.bin) equals edgezo's ORT forward
    ort_net = OnnxRuntimeModel(qmodel, x[:1])
    assert np.array_equal(device_forward(out, manifest, x[:64]), ort_net(x[:64]).numpy())
    # one step: edgezo (forwards in ORT, C step) vs main.c given the signs of those forwards
    exe = tmp_path / "step"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-O2", str(out / "main.c"),
                    str(out / "edgezo_step.c"), "-o", str(exe)], check=True)  # fmt: skip
    losses = []

    def closure():
        losses.append(float(F.cross_entropy(ort_net(x[:64]), y[:64])))
        return torch.tensor(losses[-1])

    opt.step(closure)
    signs = [int(np.sign(losses[2 * q] - losses[2 * q + 1])) for q in range(3)]
    assert any(signs)  # a step that moves
    args = [str(exe), str(out / "weights.bin"), "0", *map(str, signs), str(tmp_path / "new.bin")]
    subprocess.run(args, check=True, capture_output=True)
    want = b"".join(p.data.numpy().tobytes() for p in trainable_parameters(qmodel))
    assert (tmp_path / "new.bin").read_bytes() == want
    assert "cc -std=c99" in (out / "README.md").read_text()


@pytest.fixture
def untrained_demo(monkeypatch):
    """``edgezo export demo`` on an untrained backbone: no pretraining in the test."""

    def pretrain(config, progress=True):
        torch.manual_seed(0)
        return SmallCNN(width=config.width, hidden=config.hidden).eval(), True, 0.0

    monkeypatch.setattr(demo, "pretrain", pretrain)


def test_export_command_writes_the_demo_and_reads_a_checkpoint(untrained_demo, tmp_path, capsys):
    assert cli.main(["export", "demo", "--quick", "--out", str(tmp_path / "a")]) == 0
    assert {p.name for p in (tmp_path / "a").iterdir()} == FILES
    assert "model.onnx" in capsys.readouterr().out
    qmodel, opt, _ = demo.device_start(quick=True)
    qmodel.head.weight_q.data[0, :5] = torch.tensor([1, -2, 3, -4, 5], dtype=torch.int16)
    torch.save(qmodel.state_dict(), tmp_path / "adapted.pt")
    assert (
        cli.main(["export", str(tmp_path / "adapted.pt"), "--quick", "--out", str(tmp_path / "b")])
        == 0
    )
    written = np.fromfile(tmp_path / "b" / "weights.bin", dtype=np.int16)
    assert written[:5].tolist() == [1, -2, 3, -4, 5]
    info = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [t["name"] for t in info["tensors"]] == ["head.weight_q", "head.bias_q"]


def test_export_command_refuses_what_is_not_a_checkpoint(untrained_demo, tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 2
    assert "neither 'demo' nor a checkpoint file" in capsys.readouterr().err
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    assert cli.main(["export", str(tmp_path / "other.pt"), "--quick", "--out", str(tmp_path)]) == 2
    assert "not a checkpoint of the demo's 16w8a model" in capsys.readouterr().err
