"""A local cache for things edgezo builds once (e.g. pretrained backbones).

Location: ``$EDGEZO_CACHE`` if set, else ``~/.cache/edgezo``. An entry is
named by what produced it: a config dict is hashed (SHA-256 of its canonical
JSON: sorted keys, no spaces), so the same config finds the same file and any
change of the config (steps, lr, seed, model size, format version) misses.
Files are written atomically (a temporary file in the same directory, then
``os.replace``), so a crash or a concurrent run never leaves half a file
under the final name.

    >>> config_key({"b": 1, "a": [1, 2]}) == config_key({"a": [1, 2], "b": 1})
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

ENV = "EDGEZO_CACHE"


def cache_dir() -> Path:
    """The cache directory (not created here): ``$EDGEZO_CACHE`` or ``~/.cache/edgezo``."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgezo"


def canonical_json(config: Mapping[str, Any]) -> str:
    """The config as JSON with sorted keys and no whitespace (the hashed form)."""
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"A cache config must be plain JSON (dicts, lists, str, int, finite float, bool, "
            f"None): {e}"
        ) from e


def config_key(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``config``."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def state_path(name: str, config: Mapping[str, Any]) -> Path:
    """Where the entry ``name`` for ``config`` lives: ``<cache>/<name>-<key[:16]>.pt``."""
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"Invalid cache entry name {name!r}; use a plain file-name stem")
    return cache_dir() / f"{name}-{config_key(config)[:16]}.pt"


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The file gets the mode an ``open(path, "w")`` would give it: that of the file it
    replaces, or ``0o666`` less the umask (``mkstemp`` alone would make it ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _mode_for(path: Path) -> int:
    """The permission bits for a new ``path``: the existing file's, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)  # the only portable way to read it: set and put back at once
        os.umask(umask)
        return 0o666 & ~umask


def save_state(name: str, config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> Path:
    """Store a ``state_dict`` (with its config, for checking on load); returns the file."""
    entry = {
        "config": json.loads(canonical_json(config)),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    return atomic_write(state_path(name, config), lambda f: torch.save(entry, f))


def load_state(name: str, config: Mapping[str, Any]) -> dict[str, Tensor] | None:
    """The ``state_dict`` stored for ``config``, or ``None`` if there is none.

    An unreadable entry, or one whose stored config differs (a hash-prefix
    collision), is treated as missing, with a warning.
    """
    path = state_path(name, config)
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        stored, state = entry["config"], entry["state_dict"]
    except Exception as e:  # a damaged or foreign file: rebuild rather than fail
        warnings.warn(f"Ignoring unreadable cache entry {path}: {e}", stacklevel=2)
        return None
    if stored != json.loads(canonical_json(config)):
        warnings.warn(
            f"Ignoring cache entry {path}: it was stored for another config", stacklevel=2
        )
        return None
    return dict(state)
