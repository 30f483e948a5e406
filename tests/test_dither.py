"""Error diffusion in compiled code: the same indices as the plain-Python reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pil_kmc import exact, quantize

from .reference import dither as reference
from .strategies import examples


@st.composite
def cases(draw):
    channels = draw(st.integers(1, 4))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 16))
    pixels = draw(hnp.arrays(np.uint8, (h, w, channels)))
    k = draw(st.integers(1, 20))
    palette = draw(hnp.arrays(np.uint8, (k, channels), unique=False))
    strength = draw(st.sampled_from([0, 1, 128, 200, 256]))
    return pixels, palette, strength


def compiled(pixels: np.ndarray, palette: np.ndarray, strength: int) -> np.ndarray:
    """The compiled error diffusion, ``strength`` in 256ths as the reference takes it."""
    return quantize.dithered(pixels, palette, strength / 256)


@settings(max_examples=examples(60))
@given(cases())
def test_compiled_dithering_agrees_with_the_reference(case):
    pixels, palette, strength = case
    h, w, channels = pixels.shape
    expected = reference.dither(
        [[tuple(p) for p in row] for row in pixels.tolist()],
        w,
        h,
        channels,
        palette.tolist(),
        strength,
    )
    assert compiled(pixels, palette, strength).tolist() == expected


def test_no_strength_is_the_nearest_colour():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    distances = ((pixels[:, :, None].astype(int) - palette[None, None].astype(int)) ** 2).sum(-1)
    assert np.array_equal(compiled(pixels, palette, 0), distances.argmin(-1))


def test_full_strength_keeps_the_mean_colour():
    rng = np.random.default_rng(1)
    pixels = rng.integers(60, 200, (120, 160, 3), dtype=np.uint8)
    palette = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8
    )
    mean = palette[compiled(pixels, palette, 256)].reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - pixels.reshape(-1, 3).mean(axis=0)).max() < 2


def test_transparent_pixels_take_the_transparent_entry_and_pass_no_error():
    pixels = np.zeros((4, 6, 4), np.uint8)
    pixels[:, :3] = (200, 30, 30, 255)
    palette = np.array([[0, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 255]], np.uint8)
    out = compiled(pixels, palette, 256)
    assert (out[:, 3:] == 0).all() and (out[:, :3] != 0).all()


@st.composite
def with_alpha(draw):
    """RGBA or GA pixels, some fully transparent, and a palette with both kinds of entry."""
    channels = draw(st.sampled_from([2, 4]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 16))
    pixels = draw(hnp.arrays(np.uint8, (h, w, channels)))
    pixels[..., -1] = np.where(draw(hnp.arrays(np.bool_, (h, w))), 0, pixels[..., -1])
    palette = draw(hnp.arrays(np.uint8, (draw(st.integers(2, 20)), channels)))
    palette[draw(st.integers(0, len(palette) - 1)), -1] = 0
    if (palette[:, -1] == 0).all():
        palette[0, -1] = 255
    return pixels, palette, draw(st.sampled_from([128, 256]))


@settings(max_examples=examples(60))
@given(with_alpha())
def test_dithering_never_changes_which_pixels_are_invisible(case):
    # The error carried in alpha would otherwise punch holes into
    # half-transparent areas, or fill faint ones: the pixels stored fully
    # transparent are those the plain nearest-entry lookup makes so.
    pixels, palette, strength = case
    flat = pixels.reshape(-1, pixels.shape[-1])
    nearest = exact.nearest(flat, palette)  # the plain lookup: compared as seen
    invisible = (palette[nearest, -1] == 0) | (flat[:, -1] == 0)
    out = compiled(pixels, palette, strength).reshape(-1)
    assert np.array_equal(palette[out, -1] == 0, invisible)
    clear = np.flatnonzero(palette[:, -1] == 0)[0]
    assert (out[flat[:, -1] == 0] == clear).all()


def test_with_alpha_a_faint_pixel_passes_on_only_the_error_that_shows():
    # A faint red pixel, then opaque gray: the red's error, nearly invisible,
    # must not turn its opaque neighbours reddish.
    pixels = np.array([[[255, 0, 0, 2]] + [[128, 128, 128, 255]] * 7], np.uint8)
    palette = np.array([[0, 0, 255, 2], [128, 128, 128, 255], [176, 128, 112, 255]], np.uint8)
    out = compiled(pixels, palette, 256).ravel()
    assert out.tolist() == [0] + [1] * 7
