"""Save options and the whole encode: Pillow image -> ``.kmc`` bytes.

Every option is validated by :func:`save_options` before any pixel work, so
a bad argument raises :class:`ValueError` before a byte is written.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from . import layout, metadata

if TYPE_CHECKING:
    from .quantize import Quantized

DEFAULT_CLUSTERS = 256
COLORSPACES = ("rgb", "oklab")
_COMPRESSIONS = {name: method for method, name in layout.COMPRESSION_NAMES.items()}
_METADATA_KEYS = ("icc_profile", "exif", "xmp", "dpi", "text")
# Save options of Pillow's other plugins (as of Pillow 13), which a save ignores and never takes
# for a misspelling of ours, however close (AVIF's speed= and our seed=).
# fmt: off
_OTHER_FORMATS = frozenset(
    (
        "advanced", "allow_mixed", "alpha_premultiplied", "alpha_quality", "append",
        "append_images", "autotiling", "background", "bbox", "big_tiff", "bitmap_format", "bits",
        "blend", "blp_version", "bpc", "bpp", "cinema_mode", "codeblock_size", "codec", "comment",
        "compress_level", "compress_type", "default_image", "dictionary", "disposal", "duration",
        "exact", "extra", "frames", "hotspot", "id_section", "include_color_table", "interlace",
        "irreversible", "keep_rgb", "kmax", "kmin", "loop", "lossless", "max_threads", "mct",
        "method", "minimize_size", "no_jp2", "num_resolutions", "offset", "orientation",
        "photoshop", "pixel_format", "plt", "pnginfo", "precinct_size", "progression",
        "progressive", "qtables", "quality_layers", "quality_mode", "range", "resolution",
        "restart_marker_blocks", "restart_marker_rows", "save_all", "signed", "smooth", "speed",
        "streamtype", "strip_size", "subsampling", "tile_cols", "tile_offset", "tile_rows",
        "tile_size", "version",
    )
)
# fmt: on


def quality_to_mse(quality: float) -> float:
    """libimagequant's quality-to-error curve, as a mean squared error per channel in 0-255 levels.

    The curve is libimagequant's ``quality_to_mse`` (src/quant.rs; in the C
    versions lib/libimagequant.c), "fudged to be roughly similar to quality
    of libjpeg", scaled as its ``mse_to_standard_mse`` scales errors for
    display (x 65536 / 6; its internal weight cancels out). 0 allows any
    error, 100 none.
    """
    if quality <= 0:
        return math.inf
    if quality >= 100:
        return 0.0
    fudge = max(0.0, 0.016 / (0.001 + quality) - 0.001)
    return (fudge + 2.5 / (210.0 + quality) ** 1.2 * (100.1 - quality) / 100.0) * 65536.0 / 6.0


# libimagequant measures its error in a weighted, gamma-adjusted space in
# which noisy areas count less, so on plain sRGB its results sit above its
# own curve. Allowing this factor more makes k-means choose about as many
# colours as pngquant does (the calibration is in the README's command-line
# section).
PNGQUANT_SCALE = 1.5


def allowed_mse(quality: float) -> float:
    """The mean squared error per channel (sRGB, 0-255) that ``quality`` allows here."""
    return PNGQUANT_SCALE * quality_to_mse(quality)


def mse_to_quality(mse: float) -> int:
    """The highest integer quality whose :func:`allowed_mse` admits ``mse``, as libimagequant."""
    slack = PNGQUANT_SCALE * 1e-6 * 65536.0 / 6.0  # libimagequant's epsilon, on the same scale
    return next((q for q in range(100, 0, -1) if mse <= allowed_mse(q) + slack), 0)


def psnr_to_mse(psnr: float) -> float:
    """The mean squared error per channel at which 8-bit images reach ``psnr`` dB."""
    return 255.0**2 / 10 ** (psnr / 10)


class QualityNotReached(ValueError):
    """Even the largest allowed palette misses the minimum ``quality`` (or ``psnr``)."""

    def __init__(self, mse: float, options: SaveOptions, clusters: int) -> None:
        psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
        if options.psnr is not None:
            got, wanted = f"{psnr:.2f} dB PSNR", f"{options.psnr[0]:g} dB"
        else:
            got = f"quality {mse_to_quality(mse)} (MSE {mse:.2f})"
            wanted = f"{options.quality[0]:g}"
        super().__init__(
            f"quality not reached: {clusters} colours give {got}, below the minimum of {wanted}"
        )
        self.mse, self.psnr, self.quality = mse, psnr, mse_to_quality(mse)


@dataclass(frozen=True)
class SaveOptions:
    """Validated save parameters; see the README's table for their meaning."""

    clusters: int = DEFAULT_CLUSTERS
    quality: tuple[float, float] | None = None  # (min, max), pngquant's 0-100
    psnr: tuple[float, float] | None = None  # (min, max) in dB
    seed: int = 0
    max_iter: int | None = None  # None: pil_kmc.kmeans.DEFAULT_MAX_ITER
    tol: float | None = None  # None: pil_kmc.kmeans.DEFAULT_TOL
    colorspace: str = "rgb"
    dither: float = 0.0
    compression: str | None = None  # None: the smallest of the default candidates
    optimize: bool = False
    chunks: tuple[tuple[bytes, bytes], ...] = ()
    # The colour space of the image's own ICC profile, when chunks[0] is that
    # profile: the encoder leaves it out if the stored pixels are of another.
    own_profile_space: bytes | None = None
    # As the PNG plugin takes it: the save parameter, else info["transparency"];
    # None also falls back on the image's own info when the image is quantized,
    # unless the save parameter itself was None (no transparency).
    transparency: int | bytes | tuple[int, ...] | None = None
    # transparency= was passed: None then means none, and a mode with alpha
    # refuses any other value, as the PNG plugin does.
    transparency_given: bool = False
    # A given palette, (n, C) uint8 (pil_kmc.palettes.as_palette): no clustering.
    palette: Any = field(default=None, compare=False)


