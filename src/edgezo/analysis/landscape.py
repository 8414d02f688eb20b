"""Loss landscapes: 2-D slices of the loss around trained weights, with the path that led there.

After Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS),
as QZO-FF's Figure 6 uses it (PAPERS.md B): the loss is evaluated at
``w + a d1 + b d2`` on a grid of ``(a, b)`` around the trained weights ``w``,
for two directions ``d1, d2`` in weight space, and drawn as contours.

* Directions: :func:`filter_normalized_direction` (Li et al. Sec. 4: a Gaussian
  direction whose every filter is rescaled to the norm of the weight filter, so
  that slices of differently scaled networks compare), or :func:`pca_directions`,
  the top two principal directions of the training path (Li et al. Sec. 7: random
  directions are nearly orthogonal to a path in high dimension, so a trajectory
  only shows up in its own PCA plane).
* The path: :func:`edgezo.train.fit` with ``snapshot_every`` records the trained
  weights as one flat vector per snapshot (``FitResult.trajectory``, ``(S, D)``);
  :func:`project` gives its coordinates in the plane.
* Every flat vector here (directions, centers, trajectory rows) is in the order of
  :func:`edgezo.train.flat_weights` over the same ``params``: the trained tensors
  in optimizer order, each flattened, fixed-point weights as ``scale * q``.

Plots use matplotlib's object API (``Figure``, Agg): no pyplot, no display.

    >>> import torch
    >>> w = torch.nn.Linear(3, 2)
    >>> d = filter_normalized_direction(list(w.parameters()), torch.Generator().manual_seed(0))
    >>> d.shape, bool((d[6:] == 0).all())  # 6 weights; the 2 biases are ignored
    (torch.Size([8]), True)
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..extras import require
from ..figures import save_png
from ..fixedpoint import FixedPointParameter, quantize
from ..train import flat_weights

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]
#: ``(low, high, points)`` of one axis, as ``torch.linspace`` takes them.
Axis = tuple[float, float, int]


# -- directions ------------------------------------------------------------------------------
def weight_values(params: Sequence[Tensor]) -> list[Tensor]:
    """The tensors' float32 values, detached (fixed-point weights as ``scale * q``)."""
    return [
        (p.dequantize() if isinstance(p, FixedPointParameter) else p).detach().float()
        for p in params
    ]


def filter_normalized_direction(params: Sequence[Tensor], generator: torch.Generator) -> Tensor:
    """A random direction with each filter scaled to its weight filter's norm (Li et al. eq. 1).

    For every tensor with two or more dims, ``d ~ N(0, I)`` of its shape is drawn
    from ``generator`` and each filter ``d[i]`` (a row of a Linear weight, an
    output channel of a conv kernel: everything along dim 0) is rescaled to
    ``||d[i]|| = ||w[i]||``. Tensors with fewer than two dims (biases, norm
    scales and shifts) get a zero direction: Li et al.'s default
    (``ignore='biasbn'``), which keeps them at their trained values.

    Returns:
        a float32 ``(D,)`` vector in :func:`~edgezo.train.flat_weights` order.
    """
    values = weight_values(params)
    if not values:
        raise ValueError("filter_normalized_direction needs at least one parameter tensor")
    parts = []
    for w in values:
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w.device)
        if w.dim() < 2:
            d.zero_()
        else:
            rows, w_rows = d.view(w.shape[0], -1), w.reshape(w.shape[0], -1)
            rows.mul_(w_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True))
        parts.append(d.reshape(-1).cpu())
    return torch.cat(parts)


def pca_directions(trajectory: Tensor, final: Tensor) -> tuple[Tensor, Tensor]:
    """The top two principal directions of a training path (Li et al. Sec. 7).

    PCA (centred, as their code's ``sklearn.decomposition.PCA``) of the rows
    ``w_i - w_final`` of ``trajectory``. Signs are fixed so the path's first point
    has non-negative coordinates (a deterministic picture).

    Args:
        trajectory: ``(S, D)`` weights along the path, ``S >= 2``.
        final: ``(D,)`` the weights the plane is centred on (usually the last row).

    Returns:
        ``(directions (2, D), explained (2,))``: orthonormal float32 directions and
        the share of the path's variance each one explains.
    """
    _check_trajectory(trajectory, final)
    if len(trajectory) < 2 or trajectory.shape[1] < 2:
        raise ValueError(
            f"pca_directions needs at least 2 snapshots of at least 2 weights, got "
            f"{tuple(trajectory.shape)}; train with a smaller snapshot_every"
        )
    diffs = trajectory.double() - final.double()
    centred = diffs - diffs.mean(0)
    _, sigma, vh = torch.linalg.svd(centred, full_matrices=False)
    if sigma[0] == 0:
        raise ValueError(
            "The path never moves (every snapshot is the same): it has no principal "
            "directions; use filter_normalized_direction instead"
        )
    directions = vh[:2].clone()  # S, D >= 2: two orthonormal rows (the 2nd any one if sigma_2 = 0)
    directions[diffs[0] @ directions.T < 0] *= -1
    variance = sigma.square()
    explained = (variance / variance.sum())[:2]
    return directions.float(), explained.float()


