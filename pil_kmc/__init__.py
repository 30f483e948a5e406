"""pil_kmc: k-means colour-quantized images as a Pillow plugin (``.kmc``).

Importing the package registers the ``KMC`` format (``.kmc``) and the
original project's ``.npz`` layout with Pillow::

    import pil_kmc
    from PIL import Image

    Image.open("photo.png").save("photo.kmc", clusters=16)
    Image.open("photo.kmc").convert("RGB").save("back.png")
"""

from __future__ import annotations

from typing import Any

from . import plugin  # noqa: F401  (registers the format with Pillow)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # pil_kmc.shared_palette needs numpy: import it on first use, not with the package.
    if name == "shared_palette":
        from .palettes import shared_palette

        return shared_palette
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
