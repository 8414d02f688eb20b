"""Workers: tasks run in other processes, come back in task order, errors surface."""

from __future__ import annotations

import operator
import os

import pytest
import torch

from edgezo.studies.parallel import Workers


def test_results_come_back_in_task_order_from_other_processes():
    with Workers(2) as workers:
        squares = workers.map(operator.pow, [(i, 2) for i in range(25)])
        pids = workers.map(os.getpid, [()] * 6)
        threads = workers.map(torch.get_num_threads, [()] * 2)
    assert squares == [i**2 for i in range(25)]
    assert os.getpid() not in pids
    assert threads == [max(1, torch.get_num_threads() // 2)] * 2


def test_one_job_runs_here():
    with Workers(1) as workers:
        assert workers.map(os.getpid, [()] * 3) == [os.getpid()] * 3


def test_a_failing_task_raises_its_own_error():
    with pytest.raises(ZeroDivisionError), Workers(2) as workers:
        workers.map(operator.truediv, [(1, 1), (1, 0), (2, 1)])


def test_bad_job_counts_are_refused():
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        Workers(0)
    with pytest.raises(RuntimeError, match="with Workers"):
        Workers(2).map(operator.neg, [(1,)])
