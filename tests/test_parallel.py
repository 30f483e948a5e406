"""Work shared out between threads: results in order, errors not lost."""

from __future__ import annotations

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
