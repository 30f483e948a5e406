"""Loading is linear in the declared pixels, whatever the shape (spec section 10).

A valid all-zero plane of 2 megapixels, 1 x N, N x 1 and square, by every
method, loads in a fresh process within the budget of bench/bounds.py: time
at most 1 s per 10 MP plus 0.1 s (here with three times the slack, as CI
machines are shared; `python3 bench/bounds.py` measures the exact budget at
10 MP), and memory beyond the decoded image at most 3 bytes per pixel plus
64 MB. A per-row or per-step cost would make the thin shapes take seconds.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pil_kmc import layout

_spec = importlib.util.spec_from_file_location(
    "bounds", Path(__file__).resolve().parent.parent / "bench" / "bounds.py"
)
bounds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bounds)

PIXELS = 2_000_000
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="measures memory through /proc (Linux only)"
)


@pytest.mark.parametrize("shape", list(bounds.SHAPES))
@pytest.mark.parametrize("method", list(layout.COMPRESSION_NAMES), ids=layout.COMPRESSION_NAMES.get)
def test_loading_is_bounded_by_the_declared_pixels(method, shape):
    w, h = bounds.SHAPES[shape](PIXELS)
    result = bounds.measure(method, w, h)
    seconds, memory = bounds.budget(w * h)
    assert result["seconds"] <= 3 * seconds
    assert result["extra"] <= memory


@pytest.mark.parametrize("method", list(layout.COMPRESSION_NAMES), ids=layout.COMPRESSION_NAMES.get)
def test_a_one_pixel_wide_image_costs_no_more_than_3_bytes_a_pixel_beyond_itself(method):
    # Without the 64 MB allowance, which hides it below tens of megapixels:
    # Pillow keeps 8 bytes a row for every image, so a second image over the
    # decoded plane cost 8 bytes a pixel at 1 x N.
    pixels = 4_000_000
    result = bounds.measure(method, 1, pixels)
    assert result["extra"] <= 3 * pixels + (16 << 20)
