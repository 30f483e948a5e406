"""Weighted k-means on colour histograms."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pil_kmc import kmeans


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=200))
def test_histogram_counts_each_distinct_key(values):
    keys = np.array(values, dtype=np.uint32)
    unique, counts = kmeans.colour_histogram(keys)
    expected = sorted({v: values.count(v) for v in values}.items())
    assert list(zip(unique.tolist(), counts.tolist(), strict=True)) == expected


def test_grid_cells_keep_weighted_means_and_total_weight():
    colours = np.array([[0, 0, 0], [2, 2, 2], [200, 0, 0]], np.uint8)
    means, total = kmeans.grid_cells(colours, np.array([1.0, 3.0, 2.0]), 4)
    assert total.tolist() == [4.0, 2.0]
    assert np.allclose(means, [[1.5, 1.5, 1.5], [200, 0, 0]])


def blobs(rng, centres, n=300, spread=3.0):
    points = np.vstack([c + rng.normal(0, spread, (n, len(c))) for c in centres])
    return np.clip(np.rint(points), 0, 255).astype(np.uint8)


def test_cluster_finds_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[20, 20, 20], [230, 40, 40], [40, 230, 40], [40, 40, 230]], float)
    colours = blobs(rng, centres)
    found = kmeans.cluster(colours, np.ones(len(colours), np.int64), 4)
    found = found[np.lexsort(np.rint(found).T[::-1])]
    want = centres[np.lexsort(centres.T[::-1])]
    assert np.abs(found - want).max() < 1.5


def test_weights_count_like_repeated_points():
    colours = np.array([[0, 0, 0], [10, 0, 0], [250, 250, 250]], np.uint8)
    c = kmeans.cluster(colours, np.array([3, 1, 5]), 2, max_iter=50)
    c = c[np.argsort(c[:, 0])]
    assert np.allclose(c[0], [2.5, 0, 0], atol=0.05) and np.allclose(c[1], 250)


def test_cluster_is_deterministic_and_seed_matters():
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    counts = rng.integers(1, 50, 3000)
    a = kmeans.cluster(colours, counts, 16, seed=5)
    assert np.array_equal(a, kmeans.cluster(colours, counts, 16, seed=5))
    assert not np.array_equal(a, kmeans.cluster(colours, counts, 16, seed=6))


def test_plusplus_picks_distinct_points_when_there_are_enough():
    rng = np.random.default_rng(2)
    points = rng.integers(0, 256, (500, 3)).astype(np.float32)
    centres = kmeans.kmeans_plusplus(points, np.ones(500), 32, rng)
    assert len({tuple(c) for c in centres.tolist()}) == 32


def test_empty_cluster_is_reseeded_at_the_worst_served_point():
    points = np.array([[0, 0, 0], [1, 0, 0], [100, 0, 0]], np.float32)
    # The second centroid is far from every point: its cluster is empty.
    start = np.array([[0, 0, 0], [255, 255, 255]], np.float32)
    result = kmeans.lloyd(points, np.ones(3), start, max_iter=1)
    assert np.allclose(result[1], [100, 0, 0])


def test_nearest_is_exact():
    rng = np.random.default_rng(3)
    colours = rng.integers(0, 256, (1000, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (20, 3), dtype=np.uint8)
    d = ((colours[:, None, :].astype(int) - palette[None].astype(int)) ** 2).sum(axis=2)
    got = kmeans.nearest(colours, palette)
    assert np.array_equal(d[np.arange(1000), got], d.min(axis=1))


def test_encoder_defaults_match_the_kmeans_module():
    from pil_kmc.encoder import SaveOptions

    assert SaveOptions().max_iter == kmeans.DEFAULT_MAX_ITER
    assert SaveOptions().tol == kmeans.DEFAULT_TOL
