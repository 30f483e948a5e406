"""Mode rules: which Pillow modes are stored how, and how they open again.

=============================  ============  ==============================
Pillow mode when saving        colour model  Pillow mode when opened
=============================  ============  ==============================
``1``, ``L``, ``I;16…``        G (gray)      ``L``
``LA``, ``La``                 GA            ``LA``
``RGB``, ``RGBX``, ``CMYK``,   RGB           ``P`` (RGB palette)
``YCbCr``, ``LAB``, ``HSV``,
``P``
``RGBA``, ``RGBa``, ``PA``,    RGBA          ``P`` (RGB palette and
``P`` with transparency                      ``info["transparency"]``)
=============================  ============  ==============================

``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` are converted to RGB by Pillow's
own ``convert("RGB")``. ``I;16`` and its variants (16-bit gray, as 16-bit
PNG and TIFF files open) are scaled to 8 bits, ``round(v * 255 / 65535)``.
``I`` and ``F`` have no fixed range, so they are refused with
``OSError``; the message says how to scale them. ``transparency`` (the save
parameter, else ``info["transparency"]``) is honoured as the PNG plugin
does: an index or alpha bytes for ``P``, a gray level for ``1``, ``L`` and
``I;16``, an ``(r, g, b)`` colour for ``RGB``; the image is then stored with
alpha (GA or RGBA).

In models with alpha, every fully transparent pixel has its colour set to
zero first, so all of them share one palette entry. A ``P`` image also
brings its own palette (:func:`own_palette`), which the quantizer keeps
index for index when it can.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from . import layout

_MODES = {
    "1": ("L", layout.GRAY),
    "L": ("L", layout.GRAY),
    "LA": ("LA", layout.GRAY_ALPHA),
    "La": ("LA", layout.GRAY_ALPHA),
    "RGB": ("RGB", layout.RGB),
    "RGBX": ("RGB", layout.RGB),
    "CMYK": ("RGB", layout.RGB),
    "YCbCr": ("RGB", layout.RGB),
    "LAB": ("RGB", layout.RGB),
    "HSV": ("RGB", layout.RGB),
    "RGBA": ("RGBA", layout.RGBA),
    "RGBa": ("RGBA", layout.RGBA),
    "PA": ("RGBA", layout.RGBA),
}
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
SUPPORTED_MODES = (*_MODES, "P", *SIXTEEN_BIT)
# Tells to_array to take the transparency from the image's info.
FROM_INFO: Any = object()
_SCALE_ADVICE = (
    "; it has no fixed range, so scale it to 8 bits first, e.g. low, high = "
    "im.getextrema(); im = im.point(lambda v: (v - low) * (255 / (high - low))).convert('L')"
)


def _unwritable(mode: str) -> OSError:
    advice = _SCALE_ADVICE if mode in ("I", "F") else f" (modes: {', '.join(SUPPORTED_MODES)})"
    return OSError(f"cannot write mode {mode} as KMC{advice}")


def _check_transparency(mode: str, transparency: Any, explicit: bool = False) -> Any:
    """``transparency`` if ``mode`` can use it, else None; ValueError for the wrong kind.

    A mode that has no use for it ignores one taken from ``info`` (probably
    stale, as the PNG plugin says) and refuses an ``explicit`` one with
    OSError, as the PNG plugin does.
    """
    if transparency is None:
        return None
    if mode == "P":
        if isinstance(transparency, (bytes, bytearray)):
            return bytes(transparency)
        if isinstance(transparency, int) and not isinstance(transparency, bool):
            return transparency
        raise ValueError("transparency for P must be an integer or bytes")
    if mode in ("1", "L", *SIXTEEN_BIT):
        if isinstance(transparency, int) and not isinstance(transparency, bool):
            return transparency
        raise ValueError(f"transparency for {mode} must be an integer")
    if mode == "RGB":
        if not isinstance(transparency, (list, tuple)) or len(transparency) != 3:
            raise ValueError("transparency for RGB must be an (r, g, b) tuple")
        return tuple(transparency)
    if explicit:
        raise OSError("cannot use transparency for this mode")
    return None  # modes with alpha have no use for it, as in the PNG plugin


def colour_model(im: Image.Image, transparency: Any = FROM_INFO) -> tuple[str, int]:
    """The Pillow mode to convert ``im`` to, and the colour model it is stored as.

    Raises :class:`OSError` naming the mode if it cannot be stored, and
    :class:`ValueError` for a ``transparency`` of the wrong kind.
    """
    if transparency is FROM_INFO:
        transparency = im.info.get("transparency")
    transparency = _check_transparency(im.mode, transparency)
    if im.mode == "P":
        if transparency is not None or (im.palette and im.palette.mode == "RGBA"):
            return "RGBA", layout.RGBA
        return "RGB", layout.RGB
    if im.mode in ("1", "L", *SIXTEEN_BIT):
        return ("LA", layout.GRAY_ALPHA) if transparency is not None else ("L", layout.GRAY)
    if im.mode == "RGB" and transparency is not None:
        return "RGBA", layout.RGBA
    try:
        return _MODES[im.mode]
    except KeyError:
        raise _unwritable(im.mode) from None


def own_palette(im: Image.Image, transparency: Any = FROM_INFO) -> np.ndarray:
    """The palette of a ``P`` image as (n, C) uint8, C = 3 or 4 as :func:`colour_model` says.

    n is the palette's length, or more if a pixel's index is past its end;
    such entries are opaque black, as Pillow shows them. Alpha comes from an
    RGBA palette or from ``transparency``.
    """
    if transparency is FROM_INFO:
        transparency = im.info.get("transparency")
    transparency = _check_transparency("P", transparency)
    rgba_palette = im.palette is not None and im.palette.mode == "RGBA"
    entries = np.asarray(im.getpalette("RGBA" if rgba_palette else "RGB") or [], np.uint8)
    entries = entries.reshape(-1, 4 if rgba_palette else 3)[:256]
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 3] = 255
    palette[: len(entries), : entries.shape[1]] = entries
    if isinstance(transparency, bytes):
        alpha = np.frombuffer(transparency[:256], np.uint8)
        palette[: len(alpha), 3] = alpha
    elif isinstance(transparency, int) and 0 <= transparency < 256:
        palette[transparency, 3] = 0
    _, channels = colour_model(im, transparency)
    highest = int(np.asarray(im, dtype=np.uint8).max(initial=0))
    return palette[: max(len(entries), highest + 1), :channels]


def to_array(
    im: Image.Image, transparency: Any = FROM_INFO, explicit: bool = False
) -> tuple[np.ndarray, int]:
    """A (h, w, C) uint8 array of ``im`` in its storage colour model, and C.

    ``explicit`` says that ``transparency`` is a save parameter rather than
    the image's ``info`` (see :func:`_check_transparency`).
    """
    if transparency is FROM_INFO:
        transparency = im.info.get("transparency")
    mode, channels = colour_model(im, transparency)
    transparency = _check_transparency(im.mode, transparency, explicit)
    if im.mode == "P":
        pixels = own_palette(im, transparency)[np.asarray(im, dtype=np.uint8)]
    elif im.mode in SIXTEEN_BIT or (im.mode in ("1", "L") and transparency is not None):
        values = np.asarray(im).astype(np.uint32)
        if im.mode == "1":
            values = values * 255
        if im.mode in SIXTEEN_BIT:  # round(v * 255 / 65535), in integers
            gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        else:
            gray = values.astype(np.uint8)
        planes = [gray]
        if transparency is not None:
            planes.append(np.where(values == transparency, 0, 255).astype(np.uint8))
        pixels = np.stack(planes, axis=2)
    elif im.mode == "RGB" and transparency is not None:
        rgb = np.asarray(im, dtype=np.uint8)
        alpha = np.where((rgb == np.asarray(transparency)).all(axis=2), 0, 255)
        pixels = np.dstack([rgb, alpha.astype(np.uint8)])
    else:
        if im.mode != mode:
            im = im.convert(mode)
        pixels = np.asarray(im, dtype=np.uint8)
    pixels = pixels.reshape(im.height, im.width, channels)
    if channels in (layout.GRAY_ALPHA, layout.RGBA):
        transparent = pixels[:, :, -1] == 0
        if transparent.any():
            pixels = pixels.copy()
            pixels[transparent] = 0
    return pixels, channels
