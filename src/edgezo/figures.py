"""Writing figures: every PNG edgezo makes goes through :func:`save_png`."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .extras import require


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    """Write a matplotlib figure to ``path`` as a 256-colour palette PNG.

    Plots, bar charts and colormapped images need no more colours, and the files
    are 2-3x smaller than matplotlib's RGBA output (they are kept in the docs).
    The parent directory is created; the figure stays open.
    """
    Image = require("PIL.Image", "studies")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
    return path
