"""Work on buffers in parallel threads: the codecs release the GIL while they work."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def workers() -> int:
    """Threads worth starting: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def in_threads(calls: list[Callable[[], T]]) -> list[T]:
    """The results of ``calls`` in order, made in parallel threads when there are several.

    One pool for all the work: pools started inside other pools' threads
    cost more than they save.
    """
    threads = min(len(calls), workers())
    if threads < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(threads) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]
