"""Pixels to palette and index plane: histogram, k-means, lookup.

The pipeline, each step vectorised:

0. a palette image that uses no more entries than clusters keeps its own
   palette and indices (:func:`own_palette`), and the steps below are skipped;
1. pack every pixel's channels into one integer key;
2. histogram the keys (distinct colours and their counts);
3. if there are no more distinct colours than clusters, the palette is the
   colours themselves and the result is lossless; otherwise cluster them
   (:mod:`pil_kmc.kmeans`), round the centroids to 8 bits, assign every
   distinct colour to its nearest rounded entry and drop unused entries;
4. map every pixel's key to its index through a lookup table.

The palette comes out in a deterministic order with no policy in it (the
colours' key order, or the k-means' own); the order a file stores is
:mod:`pil_kmc.coding`'s choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import exact, kmeans


@dataclass(frozen=True)
class Quantized:
    """A palette of ``k`` colours (k, C) and a (height, width) index plane.

    ``user_order`` marks a palette whose order is the user's own (a palette
    image stored exactly, or gray levels in ascending order), which
    :mod:`pil_kmc.coding` keeps unless ``optimize=True``.
    """

    palette: np.ndarray
    indices: np.ndarray
    user_order: bool = False

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


@dataclass(frozen=True)
class Histogram:
    """The distinct keys (sorted) of an image's pixels and how often each occurs."""

    unique: np.ndarray
    counts: np.ndarray


def histogram(pixels: np.ndarray) -> Histogram:
    """The colour histogram of a (h, w, C) uint8 image.

    The keys are sorted in place and dropped: the index plane is looked up
    from the pixels again, a block at a time (:func:`lookup`), so that no
    per-pixel array but the pixels and the index plane outlives this.
    """
    return Histogram(*kmeans.colour_histogram(pixel_keys(pixels), overwrite=True))


def quantize(
    pixels: np.ndarray,
    clusters: int,
    *,
    hist: Histogram | None = None,
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    colorspace: str = "rgb",
    dither: float = 0.0,
    own: Quantized | None = None,
) -> Quantized:
    """Reduce a (h, w, C) uint8 image to at most ``clusters`` colours.

    Images with no more distinct colours than ``clusters`` come back exactly.
    ``own``, the image's own palette (up to 256 entries) and indices (a ``P``
    image's), is kept index for index if no more than ``clusters`` of its
    entries are used (see :func:`own_palette`).
    With an alpha channel (C = 2 or 4), fully transparent pixels must already
    have all channels zero (:mod:`pil_kmc.pixels` does that); they then keep
    one exact palette entry of their own. ``colorspace="oklab"`` clusters
    and assigns colours (C = 3 or 4) in Oklab, a perceptually uniform space;
    ``dither`` (0 to 1, True for 1) spreads that share of each pixel's error
    to its neighbours (Floyd-Steinberg, see :func:`dithered`). ``hist``, the
    image's :func:`histogram`, saves recomputing it when one image is
    quantized several times.
    """
    h, w, channels = pixels.shape
    if own is not None and (kept := own_palette(own, clusters)) is not None:
        return kept
    hist = hist or histogram(pixels)
    unique, counts = hist.unique, hist.counts
    colours = key_colours(unique, channels)
    if len(unique) <= clusters:
        palette, labels = colours, np.arange(len(unique))
        dither = False  # every colour is exact: there is no error to diffuse
    else:
        space = colorspace if channels >= 3 else "rgb"
        palette, labels = cluster(
            colours, counts, clusters, seed=seed, max_iter=max_iter, tol=tol, colorspace=space
        )
    if dither:
        return Quantized(palette, dithered(pixels, palette, float(dither)))
    indices = lookup(pixels, unique, labels)
    # Exact gray levels in ascending order are an L image's own "palette".
    return Quantized(palette, indices, user_order=channels == 1 and len(unique) <= clusters)


def own_palette(own: Quantized, clusters: int) -> Quantized | None:
    """A palette image as it is, if it uses no more than ``clusters`` entries; else None.

    The whole palette is kept, unused entries included, as PNG-8 keeps it,
    if it has no more than ``clusters`` entries; else, if the highest index
    used is below ``clusters``, the entries up to it; otherwise the used
    entries close up in their own order. Either way ``user_order`` is set.
    """
    used = np.flatnonzero(np.bincount(own.indices.ravel(), minlength=own.k))
    if len(used) > clusters:
        return None
    top = own.k if own.k <= clusters else int(used[-1]) + 1
    if top <= clusters:
        return Quantized(own.palette[:top], own.indices, user_order=True)
    return Quantized(own.palette[used], _rank(used, own.k)[own.indices], user_order=True)


