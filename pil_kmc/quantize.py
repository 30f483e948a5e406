"""Pixels to palette and index plane: histogram, k-means, lookup, ordering.

The pipeline, each step vectorised:

1. pack every pixel's channels into one integer key;
2. histogram the keys (distinct colours and their counts);
3. if there are no more distinct colours than clusters, the palette is the
   colours themselves and the result is lossless; otherwise cluster them
   (:mod:`pil_kmc.kmeans`), round the centroids to 8 bits and assign every
   distinct colour to its nearest rounded entry;
4. order the palette (see :func:`palette_order`) and drop unused entries;
5. map every pixel's key to its index through a lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kmeans


@dataclass(frozen=True)
class Quantized:
    """A palette of ``k`` colours (k, C) and a (height, width) index plane."""

    palette: np.ndarray
    indices: np.ndarray

    @property
    def k(self) -> int:
        return len(self.palette)


def pixel_keys(pixels: np.ndarray) -> np.ndarray:
    """One uint32 per pixel of a (h, w, C) uint8 array: channel c in byte c."""
    h, w, channels = pixels.shape
    padded = np.zeros((h * w, 4), dtype=np.uint8)
    padded[:, :channels] = pixels.reshape(-1, channels)
    return padded.view("<u4").ravel()


def key_colours(keys: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pixel_keys` for distinct keys: (M, C) uint8 colours."""
    return keys.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :channels].copy()


def quantize(
    pixels: np.ndarray,
    clusters: int,
    *,
    seed: int = 0,
    max_iter: int = kmeans.DEFAULT_MAX_ITER,
    tol: float = kmeans.DEFAULT_TOL,
) -> Quantized:
    """Reduce a (h, w, C) uint8 image to at most ``clusters`` colours.

    Images with no more distinct colours than ``clusters`` come back exactly.
    With an alpha channel (C = 2 or 4), fully transparent pixels must already
    have all channels zero (:mod:`pil_kmc.pixels` does that); they then keep
    one exact palette entry of their own.
    """
    h, w, channels = pixels.shape
    keys = pixel_keys(pixels)
    unique, counts = kmeans.colour_histogram(keys)
    colours = key_colours(unique, channels)
    if len(unique) <= clusters:
        palette, labels = colours, np.arange(len(unique))
    else:
        palette, labels = _cluster(colours, counts, clusters, channels, seed, max_iter, tol)
    order = palette_order(palette, labels, counts)
    rank = np.empty(len(palette), dtype=np.uint8)
    rank[order] = np.arange(len(order), dtype=np.uint8)
    return Quantized(palette[order], _lookup(keys, unique, rank[labels], channels).reshape(h, w))


def _cluster(colours, counts, clusters, channels, seed, max_iter, tol):
    """Palette (uint8) and the label of every distinct colour, by k-means."""
    has_alpha = channels in (2, 4)
    transparent = has_alpha and clusters > 1 and not colours[0].any()
    if transparent:  # keys are sorted, so an all-zero colour comes first
        visible, visible_counts, clusters = colours[1:], counts[1:], clusters - 1
    else:
        visible, visible_counts = colours, counts
    centroids = kmeans.cluster(
        visible, visible_counts, clusters, seed=seed, max_iter=max_iter, tol=tol
    )
    palette = np.clip(np.rint(centroids), 0, 255).astype(np.uint8)
    labels = kmeans.nearest(visible, palette)
    if transparent:
        palette = np.vstack([np.zeros((1, channels), np.uint8), palette])
        labels = np.r_[0, labels + 1]
    return palette, labels


def palette_order(palette: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Used palette entries in storage order: by alpha, then luma, then channels.

    Ordering by brightness makes neighbouring pixels' indices numerically
    close, which helps the index stream compress. Unused entries (possible
    once centroids are rounded) are left out.
    """
    used = np.bincount(labels, weights=counts, minlength=len(palette)) > 0
    p = palette.astype(np.int64)
    channels = palette.shape[1]
    luma = p[:, 0] if channels <= 2 else 299 * p[:, 0] + 587 * p[:, 1] + 114 * p[:, 2]
    alpha = p[:, -1] if channels in (2, 4) else np.zeros(len(p), np.int64)
    keys = [p[:, c] for c in reversed(range(channels))] + [luma, alpha]
    order = np.lexsort(keys)
    return order[used[order]]


def _lookup(keys: np.ndarray, unique: np.ndarray, labels: np.ndarray, channels: int) -> np.ndarray:
    """Index of every pixel, given the label of every distinct key."""
    if channels <= 3:
        table = np.zeros(1 << (8 * channels), dtype=np.uint8)
        table[unique] = labels
        return table[keys]
    return labels[np.searchsorted(unique, keys)]
