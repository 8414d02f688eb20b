"""What every benchmark script shares: how its JSON result leaves the process."""

from __future__ import annotations

import json
from typing import Any


def emit_json(results: dict[str, Any], out: str | None) -> None:
    """Print ``results`` as indented JSON and, if ``out`` is given, also write it there."""
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
