"""Many images at once, locally or on a ``dask.distributed`` cluster.

Two jobs, each the same locally and on a cluster:

* the histogram merge of a shared palette as a map-reduce: one colour
  histogram per image on the workers, summed there in a tree, and one
  k-means over the sum (:func:`merged_histogram`, :func:`shared_palette`);
* batch encoding (:func:`encode_batch`): one task per image, encoded bytes
  in, ``.kmc`` bytes out.

The client reads every input and writes every output itself, so workers
need pil_kmc but no shared file system, and a cluster run writes the same
bytes as a local one (the merge is an exact integer sum, independent of how
the histograms were grouped). A broken input fails its own task only: it
comes back as an :class:`Outcome` naming the file, and the rest go on.

Dask is an optional extra (``python3 -m pip install 'pil-kmc[dask]'``);
everything here but the ``client`` arguments works without it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import parallel
from .palettes import ColourHistogram, ImageSource, merge_histograms, palette_from_histogram

if TYPE_CHECKING:
    from distributed import Client
    from PIL import Image

#: What the extra is called, for messages.
INSTALL_HINT = "python3 -m pip install 'pil-kmc[dask]' (or 'dask[distributed]')"
# Tasks in flight per worker thread: enough to keep every worker busy while
# the client reads the next inputs, few enough to bound the bytes held.
_IN_FLIGHT_PER_THREAD = 4
# Histograms summed per reduce task.
_FAN_IN = 8


def require_dask() -> ModuleType:
    """The ``distributed`` module, or :class:`ImportError` saying what to install."""
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"a Dask cluster needs dask.distributed: {INSTALL_HINT}") from e
    return distributed


def connect(address: str, timeout: float = 10) -> Client:
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``tcp://HOST:PORT``)."""
    return require_dask().Client(address, timeout=timeout)


@dataclass(frozen=True)
class Outcome:
    """What became of input ``index`` (named ``name``) in a batch.

    ``kind`` is ``"ok"`` (``data`` holds the ``.kmc`` bytes), ``"unreadable"``
    (the input is not a readable image), ``"quality"`` (the minimum quality
    was not reached), ``"usage"`` (a bad option for this image, a
    :class:`ValueError`) or ``"failed"`` (another :class:`OSError`);
    ``message`` names the file and the reason.
    """

    index: int
    name: str
    kind: str
    message: str = ""
    data: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass(frozen=True)
class Partial:
    """A histogram of some of the inputs (None if none was readable) and their failures."""

    histogram: ColourHistogram | None
    failures: tuple[Outcome, ...] = ()


