"""Work on buffers in parallel threads: the codecs release the GIL while they work."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


_limit: int | None = None


def cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers() -> int:
    """Threads worth starting: the cores this process may use, or fewer (:func:`limit`)."""
    return min(cores(), _limit) if _limit else cores()


def limit(threads: int | None) -> None:
    """Use at most ``threads`` threads from now on (None: every core).

    For a process that shares the cores with others doing the same work
    (``kmc encode -j``'s workers): threads of its own would only take turns
    with theirs. The bytes written do not depend on it.
    """
    global _limit
    _limit = threads


def in_threads(calls: list[Callable[[], T]], most: int | None = None) -> list[T]:
    """The results of ``calls`` in order, made in parallel threads when there are several.

    The calling thread works too, beside one helper per further core: each
    takes the next call as it finishes one, so a call that costs more than
    the rest does not hold up a fixed share. Once a call raises, no further
    call starts; when the started ones have ended, the exception of the
    first call that raised (in the order of ``calls``) is raised. At most
    ``most`` threads work at once, the calling one included. The helpers
    are started once and wait for work between calls: the k-means asks for
    dozens of parallel rankings per image, each too short to pay for
    starting threads of its own (docs/kmeans.md). A helper still busy with
    other work (a call made inside another's) leaves its share to the
    caller, so nested calls never wait on each other.
    """
    threads = min(len(calls), workers(), most or len(calls))
    if threads < 2:
        return [call() for call in calls]
    results: list = [None] * len(calls)
    failed: dict[int, BaseException] = {}
    order = iter(range(len(calls)))
    lock = threading.Lock()
    idle = threading.Condition(lock)
    running = 0  # calls started and not yet ended

    def work() -> None:
        nonlocal running
        while True:
            with lock:
                i = None if failed else next(order, None)
                if i is None:
                    return
                running += 1
            try:
                results[i] = calls[i]()
            except BaseException as e:  # re-raised in the calling thread below
                with lock:
                    failed[i] = e
            finally:
                with lock:
                    running -= 1
                    if not running:
                        idle.notify_all()

    _hire(threads - 1)
    for _ in range(threads - 1):
        _tasks.put(work)
    work()
    with lock:  # a helper may still be on a call; one that starts later finds none left
        while running:
            idle.wait()
    if failed:
        raise failed[min(failed)]
    return results


# The helper threads: each takes the next task from the queue, forever.
_tasks: queue.SimpleQueue = queue.SimpleQueue()
_helpers = 0
_hiring = threading.Lock()


def _serve(tasks: queue.SimpleQueue) -> None:
    while True:
        tasks.get()()


def _hire(helpers: int) -> None:
    """Start helper threads until there are ``helpers`` of them."""
    global _helpers
    with _hiring:
        while _helpers < helpers:
            threading.Thread(target=_serve, args=(_tasks,), daemon=True).start()
            _helpers += 1


def _after_fork() -> None:
    """A forked child has none of its parent's helpers: it starts its own."""
    global _tasks, _helpers, _hiring
    _tasks, _helpers, _hiring = queue.SimpleQueue(), 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
