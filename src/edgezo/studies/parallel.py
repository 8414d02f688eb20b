"""Running a study's independent pieces (its cells, its episodes) in several processes.

A study adapts many copies of a model, each from the same seed and with no state
shared between them, so they can run side by side: ``edgezo run STUDY --jobs N``
spreads them over ``N`` worker processes (started fresh with ``spawn``: no
inherited thread pools), each with ``torch.get_num_threads() // N`` threads. The
results come back in task order, so the tables, JSON and figures are those of a
run with ``--jobs 1`` (bit for bit when every process uses as many threads: a
float sum split over more threads may round differently).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def _call(item: tuple[int, Callable[..., Any], Sequence[Any]]) -> tuple[int, Any]:
    index, fn, task = item
    return index, fn(*task)


class Workers:
    """``jobs`` processes that run a study's tasks; ``jobs=1`` runs them here, one by one.

    Use as a context manager (the processes stop at exit; on an error or Ctrl-C they are
    terminated, not waited for)::

        with Workers(2) as workers:
            results = workers.map(adapt_one_cell, [(cell, data), ...])
    """

    def __init__(self, jobs: int = 1, desc: str = "tasks", progress: bool = False) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1 (got {jobs}); 1 runs everything here")
        self.jobs, self.desc, self.progress = jobs, desc, progress
        self._pool: Pool | None = None

    @property
    def parallel(self) -> bool:
        """Whether tasks run in other processes."""
        return self.jobs > 1

    @property
    def task_progress(self) -> bool:
        """Whether a task may draw its own progress bars: only when it runs here (bars from
        several processes would overwrite each other; :meth:`map` draws one over the tasks)."""
        return self.progress and not self.parallel

    def __enter__(self) -> Workers:
        if self.parallel:
            threads = max(1, torch.get_num_threads() // self.jobs)
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.jobs, initializer=_set_threads, initargs=(threads,))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is None:
            return
        if error is None:
            self._pool.close()
        else:
            self._pool.terminate()
        self._pool.join()
        self._pool = None

    def map(
        self, fn: Callable[..., T], tasks: Iterable[Sequence[Any]], desc: str | None = None
    ) -> list[T]:
        """``[fn(*task) for task in tasks]``, run by the workers in task order (the first
        error is raised as soon as it happens), with a progress bar if asked for. With
        ``jobs > 1``, ``fn`` must be a module-level function and the tasks picklable."""
        from tqdm.auto import tqdm

        tasks = list(tasks)
        bar = {"total": len(tasks), "desc": desc or self.desc, "leave": False}
        if not self.progress:  # without bars, still say what the next minutes are spent on
            print(f"{bar['desc']}: {len(tasks)} runs on {self.jobs} process(es) ...",
                  file=sys.stderr, flush=True)  # fmt: skip
        if self._pool is None:
            if self.parallel:
                raise RuntimeError("Workers.map needs `with Workers(jobs) as workers:`")
            return [fn(*task) for task in tqdm(tasks, disable=not self.progress, **bar)]
        done = self._pool.imap_unordered(_call, ((i, fn, t) for i, t in enumerate(tasks)))
        results: list[Any] = [None] * len(tasks)
        for index, result in tqdm(done, disable=not self.progress, **bar):
            results[index] = result
        return results
