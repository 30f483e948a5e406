"""Weighted k-means on a colour histogram, coarse to fine.

Clustering every pixel is wasteful: a photograph of N pixels has far fewer
distinct colours M, and Lloyd's algorithm gives the same centroids when each
distinct colour is one point weighted by its pixel count. Fewer still are the
occupied cells of a coarse colour grid (at most 4,096 here), each represented
by the weighted mean of its colours; the centroid update stays exact for
every cell whose colours all fall in one cluster. So the clustering runs:

1. k-means++ seeding on the coarse grid cells (weighted);
2. over-relaxed Lloyd iterations on the coarse cells, then on grids four
   and eight times finer per channel (or on the distinct colours themselves
   once a grid would not halve their number);

each stage starting from the previous stage's centroids and stopping when no
centroid moves more than ``tol`` colour levels. The finest stage, the
costliest, gets an eighth of the iterations. Assignment uses
:func:`scipy.cluster.vq.vq` (a k-d tree over the centroids from 32 clusters
on, which is exact too and faster), as does the final, exact assignment of
every distinct colour to the rounded palette; centroid updates are weighted
sums with :func:`numpy.bincount`. k-means++ seeds on the coarsest stage that
has at least 16 points per cluster.

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
_SEED_POINTS_PER_CLUSTER = 16
_KDTREE_FROM = 32
# Point-centroid distances a stage may always spend (a few milliseconds' worth),
# and the size (points x clusters) up to which the exact colours get a stage.
_CHEAP_STAGE_WORK = 5_000_000
_EXACT_STAGE_WORK = 1_000_000
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
    the one that lowers the weighted error most is kept.
    """
    points = points.astype(np.float64)
    norms = (points**2).sum(axis=1)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, points.shape[1]), dtype=np.float64)
    cumulative = np.cumsum(weights)
    first = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    centres[0] = points[min(first, len(points) - 1)]
    nearest = np.maximum(norms - 2 * points @ centres[0] + norms[first], 0)
    for i in range(1, k):
        cumulative = np.cumsum(weights * nearest)
        if cumulative[-1] <= 0:  # every point already sits on a centre
            centres[i:] = centres[0]
            break
        draws = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
        draws = np.minimum(draws, len(points) - 1)
        # Squared distances to each drawn candidate, as |x|^2 - 2 x.c + |c|^2.
        candidate = norms[draws][:, None] - 2 * (points[draws] @ points.T) + norms[None, :]
        candidate = np.minimum(candidate, nearest[None, :])
        best = int(np.argmin(candidate @ weights))
        centres[i] = points[draws[best]]
        nearest = np.maximum(candidate[best], 0)
    return centres.astype(np.float32)


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
    from a few dozen centroids on, a k-d tree over the centroids answers the
    same question faster, on every core.
    """
    if len(centroids) < _KDTREE_FROM:
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
    # Seeding on cells much coarser than the clusters places centres poorly
    # (about 0.5 dB at k = 256 on photographs): seed on the coarsest stage
    # with at least _SEED_POINTS_PER_CLUSTER points per cluster.
    seed_points, seed_weights = next(
        ((p, w) for p, w in stages if len(p) >= _SEED_POINTS_PER_CLUSTER * k), stages[-1]
    )
    stages = stages[next(i for i, (p, _) in enumerate(stages) if p is seed_points) :]
    centroids = kmeans_plusplus(seed_points, seed_weights, k, rng)
    for i, (points, w) in enumerate(stages):
        last = i == len(stages) - 1 and len(stages) > 1
        iterations = -(-max_iter // 8) if last else max_iter
        # Small stages (few colours, as in gray images and graphics) are cheap:
        # let them run towards convergence instead of stopping at the cap.
        affordable = _CHEAP_STAGE_WORK // (len(points) * k)
        iterations = max(iterations, min(affordable, 20 * max_iter))
        centroids = lloyd(points, w, centroids, iterations, tol)
    return centroids


def _stages(colours: np.ndarray, weights: np.ndarray, values: np.ndarray):
    """Coarse-to-fine point sets: grids of b, b+2 and b+3 bits per channel.

    A grid that would not shrink the colours at least by half is replaced by
    the colours themselves, which end the sequence.
    """
    channels = colours.shape[1]
    coarse = max(1, int(math.log2(_COARSE_CELLS)) // channels)
    for bits in (coarse, coarse + 2, coarse + 3):
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
    """Index of the nearest palette entry for each colour (exact, Euclidean)."""
    labels, _ = _assign(colours.astype(np.float32), palette.astype(np.float32))
    return labels
