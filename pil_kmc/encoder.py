"""Save options and the whole encode: Pillow image -> ``.kmc`` bytes.

Every option is validated by :func:`save_options` before any pixel work, so
a bad argument raises :class:`ValueError` before a byte is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from . import layout

DEFAULT_CLUSTERS = 256

_COMPRESSIONS = {name: method for method, name in layout.COMPRESSION_NAMES.items()}
DEFAULT_COMPRESSION = "xz"
# With optimize=True, each (method, extreme) is tried and the smallest stream kept.
_OPTIMIZE_CANDIDATES = ((layout.XZ, False), (layout.XZ, True), (layout.BZIP2, False))


@dataclass(frozen=True)
class SaveOptions:
    """Validated save parameters; see the README's table for their meaning."""

    clusters: int = DEFAULT_CLUSTERS
    seed: int = 0
    max_iter: int = 50
    tol: float = 0.05
    compression: str = DEFAULT_COMPRESSION
    optimize: bool = False


_OPTION_NAMES = tuple(SaveOptions.__dataclass_fields__)


def _integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


def save_options(params: Mapping[str, Any]) -> SaveOptions:
    """Validate Pillow ``encoderinfo`` into :class:`SaveOptions`.

    Unknown keys are ignored, as Pillow's plugins ignore other formats'
    options, except near-misses of ours (``cluster=16``), which are surely
    typos and raise :class:`ValueError`.
    """
    for key in params:
        if key not in _OPTION_NAMES:
            close = difflib.get_close_matches(str(key), _OPTION_NAMES, n=1, cutoff=0.75)
            if close:
                raise ValueError(f"unknown KMC save option {key!r}; did you mean {close[0]!r}?")
    options = SaveOptions()
    clusters = _integer("clusters", params.get("clusters", options.clusters), 1, 256)
    seed = _integer("seed", params.get("seed", options.seed), 0, 2**64 - 1)
    max_iter = _integer("max_iter", params.get("max_iter", options.max_iter), 1, 10_000)
    tol = params.get("tol", options.tol)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < 256:
        raise ValueError(f"tol must be a number from 0 to 255, not {tol!r}")
    compression = params.get("compression", options.compression)
    if compression not in _COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {', '.join(map(repr, _COMPRESSIONS))}, not {compression!r}"
        )
    optimize = params.get("optimize", options.optimize)
    if not isinstance(optimize, bool):
        raise ValueError(f"optimize must be True or False, not {optimize!r}")
    if optimize and "compression" in params:
        raise ValueError("optimize=True chooses the compression itself; give one or the other")
    return SaveOptions(clusters, seed, max_iter, float(tol), compression, optimize)


def quantize_image(im: Image.Image, options: SaveOptions):
    """Palette and index plane of ``im`` (a :class:`~pil_kmc.quantize.Quantized`), and C."""
    from . import pixels, quantize  # numpy and scipy only when saving

    if im.width == 0 or im.height == 0:
        raise ValueError("cannot save an empty image as KMC")
    array, channels = pixels.to_array(im)
    result = quantize.quantize(
        array, options.clusters, seed=options.seed, max_iter=options.max_iter, tol=options.tol
    )
    return result, channels


def encode(im: Image.Image, options: SaveOptions) -> bytes:
    """The complete ``.kmc`` file for ``im``."""
    from . import codec

    result, channels = quantize_image(im, options)
    header = layout.Header(
        width=im.width,
        height=im.height,
        channels=channels,
        k=result.k,
        bit_depth=layout.bit_depth_for(result.k),
        compression=_COMPRESSIONS[options.compression],
    )
    if options.optimize:
        method, stream = codec.smallest(result.indices, header, _OPTIMIZE_CANDIDATES)
        header = dataclasses.replace(header, compression=method)
    else:
        stream = codec.encode(result.indices, header)
    return layout.build(header, result.palette.tobytes(), stream)