def project(trajectory: Tensor, directions: Tensor, origin: Tensor) -> Tensor:
    """Coordinates ``(a, b)`` of each row of ``trajectory`` in the plane ``origin + a d1 + b d2``.

    The least-squares solution of ``[d1 d2] c = w - origin`` per row, so the two
    directions need not be orthogonal (random ones are not), only independent.

    Returns:
        float64 ``(S, 2)``.
    """
    _check_trajectory(trajectory, origin)
    _check_directions(directions, trajectory.shape[1])
    basis = directions.double().T  # (D, 2)
    gram = basis.T @ basis
    if torch.linalg.matrix_rank(gram) < 2:
        raise ValueError("The two directions are parallel (or zero); they must span a plane")
    rhs = basis.T @ (trajectory.double() - origin.double()).T  # (2, S)
    return torch.linalg.solve(gram, rhs).T


def _check_trajectory(trajectory: Tensor, point: Tensor) -> None:
    if trajectory.dim() != 2 or point.shape != trajectory.shape[1:]:
        raise ValueError(
            f"Expected a trajectory (S, D) and a point (D,), got {tuple(trajectory.shape)} and "
            f"{tuple(point.shape)}; pass FitResult.trajectory and one of its rows"
        )


def _check_directions(directions: Tensor, dim: int) -> None:
    if tuple(directions.shape) != (2, dim):
        raise ValueError(
            f"Expected directions of shape (2, {dim}) (two flat directions over the {dim} "
            f"trained weights), got {tuple(directions.shape)}"
        )


