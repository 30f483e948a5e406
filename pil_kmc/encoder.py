"""Save options and the whole encode: Pillow image -> ``.kmc`` bytes.

Every option is validated by :func:`save_options` before any pixel work, so
a bad argument raises :class:`ValueError` before a byte is written.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from . import layout, metadata

if TYPE_CHECKING:
    from .quantize import Quantized

DEFAULT_CLUSTERS = 256
COLORSPACES = ("rgb", "oklab")
_COMPRESSIONS = {name: method for method, name in layout.COMPRESSION_NAMES.items()}
_XZ, _BZIP2, _CONTEXT = layout.XZ, layout.BZIP2, layout.CONTEXT
# Index stream candidates, as (method, bit depth or 0 for the smallest, extreme);
# the smallest stream wins. From 17 colours on, xz compresses whole bytes
# better than packed ones; up to 16, packed rows come within a few percent
# (-3% to +6% on the bench images) and take xz half the time. bzip2 does
# best on packed rows. bzip2 decodes at about 30 MB/s, so above _LARGE pixels
# the default leaves it out to keep decoding fast.
_DEFAULT_CANDIDATES = ((_XZ, 8, False), (_BZIP2, 0, False))
_FEW_COLOURS_CANDIDATES = ((_XZ, 0, False), (_BZIP2, 0, False))
# Above this many pixels the default uses only xz, in its fast setting.
_LARGE = 4_000_000
# Below, from 17 colours on, the default cuts xz's input into two strips
# coded in parallel (a third less coding time on the bench images, for 0.3%
# more bytes at k = 256 and 0.6% at k = 64), and orders the palette by
# co-occurrence, which wins back more than that at k = 256 (1.3% smaller).
_DEFAULT_XZ_STRIPS = 2
_OPTIMIZE_CANDIDATES = (
    (_XZ, 8, False),
    (_XZ, 0, False),
    (_XZ, 8, True),
    (_XZ, 0, True),
    (_BZIP2, 0, False),
    (_BZIP2, 8, False),
    (_CONTEXT, 0, False),
)
# The context coder's encoder needs about 90 bytes per pixel and both of its
# directions take several seconds at 10 megapixels; above this, optimize skips it.
_CONTEXT_MAX_PIXELS = 16_000_000
_METADATA_KEYS = ("icc_profile", "exif", "xmp", "dpi", "text")


class QualityNotReached(ValueError):
    """Even the largest allowed palette does not reach the minimum ``quality``."""

    def __init__(self, psnr: float, minimum: float, clusters: int) -> None:
        super().__init__(
            f"quality not reached: {clusters} clusters give {psnr:.2f} dB PSNR, "
            f"below the minimum of {minimum:g} dB"
        )
        self.psnr = psnr


@dataclass(frozen=True)
class SaveOptions:
    """Validated save parameters; see the README's table for their meaning."""

    clusters: int = DEFAULT_CLUSTERS
    quality: tuple[float, float] | None = None
    seed: int = 0
    max_iter: int | None = None  # None: pil_kmc.kmeans.DEFAULT_MAX_ITER
    tol: float | None = None  # None: pil_kmc.kmeans.DEFAULT_TOL
    colorspace: str = "rgb"
    dither: bool = False
    compression: str | None = None  # None: the smallest of the default candidates
    optimize: bool = False
    chunks: tuple[tuple[bytes, bytes], ...] = ()


_OPTION_NAMES = tuple(f for f in SaveOptions.__dataclass_fields__ if f != "chunks")


def _integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _quality(value: Any) -> tuple[float, float] | None:
    """``(min, max)`` PSNR in dB; a single number ``n`` means ``(0, n)``, as in pngquant."""
    if value is None:
        return None
    pair = (0, value) if _number(value) else value
    try:
        low, high = pair
    except (TypeError, ValueError):
        raise ValueError(f"quality must be (min, max) PSNR in dB, not {value!r}") from None
    if not (_number(low) and _number(high) and 0 <= low <= high <= 100):
        raise ValueError(f"quality must be (min, max) with 0 <= min <= max <= 100, not {value!r}")
    return float(low), float(high)


