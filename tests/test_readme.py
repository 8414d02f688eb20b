"""The README's Python examples run as written and do what the README says they do.

Docs that drift from the code are worse than none: each block runs, prints the line
the README promises, and trains (the loss of its model on its data goes down).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

#: Per block, in README order: the printed output (a regex, whole output), the name of the
#: model it trains on its ``x, y``, and the steps and forward passes its optimizer makes.
EXPECTED = [
    {
        "prints": r"loss (?P<loss>\d+\.\d{3}) after 100 steps, 200 forward passes\n",
        "model": "model",
        "steps": 100,
        "forwards": 200,  # central: 2 per step
    },
    {
        "prints": r"torch\.int16\n",
        "model": "qnet",
        "steps": 20,
        "forwards": 120,  # sign-m-SPSA, m = 3: 3 x 2 per step
    },
    {
        "prints": r"\['0\.weight_q', '0\.bias_q', '2\.weight_q', '2\.bias_q'\] \d+ bytes of training state\n",
        "model": "ort_net",
        "steps": 20,
        "forwards": 120,
    },
]


def run(code: str) -> tuple[dict, str]:
    """Execute ``code`` in a fresh namespace; return the namespace and what it printed."""
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)
    return namespace, out.getvalue()


def loss_of(namespace: dict, model: str) -> float:
    """Cross-entropy of the block's model on the block's ``x, y``."""
    with torch.no_grad():
        return F.cross_entropy(namespace[model](namespace["x"]), namespace["y"]).item()


def test_readme_starts_with_the_two_commands():
    first = README.read_text().splitlines()[:2]
    assert [line.split()[:2] for line in first] == [["make", "demo"], ["make", "test"]]


def test_every_readme_block_has_its_expectations():
    assert len(BLOCKS) == len(EXPECTED), (
        f"README has {len(BLOCKS)} python blocks, this test describes {len(EXPECTED)}: "
        "add the new block's printed output, model and counts to EXPECTED"
    )


@pytest.mark.parametrize(
    ("block", "expected"),
    list(zip(BLOCKS, EXPECTED, strict=False)),
    ids=[f"block{i}" for i in range(len(BLOCKS))],
)
def test_readme_example_runs(block, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a file (model.onnx)
    # the set-up alone (everything before the optimizer) gives the untrained model
    assert "\nopt = " in block, "each example builds its optimizer as `opt = ...`"
    before, _ = run(block[: block.index("\nopt = ")])
    after, printed = run(block)

    match = re.fullmatch(expected["prints"], printed)
    assert match, f"the example printed {printed!r}, the README promises {expected['prints']!r}"
    opt = after["opt"]
    assert (opt.steps, opt.forwards) == (expected["steps"], expected["forwards"])

    start, end = loss_of(before, expected["model"]), loss_of(after, expected["model"])
    assert end < start, f"the example did not train: loss {start:.4f} -> {end:.4f}"
    if "loss" in match.groupdict():  # the printed loss is the loss near the trained weights
        assert float(match["loss"]) < start
        assert float(match["loss"]) == pytest.approx(end, abs=0.01)
