"""Exact, machine-independent distance ranking for the k-means.

The same image and options must give the same bytes on every machine. Float
arithmetic in a matrix product does not promise that: a BLAS adds in an
order of its own, which varies with the CPU and the library. So every
ranking of points by distance (k-means++ draws, Lloyd's assignments, the
final palette lookup) is made on values for which every product, partial
sum and comparison is exact:

- :func:`snap` puts points and centroids on a grid of ``1/SNAP[C]`` colour
  levels as float32 integers, small enough that the scores below stay under
  2**23, where float32 holds every half-integer;
- :func:`closest` ranks them by one matrix product, ``|c|^2 / 2 - x.c``,
  per block of points; ties go to the lower index;
- :func:`greatest_gain` compares weighted sums exactly, falling back to
  float64 where float32 cannot tell the leaders apart;
- :func:`matmul` and :func:`weighted_sums` cut products into blocks small
  enough that OpenBLAS computes them in the calling thread (see
  ``PRODUCT_WORK``).

:func:`nearest` is the exact lookup of every distinct colour in the rounded
palette; for float values (Oklab) it uses :func:`scipy.cluster.vq.vq` up to
``VQ_UP_TO`` entries and a k-d tree above.
"""

from __future__ import annotations

import numpy as np

from . import parallel

# Points and centroids are ranked on a grid of 1/SNAP[channels] colour levels,
# clipped to SNAP_RANGE levels: the largest score, 1.5 * channels *
# (383 * SNAP)^2, stays below 2**23, where float32 holds half-integers exactly.
SNAP = {1: 6, 2: 4, 3: 3, 4: 3}
SNAP_RANGE = (-128, 383)
# Matrix products are cut into blocks of at most this many multiply-adds, and
# dot products of long vectors summed in blocks, so that OpenBLAS (numpy's)
# computes them all in the calling thread: it hands larger ones to worker
# threads, which then spin for a while waiting for more and take the
# second core from the index coder that follows. The scores of a block also
# stay in cache, which makes the blocked product faster than one whole one
# even in a single thread (measured against threadpoolctl's
# threadpool_limits(1) around whole products: see the README's "Where
# scipy.cluster.vq is used").
PRODUCT_WORK = 1 << 18
# Rankings of at least this many multiply-adds are shared out between threads
# (:func:`closest`); below, starting a thread costs more than it saves.
PARALLEL_WORK = 1 << 21
# Float palettes up to this size are matched with scipy.cluster.vq.vq, larger
# ones with a k-d tree over the palette (see the README).
VQ_UP_TO = 64
# Colours matched per block by nearest(): their float copies stay small.
NEAREST_BLOCK = 1 << 16


def as_seen(colours: np.ndarray) -> np.ndarray:
    """8-bit colours with alpha last, premultiplied: ``(c * a, ..., 255 * a)`` in float64.

    This is 255 times the colour as composited over black, and alpha; the
    squared distance between two such rows is 255**2 times the error a viewer
    sees over black plus that of the alpha, and invisible colours (alpha 0)
    are all the same point. Integers below 2**16, so :func:`closest` ranks
    them exactly in float64.
    """
    out = colours.astype(np.float64)
    out[:, :-1] *= out[:, -1:]
    out[:, -1] *= 255
    return out


def snap(values: np.ndarray) -> np.ndarray:
    """``values`` on the grid of 1/SNAP levels, clipped to SNAP_RANGE, as float32 integers."""
    scale = SNAP[values.shape[1]]
    low, high = SNAP_RANGE
    return np.clip(np.rint(values * scale), low * scale, high * scale).astype(np.float32)


def with_ones(values: np.ndarray) -> np.ndarray:
    """``values`` (float32 or float64) plus a column of ones, as :func:`closest` takes them."""
    out = np.ones((len(values), values.shape[1] + 1), dtype=values.dtype)
    out[:, :-1] = values
    return out


