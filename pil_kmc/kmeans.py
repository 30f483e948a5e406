"""Weighted k-means on a colour histogram, coarse to fine.

Clustering every pixel is wasteful: a photograph of N pixels has far fewer
distinct colours M, and Lloyd's algorithm gives the same centroids when each
distinct colour is one point weighted by its pixel count. Fewer still are the
occupied cells of a coarse colour grid (at most 4,096 here), each represented
by the weighted mean of its colours; the centroid update stays exact for
every cell whose colours all fall in one cluster. So :func:`cluster` runs:

1. **seeding** on the coarsest grid with enough cells per cluster
   (:func:`_seed_stage`): greedy k-means++ (:func:`kmeans_plusplus`), or,
   when points times clusters are many, k-means|| (:func:`kmeans_parallel`),
   which draws about 4k candidates in two sweeps and runs k-means++ on those;
   A cell holding much of a cluster's weight (a dark background) is split
   into its points on the finer grids first (:func:`_split_heavy`);
2. **Lloyd's iterations** (:func:`lloyd`, over-relaxed, with momentum) on that grid until
   they converge: no centroid moves more than ``tol`` colour levels, or a
   step lowers the weighted squared error by less than ``_CONVERGED``; at
   most ``max_iter`` steps, and fewer where points times clusters make each
   step costly (``_SEED_STAGE_WORK``, ``_STAGE_WORK``);
3. **swaps** on that grid (:func:`_swaps`), as many as a fixed amount of
   work allows: of two points drawn by their weighted squared error, one
   takes the place of the centroid whose loss costs least (both chosen by
   the exact error after the swap, :func:`_best_swap`), a few Lloyd steps
   follow, and the swap is kept only if the weighted error fell. Lloyd's
   iterations only reach the nearest local optimum; a swap can leave it
   for a better one; where points times clusters are few, seeding,
   iterations and swaps run _RESTARTS times and the lowest error goes on;
4. **rebalancing** on that grid (:func:`_rebalance`): a few rounds that each
   move several centroids at once from where they serve least (the points of
   a cluster whose loss costs little go to their second nearest centroid)
   to where a split gains most (a cluster spread along one axis is cut in
   two along it), then take a few Lloyd steps, kept only if the weighted
   error fell. Lloyd's optima leave some clusters crowded and some
   redundant; a swap moves one centroid per trial, a round many;
5. **refinement**: Lloyd's iterations to convergence on the grids two, four
   and eight times finer per channel (or on the distinct colours themselves
   once a grid would not halve their number, or when the finest grid is
   coarse for k clusters), each from the previous stage's centroids.

Centroid updates are weighted sums with :func:`numpy.bincount`. Every
ranking of points by distance is exact and the same on every machine
(:mod:`pil_kmc.exact`); so is every weighted error compared (integer counts
times half-integer scores, summed exactly in float64).

An empty cluster is re-seeded at the point that contributes most to the
weighted squared error (its weight times its squared distance to its
centroid), which splits the worst-served part of the histogram.

Fixed centroids (``cluster(..., fixed=...)``, the transparent entry) come
first, take part in every assignment and never move: seeding starts from
them, and neither swaps nor rebalancing remove or split them.
"""

from __future__ import annotations

import math

import numpy as np

from . import exact

