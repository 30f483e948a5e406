"""Weighted k-means on a colour histogram, coarse to fine.

Clustering every pixel is wasteful: a photograph of N pixels has far fewer
distinct colours M, and Lloyd's algorithm gives the same centroids when each
distinct colour is one point weighted by its pixel count. Fewer still are the
occupied cells of a coarse colour grid (at most 4,096 here), each represented
by the weighted mean of its colours; the centroid update stays exact for
every cell whose colours all fall in one cluster. So the clustering runs:

1. k-means++ seeding (weighted) on the coarsest grid with enough cells
   per cluster (see :func:`_seed_stage`);
2. over-relaxed Lloyd iterations on that grid, then on grids twice, four
   and eight times finer per channel than the coarse one (or on the
   distinct colours themselves once a grid would not halve their number);

each stage starting from the previous stage's centroids and stopping when no
centroid moves more than ``tol`` colour levels. The seeding stage gets
``max_iter`` iterations; the finer ones only refine, so those in between get
a quarter of them and the finest, the costliest, an eighth. Assignment uses
:func:`scipy.cluster.vq.vq` (above 64 clusters, a k-d tree over the centroids,
which is exact too and faster); centroid updates are weighted sums with
:func:`numpy.bincount`. The final assignment of every distinct colour to the
rounded palette is exact (:func:`nearest`).

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
_VQ_UP_TO = 64
# Point-centroid distances a stage may always spend (a few milliseconds' worth),
# and the size (points x clusters) up to which the exact colours get a stage.
_CHEAP_STAGE_WORK = 5_000_000
_EXACT_STAGE_WORK = 1_000_000
# Exact nearest entries by matrix product, in blocks of this many colours (the
# scores of a block stay in cache: a third faster than blocks of 8,192).
_PRODUCT_ROWS = 2048
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
    channels = colours.shape[1]
    cell = np.zeros(len(colours), dtype=np.int64)
    for c in range(channels):
        cell = (cell << bits) | (colours[:, c] >> (8 - bits))
    labels, count = _compact(cell, bits * channels)
    total = np.bincount(labels, weights=weights, minlength=count)
    means = np.empty((count, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        means[:, c] = np.bincount(labels, weights=weights * values[:, c], minlength=count)
    return (means / total[:, None]).astype(np.float32), total


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
    number = np.cumsum(present, dtype=np.int64) - 1
    return number[ids], int(number[-1]) + 1


def kmeans_plusplus(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Each new centre is drawn with probability proportional to weight times
    squared distance to the nearest chosen centre; of ``2 + log(k)`` draws,
    the one that lowers the weighted error most is kept. Distances are
    float32: seeding only needs them to a fraction of a colour level, and
    this loop is the costliest part of seeding at k = 256.
    """
    points = points.astype(np.float32)
    norms = (points.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    minus_twice = np.ascontiguousarray(-2 * points.T)
    weights32 = weights.astype(np.float32)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, points.shape[1]), dtype=np.float32)
    cumulative = np.cumsum(weights)
    first = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    first = min(first, len(points) - 1)
    centres[0] = points[first]
    nearest = np.maximum(norms + points[first] @ minus_twice + norms[first], 0)
    for i in range(1, k):
        cumulative = np.cumsum(weights * nearest)
        if cumulative[-1] <= 0:  # every point already sits on a centre
            centres[i:] = centres[0]
            break
        draws = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
        draws = np.minimum(draws, len(points) - 1)
        # Squared distances to each drawn candidate, as |x|^2 - 2 x.c + |c|^2, in place.
        candidate = points[draws] @ minus_twice
        candidate += norms
        candidate += norms[draws][:, None]
        np.minimum(candidate, nearest, out=candidate)
        best = int(np.argmin(candidate @ weights32))
        centres[i] = points[draws[best]]
        nearest = np.maximum(candidate[best], 0)
    return centres


def lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centroids: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> np.ndarray:
    """Weighted, over-relaxed Lloyd iterations from ``centroids``.

    Each step moves every centroid ``RELAXATION`` times the way towards the
    weighted mean of its points; plain Lloyd (factor 1) creeps towards its
    fixed point, and overshooting it a little reaches it in fewer steps.
    Overshooting can also oscillate: from the first step that raises the
    weighted squared error, the stage falls back to plain Lloyd, which never
    does. Stops after ``max_iter`` steps or when no centroid moves more than
    ``tol``.
    """
    k, channels = centroids.shape
    points = points.astype(np.float32)
    centroids = centroids.astype(np.float32)
    weighted = [weights * points[:, c] for c in range(channels)]
    relaxation, error = RELAXATION, np.inf
    for _ in range(max_iter):
        labels, dist = _assign(points, centroids)
        new_error = float(weights @ (dist.astype(np.float64) ** 2))
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
            _reseed(updated, empty, points, weights * dist.astype(np.float64) ** 2)
        shift = float(np.abs(updated - centroids).max())
        centroids = updated.astype(np.float32)
        if shift <= tol:
            break
    return centroids


def _assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and its distance for every point (exact).

    :func:`scipy.cluster.vq.vq` compares every point with every centroid;
    above 64 centroids, a k-d tree over the centroids answers the
    same question faster, on every core.
    """
    if len(centroids) <= _VQ_UP_TO:
        return vq(points, centroids, check_finite=False)
    from scipy.spatial import cKDTree

    dist, labels = cKDTree(centroids).query(points, workers=-1)
    return labels, dist


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
    the colours themselves, which end the sequence.
    """
    channels = colours.shape[1]
    coarse = max(1, int(math.log2(_COARSE_CELLS)) // channels)
    for bits in (coarse, coarse + 1, coarse + 2, coarse + 3):
        if bits >= 8:
            break
        points, w = grid_cells(colours, weights, bits, values)
        if 2 * len(points) > len(colours):
            break
        yield points, w
    else:
        return
    yield values, weights


def nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry for each colour (exact, Euclidean).

    For integer colours and palette (8-bit channels), the distances are
    ranked by ``|p|^2 / 2 - x.p`` in float32: every term is an integer or
    half-integer below 2**24, so the products are exact whatever the
    machine's matrix code, and a matrix product ranks up to 256 entries
    faster than a k-d tree (2-4x at k = 64, 1.3x at k = 256). Ties go to the
    lower index.
    """
    if colours.dtype.kind not in "ui" or palette.dtype.kind not in "ui":
        labels, _ = _assign(colours.astype(np.float32), palette.astype(np.float32))
        return labels
    x = colours.astype(np.float32)
    p = palette.astype(np.float32)
    half_norms = (p * p).sum(axis=1) / 2
    transposed = np.ascontiguousarray(p.T)
    labels = np.empty(len(x), dtype=np.intp)
    for start in range(0, len(x), _PRODUCT_ROWS):  # bounded temporaries
        scores = x[start : start + _PRODUCT_ROWS] @ transposed
        np.subtract(half_norms, scores, out=scores)
        labels[start : start + _PRODUCT_ROWS] = scores.argmin(axis=1)
    return labels
