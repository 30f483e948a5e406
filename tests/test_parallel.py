"""Work shared out between threads: results in order, errors not lost."""

from __future__ import annotations

import os
import threading
import time
from unittest import mock

import pytest

from pil_kmc import parallel


def test_results_come_back_in_the_order_of_the_calls():
    with mock.patch.object(parallel, "workers", return_value=3):
        calls = [lambda i=i: (time.sleep(0.001 * (i % 3)), i * i)[1] for i in range(20)]
        assert parallel.in_threads(calls) == [i * i for i in range(20)]


def test_the_calling_thread_works_and_at_most_most_threads_do():
    seen = set()
    lock = threading.Lock()

    def call():
        with lock:
            seen.add(threading.get_ident())
        time.sleep(0.002)

    with mock.patch.object(parallel, "workers", return_value=8):
        parallel.in_threads([call] * 16, most=2)
    assert len(seen) <= 2
    seen.clear()
    parallel.in_threads([call] * 4, most=1)
    assert seen == {threading.get_ident()}


def test_the_first_calls_error_is_raised_and_no_call_starts_after_it():
    started = []

    def call(i):
        started.append(i)
        time.sleep(0.002)
        if i in (2, 3):
            raise ValueError(f"call {i}")

    calls = [lambda i=i: call(i) for i in range(40)]
    with (
        mock.patch.object(parallel, "workers", return_value=2),
        pytest.raises(ValueError, match="call 2"),
    ):
        parallel.in_threads(calls)
    # Calls are taken in order, so every call before a failing one has started.
    assert sorted(started)[:4] == [0, 1, 2, 3]
    assert len(started) < 8


def test_the_helpers_are_started_once_and_wait_for_the_next_call():
    def call():
        time.sleep(0.002)
        return threading.get_ident()

    with mock.patch.object(parallel, "workers", return_value=2):
        parallel.in_threads([call] * 4)
        threads = set(threading.enumerate())
        for _ in range(5):
            assert len(set(parallel.in_threads([call] * 4))) <= 2
        assert set(threading.enumerate()) == threads  # none started, none ended


def test_calls_inside_calls_finish_even_with_every_helper_busy():
    with mock.patch.object(parallel, "workers", return_value=2):
        inner = [lambda i=i: i for i in range(6)]
        outer = [lambda: sum(parallel.in_threads(inner))] * 4
        assert parallel.in_threads(outer) == [15] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_helpers_of_its_own():
    with mock.patch.object(parallel, "workers", return_value=2):
        parallel.in_threads([lambda: None] * 2)  # the parent has its helper
        child = os.fork()
        if child == 0:  # the child: its parent's helper did not come along
            def call():
                time.sleep(0.01)
                return threading.get_ident()

            # A helper of its own shares the calls; without one the caller did them all.
            ok = len(set(parallel.in_threads([call] * 6))) == 2
            os._exit(0 if ok else 1)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_limit_caps_the_threads_and_none_lifts_it():
    seen = set()

    def call():
        seen.add(threading.get_ident())
        time.sleep(0.002)

    try:
        parallel.limit(1)
        assert parallel.workers() == 1
        parallel.in_threads([call] * 4)
        assert seen == {threading.get_ident()}
    finally:
        parallel.limit(None)
    assert parallel.workers() == parallel.cores()


def test_kmc_encode_workers_share_the_cores_between_their_threads():
    from pil_kmc import cli

    with mock.patch.object(cli, "ProcessPoolExecutor") as pool, mock.patch.object(
        parallel, "cores", return_value=4
    ):
        pool.return_value.submit.side_effect = RuntimeError("stop here")
        jobs = [mock.Mock(src="a"), mock.Mock(src="b")]
        with pytest.raises(RuntimeError, match="stop here"):
            cli.run_jobs(jobs, 2, lambda job, result: None)
    assert pool.call_args.kwargs["initargs"] == (2,)
