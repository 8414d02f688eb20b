"""edgezo.analysis.curves: the plotted data, the PNG, and errors for bad keys."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.analysis.curves import curves_figure, plot_curves, smooth


def _history(steps: int, scale: float, eval_every: int = 10) -> list[dict]:
    out = []
    for s in range(1, steps + 1):
        r = {"step": s, "loss": scale / s + 0.01 * math.sin(s), "lr": 0.1}
        if s % eval_every == 0:
            r.update({"eval/val/accuracy": 1 - scale / s, "eval/val/loss": scale / s})
        out.append(r)
    return out


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=0, max_size=40),
    window=st.integers(1, 50),
)
def test_smooth_is_the_trailing_mean(values, window):
    expected = [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]
    np.testing.assert_allclose(smooth(values, window), expected, rtol=1e-9, atol=1e-9)


def test_the_figure_plots_each_runs_smoothed_loss_and_accuracy():
    histories = {"backprop": _history(60, 1.0), "mezo": _history(60, 2.0)}
    histories["mezo"][5]["loss"] = math.nan  # a skipped ZO step is left out, not plotted as 0
    fig = curves_figure(histories, window=5)
    loss_ax, acc_ax = fig.axes
    smoothed = [line for line in loss_ax.lines if line.get_label() == "mezo"][0]
    finite = [r for r in histories["mezo"] if math.isfinite(r["loss"])]
    np.testing.assert_allclose(smoothed.get_xdata(), [r["step"] for r in finite])
    np.testing.assert_allclose(smoothed.get_ydata(), smooth([r["loss"] for r in finite], 5))
    acc = {line.get_label(): line for line in acc_ax.lines}
    assert set(acc) == {"backprop", "mezo"}
    np.testing.assert_allclose(acc["backprop"].get_xdata(), [10, 20, 30, 40, 50, 60])
    np.testing.assert_allclose(
        acc["backprop"].get_ydata(), [100 * (1 - 1 / s) for s in range(10, 70, 10)]
    )


def test_no_accuracy_panel_without_evaluations():
    history = [{"step": s, "loss": 1 / s} for s in range(1, 30)]
    assert len(curves_figure({"run": history}).axes) == 1


def test_plot_curves_writes_a_png(tmp_path):
    path = plot_curves({"a": _history(40, 1.0), "b": _history(40, 3.0)}, tmp_path / "out" / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (11 * 120, 4 * 120)  # two panels at 120 dpi


def test_unknown_metric_or_empty_input_is_explained(tmp_path):
    with pytest.raises(
        ValueError, match=r"Unknown metric 'acc': no record has it; the records have \["
    ):
        plot_curves({"a": _history(5, 1.0)}, tmp_path / "c.png", metric="acc")
    with pytest.raises(ValueError, match=r"Unknown x 'epoch'"):
        plot_curves({"a": _history(5, 1.0)}, tmp_path / "c.png", x="epoch")
    with pytest.raises(ValueError, match=r"at least one non-empty history"):
        plot_curves({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"Invalid smoothing window 0"):
        smooth([1.0], 0)
    assert not (tmp_path / "c.png").exists()