_OPTION_NAMES = (
    *(
        f
        for f in SaveOptions.__dataclass_fields__
        if f not in ("chunks", "own_profile_space", "transparency", "transparency_given")
    ),
    "colors",  # Pillow's quantize() name for clusters
)


def _integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    """A yes or no, read as Pillow's PNG, JPEG and GIF plugins read ``optimize``: None,
    0 and 1 as well as False and True."""
    if value is None or isinstance(value, bool) or getattr(value, "dtype", None) == "bool":
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be True or False, not {value!r}")


def _dither(value: Any) -> float:
    """Error diffusion strength 0 to 1: True, False, a number (pngquant's ``--floyd``),
    or Pillow's ``Image.Dither.FLOYDSTEINBERG`` / ``Image.Dither.NONE``."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, Image.Dither):
        if value in (Image.Dither.NONE, Image.Dither.FLOYDSTEINBERG):
            return float(value == Image.Dither.FLOYDSTEINBERG)
    elif _number(value) and 0 <= value <= 1:
        return float(value)
    raise ValueError(
        "dither must be True, False, a strength from 0 to 1, Image.Dither.FLOYDSTEINBERG "
        f"or Image.Dither.NONE, not {value!r}"
    )


def _transparency(value: Any) -> int | bytes | tuple[int, ...] | None:
    """As the PNG plugin takes it: an index or gray level, alpha bytes, or an (r, g, b) colour."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    ):
        return tuple(int(v) for v in value)
    raise ValueError(f"transparency must be an integer, bytes or (r, g, b), not {value!r}")


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _pair(name: str, value: Any, single, unit: str, top: float) -> tuple[float, float] | None:
    """``(min, max)`` from a pair, or from one number through ``single(n)``."""
    if value is None:
        return None
    pair = single(value) if _number(value) else value
    try:
        low, high = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (min, max) {unit}, not {value!r}") from None
    if not (_number(low) and _number(high) and 0 <= low <= high <= top):
        raise ValueError(
            f"{name} must be (min, max) with 0 <= min <= max <= {top:g}, not {value!r}"
        )
    return float(low), float(high)


