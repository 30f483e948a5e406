"""Compression methods 4 (``context``), 5 (``strips``) and 6 (``tables``), compiled.

Methods 4 and 5 code each pixel as yes/no questions about its neighbours, left (L), up
(U), up-right (UR) and up-left (UL): "is it L?", "is it U?", ... skipping a
neighbour equal to one already asked about, then, if every answer was no,
the index itself bit by bit. Every answer is coded by rANS with a
probability learnt from the earlier answers in its context.

- ``context`` (spec/kmc.md section 5.5) visits pixels in wavefronts, step
  ``t = x + 2y``, and learns from a step's answers once it is done: one
  stream, decoded one step after another.
- ``strips`` (section 5.6) cuts the plane into strips of whole rows, each
  coded on its own in raster order and learning from every answer at once:
  the strips decode in parallel threads, faster than ``context`` even in
  one, and smaller.

The loops are C (``csrc/``, the extension ``pil_kmc._kmc``), which checks
every read against the stream's length and releases the GIL while it works.
The numpy transcription of method 4 that these loops replaced, and plain
Python ones of methods 5 and 6, live in the tests as references.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from . import _kmc, parallel
from .layout import FormatError

#: A strip holds at least this many pixels, unless it is the whole plane (spec 5.6).
MIN_STRIP_PIXELS = _kmc.MIN_STRIP_PIXELS
#: Writers aim for strips of about this many pixels: enough for every
#: context to learn, and enough strips for the cores of large images.
STRIP_PIXELS = 1 << 20

_MESSAGES = {
    _kmc.TRUNCATED: "the {name} index stream is truncated",
    _kmc.EXTRA: "the {name} index stream holds more data than the image needs",
    _kmc.LOW_STATE: "corrupt {name} index stream: a state starts out of range"
    " (below 2**16; in method 6, outside 2**31 to 2**63 - 1)",
    _kmc.BAD_END: "corrupt {name} index stream: a lane does not end where it began",
    _kmc.INDEX_K: "index data refers to a palette entry at or above k={k}",
    _kmc.BAD_STRIPS: "corrupt {name} index stream: invalid strip table",
    _kmc.BAD_TABLES: "corrupt {name} index stream: invalid frequency tables",
    _kmc.BAD_SYMBOL: "corrupt {name} index stream: a symbol without a table or a run past the row",
}


def _check(code: int, name: str, k: int) -> None:
    if code != _kmc.OK:
        raise FormatError(_MESSAGES[code].format(name=name, k=k))


def _plane(indices: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(indices, dtype=np.uint8)


def encode(indices: np.ndarray, k: int) -> bytes:
    """The ``context`` (method 4) stream of an index plane (uint8, every value below ``k``)."""
    height, width = indices.shape
    return _kmc.context_encode(_plane(indices), width, height, k)


def decode(stream: bytes, width: int, height: int, k: int, *, partial: bool = False) -> np.ndarray:
    """The index plane of a ``context`` stream; :class:`FormatError` if it is corrupt.

    With ``partial``, a stream that ends early gives the rows completed
    before its end, and index 0 after them.
    """
    out = bytearray(width * height)
    _check(_kmc.context_decode(stream, width, height, k, partial, out), "context", k)
    return np.frombuffer(out, np.uint8).reshape(height, width)


def strip_rows(width: int, height: int) -> int:
    """Rows per strip that a writer uses: a power-of-two number of strips of about STRIP_PIXELS.

    A power of two shares out evenly between 2, 4 or 8 cores, and every plane
    that two strips can hold gets at least two, so that two cores decode it:
    each strip's contexts learn from scratch, which costs a few bytes against
    one strip (docs/bench-results.md). The choice depends only on the size,
    so the bytes are the same on every machine.
    """
    pixels, strips = width * height, 1
    while 2 * strips <= height and (
        2 * strips * STRIP_PIXELS <= pixels or (strips == 1 and pixels >= 2 * MIN_STRIP_PIXELS)
    ):
        strips *= 2
    rows = -(-height // strips)
    if rows < height and rows * width < MIN_STRIP_PIXELS:  # never for the sizes above
        rows = height
    return rows


def encode_strips(indices: np.ndarray, k: int, rows: int | None = None) -> bytes:
    """The ``strips`` (method 5) stream of an index plane; the strips are coded in parallel."""
    height, width = indices.shape
    plane = _plane(indices)
    rows = rows or strip_rows(width, height)
    if not 1 <= rows <= height or (rows < height and rows * width < MIN_STRIP_PIXELS):
        raise ValueError(f"invalid rows per strip {rows} for a {width}x{height} plane")
    starts = range(0, height, rows)
    parts = parallel.in_threads(
        [
            lambda y0=y0: _kmc.strips_encode(plane, width, height, y0, min(rows, height - y0), k)
            for y0 in starts
        ]
    )
    table = struct.pack(f">{1 + len(parts)}I", rows, *map(len, parts))
    return table + b"".join(parts)


def decode_strips(
    stream: bytes, width: int, height: int, k: int, *, partial: bool = False
) -> np.ndarray:
    """The index plane of a ``strips`` stream, its strips decoded in parallel threads."""
    return _decode_in_strips(
        _kmc.strips_table, _kmc.strips_decode, "strips", stream, width, height, k, partial
    )


def _decode_in_strips(
    table: Callable[..., tuple[int, int, int]],
    decode_range: Callable[..., int],
    name: str,
    stream: bytes,
    width: int,
    height: int,
    k: int,
    partial: bool,
) -> np.ndarray:
    """Check the strip table with ``table``, then decode each strip with ``decode_range``."""
    code, _, strips = table(stream, width, height, partial)
    if code == _kmc.TRUNCATED and partial:
        return np.zeros((height, width), np.uint8)
    _check(code, name, k)
    # Not zeroed: a strip decoded without error writes every one of its
    # pixels (index 0 where a partial one was cut), and an error discards
    # the plane. Zeroing a large plane first costs a pass over its memory.
    out = np.empty((height, width), np.uint8)

    # A few runs of strips per thread: the pool's threads take the next run as
    # they finish one, so a strip that costs more than the rest does not hold up
    # a fixed share, and each call's setup (method 6 reads the image's tables)
    # is paid a few times, not once a strip. After an error no run starts, and
    # the first run's problem is the one reported.
    def run(first: int, last: int) -> None:
        _check(decode_range(stream, width, height, k, partial, first, last, out), name, k)

    pieces = _pieces(strips, 4 * parallel.workers())
    parallel.in_threads([lambda p=p: run(*p) for p in pieces])
    return out


def _pieces(n: int, most: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``most`` runs of nearly equal length, as (first, last)."""
    count = max(1, min(n, most))
    bounds = [n * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def encode_tables(indices: np.ndarray, k: int, rows: int | None = None) -> bytes:
    """The ``tables`` (method 6) stream of an index plane; strips counted and coded in parallel.

    Three passes, as the format needs: each strip's symbol counts, the
    image's tables from their sum, then each strip coded with those tables
    (and its own where they pay).
    """
    height, width = indices.shape
    plane = _plane(indices)
    rows = rows or strip_rows(width, height)
    if not 1 <= rows <= height or (rows < height and rows * width < MIN_STRIP_PIXELS):
        raise ValueError(f"invalid rows per strip {rows} for a {width}x{height} plane")
    strips = [(y0, min(rows, height - y0)) for y0 in range(0, height, rows)]
    # One run of whole strips per thread: each run's counts are a fixed 0.5 MB.
    runs = [
        (first * rows, min(height, last * rows) - first * rows)
        for first, last in _pieces(len(strips), parallel.workers())
    ]
    counts = parallel.in_threads(
        [lambda r=r: _kmc.tables_count(plane, width, height, *r, rows, k) for r in runs]
    )
    total = np.zeros(_kmc.TABLES_COUNTS, np.uint64)
    for c in counts:
        total += np.frombuffer(c, np.uint64)
    tables = _kmc.tables_image(total.tobytes(), k)
    parts = parallel.in_threads(
        [lambda s=s: _kmc.tables_strip(plane, width, height, *s, k, tables) for s in strips]
    )
    head = struct.pack(f">{2 + len(parts)}I", rows, len(tables), *map(len, parts))
    return head + tables + b"".join(parts)


def decode_tables(
    stream: bytes, width: int, height: int, k: int, *, partial: bool = False
) -> np.ndarray:
    """The index plane of a ``tables`` stream, its strips decoded in parallel threads."""
    return _decode_in_strips(
        _kmc.tables_table, _kmc.tables_decode, "tables", stream, width, height, k, partial
    )
