"""Training curves of several runs in one PNG: smoothed training loss and evaluation accuracy.

Reads the histories :func:`edgezo.train.fit` returns (or its JSONL log, one
dict per step). Uses matplotlib's object API (``Figure``, Agg canvas): no
pyplot, no display, and the caller's backend is left alone.

    >>> smooth([1.0, 3.0, 5.0, 7.0], window=2).tolist()
    [1.0, 2.0, 4.0, 6.0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..extras import require
from ..figures import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

History = Sequence[Mapping[str, Any]]


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average: ``out[i]`` is the mean of ``values[max(0, i - window + 1) : i + 1]``."""
    if window < 1:
        raise ValueError(f"Invalid smoothing window {window}; use an integer >= 1")
    v = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    start = np.maximum(0, i - window + 1)
    return (sums[i + 1] - sums[start]) / (i + 1 - start)


def series(history: History, key: str, x: str = "step") -> tuple[np.ndarray, np.ndarray]:
    """``(x, value)`` of the records that have ``key`` with a finite value, in order."""
    points = [
        (r[x], r[key])
        for r in history
        if r.get(key) is not None and math.isfinite(r[key]) and x in r
    ]
    xs, ys = zip(*points, strict=True) if points else ((), ())
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def accuracy_keys(histories: Mapping[str, History]) -> list[str]:
    """The ``eval/<set>/accuracy`` keys present in any record, in order of first appearance."""
    keys: dict[str, None] = {}
    for history in histories.values():
        for record in history:
            keys.update(
                (k, None) for k in record if k.startswith("eval/") and k.endswith("/accuracy")
            )
    return list(keys)


def curves_figure(
    histories: Mapping[str, History],
    metric: str = "loss",
    x: str = "step",
    window: int | None = None,
) -> Figure:
    """The figure :func:`plot_curves` saves: one panel of ``metric``, one of eval accuracy.

    Each run's ``metric`` is drawn raw (faint) and smoothed by :func:`smooth`
    (``window``: default 1/20 of its points); the accuracy panel (only if some
    record has ``eval/<set>/accuracy``) shows each run and evaluation set, in %.
    """
    _check(histories, metric, x)
    Figure = require("matplotlib.figure", "studies").Figure

    acc_keys = accuracy_keys(histories)
    fig = Figure(figsize=(11 if acc_keys else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if acc_keys else 1, squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(histories))]
    ax = axes[0]
    for (name, history), color in zip(histories.items(), colors, strict=True):
        xs, ys = series(history, metric, x)
        if not len(ys):
            continue
        w = window or max(1, len(ys) // 20)
        ax.plot(xs, ys, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(xs, smooth(ys, w), color=color, label=name, linewidth=1.6)
    ax.set(xlabel=x, ylabel=metric, title=f"training {metric} (smoothed)")
    ax.grid(alpha=0.3)
    ax.legend()
    if acc_keys:
        ax = axes[1]
        styles = ["-", "--", ":", "-."]
        for (name, history), color in zip(histories.items(), colors, strict=True):
            for i, key in enumerate(acc_keys):
                style = styles[i % len(styles)]
                xs, ys = series(history, key, x)
                if len(ys):
                    label = name if len(acc_keys) == 1 else f"{name} ({key.split('/')[1]})"
                    ax.plot(xs, 100 * ys, style, color=color, marker=".", label=label)
        ax.set(xlabel=x, ylabel="accuracy (%)", title="evaluation accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_curves(
    histories: Mapping[str, History],
    path: str | os.PathLike[str],
    metric: str = "loss",
    x: str = "step",
    window: int | None = None,
) -> Path:
    """Write the training curves of several runs (``{method: history}``) as a PNG; returns its path.

    See :func:`curves_figure` for what is drawn. Raises ``ValueError`` when no
    record has ``metric`` (naming the keys that exist).
    """
    fig = curves_figure(histories, metric, x, window)
    return save_png(fig, path, dpi=120)


def _check(histories: Mapping[str, History], metric: str, x: str) -> None:
    if not histories or all(len(h) == 0 for h in histories.values()):
        raise ValueError("plot_curves needs at least one non-empty history: {'method': [records]}")
    keys = {k for h in histories.values() for r in h for k in r}
    for what, key in (("metric", metric), ("x", x)):
        if key not in keys:
            raise ValueError(
                f"Unknown {what} {key!r}: no record has it; the records have {sorted(keys)}"
            )
    require("matplotlib", "studies", needed_by="plot_curves")