def _rank(order: np.ndarray, size: int) -> np.ndarray:
    """The new index of each of ``size`` old palette entries (0 for those not in ``order``)."""
    rank = np.zeros(size, dtype=np.uint8)
    rank[order] = np.arange(len(order), dtype=np.uint8)
    return rank


def cluster(
    colours: np.ndarray,
    counts: np.ndarray,
    clusters: int,
    *,
    seed: int = 0,
    max_iter: int | None = None,
    tol: float | None = None,
    colorspace: str = "rgb",
) -> tuple[np.ndarray, np.ndarray]:
    """Palette (uint8) and the label of every distinct colour, by k-means.

    ``colours`` (M, C) are distinct, sorted by key, ``counts`` their pixels.
    With alpha, an all-zero first colour (the transparent pixels) keeps an
    exact entry of its own, a centroid the k-means never moves, and the other
    ``clusters - 1`` are clustered around it, as seen (premultiplied by
    alpha, :func:`pil_kmc.exact.as_seen`) unless ``colorspace="oklab"``:
    the faint colours it serves best pull no other entry their way. Every
    colour then takes the entry nearest it as seen, the transparent one
    included.
    Entries that no colour is nearest to (possible once centroids are
    rounded) are dropped; the others keep the k-means' order.
    """
    channels = colours.shape[1]
    has_alpha = channels in (2, 4)
    # Keys are sorted, so an all-zero colour (the transparent pixels) comes first.
    transparent = has_alpha and clusters > 1 and not colours[0].any()
    # With alpha, the error that counts is the one seen: premultiplied.
    to_space, from_space = _SPACES["seen" if has_alpha and colorspace == "rgb" else colorspace]
    values = to_space(colours)
    centroids = kmeans.cluster(
        colours,
        counts,
        clusters,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        values=values,
        fixed=values[:1] if transparent else None,
    )
    palette = from_space(centroids)
    if transparent:  # exact, whatever the space's round trip makes of it
        palette[0] = 0
    oklab = values if colorspace == "oklab" else None
    labels = nearest_entries(colours, palette, colorspace, oklab=oklab)
    used = np.flatnonzero(np.bincount(labels, minlength=len(palette)))
    return palette[used], _rank(used, len(palette))[labels]


def nearest_entries(
    colours: np.ndarray,
    palette: np.ndarray,
    colorspace: str = "rgb",
    *,
    oklab: np.ndarray | None = None,
) -> np.ndarray:
    """The entry of ``palette`` (k, C) that each distinct colour (M, C) takes: the plain lookup.

    Each colour takes its nearest entry, exactly, ties to the lower index;
    with alpha, nearest as seen (:func:`pil_kmc.exact.as_seen`), which
    gives fully transparent colours the first fully transparent entry. With
    ``colorspace="oklab"`` (3 or 4 channels) the distance is Oklab's; with
    alpha, a colour still becomes invisible exactly when its nearest entry
    as seen is fully transparent (as :func:`dithered` decides), and otherwise
    takes its Oklab-nearest visible entry. ``oklab``: ``colours`` in Oklab,
    if already computed.
    """
    if colorspace == "rgb" or colours.shape[1] < 3:
        return exact.nearest(colours, palette)
    oklab = to_oklab(colours) if oklab is None else oklab
    if colours.shape[1] == 3:
        return exact.nearest(oklab, to_oklab(palette))
    labels = exact.nearest(colours, palette)  # as seen: who becomes invisible
    seen_visible = palette[labels, -1] > 0
    visible = np.flatnonzero(palette[:, -1] > 0)
    if len(visible) and seen_visible.any():
        near = exact.nearest(oklab[seen_visible], to_oklab(palette[visible]))
        labels[seen_visible] = visible[near]
    return labels


