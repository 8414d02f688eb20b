"""The run's JSONL log, and JSON that stays valid when a loss is not finite."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..cache import atomic_write


def json_safe(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``, containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """``value`` as strict JSON (non-finite numbers as ``null``, see :func:`json_safe`)."""
    return json.dumps(json_safe(value), allow_nan=False)


class JsonlLog:
    """The JSONL log: rewritten from the history it starts with, then appended to."""

    def __init__(self, path: Path | None, history: list[dict[str, Any]]) -> None:
        self.path, self.written, self.file = path, 0, None
        if path is not None:
            text = "".join(dumps(r) + "\n" for r in history)
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))
            self.written = len(history)

    def __enter__(self) -> JsonlLog:
        if self.path is not None:
            self.file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return self

    def write_new(self, history: list[dict[str, Any]]) -> None:
        """Append the records of ``history`` not written yet."""
        if self.file is not None:
            self.file.write("".join(dumps(r) + "\n" for r in history[self.written :]))
        self.written = len(history)

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()
