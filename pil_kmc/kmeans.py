"""Weighted k-means on a colour histogram, coarse to fine.

Clustering every pixel is wasteful: a photograph of N pixels has far fewer
distinct colours M, and Lloyd's algorithm gives the same centroids when each
distinct colour is one point weighted by its pixel count. Fewer still are the
occupied cells of a coarse colour grid (at most 4,096 here), each represented
by the weighted mean of its colours; the centroid update stays exact for
every cell whose colours all fall in one cluster. So the clustering runs:

1. seeding on the coarsest grid with enough cells per cluster (see
   :func:`_seed_stage`): greedy k-means++ (weighted), or, when points times
   clusters are many, k-means|| (:func:`kmeans_parallel`), which draws
   about 4k candidates in two sweeps and runs k-means++ on those;
2. over-relaxed Lloyd iterations on that grid, then on grids twice, four
   and eight times finer per channel than the coarse one (or on the
   distinct colours themselves once a grid would not halve their number);

each stage starting from the previous stage's centroids and stopping when no
centroid moves more than ``tol`` colour levels. The seeding stage gets
``max_iter`` iterations; the finer ones only refine, so those in between get
a quarter of them and the finest, the costliest, an eighth. Centroid
updates are weighted sums with :func:`numpy.bincount`.

Every ranking of points by distance (the seeding draws, Lloyd's
assignments, the final palette lookup) is one matrix product per block of
points, ``|c|^2 / 2 - x.c``, on integers that float32 holds exactly (see
:func:`_closest`). It gives the labels :func:`scipy.cluster.vq.vq` gives
on the same values, 1.3-1.5 times as fast at 8-24 clusters and 2.3-3.5
times at 32-64, and twice as fast as a k-d tree at 256 (16,000 points);
and the same on every machine. For it, points and centroids are snapped
to a third of a colour level (finer with fewer channels). The final
assignment of every distinct colour to the rounded palette is exact
(:func:`nearest`).

An empty cluster is re-seeded at the point that contributes most to the
weighted squared error (its weight times its squared distance to its
centroid), which splits the worst-served part of the histogram.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.cluster.vq import vq

#: Lloyd iterations allowed at each grid stage; the finest stage gets an eighth.
DEFAULT_MAX_ITER = 15
#: A stage stops when no centroid moves more than this (in 0-255 colour levels).
DEFAULT_TOL = 0.02
#: Over-relaxation factor of Lloyd's update (1 is plain Lloyd).
RELAXATION = 1.9
_SEED_POINTS_PER_CLUSTER = 32
# k-means|| replaces k-means++ from this many points times clusters (k = 256 on
# 4,096 points), in this many sweeps, each drawing about this many times k
# candidates (Bahmani et al. suggest 2). On the bench photographs at k = 256 it
# takes a fifth less quantization time (median 0.78x) for the same PSNR
# (+0.002 dB median over six seeds, -0.009 dB at worst); below, k-means++
# costs little anyway.
_PARALLEL_SEED_WORK = 1 << 20
_PARALLEL_SWEEPS = 2
_OVERSAMPLING = 2
_VQ_UP_TO = 64
# k-means++ and Lloyd's iterations rank points and centroids on a grid of
# 1/_SNAP[channels] colour levels, clipped to _SNAP_RANGE levels: the largest
# score, 1.5 * channels * (383 * _SNAP)^2, stays below 2**23, where float32
# holds half-integers exactly (see _closest).
_SNAP = {1: 6, 2: 4, 3: 3, 4: 3}
_SNAP_RANGE = (-128, 383)
# Point-centroid distances a stage may always spend (a few milliseconds' worth),
# and the size (points x clusters) up to which the exact colours get a stage.
_CHEAP_STAGE_WORK = 5_000_000
_EXACT_STAGE_WORK = 1_000_000
# Matrix products are cut into blocks of at most this many multiply-adds, and
# dot products of long vectors go through einsum (numpy's own loops), so that
# OpenBLAS (numpy's) computes them all in the calling thread. It hands larger
# ones to worker threads (measured here: matrix products from 2**19
# multiply-adds, matrix-vector from about 460,000 elements, dot products from
# 10,000), which then spin at full speed for about 0.1 s, waiting for more.
# That took the second core from the index coder's threads that follow the
# clustering (coding took 6-13 ms longer on three photos at k = 256, 6-7% of
# a whole save) and saved little: 3.5 against 1.7 ms for 16k points and 256
# centroids in one product. The scores of a block also stay in cache.
_PRODUCT_WORK = 1 << 18
# The coarse grid has at most this many cells.
_COARSE_CELLS = 4096


def colour_histogram(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` (sorted) and how often each occurs."""
    ordered = np.sort(keys)  # equal keys are indistinguishable: any algorithm gives these bytes
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, ordered.size])
    return ordered[starts], counts


