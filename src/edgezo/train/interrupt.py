"""Ctrl-C and SIGTERM during training: stop after the current step; never in the middle of a save.

* :func:`stop_after_step`: a first Ctrl-C (SIGINT) or SIGTERM lets the current
  step finish, then ``fit`` saves and raises (``KeyboardInterrupt``, or
  :class:`Terminated` for SIGTERM); a second one stops at once.
* :func:`signals_deferred`: while a checkpoint is written, SIGINT and SIGTERM
  wait for the write to finish (a signal in the middle of ``torch.save`` would
  leave a broken zip writer and a raw ``RuntimeError``).

Both only act in the main thread, and only on a signal nobody else handles
(SIGINT still Python's ``default_int_handler``, SIGTERM still ``SIG_DFL``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Terminated(KeyboardInterrupt):
    """The run was stopped by SIGTERM (after its current step; its checkpoint, if any, saved).

    A ``KeyboardInterrupt`` (so whatever cleans up after Ctrl-C also runs), with the
    shell's exit code for SIGTERM in :attr:`exit_code`.
    """

    exit_code = 128 + signal.SIGTERM


class StopRequest:
    """The signals received so far; true once one asked the run to stop."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.signals)

    def exception(self) -> KeyboardInterrupt:
        """What ``fit`` raises after the step: ``Terminated`` for SIGTERM, else Ctrl-C's."""
        if self.signals and self.signals[0] == signal.SIGTERM:
            return Terminated("stopped by SIGTERM after the current step")
        return KeyboardInterrupt()


def _ours(signum: int) -> bool:
    """Whether ``signum`` still has Python's default behaviour (nobody else handles it)."""
    default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    return signal.getsignal(signum) is default


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_after_step() -> Iterator[StopRequest]:
    """A first Ctrl-C or SIGTERM lets the current step finish (then fit saves and stops);
    a second one stops now.

    A ZO step interrupted half-way is undone only within rounding in floating
    point, so stopping at a step boundary is what makes a resume bit-exact.
    """
    request = StopRequest()
    handled = [s for s in NAMES if _main_thread() and _ours(s)]

    def handler(signum: int, frame: Any) -> None:
        if request and signum == signal.SIGTERM:
            raise Terminated("stopped by a second SIGTERM")
        if request:
            raise KeyboardInterrupt
        request.signals.append(signum)
        name = NAMES[signum]
        tqdm.write(f"Stopping after this step ({name} again to stop now)", file=sys.stderr)

    previous = {s: signal.signal(s, handler) for s in handled}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred(what: str, redeliver: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block (a checkpoint write) is done.

    A signal received meanwhile is announced at once; with ``redeliver`` it is
    raised again after the block (so it acts as it would have), else dropped
    (the caller is already stopping).
    """
    if not _main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)
        tqdm.write(f"{NAMES[signum]} waits for the save of {what} to finish", file=sys.stderr)

    previous = {}
    for s in NAMES:
        if signal.getsignal(s) not in (signal.SIG_IGN, None):  # None: set outside Python
            previous[s] = signal.signal(s, hold)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    for s in dict.fromkeys(received) if redeliver else ():
        signal.raise_signal(s)
