"""Time per training iteration: backprop against ZO on one model, measured in paired rounds.

QZO-FF (PAPERS.md A) finds an FF iteration "about 1.5x cheaper than BP": a
backprop step is a forward plus a backward (about two forwards' work), a ZO step
two forwards plus the perturbation passes. The studies' wall times cannot test it:
they include evaluations and ran beside other jobs. This module times the steps
alone, on one model and batch, in rounds: every round runs each step once, in a
rotating order, so a slow spell of a shared machine hits every method alike, and
each round gives one ratio per pair (backprop's seconds over ZO's). The claim is
decided on the t-interval of those per-round ratios (:func:`ratio_interval`): the
noise of this machine in one run, not the spread across machines (another CPU
gives another ratio; the JSON records which ran it and its load average).

Steps timed (:data:`STEPS`), each on the trained parameters of one regime, with the
loss :func:`~edgezo.analysis.memory.stand_in_loss`:

* ``two forwards``: two ``no_grad`` forwards and losses, the floor of a ZO step;
* ``zo``: MeZO's central ZO-SGD step, Gaussian directions, one query
  (:func:`edgezo.presets.mezo`; the claims' "FF");
* ``pezo``: the same with PeZO's pre-generated uniform pool
  (:func:`edgezo.presets.pezo`);
* ``backprop``: forward, backward and a ``torch.optim.SGD`` step.

QZO-FF's 16w8a step is not timed: edgezo simulates its integers in float32, so its
time says nothing of an NPU's.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..extras import require
from ..figures import save_png
from .memory import stand_in_loss
from .stats import Interval, t_interval

STEPS = ("two forwards", "zo", "pezo", "backprop")
#: The pairs whose per-round ratio the table and the claim read: (numerator, denominator).
RATIOS = (("backprop", "zo"), ("backprop", "pezo"), ("zo", "two forwards"))
FILENAME = "cost.json"


def step_functions(
    model: nn.Module, inputs: Tensor, params: Sequence[Tensor]
) -> dict[str, Callable[[], None]]:
    """One step of each of :data:`STEPS` on ``model`` and ``inputs``, training ``params``
    (the optimizers are built here, before any timing)."""
    from .. import presets

    loss = lambda: stand_in_loss(model(inputs))  # noqa: E731
    zo, pezo = presets.mezo(params, seed=0), presets.pezo(params, seed=0)
    sgd = torch.optim.SGD(params, lr=1e-6)

    def two_forwards() -> None:
        with torch.no_grad():
            loss()
            loss()

    def backprop() -> None:
        sgd.zero_grad(set_to_none=True)
        loss().backward()
        sgd.step()

    return {"two forwards": two_forwards, "zo": lambda: zo.step(loss),
            "pezo": lambda: pezo.step(loss), "backprop": backprop}  # fmt: skip


def interleaved(
    fns: Mapping[str, Callable[[], Any]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of each function per round, the order rotating by one each round; the first
    ``warmup`` rounds are run and dropped (allocator, caches, lazy initialisation)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            fns[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float]) -> Interval:
    """The t-interval over rounds of ``numerator[i] / denominator[i]`` (one round, one ratio)."""
    return t_interval([a / b for a, b in zip(numerator, denominator, strict=True)])


def measure_cell(model: nn.Module, inputs: Tensor, rounds: int, warmup: int) -> dict[str, Any]:
    """One cell of ``cost.json``: the model's parameter counts and each step's seconds per round,
    training what requires grad."""
    if rounds < 2:
        raise ValueError(f"Invalid rounds {rounds}; an interval needs at least 2 rounds")
    params = [p for p in model.parameters() if p.requires_grad]
    seconds = interleaved(step_functions(model, inputs, params), rounds, warmup)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "trained": sum(p.numel() for p in params), "seconds": seconds}  # fmt: skip


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- the report ------------------------------------------------------------------------------
def cost_title(meta: Mapping[str, Any]) -> str:
    model = str(meta["model"]).split(" (")[0]
    return f"Time per iteration: {model}, batch {meta['batch']}, {meta['threads']} thread(s)"


def cost_markdown(data: Mapping[str, Any]) -> str:
    """``cost.md``: per regime and step the median milliseconds, then each ratio of
    :data:`RATIOS` with its interval over the rounds, then the settings."""
    meta = data["meta"]
    lines = [f"## {cost_title(meta)}", "",
             "| regime | trained | " + " | ".join(f"{s} (ms)" for s in STEPS) + " | "
             + " | ".join(f"{a} / {b}" for a, b in RATIOS) + " |",
             "|---|---:|" + "---:|" * (len(STEPS) + len(RATIOS))]  # fmt: skip
    for cell in data["cells"]:
        t = cell["seconds"]
        ms = [f"{1e3 * statistics.median(t[s]):.1f}" for s in STEPS]
        ratios = [ratio_interval(t[a], t[b]).text(scale=1.0) + "x" for a, b in RATIOS]
        lines.append(
            f"| {cell['regime']} | {cell['trained']:,} | " + " | ".join(ms + ratios) + " |"
        )
    start, end = meta.get("load_average_start"), meta.get("load_average_end")
    lines += ["", f"Medians over {meta['rounds']} rounds ({meta['warmup']} warm-up rounds dropped); "
              "each ratio is the mean of the per-round ratios with its 95% t-interval over the "
              f"rounds. Load average {start} at the start, {end} at the end "
              f"({meta['environment']['cpu_count']} CPUs).",
              "", f"![time per iteration]({Path(FILENAME).with_suffix('.png').name})", ""]  # fmt: skip
    return "\n".join(lines)


def plot_cost(data: Mapping[str, Any], path: str | Path) -> Path:
    """Grouped bars: median milliseconds per step, one group per regime (PNG)."""
    require("matplotlib", "studies", needed_by="the cost chart").use("Agg")
    import matplotlib.pyplot as plt

    cells = data["cells"]
    fig, ax = plt.subplots(figsize=(2.2 * len(cells) + 3, 3.8))
    width = 0.8 / len(STEPS)
    for i, step in enumerate(STEPS):
        xs = [c + (i - (len(STEPS) - 1) / 2) * width for c in range(len(cells))]
        ax.bar(xs, [1e3 * statistics.median(c["seconds"][step]) for c in cells], width, label=step)
    ax.set_xticks(range(len(cells)), [c["regime"] for c in cells])
    ax.set_ylabel("median time per step (ms)")
    ax.set_title(cost_title(data["meta"]), fontsize=9)
    ax.set_ylim(top=1.2 * ax.get_ylim()[1])  # room for the legend above the bars
    ax.legend(fontsize=8, ncols=len(STEPS), loc="upper center")
    fig.tight_layout()
    path = save_png(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_cost_report(out_dir: str | Path, data: Mapping[str, Any]) -> list[Path]:
    """Write ``cost.md``, ``cost.png`` and ``cost.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "cost.md", out / FILENAME
    md.write_text(rebuild_report(out, data))
    js.write_text(json.dumps(data, indent=1) + "\n")
    return [md, out / "cost.png", js]


def rebuild_report(folder: Path, data: Mapping[str, Any]) -> str:
    """``cost.md``'s text from a ``cost.json`` alone, ``cost.png`` drawn into ``folder``."""
    plot_cost(data, Path(folder) / "cost.png")
    return cost_markdown(data)
