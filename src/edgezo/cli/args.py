"""Argument types shared by the ``edgezo`` commands (a leaf: imports nothing of edgezo)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the one a ``mkdir -p`` would write into)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _can_create_in(directory: Path) -> bool:
    """Whether a file can be created in ``directory`` (tried: ``os.access`` is wrong for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def _check_dir(path: Path, what: str) -> None:
    """Raise ``ArgumentTypeError`` unless ``path`` is, or can be made as, a writable directory."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {what} {path}: {existing} is a file, not a directory"
        )
    if not _can_create_in(existing):
        missing = "" if existing == path else f" (to create {path})"
        raise argparse.ArgumentTypeError(
            f"cannot write {what} {path}: {existing} is not writable{missing}; "
            "choose a directory you can write to"
        )


def writable_dir(text: str) -> Path:
    """An argparse type: an output directory that exists and is writable, or can be created.

    Checked when the arguments are parsed, so a bad ``--out`` fails before any work;
    :func:`make_dir` creates it (and says so) when the command runs.
    """
    path = Path(text).expanduser()
    _check_dir(path, "to directory")
    return path


def writable_file(text: str) -> Path:
    """An argparse type: an output file that can be (over)written; its directory may be missing."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory; give a file name")
    _check_dir(path.parent, "into directory")
    return path


def existing_dir(text: str) -> Path:
    """An argparse type: a directory that exists (an input, e.g. ``--results``)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{path} {state}")
    return path


def make_dir(path: Path) -> Path:
    """Create the output directory ``path`` (and missing parents), saying so on stderr."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        print(f"edgezo: created directory {path}", file=sys.stderr)
    return path