def _quality(value: Any) -> tuple[float, float] | None:
    """pngquant's ``--quality``: ``(min, max)`` from 0 to 100; one number n means (0.9 n, n)."""
    return _pair("quality", value, lambda n: (n * 9 // 10, n), "from 0 to 100", 100)


def _psnr(value: Any) -> tuple[float, float] | None:
    """``(min, max)`` PSNR in dB; one number n means (0, n)."""
    return _pair("psnr", value, lambda n: (0, n), "PSNR in dB", 100)


def save_options(params: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> SaveOptions:
    """Validate Pillow ``encoderinfo`` (and metadata from ``info``) into :class:`SaveOptions`.

    Unknown keys are ignored, as Pillow's plugins ignore other formats'
    options, except near-misses of ours (``cluster=16``) that are no other
    plugin's option, which are surely typos and raise :class:`ValueError`.
    ``colors`` is another name for ``clusters``, as in ``Image.quantize``.
    """
    known = _OPTION_NAMES + _METADATA_KEYS + ("transparency",)
    for key in params:
        if key not in known and key not in _OTHER_FORMATS:
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
    quality, psnr = _quality(params.get("quality")), _psnr(params.get("psnr"))
    if quality is not None and psnr is not None:
        raise ValueError("quality and psnr are two scales for one target; give one or the other")
    clusters = params.get("clusters", d.clusters)
    if "colors" in params:
        if "clusters" in params and params["clusters"] != params["colors"]:
            raise ValueError("colors is another name for clusters; give one or the other")
        clusters = params["colors"]
    transparency_given = "transparency" in params
    if transparency_given:
        transparency = params["transparency"]
    else:
        transparency = (info or {}).get("transparency")
    if optimize and "compression" in params:
        raise ValueError("optimize=True chooses the compression itself; give one or the other")
    return SaveOptions(
        clusters=_integer("clusters", clusters, 1, 256),
        quality=quality,
        psnr=psnr,
        seed=_integer("seed", params.get("seed", d.seed), 0, 2**64 - 1),
        max_iter=None
        if params.get("max_iter") is None
        else _integer("max_iter", params["max_iter"], 1, 10_000),
        tol=None if tol is None else float(tol),
        colorspace=colorspace,
        dither=_dither(params.get("dither", d.dither)),
        compression=compression,
        optimize=optimize,
        chunks=tuple(metadata.to_chunks(params, info or {})),
        own_profile_space=None
        if "icc_profile" in params
        else metadata.profile_space((info or {}).get("icc_profile")),
        transparency=_transparency(transparency),
        transparency_given=transparency_given,
        palette=_given_palette(params.get("palette")),
    )


def _given_palette(value: Any) -> Any:
    if value is None:
        return None
    from .palettes import as_palette  # numpy only when a palette is given

    return as_palette(value)


def quantize_image(im: Image.Image, options: SaveOptions) -> tuple[Quantized, int]:
    """Palette and index plane of ``im`` (a :class:`~pil_kmc.quantize.Quantized`), and C.

    With ``options.quality`` or ``options.psnr``, the smallest k (at most
    ``options.clusters``) whose error reaches the maximum;
    :class:`QualityNotReached` if even ``options.clusters`` misses the minimum.
    """
    import numpy as np

    from . import pixels, quantize  # numpy and scipy only when saving

    if im.width == 0 or im.height == 0:
        raise ValueError("cannot save an empty image as KMC")
    # Options made without the image's info still honour its transparency.
    transparency = options.transparency
    if transparency is None and not options.transparency_given:
        transparency = pixels.FROM_INFO
    given = options.palette is not None
    if given and (options.quality is not None or options.psnr is not None):
        raise ValueError("quality and psnr choose the number of colours; palette= gives them")
    array, channels = pixels.to_array(im, transparency, explicit=options.transparency_given)
    if given:  # remap to the given palette: no k-means, no quality search
        from .palettes import remap

        return remap(
            array, channels, options.palette, dither=options.dither, colorspace=options.colorspace
        )
    own = None  # a palette image's own palette and indices, kept exactly when they fit
    if im.mode == "P":
        palette = pixels.own_palette(im, transparency)
        own = quantize.Quantized(palette, np.asarray(im, dtype=np.uint8))

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
            own=own,
        )

    if options.quality is not None:
        worst, goal = (allowed_mse(q) for q in options.quality)
    elif options.psnr is not None:
        worst, goal = (psnr_to_mse(p) for p in options.psnr)
    else:
        return run(options.clusters), channels
    result = quantize.smallest_reaching(run, array, goal, options.clusters)
    achieved = quantize.mse(array, result)
    if achieved > worst:
        raise QualityNotReached(achieved, options, result.k)
    return result, channels


def encode(im: Image.Image, options: SaveOptions) -> bytes:
    """The complete ``.kmc`` file for ``im``."""
    from . import coding

    result, channels = quantize_image(im, options)
    coded = coding.code(
        result,
        optimize=options.optimize,
        compression=None if options.compression is None else _COMPRESSIONS[options.compression],
        given=options.palette is not None,
    )
    header = layout.Header(
        im.width,
        im.height,
        channels,
        coded.k,
        coded.bit_depth,
        compression=coded.method,
    )
    chunks = list(options.chunks)
    stored_space = b"GRAY" if channels <= layout.GRAY_ALPHA else b"RGB "
    mismatched = options.own_profile_space not in (None, stored_space)
    if mismatched and chunks and chunks[0][0] == metadata.ICCP:
        chunks = chunks[1:]  # the image's own profile, of other pixels than these
    return layout.build(header, coded.palette.tobytes(), coded.stream, chunks)
