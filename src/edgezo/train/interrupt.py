"""Ctrl-C during training: a first one stops after the current step, a second one at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm


@contextlib.contextmanager
def stop_after_step() -> Iterator[Callable[[], bool]]:
    """A first Ctrl-C lets the current step finish (then fit saves and stops); a second stops now.

    A ZO step interrupted half-way is undone only within rounding in floating
    point, so stopping at a step boundary is what makes a resume bit-exact.
    Only in the main thread, and only if nobody else handles SIGINT.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return
    requested: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        tqdm.write("Stopping after this step (Ctrl-C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)
