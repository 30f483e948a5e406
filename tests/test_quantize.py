"""Pixels to palette and indices."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pil_kmc import exact, quantize

from .reference.distance import squared_distances
from .strategies import arrays


def distinct(a: np.ndarray) -> int:
    return len(np.unique(a.reshape(-1, a.shape[2]), axis=0))


def rebuild(q: quantize.Quantized) -> np.ndarray:
    return q.palette[q.indices]


@given(st.integers(1, 4).flatmap(lambda c: arrays(c, max_colours=40)))
def test_few_colours_are_kept_exactly(a):
    q = quantize.quantize(a, 256)
    assert np.array_equal(rebuild(q), a)
    assert q.k == distinct(a)


@given(st.integers(1, 4).flatmap(lambda c: arrays(c)), st.integers(1, 256))
def test_result_has_at_most_k_colours_and_is_stable(a, k):
    q = quantize.quantize(a, k)
    assert q.k <= k and q.indices.max() < q.k
    assert len(np.unique(q.palette, axis=0)) == q.k  # no unused or duplicate entries
    again = quantize.quantize(rebuild(q), k)
    assert np.array_equal(rebuild(again), rebuild(q))


def test_keys_round_trip_to_colours():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    keys = quantize.pixel_keys(a)
    assert np.array_equal(quantize.key_colours(keys, 4), a.reshape(-1, 4))


def test_transparent_pixels_keep_their_own_entry():
    rng = np.random.default_rng(0)
    a = rng.integers(1, 256, (30, 30, 4), dtype=np.uint8)
    a[:10] = 0  # fully transparent rows (colour already zeroed)
    q = quantize.quantize(a, 8)
    assert q.k == 8
    transparent = q.indices[:10]
    assert len(np.unique(transparent)) == 1
    assert q.palette[transparent[0, 0]].tolist() == [0, 0, 0, 0]
    # Every other pixel takes the entry nearest it as seen: the transparent
    # one only where nothing visible is nearer (faint pixels).
    colours = a[10:].reshape(-1, 4)
    d = squared_distances(colours, q.palette)
    chosen = d[np.arange(len(colours)), q.indices[10:].ravel()]
    assert np.array_equal(chosen, d.min(axis=1))
    assert (colours[q.palette[q.indices[10:].ravel(), 3] == 0, 3] < 64).all()


def test_faint_pixels_the_transparent_entry_serves_pull_no_other_entry():
    # Transparent pixels, a faint shadow nearest to the transparent entry as
    # seen, and two opaque colours, in three entries: the opaque colours must
    # get one each, exactly. Clustered into the other two entries without the
    # transparent one, the shadow took an entry and the opaque colours shared one.
    a = np.zeros((40, 40, 4), np.uint8)
    a[10:20] = (10, 10, 10, 2)
    a[20:30] = (200, 30, 30, 255)
    a[30:] = (30, 30, 200, 255)
    q = quantize.quantize(a, 3)
    assert sorted(q.palette.tolist()) == [[0, 0, 0, 0], [30, 30, 200, 255], [200, 30, 30, 255]]
    assert (q.palette[q.indices[:20]] == 0).all()


def test_with_alpha_the_error_seen_is_what_the_k_means_lowers():
    # A faint halo of many hues around an opaque disc: straight RGBA k-means
    # spends entries on the halo's hues, which nobody sees at alpha 1 to 8.
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:64, :64]
    r = np.hypot(x - 32, y - 32)
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3] = rng.integers(0, 256, (64, 64, 3))
    a[..., 3] = np.where(r < 16, 255, np.where(r < 30, rng.integers(1, 9, (64, 64)), 0))
    a[r < 16, :3] = np.stack([200 + (x[r < 16] % 40), 60 + y[r < 16], 40 + 0 * x[r < 16]], -1)
    a[a[..., 3] == 0] = 0
    seen = quantize.mse(a, quantize.quantize(a, 16))
    straight_palette = np.clip(np.rint(kmeans_straight(a, 16)), 0, 255).astype(np.uint8)
    straight = quantize.Quantized(
        straight_palette,
        exact.nearest(a.reshape(-1, 4), straight_palette).reshape(64, 64).astype(np.uint8),
    )
    assert seen < quantize.mse(a, straight) / 2


def kmeans_straight(a: np.ndarray, k: int) -> np.ndarray:
    """Plain Lloyd on the straight RGBA pixels, as scikit-learn would run it."""
    from scipy.cluster.vq import kmeans2

    x = a.reshape(-1, 4).astype(np.float64)
    return kmeans2(x, k, seed=0, minit="++")[0]


def test_palette_is_ordered_by_brightness():
    a = np.array([[[250, 250, 250], [0, 0, 0], [128, 128, 128]]], np.uint8)
    q = quantize.quantize(a, 3)
    assert q.palette[:, 0].tolist() == [0, 128, 250]
    assert q.indices.tolist() == [[2, 0, 1]]


def test_quantize_is_deterministic():
    a = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    one, two = quantize.quantize(a, 16, seed=3), quantize.quantize(a, 16, seed=3)
    assert np.array_equal(one.palette, two.palette) and np.array_equal(one.indices, two.indices)


def test_oklab_round_trips_every_grey_and_random_colours():
    rng = np.random.default_rng(5)
    colours = np.vstack(
        [
            np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
            rng.integers(0, 256, (5000, 3), dtype=np.uint8),
        ]
    )
    assert np.array_equal(quantize.from_oklab(quantize.to_oklab(colours)), colours)
    white = quantize.to_oklab(np.array([[255, 255, 255]], np.uint8))[0]
    assert abs(white[0] - 255) < 0.01 and abs(white[1]) < 0.01 and abs(white[2]) < 0.01


def test_dithered_uses_only_palette_entries_and_keeps_exact_colours():
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    a = np.full((10, 10, 3), 128, np.uint8)
    a[0, 0] = 255
    idx = quantize.dithered(a, palette)
    assert set(np.unique(idx)) == {0, 1}  # grey dithers to a mix
    assert 0.3 < idx.mean() < 0.7
    exact = quantize.dithered(palette[np.array([[0, 1], [1, 0]])], palette)
    assert exact.tolist() == [[0, 1], [1, 0]]


def test_smallest_reaching_binary_search():
    a = np.random.default_rng(6).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    result = quantize.smallest_reaching(lambda k: quantize.quantize(a, k), a, 650.0, 64)
    assert quantize.mse(a, result) <= 650.0
    assert quantize.mse(a, quantize.quantize(a, result.k - 1)) > 650.0


def test_psnr_of_an_exact_result_is_infinite():
    a = np.zeros((2, 2, 3), np.uint8)
    assert quantize.psnr(a, quantize.quantize(a, 4)) == float("inf")


def _other_threads_cpu_ns() -> int:
    """CPU time so far of this process's threads that Python did not start (Linux).

    Those are native libraries' own, such as OpenBLAS's workers; the Python
    threads (the caller, pil_kmc.parallel's helpers) do the work asked for.
    """
    ours = {str(t.native_id) for t in threading.enumerate()}
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if task.name not in ours:
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
    return total


@pytest.mark.parametrize("colorspace", ["rgb", "oklab"])
def test_quantizing_leaves_blas_worker_threads_asleep(colorspace):
    # OpenBLAS's workers, once woken by a large product, spin for about 0.1 s
    # and take the second core from the index coder's threads.
    if not Path("/proc/thread-self/schedstat").is_file():
        pytest.skip("per-thread CPU times are read from Linux's /proc/*/task/*/schedstat")
    big = np.ones((600, 600))
    before = _other_threads_cpu_ns()
    big @ big  # control: a product this large wakes them, if there are any
    time.sleep(0.3)  # ... and lets them fall asleep again
    if _other_threads_cpu_ns() - before < 1_000_000:
        pytest.skip("numpy's BLAS computes in the calling thread here")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:384, 0:384]
    smooth = np.stack([x * 0.6, y * 0.6, (x + y) * 0.3], axis=2)
    pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    # Loading scipy's own OpenBLAS (on the first Oklab save of a process)
    # starts its threads once; that is an import, not the clustering.
    quantize.quantize(pixels[::8, ::8], 256, colorspace=colorspace)
    time.sleep(0.3)
    before = _other_threads_cpu_ns()
    quantize.quantize(pixels, 256, colorspace=colorspace)
    assert _other_threads_cpu_ns() - before < 1_000_000


def test_memory_per_pixel_stays_small():
    # Beyond the pixels, the peak is the index plane (1 byte a pixel) or the
    # histogram's keys (4 bytes) and one flag a pixel: the keys are sorted in
    # place and dropped, and the lookup makes them again a block at a time.
    # Keeping them and sorting a copy took 10 bytes a pixel.
    import tracemalloc

    y, x = np.mgrid[0:256, 0:256]
    tile = np.stack([x, y, (x + y) // 2 ^ (x * 7 % 13)], axis=2).astype(np.uint8)
    pixels = np.tile(tile, (8, 8, 1))  # 4.2 megapixels, 65,536 colours
    tracemalloc.start()
    try:
        quantize.quantize(pixels, 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / (pixels.shape[0] * pixels.shape[1]) < 8


def test_the_error_with_alpha_is_the_error_seen():
    # An invisible colour costs nothing; a faint one costs what shows of it.
    pixels = np.array([[[0, 0, 0, 0], [255, 0, 0, 51]]], np.uint8)
    palette = np.array([[0, 0, 0, 0], [0, 0, 255, 51]], np.uint8)
    stored = quantize.Quantized(palette, np.array([[0, 1]], np.uint8))
    # The second pixel is seen as (51, 0, 0) against (0, 0, 51): 2 * 51**2 over 8 channels.
    assert quantize.mse(pixels, stored) == 2 * 51**2 / 8
    assert (
        quantize.mse(pixels, quantize.Quantized(palette, np.array([[0, 0]], np.uint8)))
        == (51**2 + 51**2) / 8
    )


@pytest.mark.parametrize("colorspace", ["rgb", "oklab"])
def test_the_plain_and_the_dithered_lookup_make_the_same_pixels_invisible(colorspace):
    a = np.zeros((3, 8, 4), np.uint8)
    a[1] = (255, 255, 255, 255)
    a[2, :2] = (255, 255, 255, 10)  # faint white
    a[2, 2:4] = (0, 0, 0, 160)  # dark, much of it seen
    a[2, 4:] = (200, 200, 200, 255)
    plain = quantize.quantize(a, 2, colorspace=colorspace)
    dithered = quantize.quantize(a, 2, colorspace=colorspace, dither=1)
    invisible = plain.palette[plain.indices, 3] == 0
    assert np.array_equal(invisible, dithered.palette[dithered.indices, 3] == 0)
    assert invisible[0].all() and not invisible[1].any() and not invisible[2, 4:].any()
