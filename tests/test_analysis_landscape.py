"""edgezo.analysis.landscape: directions, projections and surfaces against hand formulas (Figure 6: tests/studies/test_landscape.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgezo.analysis.landscape import (
    Panel,
    Surface,
    draw_landscape,
    evaluation_batches,
    filter_normalized_direction,
    grid_axes,
    landscape_grid,
    loss_surface,
    pca_directions,
    project,
)
from edgezo.fixedpoint import FixedPointParameter, quantize_model, trainable_parameters
from edgezo.train import flat_weights

shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


@settings(max_examples=60, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_each_direction_filter_has_its_weight_filters_norm(param_shapes, seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g) * torch.rand((), generator=g) * 5 for s in param_shapes]
    d = filter_normalized_direction(params, torch.Generator().manual_seed(seed + 1))
    parts = d.split([p.numel() for p in params])
    for w, part in zip(params, parts, strict=True):
        if w.dim() < 2:  # biases and norms: ignored (Li et al.'s default)
            assert torch.equal(part, torch.zeros(w.numel()))
            continue
        for i in range(w.shape[0]):
            want = float(np.linalg.norm(w[i].numpy().ravel()))
            got = float(np.linalg.norm(part.view(w.shape)[i].numpy().ravel()))
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_fixed_point_filters_are_normalized_to_the_dequantized_weights():
    torch.manual_seed(0)
    net = quantize_model(nn.Linear(6, 3), weight_bits=8, activation_bits=None)
    q = net.weight_q
    d = filter_normalized_direction(trainable_parameters(net), torch.Generator().manual_seed(0))
    rows = d[: q.numel()].view(3, 6)
    np.testing.assert_allclose(rows.norm(dim=1), (q.float() * q.fixed.scale).norm(dim=1), rtol=1e-5)
    assert torch.equal(d[q.numel() :], torch.zeros(3))


def test_projection_recovers_coordinates_along_non_orthogonal_directions():
    g = torch.Generator().manual_seed(1)
    origin, directions = torch.randn(40, generator=g), torch.randn(2, 40, generator=g)
    directions[1] += 0.8 * directions[0]  # far from orthogonal
    coords = torch.randn(7, 2, generator=g, dtype=torch.float64)
    trajectory = origin + (coords @ directions.double()).float()
    np.testing.assert_allclose(project(trajectory, directions, origin), coords, atol=1e-5)


def _collinear(xy: torch.Tensor) -> bool:
    s = torch.linalg.svdvals(xy - xy.mean(0))
    return bool(s[1] <= 1e-6 * s[0])


@pytest.mark.parametrize("plane", ["random", "pca"])
def test_a_straight_path_projects_to_a_straight_line(plane):
    g = torch.Generator().manual_seed(2)
    start, step = torch.randn(200, generator=g), torch.randn(200, generator=g)
    t = torch.tensor([0.0, 0.1, 0.3, 0.35, 0.7, 1.0]).double()
    trajectory = (start.double() + t[:, None] * step.double()).float()
    final = trajectory[-1]
    if plane == "pca":
        directions, explained = pca_directions(trajectory, final)
        assert explained[0] == pytest.approx(1.0, abs=1e-5)
    else:
        params = [torch.randn(10, 20, generator=g)]
        directions = torch.stack([filter_normalized_direction(params, g) for _ in range(2)])
    xy = project(trajectory, directions, final)
    assert _collinear(xy) and not torch.allclose(xy[0], xy[-1])


def test_pca_of_a_path_in_a_plane_recovers_the_plane():
    g = torch.Generator().manual_seed(3)
    final = torch.randn(300, generator=g, dtype=torch.float64)
    u, v = torch.randn(2, 300, generator=g, dtype=torch.float64)
    s = torch.linspace(0, 1, 12, dtype=torch.float64)
    trajectory = final + (1 - s)[:, None] * (3 * u + torch.sin(6 * s)[:, None] * v)  # curved
    directions, explained = pca_directions(trajectory.float(), final.float())
    np.testing.assert_allclose(directions @ directions.T, torch.eye(2), atol=1e-5)
    assert float(explained.sum()) == pytest.approx(1.0, abs=1e-5)
    xy = project(trajectory.float(), directions, final.float())
    rebuilt = final + xy @ directions.double()
    np.testing.assert_allclose(rebuilt, trajectory, atol=1e-4)
    assert (xy[0] >= 0).all()  # the start's coordinates are made non-negative


def test_a_path_that_never_moves_has_no_principal_directions():
    still = torch.ones(5, 8)
    with pytest.raises(ValueError, match="never moves.*filter_normalized_direction"):
        pca_directions(still, still[-1])


def test_parallel_directions_are_refused():
    d = torch.randn(2, 5)
    d[1] = 2 * d[0]
    with pytest.raises(ValueError, match="parallel"):
        project(torch.randn(3, 5), d, torch.zeros(5))


def _mlp_and_data(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))
    return model, x, y


def test_the_center_of_the_surface_is_the_models_loss_and_weights_come_back_bit_exact():
    model, x, y = _mlp_and_data()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(0)
    directions = torch.stack([filter_normalized_direction(params, g) for _ in range(2)])
    batches = evaluation_batches((x, y), samples=40, batch_size=16)  # 16 + 16 + 8 samples
    surface = loss_surface(model, params, batches, directions, grid=(-0.5, 0.5, 5), progress=False)
    with torch.no_grad():
        out = model(x[:40])
    assert surface.losses[2, 2].item() == pytest.approx(F.cross_entropy(out, y[:40]).item(), 1e-6)
    assert surface.accuracies[2, 2] == (out.argmax(1) == y[:40]).double().mean()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert len(set(surface.losses.flatten().tolist())) > 20  # the other points differ


def test_fixed_point_surface_runs_on_the_integer_grid_and_restores_the_integers():
    model, x, y = _mlp_and_data(1)
    net = quantize_model(model, weight_bits=8, activation_bits=8, calibration=[x])
    params = trainable_parameters(net)
    before = [p.detach().clone() for p in params]
    center = flat_weights(params)
    d = torch.zeros(2, center.numel())
    scale = float(params[0].fixed.scale)
    d[0, 0] = scale  # one integer step of the first weight per unit of alpha
    d[1, 1] = scale
    surface = loss_surface(net, params, [(x, y)], d, grid=(-0.4, 0.4, 3), progress=False)
    with torch.no_grad():
        reference = F.cross_entropy(net(x), y).item()
    assert surface.losses[1, 1].item() == pytest.approx(reference, rel=1e-6)
    # +-0.4 of an integer step rounds back to the same integers: a flat 3x3 plateau
    assert torch.equal(surface.losses, torch.full((3, 3), surface.losses[1, 1].item()).double())
    assert all(isinstance(p, FixedPointParameter) for p in params)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_weights_come_back_when_the_evaluation_fails():
    model, x, y = _mlp_and_data()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    calls = []

    def failing(out, target):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(out, target)

    with pytest.raises(RuntimeError, match="boom"):
        loss_surface(model, params, [(x, y)], torch.randn(2, 75), loss_fn=failing, progress=False)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_the_surface_of_linear_least_squares_is_the_closed_form_quadratic():
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(30, 4, generator=g), torch.randn(30, 1, generator=g)
    model = nn.Linear(4, 1)
    params = list(model.parameters())
    directions = torch.randn(2, 5, generator=g)
    surface = loss_surface(
        model, params, [(x, t)], directions, grid=((-2.0, 1.0, 4), (-1.0, 3.0, 5)),
        loss_fn=F.mse_loss, progress=False,
    )  # fmt: skip
    assert surface.accuracies is None  # regression targets
    # L(a, b) = mean((r0 + a r1 + b r2)^2) with r the residual's parts, in float64 NumPy
    X = np.hstack([x.numpy(), np.ones((30, 1))]).astype(np.float64)
    w0 = flat_weights(params).numpy().astype(np.float64)
    d1, d2 = directions.numpy().astype(np.float64)
    r0, r1, r2 = X @ w0 - t.numpy()[:, 0], X @ d1, X @ d2
    a, b = np.meshgrid(np.linspace(-2, 1, 4), np.linspace(-1, 3, 5), indexing="ij")
    want = ((r0 + a[..., None] * r1 + b[..., None] * r2) ** 2).mean(-1)
    np.testing.assert_allclose(surface.losses.numpy(), want, rtol=1e-5)


def test_bad_grids_and_directions_say_what_to_change():
    model, x, y = _mlp_and_data()
    with pytest.raises(ValueError, match=r"directions of shape \(2, 75\)"):
        loss_surface(model, list(model.parameters()), [(x, y)], torch.zeros(3, 75))
    with pytest.raises(ValueError, match=r"\(low, high, points\)"):
        grid_axes((1.0, -1.0, 5))


def test_the_panel_draws_the_surface_and_the_path():
    from matplotlib.figure import Figure

    model, x, y = _mlp_and_data()
    params = list(model.parameters())
    directions = torch.randn(2, 75, generator=torch.Generator().manual_seed(5))
    surface = loss_surface(model, params, [(x, y)], directions, grid=(-1, 1, 6), progress=False)
    xy = torch.tensor([[0.8, -0.5], [0.3, 0.1], [0.0, 0.0]], dtype=torch.float64)
    ax = Figure().subplots()
    draw_landscape(ax, surface, xy, title="BP")
    path_line = ax.lines[0]
    np.testing.assert_allclose(path_line.get_xdata(), xy[:, 0])
    np.testing.assert_allclose(path_line.get_ydata(), xy[:, 1])
    assert ax.get_title() == "BP" and ax.collections  # the contours


def test_contours_put_alpha_on_x_and_beta_on_y():
    from matplotlib.figure import Figure

    alphas, betas = torch.linspace(-1, 1, 5).double(), torch.linspace(0, 3, 7).double()
    losses = (alphas[:, None] + 2 + 0 * betas[None]).expand(5, 7)  # L = a + 2, whatever b
    ax = Figure().subplots()
    draw_landscape(ax, Surface(alphas, betas, losses, None))
    lines = ax.collections[1]  # the contour lines drawn over the filled contours
    drawn = [(level, p.vertices) for level, p in zip(lines.levels, lines.get_paths(), strict=True)]
    assert len([v for _, v in drawn if len(v)]) >= 3
    for level, vertices in drawn:
        if len(vertices):  # the line L = level is the vertical line a = level - 2
            np.testing.assert_allclose(vertices[:, 0], level - 2, atol=1e-9)
            assert (vertices[:, 1].min(), vertices[:, 1].max()) == (0.0, 3.0)


def test_landscape_grid_writes_a_png(tmp_path):
    import matplotlib.image

    model, x, y = _mlp_and_data()
    directions = torch.randn(2, 75, generator=torch.Generator().manual_seed(6))
    surface = loss_surface(model, list(model.parameters()), [(x, y)], directions, grid=(-1, 1, 4),
                           progress=False)  # fmt: skip
    path = landscape_grid([[Panel(surface, None, "a"), None]], tmp_path / "grid.png", ["lp"])
    assert matplotlib.image.imread(path).shape[1] > matplotlib.image.imread(path).shape[0]
    with pytest.raises(ValueError, match="one per row"):
        landscape_grid([[Panel(surface)]], tmp_path / "x.png", ["lp", "vpt"])


def test_a_surface_comes_back_from_its_json_with_its_nans():
    losses = torch.tensor([[1.0, float("nan")], [2.5, 3.0]], dtype=torch.float64)
    surface = Surface(torch.tensor([-1.0, 1.0], dtype=torch.float64),
                      torch.tensor([0.0, 2.0], dtype=torch.float64), losses,
                      None, ("PC1 (71%)", "PC2 (20%)"), 1.5)  # fmt: skip
    data = json.loads(json.dumps(surface.to_dict()))  # the JSON writes NaN as null
    assert data["losses"][0][1] is None
    back = Surface.from_dict(data)
    assert torch.equal(back.alphas, surface.alphas) and torch.equal(back.betas, surface.betas)
    assert torch.equal(back.losses.isnan(), losses.isnan())
    assert torch.equal(back.losses.nan_to_num(), losses.nan_to_num())
    assert (back.accuracies, back.labels, back.seconds) == (None, surface.labels, 1.5)
