"""Hypothesis strategies for small Pillow images of every supported mode.

Every pixel is drawn by hypothesis itself (``hypothesis.extra.numpy``), so a
failing example shrinks to the fewest, simplest pixels that still fail.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image


def examples(n: int) -> int:
    """``n`` examples for a costly property in CI; as many as the profile asks on a long run.

    An explicit ``max_examples`` overrides the profile, so without this the
    ``fuzz`` profile (``HYPOTHESIS_PROFILE=fuzz``) would not reach these tests.
    """
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        return max(n, settings().max_examples)
    return n


CHANNELS = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 3, "PA": 4}
sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@st.composite
def arrays(draw, channels: int, max_colours: int | None = None):
    """A (h, w, channels) uint8 array, optionally drawn from few distinct colours."""
    w, h = draw(sizes)
    if not max_colours:
        return draw(hnp.arrays(np.uint8, (h, w, channels)))
    n = draw(st.integers(1, max_colours))
    colours = draw(hnp.arrays(np.uint8, (n, channels)))
    return colours[draw(hnp.arrays(np.uint8, (h, w), elements=st.integers(0, n - 1)))]


@st.composite
def images(draw, modes=tuple(CHANNELS), max_colours: int | None = None):
    """A Pillow image of one of ``modes``."""
    mode = draw(st.sampled_from(modes))
    if mode == "1":
        a = draw(arrays(1, max_colours))[:, :, 0] > 127
        return Image.fromarray(a)
    if mode in ("P", "PA"):
        n = draw(st.integers(1, min(max_colours or 256, 256)))
        w, h = draw(sizes)
        indices = draw(hnp.arrays(np.uint8, (h, w), elements=st.integers(0, n - 1)))
        im = Image.fromarray(indices, "P")
        im.putpalette(draw(hnp.arrays(np.uint8, (3 * n,))).tobytes())
        if mode == "PA":
            im = im.convert("PA")
            opaque = draw(hnp.arrays(np.bool_, (h, w)))
            im.putalpha(Image.fromarray(opaque.astype(np.uint8) * 255))
        return im
    a = draw(arrays(CHANNELS[mode], max_colours))
    return Image.fromarray(a if CHANNELS[mode] > 1 else a[:, :, 0], mode)


def colours_of(im: Image.Image) -> np.ndarray:
    """The image's pixels in its storage colour model, transparent pixels zeroed."""
    from pil_kmc import pixels

    return pixels.to_array(im)[0]
