"""Mode rules: which Pillow modes are stored how, and how they open again.

=========================  ===========  =======================
Pillow mode when saving    colour model  Pillow mode when opened
=========================  ===========  =======================
``1``, ``L``               G (gray)      ``L``
``LA``, ``La``             GA            ``LA``
``RGB``, ``RGBX``,         RGB           ``P`` (RGB palette)
``CMYK``, ``YCbCr``,
``LAB``, ``HSV``, ``P``
``RGBA``, ``RGBa``, ``PA``,  RGBA          ``P`` (RGBA palette)
``P`` with transparency
=========================  ===========  =======================

``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` are converted to RGB by Pillow's
own ``convert("RGB")``. Modes with more than 8 bits per channel (``I``,
``I;16`` and its variants, ``F``) are refused: reducing them to 8 bits is a
choice the caller should make explicitly.

In models with alpha, every fully transparent pixel has its colour set to
zero first, so all of them share one palette entry.
"""

from __future__ import annotations

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

SUPPORTED_MODES = tuple(_MODES) + ("P",)


def colour_model(im: Image.Image) -> tuple[str, int]:
    """The Pillow mode to convert ``im`` to, and the colour model it is stored as.

    Raises :class:`ValueError` naming the mode if it cannot be stored.
    """
    if im.mode == "P":
        if "transparency" in im.info or (im.palette and im.palette.mode == "RGBA"):
            return "RGBA", layout.RGBA
        return "RGB", layout.RGB
    try:
        return _MODES[im.mode]
    except KeyError:
        raise ValueError(
            f"cannot save mode {im.mode} as KMC; supported modes: {', '.join(SUPPORTED_MODES)}"
            " (convert high bit-depth images to L or RGB first)"
        ) from None


def to_array(im: Image.Image) -> tuple[np.ndarray, int]:
    """A (h, w, C) uint8 array of ``im`` in its storage colour model, and C."""
    mode, channels = colour_model(im)
    if im.mode != mode:
        im = im.convert(mode)
    pixels = np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, channels)
    if channels in (layout.GRAY_ALPHA, layout.RGBA):
        transparent = pixels[:, :, -1] == 0
        if transparent.any():
            pixels = pixels.copy()
            pixels[transparent] = 0
    return pixels, channels
