"""save_png: a palette PNG that looks like matplotlib's own output, and is smaller."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from edgezo.figures import save_png  # noqa: E402


def test_palette_png_matches_matplotlibs_render_and_is_smaller(tmp_path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    x = np.linspace(0, 6, 200)
    for k in range(5):
        a.plot(x, np.sin(x + k), label=f"line {k}")
    a.legend()
    b.imshow(np.random.default_rng(0).random((40, 40)), cmap="viridis")
    reference = io.BytesIO()
    fig.savefig(reference, dpi=80, format="png")
    path = save_png(fig, tmp_path / "sub" / "fig.png", dpi=80)
    plt.close(fig)
    with Image.open(path) as saved, Image.open(reference) as ref:
        assert saved.mode == "P" and saved.size == ref.size
        diff = np.abs(
            np.asarray(saved.convert("RGB"), dtype=int) - np.asarray(ref.convert("RGB"), dtype=int)
        )
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 16
    assert path.stat().st_size < 0.8 * reference.getbuffer().nbytes