#: Lloyd iterations allowed at each stage (a cap: stages stop when converged).
DEFAULT_MAX_ITER = 100
#: A stage has converged when no centroid moves more than this (in 0-255 colour levels).
DEFAULT_TOL = 0.01
#: Over-relaxation factor of Lloyd's update (1 is plain Lloyd). For fixed
#: assignments the weighted error is, per cluster, ``mass * |c - mean|^2``
#: plus a constant; a step ``c + f * (mean - c)`` multiplies the first term by
#: ``(1 - f)^2``, so every factor below 2 still lowers the error (the
#: over-relaxed bound optimisation of Salakhutdinov and Roweis, ICML 2003).
#: Close to 2 the step overshoots the mean by almost as far again, in the
#: direction plain Lloyd creeps along, while still decreasing the error.
RELAXATION = 1.9
#: Momentum of Lloyd's update: each over-relaxed step also moves every
#: centroid this share of its previous step again (the heavy ball of Polyak).
#: Lloyd's iterations creep along curved valleys of the error, where
#: over-relaxation alone overshoots across them; the momentum keeps going
#: along. From the first step that raises the weighted error, a stage goes
#: on without it (and from a second, as before, it falls back to plain
#: Lloyd and stops). See docs/kmeans.md for how it was chosen.
MOMENTUM = 0.6
_SEED_POINTS_PER_CLUSTER = 32
# A seeding cell heavier than 1/_HEAVY of a cluster's average weight is split
# into its finer points (_split_heavy).
_HEAVY = 2
# A stage has also converged once a step lowers the weighted squared error by
# less than this fraction: the steps after it would gain less.
_CONVERGED = 1e-4
# The work (point-centroid distances, plus _STEP_OVERHEAD per point for the
# bincounts and the Python around them) a stage may spend, which caps its steps
# where points times clusters are many: the seeding stage's and each finer
# one's. The cap is a time budget: a 512 x 512 photograph at k = 256 must
# save within pngquant --speed 4's time (bench/kmeans.py); never fewer than
# _MIN_STEPS. The assignments share out between threads (exact.closest), and
# the finer stages' cap was set so that the two cores of the machine the
# budget was measured on save in the time one core took with half of it.
# Both were then halved to pay for the rebalancing rounds, whose Lloyd steps
# gain more than the stages' last ones; the finer stages' was raised again by
# what the rankings kept between runs saved (docs/kmeans.md, fifth round).
_SEED_STAGE_WORK = 50_000_000
_STAGE_WORK = 190_000_000
_MIN_STEPS = 2
_STEP_OVERHEAD = 128
# k-means|| replaces k-means++ from this many points times clusters (k = 256 on
# 4,096 points), in this many sweeps, each drawing about this many times k
# candidates (Bahmani et al. suggest 2); below, k-means++ costs little anyway.
_PARALLEL_SEED_WORK = 1 << 20
_PARALLEL_SWEEPS = 2
_OVERSAMPLING = 2
# Swaps: at most this many trials, each choosing among this many drawn points
# and taking this many Lloyd steps, and all of them together at most this
# many point-centroid distances; fewer than _MIN_TRIALS are not tried (one
# or two gained nothing measurable at k = 256, for a tenth of the save's
# time). Where points times clusters are many (k = 256 on a photograph's
# seeding grid) that leaves none, and the time goes to the finer stages'
# steps instead, which gain more there.
_SWAP_TRIALS = 60
_SWAP_DRAWS = 2
_SWAP_STEPS = 4
_SWAP_WORK = 21_000_000
_MIN_TRIALS = 3
# Where the seeding grid's points times clusters are at most _RESTART_WORK
# (k = 16 on photographs), it is seeded, converged and swapped this many
# times from the one random stream, and the lowest error goes on: seeds
# alone move the error by a few tenths of a dB at k = 16. The restarts share
# one swap budget.
_RESTARTS = 3
_RESTART_WORK = 200_000
# Rebalancing (_rebalance): this many rounds, each of at most k // _MOVED_SHARE
# moves (at least one), then this many Lloyd steps. A move is proposed where
# the split's estimated gain exceeds _GAIN_PER_LOSS times the removed
# centroid's loss: that loss, with its points sent to their second nearest
# centroid and no other moving, overstates the cost once Lloyd's steps have
# let the neighbours close in. docs/kmeans.md has how these were chosen.
_REBALANCE_ROUNDS = 3
_REBALANCE_STEPS = 4
_MOVED_SHARE = 8
_GAIN_PER_LOSS = 0.4
# The exact colours get a stage of their own after the finest grid when that
# has fewer cells than this per cluster (a cluster a few cells wide is served
# poorly by whole cells), or when points x clusters are at most _EXACT_STAGE_WORK.
_FINE_CELLS_PER_CLUSTER = 128
_EXACT_STAGE_WORK = 1_000_000
# Power iterations for a cluster's principal axis (_split_plan). The split
# needs its direction roughly: a few degrees off changes the gain by a
# fraction of a percent, and the Lloyd steps after the move settle the rest.
_POWER_STEPS = 8
# The coarse grid has at most this many cells.
_COARSE_CELLS = 4096