# -- the surface -----------------------------------------------------------------------------
@dataclass
class Surface:
    """The loss on a grid of a plane: ``losses[i, j]`` is at ``center + alphas[i] d1 + betas[j] d2``.

    Attributes:
        alphas: float64 ``(n,)`` coordinates along ``d1``.
        betas: float64 ``(m,)`` coordinates along ``d2``.
        losses: float64 ``(n, m)`` mean loss over the evaluation batches.
        accuracies: float64 ``(n, m)`` top-1 accuracy, or ``None`` (non-class labels).
        labels: axis names (e.g. ``"PC1 (71%)"``).
        seconds: wall time of the evaluation.
    """

    alphas: Tensor
    betas: Tensor
    losses: Tensor
    accuracies: Tensor | None
    labels: tuple[str, str] = ("d1", "d2")
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Surface:
        """The surface :meth:`to_dict` wrote (``None`` losses back to NaN)."""

        def grid(values: Any) -> Tensor:
            return torch.tensor(values, dtype=torch.float64)

        losses = [[math.nan if v is None else v for v in row] for row in data["losses"]]
        accuracies = data.get("accuracies")
        return cls(grid(data["alphas"]), grid(data["betas"]), grid(losses),
                   None if accuracies is None else grid(accuracies), tuple(data["labels"]),
                   data["seconds"])  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (non-finite losses as ``None``), for JSON."""
        return {
            "alphas": self.alphas.tolist(),
            "betas": self.betas.tolist(),
            "losses": _nan_to_none(self.losses.tolist()),
            "accuracies": None if self.accuracies is None else self.accuracies.tolist(),
            "labels": list(self.labels),
            "seconds": self.seconds,
        }


def _nan_to_none(rows: list[list[float]]) -> list[list[float | None]]:
    return [[v if math.isfinite(v) else None for v in row] for row in rows]


def grid_axes(grid: Axis | tuple[Axis, Axis]) -> tuple[Tensor, Tensor]:
    """``(alphas, betas)`` from one ``(low, high, n)`` for both axes or a pair of them."""
    pair = grid if isinstance(grid[0], (tuple, list)) else (grid, grid)
    axes = []
    for axis in pair:
        if len(axis) != 3:
            raise ValueError(f"A grid axis is (low, high, points), got {axis!r}")
        low, high, n = axis
        if int(n) != n or n < 1 or not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(
                f"Invalid grid axis {axis!r}: use (low, high, points) with low <= high and "
                "an integer points >= 1, e.g. (-1.0, 1.0, 21)"
            )
        axes.append(torch.linspace(float(low), float(high), int(n), dtype=torch.float64))
    return axes[0], axes[1]


def evaluation_batches(data: Batch, samples: int, batch_size: int) -> list[Batch]:
    """The batch budget of a surface: the first ``samples`` of ``data`` in batches of ``batch_size``."""
    x, y = data
    if samples < 1 or batch_size < 1:
        raise ValueError(f"Use samples >= 1 and batch_size >= 1, got {samples} and {batch_size}")
    n = min(samples, len(x))
    return list(zip(x[:n].split(batch_size), y[:n].split(batch_size), strict=True))


@torch.no_grad()
def loss_surface(
    model: nn.Module,
    params: Sequence[Tensor],
    batches: Sequence[Batch],
    directions: Tensor,
    center: Tensor | None = None,
    grid: Axis | tuple[Axis, Axis] = (-1.0, 1.0, 21),
    loss_fn: LossFn = F.cross_entropy,
    labels: tuple[str, str] = ("d1", "d2"),
    progress: bool = True,
) -> Surface:
    """The loss of ``model`` at ``center + a d1 + b d2`` for every ``(a, b)`` of ``grid``.

    The points are written into ``params`` in place, one after the other; the
    tensors' own values are copied once before and copied back afterwards (also
    on an error or Ctrl-C), so the model ends bit-identical. Cost: ``n * m``
    forward passes over ``batches`` (the batch budget), in ``model.eval()``.

    Fixed-point weights (:class:`~edgezo.fixedpoint.FixedPointParameter`) are
    evaluated on their integer grid: each point is quantized with the tensor's own
    scale and bit width (saturating) and the model runs as the device would, so an
    8-bit model shows the plateaus its training cannot leave.

    Args:
        model: computes ``loss_fn(model(x), y)``; for a linear probe, pass the head
            and batches of precomputed features (the same losses, far cheaper).
        params: the tensors the directions move (``FitResult.trajectory``'s order).
        batches: ``(x, y)`` batches; the loss is their sample-weighted mean.
        directions: ``(2, D)`` flat directions ``d1, d2``.
        center: ``(D,)`` the plane's origin (default: the current weights).
        grid: ``(low, high, points)`` for both axes, or one per axis.
        loss_fn: mean loss of a batch.
        labels: names of the two axes, kept for the plot.
        progress: show a tqdm bar over the grid points.
    """
    params = list(params)
    center = _plane_center(params, batches, directions, center)
    alphas, betas = grid_axes(grid)
    started = time.perf_counter()
    with _restored(model, params):
        losses, accuracies = _sweep_plane(model, params, batches, loss_fn, center,
                                          directions, (alphas, betas), progress)  # fmt: skip
    return Surface(alphas, betas, losses, accuracies, labels, time.perf_counter() - started)


def _plane_center(
    params: Sequence[Tensor], batches: Sequence[Batch], directions: Tensor, center: Tensor | None
) -> Tensor:
    """The plane's origin as a float32 CPU vector, after checking the plane's inputs agree."""
    dim = sum(p.numel() for p in params)
    _check_directions(directions, dim)
    if not batches:
        raise ValueError("loss_surface needs at least one (x, y) evaluation batch")
    center = flat_weights(params) if center is None else center.detach().float().cpu()
    if center.shape != (dim,):
        raise ValueError(f"center has shape {tuple(center.shape)}; expected ({dim},)")
    return center


@contextlib.contextmanager
def _restored(model: nn.Module, params: Sequence[Tensor]) -> Iterator[None]:
    """Run in ``model.eval()``; then put back ``params``' values and the model's mode, always."""
    saved = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        for p, value in zip(params, saved, strict=True):
            p.copy_(value)
        model.train(was_training)


def _sweep_plane(
    model: nn.Module,
    params: Sequence[Tensor],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    center: Tensor,
    directions: Tensor,
    axes: tuple[Tensor, Tensor],
    progress: bool,
) -> tuple[Tensor, Tensor | None]:
    """Losses (and accuracies, for class labels) at ``center + a d1 + b d2`` over the grid."""
    alphas, betas = axes
    d1, d2 = directions.detach().float().cpu()
    losses = torch.full((len(alphas), len(betas)), math.nan, dtype=torch.float64)
    accuracies = losses.clone() if _has_classes(batches) else None
    bar = tqdm(total=losses.numel(), desc="loss surface", disable=not progress, dynamic_ncols=True)
    try:
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(betas.tolist()):
                _write(params, center + a * d1 + b * d2)
                loss, accuracy = _mean_loss(model, batches, loss_fn)
                losses[i, j] = loss
                if accuracies is not None:
                    accuracies[i, j] = accuracy
                bar.update(1)
    finally:
        bar.close()
    return losses, accuracies


def _write(params: Sequence[Tensor], flat: Tensor) -> None:
    """Put the flat vector into the tensors (fixed point: quantized to each tensor's format)."""
    for p, v in zip(params, flat.split([p.numel() for p in params]), strict=True):
        v = v.view(p.shape).to(p.device)
        if isinstance(p, FixedPointParameter):
            p.copy_(quantize(v, p.fixed.scale, p.fixed.bits))
        else:
            p.copy_(v)


def _has_classes(batches: Sequence[Batch]) -> bool:
    y = batches[0][1]
    return not (y.is_floating_point() or y.is_complex())


def _mean_loss(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn) -> tuple[float, float]:
    total, correct, count = 0.0, 0, 0
    for x, y in batches:
        out = model(x)
        total += float(loss_fn(out, y)) * len(x)
        if not (y.is_floating_point() or y.is_complex()):
            correct += int((out.argmax(1) == y).sum())
        count += len(x)
    return total / count, correct / count


# -- plots -----------------------------------------------------------------------------------
@dataclass
class Panel:
    """One landscape panel: the surface, the path's ``(S, 2)`` coordinates (or ``None``), a title."""

    surface: Surface
    trajectory_xy: Tensor | None = None
    title: str = ""


def contour_levels(losses: Tensor, count: int = 12) -> np.ndarray:
    """``count`` contour levels over the finite losses: log-spaced when all are positive
    (a basin's floor and its walls differ by orders of magnitude), else linear."""
    finite = losses[torch.isfinite(losses)].double()
    if not len(finite):
        raise ValueError("Every loss of the surface is non-finite; nothing to draw")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1e-9 * (abs(low) + 1.0)  # a flat surface: one band
    if low > 0:
        return np.geomspace(low, high, count)
    return np.linspace(low, high, count)


def draw_landscape(
    ax: Axes, surface: Surface, trajectory_xy: Tensor | None = None, title: str = ""
) -> None:
    """Filled contours of ``surface`` on ``ax`` with the path overlaid (start o, end *)."""
    z = surface.losses.double().T.numpy()  # contour wants rows = y (betas), columns = x
    z = np.ma.masked_invalid(z)
    x, y = surface.alphas.numpy(), surface.betas.numpy()
    levels = contour_levels(surface.losses)
    ax.contourf(x, y, z, levels=levels, cmap="viridis", extend="both")
    lines = ax.contour(x, y, z, levels=levels[::3], colors="white", linewidths=0.5)
    ax.clabel(lines, fontsize=6, fmt="%.3g")
    if trajectory_xy is not None and len(trajectory_xy):
        xy = trajectory_xy.double().numpy()
        ax.plot(xy[:, 0], xy[:, 1], "-o", color="tab:red", markersize=2.5, linewidth=1.2)
        ax.plot(*xy[0], "o", color="white", markeredgecolor="tab:red", markersize=6)
        ax.plot(*xy[-1], "*", color="tab:red", markeredgecolor="white", markersize=11)
    ax.set_xlabel(surface.labels[0], fontsize=8)
    ax.set_ylabel(surface.labels[1], fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)


def plot_landscape(
    target: Axes | str | os.PathLike[str],
    surface: Surface,
    trajectory_xy: Tensor | None = None,
    title: str = "",
) -> Path | None:
    """Draw one landscape on an ``Axes``, or save it as a PNG at a path (returned)."""
    if not isinstance(target, (str, os.PathLike)):
        draw_landscape(target, surface, trajectory_xy, title)
        return None
    fig = _figure(figsize=(4.5, 4))
    draw_landscape(fig.subplots(), surface, trajectory_xy, title)
    return _save(fig, target, dpi=110)


def landscape_grid(
    panels: Sequence[Sequence[Panel | None]],
    path: str | os.PathLike[str],
    row_labels: Sequence[str] = (),
    title: str = "",
) -> Path:
    """A grid of landscapes as one PNG (QZO-FF's Figure 6: regimes in rows, methods in columns).

    ``panels[r][c]`` is drawn at row ``r``, column ``c``; ``None`` leaves a blank.
    """
    rows, columns = len(panels), max((len(r) for r in panels), default=0)
    if not rows or not columns:
        raise ValueError("landscape_grid needs at least one row with one panel")
    if row_labels and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows; give one per row")
    fig = _figure(figsize=(3.3 * columns, 3.1 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for r, row in enumerate(panels):
        for c in range(columns):
            panel = row[c] if c < len(row) else None
            if panel is None:
                axes[r][c].set_axis_off()
                continue
            draw_landscape(axes[r][c], panel.surface, panel.trajectory_xy, panel.title)
        if row_labels:
            axes[r][0].annotate(
                row_labels[r], xy=(-0.42, 0.5), xycoords="axes fraction", rotation=90,
                va="center", ha="center", fontsize=11, fontweight="bold",
            )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path, dpi=85)  # a 2x4 grid stays under 200 kB


def _figure(figsize: tuple[float, float]) -> Any:
    Figure = require("matplotlib.figure", "studies", needed_by="Landscape plots").Figure
    return Figure(figsize=figsize, layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    return save_png(fig, path, dpi=dpi)