def coefficients(c: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """``(-c, |c|^2 / 2)`` as columns: ``with_ones(x) @`` this gives ``|c|^2 / 2 - x.c``."""
    out = np.empty((c.shape[1] + 1, len(c)), dtype=dtype)
    out[:-1] = -c.T
    out[-1] = (c.astype(np.float64) ** 2).sum(axis=1) / 2
    return out


def closest(x: np.ndarray, c: np.ndarray, second: bool = False) -> tuple[np.ndarray, ...]:
    """Index of the nearest row of ``c`` for each row of ``x``, and ``|c|^2 / 2 - x.c`` there.

    ``x`` comes with a column of ones (:func:`with_ones`), so that one
    matrix product against ``(-c, |c|^2 / 2)`` gives the scores. Both hold
    integers, at most 4 channels and small enough that every product, every
    partial sum and every score is exact in ``x``'s float type (below 2**23
    in float32, 2**52 in float64): whatever order a machine's matrix code
    adds them in, the ranking is the same. Ties go to
    the lower index. The scores of a block of rows stay in cache. With
    ``second``, also the second lowest score of each row and its index
    (infinite and 0 with one row in ``c``). From PARALLEL_WORK multiply-adds, the rows are ranked in
    parallel threads, one share of them each: every row's result is its own,
    so the results are the same whatever the threads.
    """
    coef = coefficients(c, x.dtype)
    labels = np.empty(len(x), dtype=np.intp)
    best = np.empty(len(x), dtype=x.dtype)
    runner_up = np.empty(len(x), dtype=x.dtype) if second else None
    second_labels = np.empty(len(x), dtype=np.intp) if second else None
    rows = max(1, min(len(x), PRODUCT_WORK // coef.size))
    shares = min(parallel.workers(), x.size * coef.shape[1] // PARALLEL_WORK, -(-len(x) // rows))
    if shares < 2:
        _closest_rows(x, coef, rows, 0, len(x), labels, best, runner_up, second_labels)
    else:
        step = -(-len(x) // (shares * rows)) * rows  # whole blocks per share
        parallel.in_threads(
            [
                lambda start=start: _closest_rows(
                    x,
                    coef,
                    rows,
                    start,
                    min(start + step, len(x)),
                    labels,
                    best,
                    runner_up,
                    second_labels,
                )
                for start in range(0, len(x), step)
            ]
        )
    if second:
        return labels, best, runner_up, second_labels
    return labels, best


def _closest_rows(
    x: np.ndarray,
    coef: np.ndarray,
    rows: int,
    start: int,
    end: int,
    labels: np.ndarray,
    best: np.ndarray,
    runner_up: np.ndarray | None,
    second_labels: np.ndarray | None,
) -> None:
    """:func:`closest` for rows ``start:end`` of ``x``, in blocks of ``rows``, into the outputs."""
    k = coef.shape[1]
    scores = np.empty((min(rows, end - start), k), dtype=x.dtype)  # reused by every block
    offsets = np.arange(len(scores)) * k  # of each row's first score in the flat block
    for first in range(start, end, rows):
        block = x[first : min(first + rows, end)]
        n = len(block)
        s = scores[:n]
        np.matmul(block, coef, out=s)
        found = labels[first : first + n]
        s.argmin(axis=1, out=found)
        flat = s.reshape(-1)
        at = offsets[:n] + found
        best[first : first + n] = flat[at]
        if runner_up is not None:
            flat[at] = np.inf
            other = second_labels[first : first + n]
            s.argmin(axis=1, out=other)
            runner_up[first : first + n] = flat[offsets[:n] + other]


def greatest_gain(gains: np.ndarray, weights32: np.ndarray, weights: np.ndarray) -> int:
    """The row of ``gains`` with the greatest weighted sum, exactly; ties to the lowest row.

    ``gains`` holds non-negative half-integers below 2**23 and ``weights``
    integer counts, so the exact sums are multiples of a half below 2**52
    (for fewer than 2**28 pixels), which float64 holds. A float32 product
    ranks the rows quickly, but its rounding depends on the order in which
    the matrix code adds (a BLAS detail that varies between machines). Its
    error is at most about one unit in the last place per term, as every
    term is non-negative; the rows it cannot tell from the greatest by more
    than that are summed again in float64, exactly. So the same row wins on
    every machine.
    """
    totals = weighted_sums(gains, weights32)
    high = float(totals.max())
    slack = (len(weights) + 2) * 2.0**-23  # twice the bound, with room to spare
    near = (totals >= high * (1 - slack) / (1 + slack)).nonzero()[0]
    if len(near) == 1:
        return int(near[0])
    exact = weighted_sums(gains[near].astype(np.float64), weights)
    return int(near[np.argmax(exact)])


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (2-D) in blocks of at most PRODUCT_WORK multiply-adds, computed in this thread.

    The blocks run along ``a``'s rows or ``b``'s columns, whichever are more,
    so each output element is still the dot product of a whole row and column.
    """
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    if a.size * b.shape[1] <= PRODUCT_WORK:  # one block: the common case, made quick
        return np.matmul(a, b, out=out)
    by_rows = a.shape[0] > b.shape[1]
    length, across = (a.shape[0], b.shape[1]) if by_rows else (b.shape[1], a.shape[0])
    most = max(1, PRODUCT_WORK // (a.shape[1] * across or 1))
    blocks = max(1, -(-length // most))
    step = max(1, -(-length // blocks))  # equal blocks: no small one at the end
    for start in range(0, length, step):
        part = slice(start, start + step)
        if by_rows:
            np.matmul(a[part], b, out=out[part])
        else:
            np.matmul(a, b[:, part], out=out[:, part])
    return out


def weighted_sums(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rows @ weights``, summed over blocks of at most PRODUCT_WORK products."""
    step = max(1, PRODUCT_WORK // len(rows))
    if len(weights) <= step:
        return rows @ weights
    totals = rows[:, :step] @ weights[:step]
    for start in range(step, len(weights), step):
        totals += rows[:, start : start + step] @ weights[start : start + step]
    return totals


def nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry for each colour (exact, Euclidean).

    Integer colours and palette (8-bit channels) are ranked exactly by a
    matrix product (:func:`closest`); ties go to the lower index. With alpha
    (2 or 4 channels) they are compared as seen, premultiplied by alpha
    (:func:`as_seen`). Float values (colours in Oklab) go through
    :func:`scipy.cluster.vq.vq` up to VQ_UP_TO entries and a k-d tree over
    the palette above, both exact.
    """
    if colours.dtype.kind in "ui" and palette.dtype.kind in "ui":
        seen = colours.shape[1] in (2, 4)
        p = as_seen(palette) if seen else palette.astype(np.float32)
        labels = np.empty(len(colours), dtype=np.intp)
        # In blocks: float copies of every colour would outweigh the labels.
        for start in range(0, len(colours), NEAREST_BLOCK):
            part = colours[start : start + NEAREST_BLOCK]
            x = as_seen(part) if seen else part.astype(np.float32)
            labels[start : start + NEAREST_BLOCK] = closest(with_ones(x), p)[0]
        return labels
    x = colours.astype(np.float32)
    p = palette.astype(np.float32)
    if len(p) <= VQ_UP_TO:
        from scipy.cluster.vq import vq

        return vq(x, p, check_finite=False)[0]
    from scipy.spatial import cKDTree

    # The tree may answer with any of several equal entries: it gets each distinct
    # entry once, standing for its first index, so that a tie between equal
    # entries goes to the lower index (one between different entries at the same
    # distance, rare in float Oklab, still goes either way).
    distinct, first = np.unique(p, axis=0, return_index=True)
    # In this thread, like the products: the second core is the index coder's.
    return first[cKDTree(distinct).query(x, workers=1)[1]]