def save_options(params: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> SaveOptions:
    """Validate Pillow ``encoderinfo`` (and metadata from ``info``) into :class:`SaveOptions`.

    Unknown keys are ignored, as Pillow's plugins ignore other formats'
    options, except near-misses of ours (``cluster=16``), which are surely
    typos and raise :class:`ValueError`.
    """
    known = _OPTION_NAMES + _METADATA_KEYS
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
            if close:
                raise ValueError(f"unknown KMC save option {key!r}; did you mean {close[0]!r}?")
    d = SaveOptions()
    tol = params.get("tol", d.tol)
    if tol is not None and (not _number(tol) or not 0 <= tol < 256):
        raise ValueError(f"tol must be a number from 0 to 255, not {tol!r}")
    compression = params.get("compression", d.compression)
    if compression is not None and compression not in _COMPRESSIONS:
        names = ", ".join(map(repr, _COMPRESSIONS))
        raise ValueError(f"compression must be one of {names}, not {compression!r}")
    colorspace = params.get("colorspace", d.colorspace)
    if colorspace not in COLORSPACES:
        raise ValueError(f"colorspace must be 'rgb' or 'oklab', not {colorspace!r}")
    optimize = _flag("optimize", params.get("optimize", d.optimize))
    if optimize and "compression" in params:
        raise ValueError("optimize=True chooses the compression itself; give one or the other")
    return SaveOptions(
        clusters=_integer("clusters", params.get("clusters", d.clusters), 1, 256),
        quality=_quality(params.get("quality")),
        seed=_integer("seed", params.get("seed", d.seed), 0, 2**64 - 1),
        max_iter=None
        if params.get("max_iter") is None
        else _integer("max_iter", params["max_iter"], 1, 10_000),
        tol=None if tol is None else float(tol),
        colorspace=colorspace,
        dither=_flag("dither", params.get("dither", d.dither)),
        compression=compression,
        optimize=optimize,
        chunks=tuple(metadata.to_chunks(params, info or {})),
    )


def quantize_image(im: Image.Image, options: SaveOptions) -> tuple[Quantized, int]:
    """Palette and index plane of ``im`` (a :class:`~pil_kmc.quantize.Quantized`), and C.

    With ``options.quality``, the smallest k that reaches its maximum PSNR
    (at most ``options.clusters``); :class:`QualityNotReached` if even
    ``options.clusters`` stays below its minimum.
    """
    from . import pixels, quantize  # numpy and scipy only when saving

    if im.width == 0 or im.height == 0:
        raise ValueError("cannot save an empty image as KMC")
    array, channels = pixels.to_array(im)
    if options.dither and channels not in (layout.GRAY, layout.RGB):
        raise ValueError("dither is supported for images without alpha (L, RGB and P)")

    hist = quantize.histogram(array)  # shared by every k the quality search tries

    def run(k: int) -> Quantized:
        return quantize.quantize(
            array,
            k,
            hist=hist,
            seed=options.seed,
            max_iter=options.max_iter,
            tol=options.tol,
            colorspace=options.colorspace,
            dither=options.dither,
        )

    if options.quality is None:
        return run(options.clusters), channels
    low, high = options.quality
    result = quantize.smallest_reaching(run, array, high, options.clusters)
    achieved = quantize.psnr(array, result)
    if achieved < low:
        raise QualityNotReached(achieved, low, result.k)
    return result, channels


def encode(im: Image.Image, options: SaveOptions) -> bytes:
    """The complete ``.kmc`` file for ``im``."""
    result, channels = quantize_image(im, options)
    result, method, depth, stream = index_coding(result, options)
    version = layout.version_for(method)
    header = layout.Header(
        im.width, im.height, channels, result.k, depth, compression=method, version=version
    )
    return layout.build(header, result.palette.tobytes(), stream, list(options.chunks))


def index_coding(result: Quantized, options: SaveOptions) -> tuple[Quantized, int, int, bytes]:
    """The smallest index stream that ``options`` allow: (palette order, method, depth, stream).

    The result comes back reordered when ``optimize`` finds a palette order
    that codes smaller.
    """
    from . import codec, quantize

    pixels = result.indices.size
    if options.compression is not None:
        candidates = ((_COMPRESSIONS[options.compression], 0, False),)
    elif options.optimize:
        candidates = _OPTIMIZE_CANDIDATES
        if pixels > _CONTEXT_MAX_PIXELS:
            candidates = tuple(c for c in candidates if c[0] != _CONTEXT)
    else:
        candidates = _DEFAULT_CANDIDATES if result.k > 16 else _FEW_COLOURS_CANDIDATES
        if pixels > _LARGE:  # whole bytes: two xz streams decode in parallel, no unpacking
            candidates = _DEFAULT_CANDIDATES[:1]
    fast = pixels > _LARGE and not options.optimize
    default = options.compression is None and not options.optimize
    split = default and result.k > 16 and pixels <= _LARGE
    strips = _DEFAULT_XZ_STRIPS if split else 1
    orderings = [result]
    if (options.optimize or split) and result.k > 2:
        reordered = quantize.reorder(result, quantize.cooccurrence_order(result))
        orderings = [*orderings, reordered] if options.optimize else [reordered]
    best = None
    for candidate in orderings:
        method, depth, stream = codec.smallest(
            candidate.indices, candidate.k, candidates, fast, strips
        )
        if best is None or len(stream) < len(best[3]):
            best = (candidate, method, depth, stream)
    return best
