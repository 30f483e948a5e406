"""Hypothesis strategies for small Pillow images of every supported mode."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from PIL import Image

CHANNELS = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 3, "PA": 4}
sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@st.composite
def arrays(draw, channels: int, max_colours: int | None = None):
    """A (h, w, channels) uint8 array, optionally drawn from few distinct colours."""
    w, h = draw(sizes)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, max_colours)) if max_colours else None
    if n is None:
        return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    colours = rng.integers(0, 256, (n, channels), dtype=np.uint8)
    return colours[rng.integers(0, n, (h, w))]


@st.composite
def images(draw, modes=tuple(CHANNELS), max_colours: int | None = None):
    """A Pillow image of one of ``modes``."""
    mode = draw(st.sampled_from(modes))
    if mode == "1":
        a = draw(arrays(1, max_colours))[:, :, 0] > 127
        return Image.fromarray(a)
    if mode in ("P", "PA"):
        n = draw(st.integers(1, min(max_colours or 256, 256)))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        w, h = draw(sizes)
        im = Image.fromarray(rng.integers(0, n, (h, w), dtype=np.uint8), "P")
        im.putpalette(rng.integers(0, 256, 3 * n, dtype=np.uint8).tobytes())
        if mode == "PA":
            im = im.convert("PA")
            im.putalpha(Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255))
        return im
    a = draw(arrays(CHANNELS[mode], max_colours))
    return Image.fromarray(a if CHANNELS[mode] > 1 else a[:, :, 0], mode)


def colours_of(im: Image.Image) -> np.ndarray:
    """The image's pixels in its storage colour model, transparent pixels zeroed."""
    from pil_kmc import pixels

    return pixels.to_array(im)[0]
