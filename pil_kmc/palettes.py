"""Palettes across images: one palette shared by a collection, and remapping to a given one.

k-means runs on the colour histogram (:func:`pil_kmc.quantize.histogram`),
and histograms of several images merge by adding the counts of equal
colours. So a palette shared by a collection is one k-means over the merged
histogram (:func:`shared_palette`); the merge is order-free, so the same
collection gives the same palette in any order and any partition (which is
what lets :mod:`pil_kmc.distributed` do it as a map-reduce).

A given palette (``palette=`` when saving, ``kmc encode --map``) is used
without clustering again: every colour goes to its nearest entry, exactly
(:func:`remap`), and the file stores the palette as given, every entry in
its order, so every image saved with it carries the same ``KPAL``.

Colour models: a palette of C channels (1 gray, 2 gray + alpha, 3 RGB,
4 RGBA) takes any image it can hold without dropping a channel: gray into
RGB, no alpha into alpha (opaque). An image with colour and a gray palette,
or with alpha and a palette without, is refused with :class:`ValueError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImagePalette

from . import coding, kmeans, layout, pixels, quantize

#: What :func:`shared_palette` and :func:`image_histogram` take: an image or a path.
ImageSource = Image.Image | str | os.PathLike | bytes

_MODEL_NAMES = {1: "gray", 2: "gray + alpha", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ColourHistogram:
    """Distinct colours (as sorted :func:`~pil_kmc.quantize.pixel_keys`) and their pixel counts.

    ``channels`` is the colour model the keys are packed in (1 to 4).
    """

    channels: int
    keys: np.ndarray
    counts: np.ndarray

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())


def _has_alpha(channels: int) -> bool:
    return channels in (layout.GRAY_ALPHA, layout.RGBA)


def _has_colour(channels: int) -> bool:
    return channels >= layout.RGB


def widest_model(channels: Iterable[int]) -> int:
    """The smallest colour model that holds every one of ``channels`` without loss."""
    channels = list(channels)
    colour = any(_has_colour(c) for c in channels)
    alpha = any(_has_alpha(c) for c in channels)
    return (3 if colour else 1) + (1 if alpha else 0)


def widen(colours: np.ndarray, channels: int) -> np.ndarray:
    """(M, C) uint8 colours in the model of ``channels`` (gray to RGB, opaque alpha added)."""
    have = colours.shape[1]
    if have == channels:
        return colours
    if widest_model([have, channels]) != channels:
        raise ValueError(
            f"cannot fit {_MODEL_NAMES[have]} colours into a {_MODEL_NAMES[channels]} palette"
            + (" (it has no alpha)" if _has_alpha(have) else " (it is gray)")
        )
    grey = colours[:, :1]
    rgb = colours[:, :3] if _has_colour(have) else np.repeat(grey, 3, axis=1)
    base = rgb if _has_colour(channels) else grey
    if not _has_alpha(channels):
        return np.ascontiguousarray(base)
    alpha = colours[:, -1:] if _has_alpha(have) else np.full((len(colours), 1), 255, np.uint8)
    return np.hstack([base, alpha])


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    import io

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            f"an image must be a Pillow image, a path or bytes, not {type(source).__name__}"
        )
    im = Image.open(source)
    im.load()
    return im


def image_histogram(source: ImageSource) -> ColourHistogram:
    """The colour histogram of one image (a Pillow image, a path or encoded bytes)."""
    im = _open(source)
    if im.width == 0 or im.height == 0:
        raise ValueError("an empty image has no colours")
    array, channels = pixels.to_array(im)
    hist = quantize.histogram(array)
    return ColourHistogram(channels, hist.unique, hist.counts)


# shared_palette merges the histograms this many at a time, so that memory
# follows the merged histogram, not the number of images.
_MERGE_EVERY = 8


def merge_histograms(histograms: Iterable[ColourHistogram]) -> ColourHistogram:
    """One histogram of all pixels of ``histograms``, in their :func:`widest_model`.

    The counts of equal colours add up; the result does not depend on the
    order of the histograms or on how they were grouped before.
    """
    histograms = list(histograms)
    if not histograms:
        raise ValueError("no histograms to merge (no images)")
    channels = widest_model(h.channels for h in histograms)
    keys, counts = [], []
    for h in histograms:
        if h.channels == channels:
            keys.append(h.keys)
        else:  # widening keeps distinct colours distinct, so counts need no merging here
            keys.append(_keys(widen(quantize.key_colours(h.keys, h.channels), channels)))
        counts.append(h.counts)
    all_keys = np.concatenate(keys)
    all_counts = np.concatenate(counts).astype(np.int64)
    order = np.argsort(all_keys, kind="stable")
    ordered = all_keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    summed = np.add.reduceat(all_counts[order], starts) if len(ordered) else all_counts
    return ColourHistogram(channels, ordered[starts], summed)


def _keys(colours: np.ndarray) -> np.ndarray:
    return quantize.pixel_keys(colours.reshape(len(colours), 1, -1))


def palette_from_histogram(
    hist: ColourHistogram,
    clusters: int = 256,
    *,
    seed: int = 0,
    max_iter: int = kmeans.DEFAULT_MAX_ITER,
    tol: float = kmeans.DEFAULT_TOL,
    colorspace: str = "rgb",
) -> np.ndarray:
    """At most ``clusters`` colours for the pixels counted in ``hist``: an (n, C) uint8 palette.

    The same k-means as a save (fully transparent pixels keep one entry of
    their own); a histogram with no more distinct colours than ``clusters``
    gives those colours. Entries come in the order a save stores a palette
    that has no index plane of its own (:func:`pil_kmc.coding.palette_order`),
    unused ones left out.
    """
    from .encoder import save_options

    options = save_options(
        {
            "clusters": clusters,
            "seed": seed,
            "max_iter": max_iter,
            "tol": tol,
            "colorspace": colorspace,
        }
    )
    channels = hist.channels
    colours = quantize.key_colours(hist.keys, channels)
    if len(colours) <= options.clusters:
        palette = colours
    else:
        space = options.colorspace if channels >= 3 else "rgb"
        palette, _ = quantize.cluster(
            colours,
            hist.counts,
            options.clusters,
            seed=options.seed,
            max_iter=options.max_iter,
            tol=options.tol,
            colorspace=space,
        )
    return palette[coding.palette_order(palette)]


def shared_palette(
    images: Iterable[ImageSource],
    clusters: int = 256,
    *,
    seed: int = 0,
    max_iter: int = kmeans.DEFAULT_MAX_ITER,
    tol: float = kmeans.DEFAULT_TOL,
    colorspace: str = "rgb",
) -> np.ndarray:
    """One palette of at most ``clusters`` colours for all ``images`` (Pillow images or paths).

    k-means over the merged histogram of every pixel of every image, in the
    widest colour model among them; the result is an (n, C) uint8 array for
    the ``palette=`` save parameter::

        palette = pil_kmc.shared_palette(paths, clusters=64)
        for path in paths:
            Image.open(path).save(path + ".kmc", palette=palette)
    """
    if isinstance(images, (str, bytes, bytearray, os.PathLike, Image.Image)):
        raise ValueError("shared_palette takes a collection of images, not one image")
    total: list[ColourHistogram] = []
    for source in images:
        total.append(image_histogram(source))
        if len(total) > _MERGE_EVERY:  # order and grouping do not change the merge
            total = [merge_histograms(total)]
    hist = merge_histograms(total)
    return palette_from_histogram(
        hist, clusters, seed=seed, max_iter=max_iter, tol=tol, colorspace=colorspace
    )


def as_palette(value: Any) -> np.ndarray:
    """A given palette as a read-only (n, C) uint8 array, 1 <= n <= 256, 1 <= C <= 4.

    Takes an (n, C) uint8 array, a Pillow
    ``ImagePalette`` (every entry), ``bytes`` of RGB triplets (as GIF's
    ``palette=`` takes them), a P image (its palette, every entry in
    order: an opened ``.kmc`` gives its ``KPAL``), or
    another Pillow image (its distinct colours, in its storage colour model).
    Raises :class:`ValueError` for anything else.
    """
    if isinstance(value, Image.Image) and (value.mode == "P" or _kpal(value) is not None):
        return _frozen(_p_palette(value))  # an opened gray .kmc too: its KPAL, not its colours
    if isinstance(value, Image.Image):
        try:
            array, channels = pixels.to_array(value)
        except OSError as e:  # a mode no palette can come from (I, F)
            raise ValueError(f"palette image: {e}") from None
        colours = array.reshape(-1, channels)
        if len(colours) == 0:
            raise ValueError("palette image is empty: a palette needs 1 to 256 colours")
        unique = quantize.key_colours(np.unique(quantize.pixel_keys(array)), channels)
        if len(unique) > 256:
            raise ValueError(
                f"palette image has {len(unique)} colours; a palette holds 1 to 256"
                " (quantize it first, e.g. save it as .kmc)"
            )
        return _frozen(unique)
    if isinstance(value, ImagePalette.ImagePalette):
        mode = value.mode
        if mode not in ("RGB", "RGBA", "L", "LA"):
            raise ValueError(f"ImagePalette mode must be RGB, RGBA, L or LA, not {mode!r}")
        if value.rawmode:
            raise ValueError(f"ImagePalette holds raw {value.rawmode} data; give a decoded one")
        flat = np.frombuffer(value.tobytes(), dtype=np.uint8)
        if len(flat) % len(mode):
            raise ValueError(f"ImagePalette has {len(flat)} bytes, not a multiple of {len(mode)}")
        value = flat.reshape(-1, len(mode))
    if isinstance(value, (bytes, bytearray)):  # GIF's form: RGBRGB...
        if len(value) % 3:
            raise ValueError(f"palette bytes must be RGB triplets, not {len(value)} bytes")
        value = np.frombuffer(bytes(value), np.uint8).reshape(-1, 3)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "uifb":
        raise ValueError(f"palette must be an (n, channels) uint8 array, not {type(value)!r}")
    if array.dtype != np.uint8:
        raise ValueError(
            f"palette must have dtype uint8, not {array.dtype} (convert with .astype(np.uint8)"
            " after checking that its values are 0 to 255)"
        )
    if array.ndim != 2:
        raise ValueError(f"palette must be a 2-d (n, channels) array, not shape {array.shape}")
    n, channels = array.shape
    if not 1 <= channels <= 4:
        raise ValueError(
            f"palette must have 1 to 4 channels (gray, gray + alpha, RGB, RGBA), not {channels}"
        )
    if not 1 <= n <= 256:
        raise ValueError(f"palette must have 1 to 256 entries, not {n}")
    return _frozen(array)


def _p_palette(im: Image.Image) -> np.ndarray:
    """A P image's palette, every entry in its order (an opened ``.kmc``, gray too: its ``KPAL``).

    As a save reads it (:func:`pil_kmc.pixels.own_palette`), fully
    transparent entries zeroed as a save zeroes such pixels.
    """
    if im.width == 0 or im.height == 0:
        raise ValueError("palette image is empty: a palette needs 1 to 256 colours")
    kpal = _kpal(im)
    palette = (pixels.own_palette(im) if kpal is None else kpal).copy()
    if _has_alpha(palette.shape[1]):
        palette[palette[:, -1] == 0] = 0
    return palette


def _kpal(value: Any) -> np.ndarray | None:
    """The ``KPAL`` of an opened ``.kmc`` file, (k, C) uint8 (read-only), else None."""
    from .plugin import KmcImageFile

    if not isinstance(value, KmcImageFile):
        return None
    header = value._kmc.header
    return np.frombuffer(value._kmc.palette, np.uint8).reshape(header.k, header.channels)


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.uint8, order="C")
    out.flags.writeable = False
    return out


def remap(
    array: np.ndarray,
    own: int,
    palette: np.ndarray,
    *,
    dither: float = 0.0,
    colorspace: str = "rgb",
) -> tuple[quantize.Quantized, int]:
    """Pixels as indices into ``palette`` (from :func:`as_palette`), and the colour model C.

    ``array`` (h, w, ``own``) is an image's pixels as :func:`pil_kmc.pixels.to_array`
    gives them; a palette of a wider colour model widens them.

    Every colour goes to its nearest entry (:func:`pil_kmc.quantize.nearest_entries`:
    exact, ties to the lower index; with alpha as seen, premultiplied, so
    fully transparent pixels take the first fully transparent entry; in
    Oklab with ``colorspace="oklab"``). ``dither``
    (a strength, 0 to 1) diffuses the error instead (Floyd-Steinberg).
    The palette is kept whole and in order.
    """
    channels = palette.shape[1]
    if widest_model([own, channels]) != channels:
        raise ValueError(
            f"the image is {_MODEL_NAMES[own]} and the palette {_MODEL_NAMES[channels]}: "
            + ("a palette for it needs alpha" if _has_alpha(own) else "a palette for it needs RGB")
        )
    h, w = array.shape[:2]
    if own != channels:
        array = widen(array.reshape(-1, own), channels).reshape(h, w, channels)
    if dither:
        return quantize.Quantized(palette, quantize.dithered(array, palette, dither)), channels
    hist = quantize.histogram(array)
    colours = quantize.key_colours(hist.unique, channels)
    labels = quantize.nearest_entries(colours, palette, colorspace).astype(np.uint8)
    indices = quantize.lookup(array, hist.unique, labels)
    return quantize.Quantized(palette, indices), channels