def mse(pixels: np.ndarray, result: Quantized) -> float:
    """Mean squared error per channel of the quantized image against ``pixels``.

    With alpha (C = 2 or 4) the error is the one seen: colours premultiplied
    by alpha (as composited over black), alpha as it is.
    """
    h, w, channels = pixels.shape
    seen = channels in (2, 4)
    palette = exact.as_seen(result.palette) / 255 if seen else result.palette.astype(np.float64)
    error, step = 0.0, max(1, _LOOKUP_BLOCK // w)
    for start in range(0, h, step):  # in blocks of rows: no float copy of the whole image
        block = pixels[start : start + step].reshape(-1, channels)
        x = exact.as_seen(block) / 255 if seen else block.astype(np.float64)
        diff = x - palette[result.indices[start : start + step].ravel()]
        error += float(np.einsum("ij,ij", diff, diff))
    return error / pixels.size


def psnr(pixels: np.ndarray, result: Quantized) -> float:
    """PSNR in dB of the quantized image against ``pixels`` (inf if identical)."""
    error = mse(pixels, result)
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


def smallest_reaching(
    run: Callable[[int], Quantized], pixels: np.ndarray, max_mse: float, most: int
) -> Quantized:
    """``run(k)`` for the smallest k <= ``most`` whose :func:`mse` is at most ``max_mse``.

    If even ``most`` does not reach it, ``run(most)``. Binary search: the
    error falls as k grows (a larger palette can always do at least as well).
    """
    results = {most: run(most)}
    if mse(pixels, results[most]) > max_mse:
        return results[most]
    low, high = 1, most  # high always reaches the target
    while low < high:
        mid = (low + high) // 2
        results[mid] = run(mid)
        if mse(pixels, results[mid]) <= max_mse:
            high = mid
        else:
            low = mid + 1
    return results[high]


def dithered(pixels: np.ndarray, palette: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Floyd-Steinberg indices of (h, w, C) ``pixels`` into a (k, C) ``palette``.

    Serpentine error diffusion with the error scaled by ``strength`` (0 to 1,
    pngquant's ``--floyd``), in compiled code and integer arithmetic, so the
    same on every machine. With alpha, the error is measured and spread as
    seen (premultiplied, :func:`pil_kmc.exact.as_seen`), and dithering never
    changes which pixels are fully transparent: fully transparent pixels
    take the first fully transparent entry, pixels whose own colour is
    nearest a fully transparent entry take it (as without dithering), and
    the others the entry nearest their dithered colour that is not fully
    transparent. The invisible ones pass no error on.
    """
    from . import _kmc

    h, w, channels = pixels.shape
    out = bytearray(w * h)
    _kmc.dither(
        np.ascontiguousarray(pixels).tobytes(),
        w,
        h,
        channels,
        np.ascontiguousarray(palette, dtype=np.uint8).tobytes(),
        round(256 * strength),
        out,
    )
    return np.frombuffer(out, np.uint8).reshape(h, w)


# sRGB <-> Oklab (Björn Ottosson, 2020), scaled by 255 so that tolerances in
# "colour levels" keep their size. Alpha, if present, passes through.
_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


def to_oklab(colours: np.ndarray) -> np.ndarray:
    """(M, 3 or 4) uint8 sRGB(A) -> float32 Oklab(A) times 255."""
    c = colours[:, :3].astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lab = exact.matmul(np.cbrt(exact.matmul(linear, _M1.T)), _M2.T) * 255
    return np.hstack([lab, colours[:, 3:].astype(np.float64)]).astype(np.float32)


def from_oklab(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_oklab`, rounded and clipped to uint8."""
    lms = (values[:, :3].astype(np.float64) / 255) @ np.linalg.inv(_M2).T
    linear = np.clip((lms**3) @ np.linalg.inv(_M1).T, 0, 1)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    out = np.hstack([c * 255, values[:, 3:]])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _seen_values(colours: np.ndarray) -> np.ndarray:
    """(M, 2 or 4) uint8 colours with alpha -> float32 premultiplied, in colour levels."""
    return (exact.as_seen(colours) / 255).astype(np.float32)


def _seen_palette(centroids: np.ndarray) -> np.ndarray:
    """Premultiplied centroids -> uint8: alpha rounded, then the colour that best gives them."""
    alpha = np.clip(np.rint(centroids[:, -1:].astype(np.float64)), 0, 255)
    colour = centroids[:, :-1] * 255 / np.maximum(alpha, 1)
    return np.clip(np.rint(np.hstack([np.where(alpha > 0, colour, 0), alpha])), 0, 255).astype(
        np.uint8
    )


def _rgb_values(colours: np.ndarray) -> np.ndarray:
    return colours.astype(np.float32)


def _rgb_palette(centroids: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(centroids), 0, 255).astype(np.uint8)


_SPACES = {
    "rgb": (_rgb_values, _rgb_palette),
    "seen": (_seen_values, _seen_palette),
    "oklab": (to_oklab, from_oklab),
}


# Pixels looked up per block: their keys (4 bytes each) stay small next to the image.
_LOOKUP_BLOCK = 1 << 18


def lookup(pixels: np.ndarray, unique: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The (h, w) index plane of ``pixels``, given the label of every distinct key."""
    h, w, channels = pixels.shape
    flat = pixels.reshape(-1, channels)
    out = np.empty(h * w, dtype=np.uint8)
    table = None
    if channels <= 3:  # a direct table over every key (16 MB at 3 channels)
        table = np.zeros(1 << (8 * channels), dtype=np.uint8)
        table[unique] = labels
    for start in range(0, h * w, _LOOKUP_BLOCK):
        block = flat[start : start + _LOOKUP_BLOCK]
        keys = pixel_keys(block[:, None, :]).reshape(-1)
        part = out[start : start + _LOOKUP_BLOCK]
        if table is not None:
            np.take(table, keys, out=part)
        else:
            part[:] = labels[np.searchsorted(unique, keys)]
    return out.reshape(h, w)
