"""A compiled pass cut into pieces run on threads, all or nothing.

A C pass over ``[0, n)`` (the concatenated elements of a call's tensors) is cut into one
piece per thread (:func:`edgezo.passes.compiled.pieces`); the caller's thread runs the
first, a small pool the others. Each C call sets a ``done`` byte once every weight of its
piece is written, so an interrupt (Ctrl-C) or a refused call takes back exactly the pieces
done before the exception propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache

import numpy as np

#: ``call(start, end, done)``: the C pass over elements ``start:end``; ``done`` is the address
#: of a byte it sets when the piece is written (``None``: no byte).
PieceCall = Callable[[int, int, "int | None"], None]


def run(call: PieceCall, back: PieceCall, cut: list[tuple[int, int]]) -> None:
    """``call`` on every piece of ``cut`` (several at once); if one fails or an interrupt
    arrives, wait for all, run ``back`` on the pieces written, and raise."""
    if len(cut) == 1:
        call(*cut[0], None)  # one C call: an interrupt waits for it to return
        return
    done = np.zeros(len(cut), dtype=np.uint8)
    futures: list[Future] = []
    stop: BaseException | None = None
    try:
        workers = pool(len(cut) - 1)
        for i, (start, end) in enumerate(cut[1:], 1):
            futures.append(workers.submit(call, start, end, done[i:].ctypes.data))
        call(*cut[0], done.ctypes.data)  # the caller's thread takes the first piece
    except BaseException as err:  # an interrupt around a call, or a refused call
        stop = err
    stop = wait_all(futures) or stop
    stop = stop or next((f.exception() for f in futures if f.exception() is not None), None)
    if stop is None:
        return
    for (start, end), finished in zip(cut, done, strict=True):
        if finished:
            back(start, end, None)
    raise stop


@lru_cache(maxsize=4)
def pool(workers: int) -> ThreadPoolExecutor:
    """Threads for the pieces after the first (which the caller's thread runs)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgezo-pass")


def wait_all(futures: list[Future]) -> BaseException | None:
    """Wait until every future is done, through KeyboardInterrupt (returned, not raised)."""
    interrupted = None
    while not all(f.done() for f in futures):
        try:
            wait(futures)
        except KeyboardInterrupt as err:
            interrupted = err
    return interrupted