def colour_histogram(keys: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` (sorted) and how often each occurs.

    With ``overwrite``, ``keys`` is sorted in place instead of copied.
    """
    ordered = keys if overwrite else keys.copy()
    ordered.sort()  # equal keys are indistinguishable: any algorithm gives these bytes
    # One bool per key and nothing else of that length: at 9.4 MP the
    # histogram sets the save's peak memory along with the keys.
    change = np.empty(ordered.size, dtype=bool)
    change[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    del change
    counts = np.empty(len(starts), dtype=np.int64)
    np.subtract(starts[1:], starts[:-1], out=counts[:-1])
    counts[-1:] = ordered.size - starts[-1:]
    return ordered[starts], counts


def _collapse(
    cells: np.ndarray,
    bits: int,
    weights: np.ndarray,
    values: np.ndarray,
    return_labels: bool = False,
):
    """Weighted points with integer cell coordinates (below 2**bits) -> one point per cell.

    Returns each occupied cell's coordinates, the weighted mean of its
    ``values`` and its total weight; with ``return_labels``, also each
    point's cell.
    """
    channels = cells.shape[1]
    # Built in place, in 32 bits where the ids fit: the first grid is
    # collapsed from every distinct colour, and its temporaries set the peak memory.
    ids = np.zeros(len(cells), dtype=np.uint32 if bits * channels <= 32 else np.int64)
    for c in range(channels):
        ids <<= bits
        ids |= cells[:, c]
    labels, distinct = _compact(ids, bits * channels)
    del ids
    count = len(distinct)
    total = np.bincount(labels, weights=weights, minlength=count)
    means = np.empty((count, values.shape[1]), dtype=np.float64)
    product = np.empty(len(cells), dtype=np.float64)
    for c in range(values.shape[1]):
        np.multiply(weights, values[:, c], out=product)
        means[:, c] = np.bincount(labels, weights=product, minlength=count)
    del product
    occupied = np.empty((count, channels), dtype=cells.dtype)
    for c in range(channels):  # the cells' coordinates, back out of their ids
        occupied[:, c] = (distinct >> (bits * (channels - 1 - c))) & ((1 << bits) - 1)
    means = (means / total[:, None]).astype(np.float32)
    if return_labels:
        return occupied, means, total, labels
    return occupied, means, total


def _compact(ids: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct values of ``ids`` 0, 1, ... in increasing order.

    Returns each element's number and the distinct values, sorted. Ids
    below 2**22 go through a presence table, which is much faster than
    sorting; the numbers are scattered over the present ids, as a running
    count over the whole table costs several times more.
    """
    if bits > 22 or len(ids) < 1 << max(0, bits - 6):
        distinct, labels = np.unique(ids, return_inverse=True)
        return labels, distinct
    present = np.zeros(1 << bits, dtype=bool)
    present[ids] = True
    distinct = np.flatnonzero(present)
    del present
    number = np.zeros(1 << bits, dtype=np.int32)  # a third of the memory of int64 to touch
    number[distinct] = np.arange(len(distinct), dtype=np.int32)
    return number[ids].astype(np.intp), distinct  # bincount would convert it anyway


def kmeans_plusplus(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Each new centre is drawn with probability proportional to weight times
    squared distance to the nearest chosen centre; of ``2 + log(k)`` draws,
    the one that lowers the weighted error most is kept. Distances are
    measured between the points snapped as in Lloyd's iterations, and the
    trials compared exactly (:func:`~pil_kmc.exact.greatest_gain`), so the seeds are the
    same on every machine. ``fixed`` centres, if given, are the first ones,
    chosen before any draw (the first centre is otherwise drawn by weight).
    """
    # The scores of exact.closest, with |x|^2 / 2 added on the points' side (as a
    # column) and a 1 on the centres' side (as a row): their product is half
    # the squared distance, exact like the scores (the bound is the same).
    x = exact.with_ones(exact.snap(points))
    rows = _centre_rows(x[:, :-1])  # every point as a candidate centre
    columns = np.vstack([x.T, rows[:, -2]])
    trials = 2 + int(math.log(k))
    centres = np.empty((k, points.shape[1]), dtype=np.float32)
    draw = _Sampler(len(points))
    nearest = np.empty(len(points), dtype=np.float32)
    if fixed is None:
        draw.mass[:] = weights
        first = int(draw(rng.random(1))[0])
        centres[0] = points[first]
        exact.matmul(rows[first : first + 1], columns, nearest[None])
        given = 1
    else:
        given = len(fixed)
        centres[:given] = fixed
        distances = exact.matmul(_centre_rows(exact.snap(fixed)), columns)
        np.min(distances, axis=0, out=nearest)
    weights32 = weights.astype(np.float32)
    twice = 2 * weights
    # Reused by every draw: fresh arrays of this size cost page faults.
    candidate = np.empty((trials, len(points)), dtype=np.float32)
    for i in range(given, k):
        np.multiply(nearest, twice, out=draw.mass)
        draws = draw(rng.random(trials))
        if draws is None:  # every point already sits on a centre
            centres[i:] = centres[given - 1]
            break
        exact.matmul(rows[draws], columns, candidate)
        # How much nearer each trial would bring every point (exact half-integers).
        np.minimum(candidate, nearest, out=candidate)
        np.subtract(nearest, candidate, out=candidate)
        best = exact.greatest_gain(candidate, weights32, weights)
        centres[i] = points[draws[best]]
        nearest -= candidate[best]
    return centres


def _centre_rows(snapped: np.ndarray) -> np.ndarray:
    """``(-c, |c|^2 / 2, 1)`` for each snapped centre c: the centres' side of the product."""
    coefficients = exact.coefficients(snapped)
    return np.ascontiguousarray(np.vstack([coefficients, np.ones(len(snapped), np.float32)]).T)


def kmeans_parallel(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    fixed: np.ndarray | None = None,
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
    are the same on every machine. ``fixed`` centres, if given, take the
    place of the first point drawn, and are the first of the k.
    """
    chosen, owned = _candidates(points, weights, k, rng, fixed)
    if len(chosen) <= k:  # too few to choose from (few distinct points): draw from all
        return kmeans_plusplus(points, weights, k, rng, fixed)
    return kmeans_plusplus(points[chosen], owned, k, rng, fixed)


def _candidates(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    fixed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sweeps of :func:`kmeans_parallel`: candidate indices and the weight each is nearest to.

    Candidates nearest to no weight (a copy of an earlier one) are left out,
    and so is the weight nearest to a ``fixed`` centre.
    """
    x = exact.with_ones(exact.snap(points))
    half = (x[:, :-1].astype(np.float64) ** 2).sum(axis=1) / 2  # |x|^2 / 2, exact
    if fixed is None:
        draw = _Sampler(len(points))
        draw.mass[:] = weights
        chosen = np.array([int(draw(rng.random(1))[0])])
        start = x[chosen, :-1]
    else:
        chosen, start = np.zeros(0, dtype=np.intp), exact.snap(fixed)
    # Half the squared distance to the nearest candidate (exact), and which one:
    # owner - 1, where 0 stands for the fixed centres.
    nearest = half + exact.closest(x, start)[1]
    owner = np.full(len(points), 0 if fixed is not None else 1, dtype=np.intp)
    for _ in range(_PARALLEL_SWEEPS):
        error = weights * nearest  # exact integers: the same on every machine
        total = float(error.sum())
        if total <= 0:  # every point is a candidate already
            break
        new = np.flatnonzero(rng.random(len(points)) * total < _OVERSAMPLING * k * error)
        if len(new) == 0:
            continue
        labels, score = exact.closest(x, x[new, :-1])
        distance = half + score
        nearer = distance < nearest  # ties stay with the earlier candidate
        nearest[nearer] = distance[nearer]
        owner[nearer] = 1 + len(chosen) + labels[nearer]
        chosen = np.concatenate([chosen, new])
    owned = np.bincount(owner, weights=weights, minlength=1 + len(chosen))[1:]
    return chosen[owned > 0], owned[owned > 0]


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
    max_iter: int | None = None,
    tol: float | None = None,
    values: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """k float centroids for distinct ``colours`` (M, C) occurring ``counts`` times.

    ``values`` are the colours in the space to cluster in (default: the
    colours themselves); the centroids are in that space. ``fixed`` (F, C)
    values, if given, are the first F centroids, never moved: they serve the
    colours nearest to them, and the other k - F are clustered around them
    (an exact entry for the transparent pixels). ``max_iter`` and
    ``tol`` (None: DEFAULT_MAX_ITER and DEFAULT_TOL) bound each stage's
    Lloyd iterations. Deterministic for a given ``seed``. ``len(colours)``
    must exceed ``k``.
    """
    max_iter = DEFAULT_MAX_ITER if max_iter is None else max_iter
    tol = DEFAULT_TOL if tol is None else tol
    weights = counts.astype(np.float64)
    values = colours.astype(np.float32) if values is None else values
    parents: list = []
    stages = list(_stages(colours, weights, values, parents))
    ends_on_grid = stages[-1][0] is not values
    # The exact colours end the sequence when the finest grid is coarse for k
    # clusters (smooth images: skies, skin), or when clustering them is cheap
    # anyway (graphics, gray).
    coarse = len(stages[-1][0]) < _FINE_CELLS_PER_CLUSTER * k
    if ends_on_grid and (coarse or len(colours) * k <= _EXACT_STAGE_WORK):
        stages.append((values, weights))
    rng = np.random.default_rng(seed)
    first = _seed_stage(stages, values, k)
    points, w = _split_heavy(stages, parents, first, k)
    del parents  # the finer stages' cells, needed no more
    stages = stages[first:]
    pinned = 0 if fixed is None else len(fixed)
    fit = _Lloyd(points, w, pinned)
    steps = _steps(fit, k, max_iter, _SEED_STAGE_WORK)
    best = None
    restarts = _RESTARTS if len(points) * k <= _RESTART_WORK else 1
    for _ in range(restarts):
        if len(points) * k >= _PARALLEL_SEED_WORK:
            centroids = kmeans_parallel(points, w, k, rng, fixed)
        else:
            centroids = kmeans_plusplus(points, w, k, rng, fixed)
        state = _swaps(fit, fit.run(centroids, steps, tol, ranked=True), rng, steps, tol, restarts)
        state = _rebalance(fit, state, tol)
        if best is None or state.error < best.error:
            best = state
    centroids = best.centroids
    for points, w in stages[1:]:
        fit = _Lloyd(points, w, pinned)
        centroids = fit.run(centroids, _steps(fit, k, max_iter, _STAGE_WORK), tol).centroids
    return centroids


def _split_heavy(stages: list, parents: list, first: int, k: int):
    """The points of stage ``first``, its heavy cells replaced by their finer points.

    A cell holding more than 1/_HEAVY of a cluster's average weight (the
    dark background of a night sky, a white wall) is one point to the
    seeding and the swaps, so it gets one cluster however many it deserves,
    and the finer stages cannot bring more in from afar. So such a cell is
    split into its points in the next stage, and those still heavy into
    theirs, down to the last stage.
    """
    points, w = stages[first]
    limit = w.sum() / (_HEAVY * k)
    kept = []  # (stage, indices of its points in the set)
    level, frontier = first, np.arange(len(points))
    for j in range(first + 1, len(stages)):
        weights = stages[level][1]
        heavy = weights[frontier] > limit
        if not heavy.any() or parents[j] is None:
            break
        kept.append((level, frontier[~heavy]))
        split = np.zeros(len(weights), dtype=bool)
        split[frontier[heavy]] = True
        level, frontier = j, np.flatnonzero(split[parents[j]])
    if not kept:
        return points, w
    kept.append((level, frontier))
    return (
        np.concatenate([stages[s][0][i] for s, i in kept]),
        np.concatenate([stages[s][1][i] for s, i in kept]),
    )


def _steps(fit: _Lloyd, k: int, max_iter: int, work: int) -> int:
    """Lloyd steps a stage may take: ``max_iter``, or fewer where each step is costly."""
    return min(max_iter, max(_MIN_STEPS, work // (len(fit.points) * (k + _STEP_OVERHEAD))))


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centroids: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> np.ndarray:
    """Weighted, over-relaxed Lloyd iterations from ``centroids``.

    Each step assigns every point to its nearest centroid, both snapped to
    the grid of :func:`pil_kmc.exact.snap`: the ranking is then exact and
    the same on every machine, and a point moves only when two centroids
    are within a sixth of a level of equidistant from it, where either
    serves it equally well. Each step then moves every centroid
    ``RELAXATION`` times the way towards the weighted mean of its points,
    plus ``MOMENTUM`` times its previous step; plain Lloyd (factor 1) creeps
    towards its fixed point, and overshooting it reaches it in fewer steps.
    The first step that raises the weighted squared error ends the
    momentum; from the next (the snapping can raise it), the stage falls
    back to plain Lloyd. Converged when no centroid moves more than ``tol`` or a step
    lowers the error by less than ``_CONVERGED``; the last step (then, or
    the ``max_iter``-th) is a plain one, which lands every centroid on its
    points' mean instead of overshooting it. A run that ends with more error
    than it started with (the momentum can overshoot into a worse
    assignment) returns its start.
    """
    return _Lloyd(points, weights).run(centroids, max_iter, tol).centroids


class _State:
    """Centroids, their weighted squared error (exact, in snapped units) and each point's share.

    ``ranking``, if known, is :func:`pil_kmc.exact.closest`'s answer with
    runner-ups for these centroids: each point's label and score, and its
    runner-up's score and label (what swaps and rebalancing start from).
    """

    def __init__(
        self, centroids: np.ndarray, error: float, shares: np.ndarray, ranking: tuple | None = None
    ) -> None:
        self.centroids = centroids
        self.error = error
        self.shares = shares
        self.ranking = ranking


class _Lloyd:
    """Lloyd's iterations on one weighted point set; what every run shares is computed once."""

    def __init__(self, points: np.ndarray, weights: np.ndarray, pinned: int = 0) -> None:
        self.points = points.astype(np.float32)
        # The first ``pinned`` centroids never move (a fixed entry, such as the transparent one).
        self.pinned = pinned
        self.weights = weights
        self.snapped = exact.with_ones(exact.snap(self.points))
        # Squared distances in snapped units are |x|^2 + 2 * score (see exact.closest).
        self.squares = (self.snapped[:, :-1].astype(np.float64) ** 2).sum(axis=1)
        # Integer counts times integer squares: exact in float64 in any order.
        self.spread = float(np.einsum("i,i", weights, self.squares))
        self.weighted = [weights * self.points[:, c] for c in range(self.points.shape[1])]
        self._moments: dict[tuple[int, int], np.ndarray] | None = None

    def moments(self) -> dict[tuple[int, int], np.ndarray]:
        """Each point's weight times its values in channels a and b, for every a <= b."""
        if self._moments is None:  # only the stages that are rebalanced need them
            x = self.points.astype(np.float64)
            channels = x.shape[1]
            self._moments = {
                (a, b): self.weights * x[:, a] * x[:, b]
                for a in range(channels)
                for b in range(a, channels)
            }
        return self._moments

    def assign(self, centroids: np.ndarray, second: bool = False) -> tuple:
        """Labels, scores and the weighted squared error of ``centroids``, and the ranking.

        The ranking is :func:`pil_kmc.exact.closest`'s whole answer, with
        runner-ups if ``second``, else None.
        """
        found = exact.closest(self.snapped, exact.snap(centroids), second)
        labels, score = found[:2]
        error = self.spread + 2 * float(np.einsum("i,i", self.weights, score))
        return labels, score, error, found if second else None

    def ranking(self, state: _State) -> tuple:
        """``state``'s ranking with runner-ups, made now if it is not known."""
        if state.ranking is None:
            state.ranking = exact.closest(self.snapped, exact.snap(state.centroids), True)
        return state.ranking

    def shares(self, score: np.ndarray) -> np.ndarray:
        """Each point's weighted squared error (exact integers in float64)."""
        return self.weights * (self.squares + 2 * score.astype(np.float64))

    def run(self, centroids: np.ndarray, max_iter: int, tol: float, ranked: bool = False) -> _State:
        """Up to ``max_iter`` steps from ``centroids``; the state of the centroids returned.

        With ``ranked``, the last assignment also ranks the runner-ups, and
        the state keeps that ranking (the cost of a second argmin, instead of
        a whole ranking again for the swaps or the rebalancing that follow).
        """
        k, channels = centroids.shape
        centroids = centroids.astype(np.float32)
        relaxation, momentum, error, final = RELAXATION, MOMENTUM, np.inf, False
        previous = None
        labels, score, new_error, ranking = self.assign(centroids)
        start = centroids, new_error, score
        for step in range(max_iter):
            rose = new_error > error
            if rose and not momentum:
                relaxation = 1.0
            # The last step is a plain one: over-relaxed steps overshoot the
            # means, by up to 0.9 times their distance near convergence.
            final = final or step == max_iter - 1
            error = new_error
            mass = np.bincount(labels, weights=self.weights, minlength=k)
            means = np.empty((k, channels), dtype=np.float64)
            for c in range(channels):
                means[:, c] = np.bincount(labels, weights=self.weighted[c], minlength=k)
            empty = mass == 0
            means[~empty] /= mass[~empty, None]
            if rose and momentum:  # the momentum overshot: go on without it
                momentum = 0.0
            updated = centroids + (1.0 if final else relaxation) * (means - centroids)
            if momentum and not final and previous is not None:
                updated += momentum * (centroids - previous)
            previous = centroids
            updated[: self.pinned] = centroids[: self.pinned]
            empty[: self.pinned] = False
            if empty.any():
                _reseed(updated, empty, self.points, self.shares(score))
            shift = float(np.abs(updated - centroids).max())
            centroids = updated.astype(np.float32)
            labels, score, new_error, ranking = self.assign(centroids, ranked and final)
            if final:
                break
            gain = error - new_error
            final = shift <= tol or (gain <= _CONVERGED * new_error and (gain >= 0 or not momentum))
        if new_error > start[1]:  # an overshoot the later steps did not make up
            (centroids, new_error, score), ranking = start, None
        return _State(centroids, new_error, self.shares(score), ranking)


def _swaps(
    fit: _Lloyd,
    state: _State,
    rng: np.random.Generator,
    max_iter: int,
    tol: float,
    share: int = 1,
) -> _State:
    """Swap local search from a converged ``state`` (random swap, Fränti and Kivijärvi, 2000).

    Each trial draws _SWAP_DRAWS points with probability proportional to
    their weighted squared error (where the clustering serves worst), moves
    onto one of them the centroid whose move leaves the least error before
    any Lloyd step (:func:`_best_swap`), runs _SWAP_STEPS Lloyd steps and
    keeps the result only if its weighted error is lower; a kept swap is
    then run to convergence. ``share`` restarts share the trials. Errors
    are exact, so the same swaps are kept on every machine.
    """
    k = len(state.centroids)
    n = len(fit.points)
    if k - fit.pinned < 2 or n <= k:
        return state
    trials = min(_SWAP_TRIALS, _SWAP_WORK // (n * k * (_SWAP_STEPS + 1))) // share
    if trials < _MIN_TRIALS:
        return state
    draw = _Sampler(n)
    nearest = None
    for _ in range(trials):
        draw.mass[:] = state.shares
        where = draw(rng.random(_SWAP_DRAWS))
        if where is None:  # every point sits on a centroid
            break
        if nearest is None:  # once per kept swap
            labels, *scores, _ = fit.ranking(state)
            nearest = [labels] + [fit.squares + 2 * s.astype(np.float64) for s in scores]
        victim, point = _best_swap(fit, k, *nearest, where)
        candidate = state.centroids.copy()
        candidate[victim] = fit.points[point]
        trial = fit.run(candidate, _SWAP_STEPS, tol)
        if trial.error < state.error:
            state = fit.run(trial.centroids, max_iter, tol, ranked=True)
            nearest = None
    return state


def _best_swap(
    fit: _Lloyd, k: int, labels: np.ndarray, d1: np.ndarray, d2: np.ndarray, where: np.ndarray
) -> tuple[int, int]:
    """The centroid and drawn point whose swap leaves the least weighted error, labels reassigned.

    ``d1`` and ``d2`` are each point's squared distances to its nearest and
    second nearest centroid. After the swap a point served by the removed
    centroid goes to its second nearest or the new one, any other to its own
    or the new one, so the error of every (centroid, point) swap comes from
    one product and one weighted count (Lattanzi and Sohler, ICML 2019,
    evaluate swaps so). The distances are exact integers and so is every
    weighted sum, so the choice is the same on every machine; ties go to the
    lowest centroid, then the first point.
    """
    weights, m = fit.weights, len(where)
    scores = exact.matmul(fit.snapped, exact.coefficients(exact.snap(fit.points[where])))
    to_new = fit.squares[:, None] + 2 * scores.astype(np.float64)
    kept = np.minimum(to_new, d1[:, None])
    loss = np.minimum(to_new, d2[:, None])
    loss -= kept
    loss *= weights[:, None]
    slots = (labels[:, None] * m + np.arange(m)).reshape(-1)
    after = np.bincount(slots, weights=loss.reshape(-1), minlength=k * m).reshape(k, m)
    after += exact.weighted_sums(np.ascontiguousarray(kept.T), weights)
    after[: fit.pinned] = np.inf
    victim, t = divmod(int(np.argmin(after)), m)
    return victim, int(where[t])


def _rebalance(fit: _Lloyd, state: _State, tol: float) -> _State:
    """Rounds of utility moves from ``state``, in the manner of ELBG (Patanè and Russo, 2001).

    Each round pairs the centroids whose loss costs least with the clusters
    whose split gains most (:func:`_pairs`, :func:`_split_plan`): each such
    centroid goes to one half of its partner's cluster, the partner to the
    other. _REBALANCE_STEPS Lloyd steps follow and the round is kept only if
    the weighted error fell; after a round that did not, the next proposes
    half as many pairs, and none follows a rejected single pair. Losses are
    exact (the second nearest scores of :func:`~pil_kmc.exact.closest`) and
    gains are sums and products in a fixed order, so the same rounds are
    kept on every machine.
    """
    k = len(state.centroids)
    if k - fit.pinned < 2 or len(fit.points) <= k:
        return state
    pairs = max(1, k // _MOVED_SHARE)
    for _ in range(_REBALANCE_ROUNDS):
        labels, first, second, runner_up = fit.ranking(state)
        gap = 2 * (second.astype(np.float64) - first)  # squared distance, second minus first
        loss = np.bincount(labels, weights=fit.weights * gap, minlength=k)
        # Centroids next to each other: one is the second nearest of a point of the other's.
        beside = np.zeros((k, k), dtype=bool)
        beside[labels, runner_up] = True
        beside |= beside.T
        halves, gain = _split_plan(fit, labels, k)
        loss[: fit.pinned], gain[: fit.pinned] = np.inf, 0  # pinned: neither removed nor split
        moves = _pairs(loss, gain, beside, pairs)
        if not moves:
            break
        candidate = state.centroids.copy()
        for removed, split in moves:
            candidate[removed], candidate[split] = halves[split]
        trial = fit.run(candidate, _REBALANCE_STEPS, tol, ranked=True)
        if trial.error < state.error:
            state = trial
        elif len(moves) == 1:  # the next round would propose it again
            break
        else:
            pairs = len(moves) // 2
    return state


def _pairs(
    loss: np.ndarray, gain: np.ndarray, beside: np.ndarray, most: int
) -> list[tuple[int, int]]:
    """Up to ``most`` disjoint (removed, split) pairs: least loss with greatest gain, in turn.

    A centroid's loss counts its points at their second nearest centroid,
    so two centroids ``beside`` each other (a (k, k) bool matrix) are never
    both removed: the points of each would lose the other too. Pairing
    stops at the first pair whose gain is not above _GAIN_PER_LOSS times
    the loss; ties go to the lower index.
    """
    cheapest = np.argsort(loss, kind="stable")
    richest = np.argsort(-gain, kind="stable")
    used = np.zeros(len(loss), dtype=bool)
    kept = np.zeros(len(loss), dtype=bool)  # beside a removed centroid: kept in place
    moves: list[tuple[int, int]] = []
    g = 0
    for removed in cheapest:
        if len(moves) == most:
            break
        if used[removed] or kept[removed]:
            continue
        while g < len(richest) and (used[richest[g]] or richest[g] == removed):
            g += 1
        if g == len(richest):
            break
        split = richest[g]
        if not gain[split] > _GAIN_PER_LOSS * loss[removed]:
            break
        used[removed] = used[split] = True
        kept |= beside[removed]
        moves.append((int(removed), int(split)))
    return moves


def _split_plan(fit: _Lloyd, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's two halves across its principal axis, and what the split gains.

    A cluster of mass M whose points spread with variance L along their
    principal axis v, cut in two there, loses about ``(2 / pi) * L * M`` of
    its squared error, and its halves' means lie near ``mean +- sqrt(2 L /
    pi) * v`` (exact for a normal distribution). Returns the halves (k, 2,
    C), in the points' units, and the gains (k,), as weighted squared
    distances in snapped units like the losses of :func:`_rebalance`; a gain
    below one such unit (the rounding left in a one-point cluster's spread)
    is 0. The axis comes from power iteration on the weighted covariance,
    in plain products and sums (no LAPACK), so the same on every machine.
    """
    channels = fit.points.shape[1]
    mass = np.bincount(labels, weights=fit.weights, minlength=k)
    share = 1 / np.maximum(mass, 1e-300)  # empty clusters have no spread
    mean = [
        np.bincount(labels, weights=fit.weighted[c], minlength=k) * share for c in range(channels)
    ]
    cov = [[np.zeros(k)] * channels for _ in range(channels)]
    for (a, b), product in fit.moments().items():
        cov[a][b] = cov[b][a] = (
            np.bincount(labels, weights=product, minlength=k) * share - mean[a] * mean[b]
        )
    # The start: the covariance's column of the widest channel, plus as much
    # again along the diagonal of the colour cube. Either alone can be
    # orthogonal to the principal axis (then a lesser one is split); their
    # sum only by chance.
    widest = np.argmax(np.stack([cov[c][c] for c in range(channels)]), axis=0)
    axis = [np.choose(widest, [cov[c][d] for d in range(channels)]) for c in range(channels)]
    length = np.sqrt(sum(v * v for v in axis) / channels)
    axis = [v + length for v in axis]
    for _ in range(_POWER_STEPS):
        axis = [sum(cov[c][d] * axis[d] for d in range(channels)) for c in range(channels)]
        norm = np.sqrt(sum(v * v for v in axis))
        norm[norm == 0] = 1
        axis = [v / norm for v in axis]
    spread = sum(
        axis[c] * sum(cov[c][d] * axis[d] for d in range(channels)) for c in range(channels)
    )
    spread = np.maximum(spread, 0)
    reach = np.sqrt(2 * spread / np.pi)
    offset = np.stack([reach * v for v in axis], axis=1)
    centre = np.stack(mean, axis=1)
    halves = np.stack([centre - offset, centre + offset], axis=1)
    gain = (2 / np.pi) * spread * mass * exact.SNAP[channels] ** 2
    gain[gain < 1] = 0
    return halves, gain


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


def _stages(colours: np.ndarray, weights: np.ndarray, values: np.ndarray, parents=None):
    """Coarse-to-fine point sets: grids of b, b+1, b+2 and b+3 bits per channel.

    A grid that would not shrink the colours at least by half is replaced by
    the colours themselves, which end the sequence. The grids are collapsed
    finest first, each from the next finer one, which has fewer points than
    the colours.
    """
    channels = colours.shape[1]
    coarse = max(1, int(math.log2(_COARSE_CELLS)) // channels)
    parents = [] if parents is None else parents
    grids = []
    cells, points, w, level = colours, values, weights, 8
    for bits in reversed(range(coarse, min(coarse + 4, 8))):
        cells, points, w, labels = _collapse(cells >> (level - bits), bits, w, points, True)
        grids.append((points, w, labels.astype(np.int32)))  # kept: half the memory
        del labels
        level = bits
    last = None  # index in grids of the last grid yielded
    for i in reversed(range(len(grids))):
        points, w, _ = grids[i]
        if 2 * len(points) > len(colours):
            break
        parents.append(None if last is None else grids[last][2])
        last = i
        yield points, w
    # The exact colours' cells in the last grid yielded, should they follow it.
    parent = None
    if last is not None:
        parent = grids[0][2]
        for j in range(1, last + 1):
            parent = grids[j][2][parent]
    parents.append(parent)
    if last == 0 and len(grids) == 4:  # the finest grid ends the sequence
        return
    yield values, weights