def _name(source: Any, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<input {index}>"


def _read(index: int, source: ImageSource) -> tuple[str, bytes | None, Outcome | None]:
    """The bytes of one input, read on the client; an Outcome instead if that fails."""
    name = _name(source, index)
    if isinstance(source, (bytes, bytearray)):
        return name, bytes(source), None
    if not isinstance(source, (str, os.PathLike)):  # an Image would travel to every worker
        raise ValueError(
            f"inputs are paths or encoded bytes, not {type(source).__name__} "
            "(pil_kmc.shared_palette takes Pillow images)"
        )
    try:
        return name, Path(source).read_bytes(), None
    except OSError as e:
        reason = e.strerror or str(e)  # the OS's words, without the path again
        return name, None, Outcome(index, name, "unreadable", f"{name}: cannot read: {reason}")


def _open(name: str, data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    import pil_kmc  # noqa: F401  (registers the formats in a worker process)

    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message names the BytesIO, not the file
        raise OSError("not an image file that Pillow can read") from None
    im.load()
    return im


_OPEN_ERRORS = (OSError, ValueError, SyntaxError)


def histogram_task(index: int, name: str, data: bytes) -> Partial:
    """The map step: one input's histogram (never raises: a failure is reported)."""
    from PIL import Image

    from .palettes import image_histogram

    try:
        im = _open(name, data)
        return Partial(image_histogram(im))
    except (*_OPEN_ERRORS, Image.DecompressionBombError) as e:
        failure = Outcome(index, name, "unreadable", f"{name}: cannot read image: {e}")
        return Partial(None, (failure,))


def merge_task(*parts: Partial) -> Partial:
    """The reduce step: the sum of several partial histograms."""
    hists = [p.histogram for p in parts if p.histogram is not None]
    failures = tuple(f for p in parts for f in p.failures)
    return Partial(merge_histograms(hists) if hists else None, failures)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    items = iter(items)
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _threads(client: Client) -> int:
    return max(1, sum(client.nthreads().values()))


def merged_histogram(
    sources: Sequence[ImageSource], client: Client | None = None, jobs: int = 1
) -> Partial:
    """The merged histogram of ``sources`` (paths or encoded bytes) and the inputs that failed.

    On ``client`` (a ``dask.distributed.Client``) the histograms are made
    and summed on the workers; otherwise in ``jobs`` local processes. Either
    way the inputs are read a window at a time and the histograms summed as
    they come, so memory stays bounded. Failures are sorted by input index.
    """
    items = list(enumerate(sources))
    if client is not None:
        part = _merge_on_cluster(client, items)
    elif jobs > 1 and len(items) > 1:
        with ProcessPoolExecutor(min(jobs, len(items))) as pool:
            part = _running_sum(pool.map(_read_and_histogram, items))
    else:
        part = _running_sum(map(_read_and_histogram, items))
    return Partial(part.histogram, tuple(sorted(part.failures, key=lambda o: o.index)))


def _read_and_histogram(item: tuple[int, ImageSource]) -> Partial:
    name, data, failure = _read(*item)
    return Partial(None, (failure,)) if failure is not None else histogram_task(item[0], name, data)


def _running_sum(parts: Iterable[Partial]) -> Partial:
    total = Partial(None)
    for group in _chunks(parts, _FAN_IN):
        total = merge_task(total, *group)
    return total


def _merge_on_cluster(client: Client, items: list) -> Partial:
    """Map the histograms onto the cluster and sum them there, a window of inputs at a time."""
    distributed = require_dask()
    window = _IN_FLIGHT_PER_THREAD * _threads(client)
    unread: list[Outcome] = []
    total, previous = None, None
    for chunk in _chunks(items, window):
        leaves = []
        for index, source in chunk:
            name, data, failure = _read(index, source)
            if failure is not None:
                unread.append(failure)
            else:
                leaves.append(client.submit(histogram_task, index, name, data, pure=False))
        if not leaves:
            continue
        while len(leaves) > 1:
            leaves = [client.submit(merge_task, *g, pure=False) for g in _chunks(leaves, _FAN_IN)]
        total = leaves[0] if total is None else client.submit(merge_task, total, leaves[0])
        if previous is not None:  # at most two windows of inputs held at once
            distributed.wait(previous)
        previous = total
    part = total.result() if total is not None else Partial(None)
    return Partial(part.histogram, part.failures + tuple(unread))


def shared_palette(
    client: Client, images: Sequence[ImageSource], clusters: int = 256, **options: Any
) -> np.ndarray:
    """:func:`pil_kmc.shared_palette` on a Dask cluster: the same palette, map-reduced.

    ``images`` are paths or encoded bytes (read here, sent to the workers);
    ``options`` are ``seed``, ``max_iter``, ``tol`` and ``colorspace``.
    Raises :class:`OSError` naming every input that could not be read.
    """
    part = merged_histogram(images, client)
    if part.failures:
        raise OSError("; ".join(f.message for f in part.failures))
    if part.histogram is None:
        raise ValueError("no images to make a palette of")
    future = client.submit(palette_from_histogram, part.histogram, clusters, **options)
    return future.result()


def _host_threads(client: Client) -> dict[str, int]:
    """Worker threads per host: several worker processes may share one machine."""
    from distributed.comm import get_address_host

    hosts: dict[str, int] = {}
    for address, threads in client.nthreads().items():
        with contextlib.suppress(ValueError):  # an address of no known form: left out
            host = get_address_host(address)
            hosts[host] = hosts.get(host, 0) + threads
    return hosts


def _share_cores(hosts: dict[str, int] | None = None) -> None:
    """On a Dask worker, keep pil_kmc's threads to a task's share of the cores.

    A worker runs ``nthreads`` tasks at once, and the other workers on its
    host (``hosts``: threads per host, from :func:`_host_threads`) theirs:
    threads of each task's own would only take turns with the others' (as
    for ``kmc encode -j``).
    """
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
    except (ImportError, ValueError):  # not on a worker
        return
    tasks = getattr(getattr(worker, "state", worker), "nthreads", 1)  # .state since 2022.11
    if hosts:
        # An address get_address_host cannot read (another process's inproc://): the worker alone.
        with contextlib.suppress(ValueError):
            tasks = max(tasks, hosts.get(get_address_host(worker.address), tasks))
    parallel.limit(max(1, parallel.cores() // max(1, tasks)))


def encode_task(
    index: int, name: str, data: bytes, params: dict, hosts: dict[str, int] | None = None
) -> Outcome:
    """Encode one input with save ``params``, as ``kmc encode`` does (never raises).

    ``hosts``, the worker threads per host, keeps the task's threads to its
    share of its machine's cores (:func:`_share_cores`).
    """
    from PIL import Image

    from .encoder import QualityNotReached

    _share_cores(hosts)

    try:
        im = _open(name, data)
    except (*_OPEN_ERRORS, Image.DecompressionBombError) as e:
        return Outcome(index, name, "unreadable", f"{name}: cannot read image: {e}")
    buffer = io.BytesIO()
    try:
        im.save(buffer, "KMC", **params)
    except QualityNotReached as e:
        return Outcome(index, name, "quality", f"{name}: {e}")
    except ValueError as e:
        return Outcome(index, name, "usage", f"{name}: {e}")
    except OSError as e:
        return Outcome(index, name, "failed", f"{name}: {e}")
    return Outcome(index, name, "ok", data=buffer.getvalue())


def windowed(
    client: Client, func: Callable[..., Any], items: Iterable[tuple[Any, tuple]]
) -> Iterator[tuple[Any, Any, Any]]:
    """Run ``func(*args)`` on ``client``'s cluster for each ``(tag, args)`` of ``items``.

    Yields ``(tag, result, None)``, or ``(tag, None, error)`` when the task
    failed on the cluster (a lost worker, a task that could not be
    unpickled...), as each completes. ``items`` is drawn only while fewer
    than a few tasks per worker thread are in flight, so inputs read lazily
    stay bounded in memory.
    """
    distributed = require_dask()
    pending = distributed.as_completed()
    window = _IN_FLIGHT_PER_THREAD * _threads(client)
    todo = iter(items)
    tags: dict = {}

    def refill() -> None:
        while len(tags) < window:
            item = next(todo, None)
            if item is None:
                return
            tag, args = item
            future = client.submit(func, *args, pure=False)
            tags[future.key] = tag
            pending.add(future)

    refill()
    for future in pending:
        tag = tags.pop(future.key)
        try:
            result, error = future.result(), None
        except Exception as e:  # the task itself failed on the cluster
            result, error = None, e
        future.release()
        yield tag, result, error
        refill()


def encode_batch(
    client: Client, sources: Sequence[ImageSource], params: dict | None = None
) -> Iterator[Outcome]:
    """Encode every one of ``sources`` (paths or encoded bytes) on ``client``'s cluster.

    Yields one :class:`Outcome` per input as it completes (not in order:
    ``Outcome.index`` tells which). ``params`` are the save parameters; the
    bytes are those of ``Image.open(source).save(..., "KMC", **params)`` here.
    Inputs are read and sent a window at a time, so memory stays bounded.
    """
    params = dict(params or {})
    hosts = _host_threads(client)
    unread: list[Outcome] = []

    def tasks():
        for index, source in enumerate(sources):
            name, data, failure = _read(index, source)
            if failure is not None:
                unread.append(failure)
                continue
            yield (index, name), (index, name, data, params, hosts)

    for (index, name), outcome, error in windowed(client, encode_task, tasks()):
        yield from _drain(unread)
        if error is not None:
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            outcome = Outcome(index, name, "failed", f"{name}: failed on the cluster ({reason})")
        yield outcome
    yield from _drain(unread)


def _drain(items: list) -> Iterator:
    while items:
        yield items.pop(0)
