"""Work on buffers in parallel threads: the codecs release the GIL while they work."""

from __future__ import annotations

import os
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

    The calling thread works too, beside one thread per further core: each
    takes the next call as it finishes one, so a call that costs more than
    the rest does not hold up a fixed share. Once a call raises, no further
    call starts; when the started ones have ended, the exception of the
    first call that raised (in the order of ``calls``) is raised. At most
    ``most`` threads work at once, the calling one included. Threads
    started inside others' calls cost more than they save: parallel work is
    made at one level.
    """
    threads = min(len(calls), workers(), most or len(calls))
    if threads < 2:
        return [call() for call in calls]
    results: list = [None] * len(calls)
    failed: dict[int, BaseException] = {}
    order = iter(range(len(calls)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = None if failed else next(order, None)
            if i is None:
                return
            try:
                results[i] = calls[i]()
            except BaseException as e:  # re-raised in the calling thread below
                failed[i] = e

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(threads - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if failed:
        raise failed[min(failed)]
    return results