def grid_cells(
    colours: np.ndarray, weights: np.ndarray, bits: int, values: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse weighted colours onto a grid of ``bits`` bits per channel.

    Returns the weighted mean of every occupied cell (of ``values``, the
    colours in the clustering space, by default the colours themselves) and
    the cell's total weight.
    """
    values = colours if values is None else values
    _, means, total = _collapse(colours >> (8 - bits), bits, weights, values)
    return means, total


def _collapse(cells: np.ndarray, bits: int, weights: np.ndarray, values: np.ndarray):
    """Weighted points with integer cell coordinates (below 2**bits) -> one point per cell.

    Returns each occupied cell's coordinates, the weighted mean of its
    ``values`` and its total weight.
    """
    channels = cells.shape[1]
    ids = np.zeros(len(cells), dtype=np.int64)
    for c in range(channels):
        ids = (ids << bits) | cells[:, c]
    labels, count = _compact(ids, bits * channels)
    total = np.bincount(labels, weights=weights, minlength=count)
    means = np.empty((count, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        means[:, c] = np.bincount(labels, weights=weights * values[:, c], minlength=count)
    occupied = np.empty((count, channels), dtype=cells.dtype)
    occupied[labels] = cells
    return occupied, (means / total[:, None]).astype(np.float32), total


def _compact(ids: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Number the distinct values of ``ids`` 0, 1, ... in increasing order.

    Returns each element's number and how many there are. Ids below 2**22
    go through a presence table, which is much faster than sorting.
    """
    if bits > 22 or len(ids) < 1 << (bits - 6):
        unique, labels = np.unique(ids, return_inverse=True)
        return labels, len(unique)
    present = np.zeros(1 << bits, dtype=bool)
    present[ids] = True
    number = np.cumsum(present, dtype=np.int32)  # a third of the memory of int64 to touch
    return number[ids] - 1, int(number[-1])


def kmeans_plusplus(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Each new centre is drawn with probability proportional to weight times
    squared distance to the nearest chosen centre; of ``2 + log(k)`` draws,
    the one that lowers the weighted error most is kept. Distances are
    measured between the points snapped as in Lloyd's iterations, and the
    trials compared exactly (:func:`_greatest_gain`), so the seeds are the
    same on every machine.
    """
    # The scores of _closest, with |x|^2 / 2 added on the points' side (as a
    # column) and a 1 on the centres' side (as a row): their product is half
    # the squared distance, exact like the scores (the bound is the same).
    x = _with_ones(_snap(points))
    coefficients = _coefficients(x[:, :-1])  # every point as a candidate centre
    columns = np.vstack([x.T, coefficients[-1]])
    rows = np.ascontiguousarray(np.vstack([coefficients, x[:, -1]]).T)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, points.shape[1]), dtype=np.float32)
    draw = _Sampler(len(points))
    draw.mass[:] = weights
    first = int(draw(rng.random(1))[0])
    centres[0] = points[first]
    nearest = np.empty(len(points), dtype=np.float32)
    matmul(rows[first : first + 1], columns, nearest[None])
    weights32 = weights.astype(np.float32)
    twice = 2 * weights
    # Reused by every draw: fresh arrays of this size cost page faults.
    candidate = np.empty((trials, len(points)), dtype=np.float32)
    for i in range(1, k):
        np.multiply(nearest, twice, out=draw.mass)
        draws = draw(rng.random(trials))
        if draws is None:  # every point already sits on a centre
            centres[i:] = centres[0]
            break
        matmul(rows[draws], columns, candidate)
        # How much nearer each trial would bring every point (exact half-integers).
        np.minimum(candidate, nearest, out=candidate)
        np.subtract(nearest, candidate, out=candidate)
        best = _greatest_gain(candidate, weights32, weights)
        centres[i] = points[draws[best]]
        nearest -= candidate[best]
    return centres


def kmeans_parallel(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """k-means|| seeding (Bahmani et al., "Scalable k-means++", 2012), weighted.

    k-means++ draws its k centres one after another, each draw a pass over
    every point. k-means|| instead draws many candidates per pass: after a
    first point drawn by weight, each sweep keeps every point independently
    with probability ``_OVERSAMPLING * k`` times its share of the weighted
    squared error left, so a few sweeps cover the histogram as k-means++
    would, far from the candidates so far. Each candidate is then weighted
    by the points nearest to it, and greedy k-means++
    (:func:`kmeans_plusplus`) picks the k centres among the (about 4k)
    candidates. Distances are exact, as in Lloyd's iterations, so the seeds
    are the same on every machine.
    """
    chosen, owned = _candidates(points, weights, k, rng)
    if len(chosen) <= k:  # too few to choose from (few distinct points): draw from all
        return kmeans_plusplus(points, weights, k, rng)
    return kmeans_plusplus(points[chosen], owned, k, rng)


def _candidates(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The sweeps of :func:`kmeans_parallel`: candidate indices and the weight each is nearest to.

    Candidates nearest to no weight (a copy of an earlier one) are left out.
    """
    x = _with_ones(_snap(points))
    half = (x[:, :-1].astype(np.float64) ** 2).sum(axis=1) / 2  # |x|^2 / 2, exact
    draw = _Sampler(len(points))
    draw.mass[:] = weights
    first = int(draw(rng.random(1))[0])
    chosen = np.array([first])
    # Half the squared distance to the nearest candidate (exact), and which one.
    nearest = half + _closest(x, x[chosen, :-1])[1]
    owner = np.zeros(len(points), dtype=np.intp)
    for _ in range(_PARALLEL_SWEEPS):
        error = weights * nearest  # exact integers: the same on every machine
        total = float(error.sum())
        if total <= 0:  # every point is a candidate already
            break
        new = np.flatnonzero(rng.random(len(points)) * total < _OVERSAMPLING * k * error)
        if len(new) == 0:
            continue
        labels, score = _closest(x, x[new, :-1])
        distance = half + score
        nearer = distance < nearest  # ties stay with the earlier candidate
        nearest[nearer] = distance[nearer]
        owner[nearer] = len(chosen) + labels[nearer]
        chosen = np.concatenate([chosen, new])
    owned = np.bincount(owner, weights=weights, minlength=len(chosen))
    return chosen[owned > 0], owned[owned > 0]


def _greatest_gain(gains: np.ndarray, weights32: np.ndarray, weights: np.ndarray) -> int:
    """The row of ``gains`` with the greatest weighted sum, exactly; ties to the lowest row.

    ``gains`` holds non-negative half-integers below 2**23 and ``weights``
    integer counts, so the exact sums are multiples of a half below 2**52
    (for fewer than 2**28 pixels), which float64 holds. A float32 product
    ranks the rows quickly, but its rounding depends on the order in which
    the matrix code adds (a BLAS detail that varies between machines). Its
    error is at most about one unit in the last place per term, as every
    term is non-negative; the rows it cannot tell from the greatest by more
    than that are summed again in float64, exactly. So the same row wins on
    every machine. (Gains, not the errors they leave: those differ by a
    fraction of a percent at the last draws, within float32's error bound.)
    """
    totals = _weighted_sums(gains, weights32)
    high = float(totals.max())
    slack = (len(weights) + 2) * 2.0**-23  # twice the bound, with room to spare
    near = (totals >= high * (1 - slack) / (1 + slack)).nonzero()[0]
    if len(near) == 1:
        return int(near[0])
    exact = _weighted_sums(gains[near].astype(np.float64), weights)
    return int(near[np.argmax(exact)])


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (2-D) in blocks of at most _PRODUCT_WORK multiply-adds, computed in this thread.

    The blocks run along ``a``'s rows or ``b``'s columns, whichever are more,
    so each output element is still the dot product of a whole row and column.
    """
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    if a.size * b.shape[1] <= _PRODUCT_WORK:  # one block: the common case, made quick
        return np.matmul(a, b, out=out)
    by_rows = a.shape[0] > b.shape[1]
    length, across = (a.shape[0], b.shape[1]) if by_rows else (b.shape[1], a.shape[0])
    most = max(1, _PRODUCT_WORK // (a.shape[1] * across or 1))
    blocks = max(1, -(-length // most))
    step = max(1, -(-length // blocks))  # equal blocks: no small one at the end
    for start in range(0, length, step):
        part = slice(start, start + step)
        if by_rows:
            np.matmul(a[part], b, out=out[part])
        else:
            np.matmul(a, b[:, part], out=out[:, part])
    return out


def _weighted_sums(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rows @ weights``, summed over blocks of at most _PRODUCT_WORK products."""
    step = max(1, _PRODUCT_WORK // len(rows))
    if len(weights) <= step:
        return rows @ weights
    totals = rows[:, :step] @ weights[:step]
    for start in range(step, len(weights), step):
        totals += rows[:, start : start + step] @ weights[start : start + step]
    return totals


class _Sampler:
    """Indices drawn with probability proportional to ``mass``, in two levels.

    A cumulative sum over every point is the costliest step of a k-means++
    draw (numpy adds them one after another); summing blocks of 256 first,
    then accumulating only the blocks drawn, draws from the same
    distribution in half the time at 16,000 points. Up to SMALL points, the
    dozen numpy calls of that cost more than they save, and one cumulative
    sum does. Fill ``mass`` (zero beyond the points) before each call.
    """

    BLOCK = 256
    SMALL = 8192

    def __init__(self, n: int) -> None:
        self.n = n
        self.blocks = np.zeros((-(-n // self.BLOCK), self.BLOCK), dtype=np.float64)
        self.mass = self.blocks.reshape(-1)[:n]

    def __call__(self, uniform: np.ndarray) -> np.ndarray | None:
        """An index for each of the ``uniform`` numbers in [0, 1); None if all mass is 0."""
        if self.n <= self.SMALL:
            totals = np.cumsum(self.mass)
            if totals[-1] <= 0:
                return None
            return np.minimum(totals.searchsorted(uniform * totals[-1], side="right"), self.n - 1)
        sums = self.blocks.sum(axis=1)
        totals = np.cumsum(sums)
        if totals[-1] <= 0:
            return None
        targets = uniform * totals[-1]
        block = np.minimum(totals.searchsorted(targets, side="right"), len(totals) - 1)
        inner = np.cumsum(self.blocks[block], axis=1)
        inner += (totals[block] - sums[block])[:, None]
        offset = (inner <= targets[:, None]).sum(axis=1)
        return np.minimum(block * self.BLOCK + offset, self.n - 1)


def _coefficients(c: np.ndarray) -> np.ndarray:
    """``(-c, |c|^2 / 2)`` as columns: ``_with_ones(x) @`` this gives ``|c|^2 / 2 - x.c``."""
    coefficients = np.empty((c.shape[1] + 1, len(c)), dtype=np.float32)
    coefficients[:-1] = -c.T
    coefficients[-1] = (c.astype(np.float64) ** 2).sum(axis=1) / 2
    return coefficients


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centroids: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> np.ndarray:
    """Weighted, over-relaxed Lloyd iterations from ``centroids``.

    Each step assigns every point to its nearest centroid, both snapped to
    the grid of :func:`_snap`: the ranking is then exact (:func:`_closest`)
    and the same on every machine, and a point moves only when two centroids
    are within a sixth of a level of equidistant from it, where either
    serves it equally well. Each step then moves every centroid
    ``RELAXATION`` times the way towards the weighted mean of its points;
    plain Lloyd (factor 1) creeps towards its fixed point, and overshooting
    it a little reaches it in fewer steps.
    Overshooting can also oscillate: from the first step that raises the
    weighted squared error, the stage falls back to plain Lloyd, which never
    does. Stops after ``max_iter`` steps or when no centroid moves more than
    ``tol``.
    """
    k, channels = centroids.shape
    points = points.astype(np.float32)
    snapped = _with_ones(_snap(points))
    # Squared distances in snapped units are |x|^2 + 2 * score (see _closest).
    squares = (snapped[:, :-1].astype(np.float64) ** 2).sum(axis=1)
    spread = float(np.einsum("i,i", weights, squares))
    centroids = centroids.astype(np.float32)
    weighted = [weights * points[:, c] for c in range(channels)]
    relaxation, error = RELAXATION, np.inf
    for _ in range(max_iter):
        labels, score = _closest(snapped, _snap(centroids))
        new_error = spread + 2 * float(np.einsum("i,i", weights, score))
        if new_error > error:
            relaxation = 1.0
        error = new_error
        mass = np.bincount(labels, weights=weights, minlength=k)
        means = np.empty((k, channels), dtype=np.float64)
        for c in range(channels):
            means[:, c] = np.bincount(labels, weights=weighted[c], minlength=k)
        empty = mass == 0
        means[~empty] /= mass[~empty, None]
        updated = centroids + relaxation * (means - centroids)
        if empty.any():
            _reseed(updated, empty, points, weights * (squares + 2 * score.astype(np.float64)))
        shift = float(np.abs(updated - centroids).max())
        centroids = updated.astype(np.float32)
        if shift <= tol:
            break
    return centroids


def _snap(values: np.ndarray) -> np.ndarray:
    """``values`` on the grid of 1/_SNAP levels, clipped to _SNAP_RANGE, as float32 integers."""
    scale = _SNAP[values.shape[1]]
    low, high = _SNAP_RANGE
    return np.clip(np.rint(values * scale), low * scale, high * scale).astype(np.float32)


def _with_ones(values: np.ndarray) -> np.ndarray:
    """``values`` (float32) with a column of ones appended, as :func:`_closest` takes them."""
    out = np.ones((len(values), values.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = values
    return out


def _closest(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``c`` for each row of ``x``, and ``|c|^2 / 2 - x.c`` there.

    ``x`` comes with a column of ones (:func:`_with_ones`), so that one
    matrix product against ``(-c, |c|^2 / 2)`` gives the scores. Both hold
    integers in float32, at most 4 channels and small enough that every
    product, every partial sum and every score is exact: whatever order a
    machine's matrix code adds them in, the ranking is the same. Ties go to
    the lower index. The scores of a block of rows stay in cache, in one
    buffer reused for every block.
    """
    k = len(c)
    coefficients = _coefficients(c)
    labels = np.empty(len(x), dtype=np.intp)
    best = np.empty(len(x), dtype=np.float32)
    rows = max(1, min(len(x), _PRODUCT_WORK // coefficients.size))
    scores = np.empty((rows, k), dtype=np.float32)
    offsets = np.arange(rows) * k  # of each row's first score in the flat block
    for start in range(0, len(x), rows):
        block = x[start : start + rows]
        n = len(block)
        s = scores[:n]
        np.matmul(block, coefficients, out=s)
        found = labels[start : start + n]
        s.argmin(axis=1, out=found)
        best[start : start + n] = s.ravel()[offsets[:n] + found]
    return labels, best


def _reseed(
    centroids: np.ndarray, empty: np.ndarray, points: np.ndarray, error: np.ndarray
) -> None:
    """Move each empty centroid onto the point with the largest weighted error."""
    worst = np.argsort(-error, kind="stable")
    for slot, point in zip(np.flatnonzero(empty), worst, strict=False):
        centroids[slot] = points[point]


def cluster(
    colours: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """k float centroids for distinct ``colours`` (M, C) occurring ``counts`` times.

    ``values`` are the colours in the space to cluster in (default: the
    colours themselves); the centroids are in that space. Deterministic for
    a given ``seed``. ``len(colours)`` must exceed ``k``.
    """
    weights = counts.astype(np.float64)
    values = colours.astype(np.float32) if values is None else values
    stages = list(_stages(colours, weights, values))
    ends_on_grid = stages[-1][0] is not values
    # The exact colours end the sequence when the grids cannot serve k
    # clusters, or when clustering them is cheap anyway (graphics, gray).
    if ends_on_grid and (len(stages[-1][0]) <= k or len(colours) * k <= _EXACT_STAGE_WORK):
        stages.append((values, weights))
    rng = np.random.default_rng(seed)
    start = _seed_stage(stages, values, k)
    stages = stages[start:]
    seed_points, seed_weights = stages[0]
    if len(seed_points) * k >= _PARALLEL_SEED_WORK:
        centroids = kmeans_parallel(seed_points, seed_weights, k, rng)
    else:
        centroids = kmeans_plusplus(seed_points, seed_weights, k, rng)
    last = len(stages) - 1
    for i, (points, w) in enumerate(stages):
        if i == 0:
            iterations = max_iter
        elif i < last:  # refining between two grids
            iterations = -(-max_iter // 4)
        else:
            iterations = -(-max_iter // 8)
        if i == last:
            # A small last stage (few colours, as in gray images and graphics)
            # is cheap: let it run towards convergence instead of stopping at the cap.
            affordable = _CHEAP_STAGE_WORK // (len(points) * k)
            iterations = max(iterations, min(affordable, 20 * max_iter))
        centroids = lloyd(points, w, centroids, iterations, tol)
    return centroids


def _seed_stage(stages: list, values: np.ndarray, k: int) -> int:
    """Index of the stage to seed on: the coarsest grid that is fine enough.

    Seeding on cells much coarser than the clusters places centres poorly
    (about 0.5 dB at k = 256 on photographs), and Lloyd's iterations cannot
    repair it. The coarsest grid with _SEED_POINTS_PER_CLUSTER points per
    cluster is fine enough; failing that, the finest grid with half as many
    (a coarser one loses up to 0.5 dB at k = 256), and failing that the
    last stage.
    """
    grids = [i for i, (p, _) in enumerate(stages) if p is not values]
    enough = [i for i in grids if len(stages[i][0]) >= _SEED_POINTS_PER_CLUSTER * k]
    if enough:
        return enough[0]
    half = [i for i in grids if 2 * len(stages[i][0]) >= _SEED_POINTS_PER_CLUSTER * k]
    return half[-1] if half else len(stages) - 1


def _stages(colours: np.ndarray, weights: np.ndarray, values: np.ndarray):
    """Coarse-to-fine point sets: grids of b, b+1, b+2 and b+3 bits per channel.

    A grid that would not shrink the colours at least by half is replaced by
    the colours themselves, which end the sequence. The grids are collapsed
    finest first, each from the next finer one, which has fewer points than
    the colours.
    """
    channels = colours.shape[1]
    coarse = max(1, int(math.log2(_COARSE_CELLS)) // channels)
    grids = []
    cells, points, w, level = colours, values, weights, 8
    for bits in reversed(range(coarse, min(coarse + 4, 8))):
        cells, points, w = _collapse(cells >> (level - bits), bits, w, points)
        grids.append((points, w))
        level = bits
    for points, w in reversed(grids):
        if 2 * len(points) > len(colours):
            break
        yield points, w
    else:
        if len(grids) == 4:  # the finest grid ends the sequence
            return
    yield values, weights


def nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry for each colour (exact, Euclidean).

    Integer colours and palette (8-bit channels) are ranked exactly by a
    matrix product (:func:`_closest`), faster than a k-d tree at up to 256
    entries; ties go to the lower index. Float values (colours in Oklab)
    go through :func:`scipy.cluster.vq.vq` up to 64 entries and a k-d tree
    over the palette above, both exact.
    """
    if colours.dtype.kind in "ui" and palette.dtype.kind in "ui":
        return _closest(_with_ones(colours.astype(np.float32)), palette.astype(np.float32))[0]
    x = colours.astype(np.float32)
    p = palette.astype(np.float32)
    if len(p) <= _VQ_UP_TO:
        return vq(x, p, check_finite=False)[0]
    from scipy.spatial import cKDTree

    return cKDTree(p).query(x, workers=-1)[1]
