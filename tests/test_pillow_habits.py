"""A .kmc behaves as a PNG-8 does in Pillow (issue 16, items 1, 2, 4 and 6).

Wherever Pillow's own PNG plugin defines the behaviour, the test asks it
rather than hard-coding the answer: the same image goes through PNG and
through KMC, and the two must agree.
"""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401  (registers the formats)
from pil_kmc import metadata, npz


def through(im: Image.Image, fmt: str, **params) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    buffer.seek(0)
    out = Image.open(buffer)
    out.load()
    return out


def rgba(im: Image.Image) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's advice about bytes transparency
        return np.asarray(im.convert("RGBA"))


def visible(im: Image.Image) -> np.ndarray:
    """RGBA with the colour of fully transparent pixels zeroed (only P keeps it)."""
    a = rgba(im).copy()
    a[a[..., 3] == 0] = 0
    return a


def palette_image(indices, palette, transparency=None) -> Image.Image:
    im = Image.fromarray(np.asarray(indices, np.uint8), "P")
    im.putpalette(bytes(np.asarray(palette, np.uint8).ravel()))
    if transparency is not None:
        im.info["transparency"] = transparency
    return im


def outcome(action):
    """What ``action()`` returns, or the type of exception it raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's advice about bytes transparency
            return action()
    except Exception as e:  # noqa: BLE001  (compared, not swallowed)
        return type(e)


INDICES = [[0, 1, 2, 3, 0], [1, 1, 2, 2, 3], [3, 3, 3, 0, 0]]
PALETTE = [(255, 255, 255), (0, 0, 0), (200, 10, 10), (1, 2, 3)]


def rgba_palette_image() -> Image.Image:
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = np.arange(16).reshape(4, 4) * 10
    a[..., 3] = 255
    a[0, 0, 3], a[1, 1, 3] = 0, 100
    im = Image.fromarray(a, "RGBA").quantize(16)
    assert im.palette.mode == "RGBA"
    return im


# ---------------------------------------------------------------- item 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: palette_image(INDICES, PALETTE, transparency=2),  # one transparent entry
        lambda: palette_image(INDICES, PALETTE, transparency=b"\xff\x80\x00\xff"),
        lambda: palette_image(INDICES, PALETTE, transparency=b"\xff\xff\xff\xff"),
        rgba_palette_image,  # P with an RGBA palette, as quantize() makes
        lambda: Image.fromarray(np.asarray(rgba_palette_image().convert("RGBA")), "RGBA"),
    ],
    ids=["index", "alpha-bytes", "all-opaque-bytes", "rgba-palette", "rgba-image"],
)
def test_alpha_opens_as_a_png8_with_trns_does(make):
    im = make()
    # PNG-8 of the very pixels the .kmc holds (an RGBA image has no PNG-8 of its own).
    kmc = through(im, "KMC")
    png = through(kmc if im.mode == "RGBA" else im, "PNG")
    assert kmc.mode == png.mode == "P"
    assert kmc.palette.mode == png.palette.mode == "RGB"
    assert kmc.info.keys() == png.info.keys() == {"transparency"}
    t, expected = kmc.info["transparency"], png.info["transparency"]
    assert type(t) is type(expected)
    if isinstance(t, int):
        assert t == expected
    else:
        assert t == expected
    assert np.array_equal(rgba(kmc), rgba(png))
    # A GIF save: the transparency carries, or fails, exactly as it does from PNG-8.
    gif = outcome(lambda: rgba(through(kmc, "GIF")))
    expected_gif = outcome(lambda: rgba(through(png, "GIF")))
    if isinstance(gif, np.ndarray):
        assert np.array_equal(gif, expected_gif)
    else:
        assert gif is expected_gif
    # Pickling (and with it every multiprocessing pool) keeps alpha.
    copy = pickle.loads(pickle.dumps(kmc))
    assert copy.info == kmc.info and np.array_equal(rgba(copy), rgba(png))


def test_one_transparent_entry_gives_an_int_and_a_gif_keeps_it():
    kmc = through(palette_image(INDICES, PALETTE, transparency=3), "KMC")
    assert kmc.info["transparency"] == 3
    gif = through(kmc, "GIF")
    assert gif.info["transparency"] == 3
    assert np.array_equal(rgba(gif)[..., 3], np.where(np.array(INDICES) == 3, 0, 255))


@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.sampled_from([0, 1, 128, 255])),
        min_size=1,
        max_size=40,
    ),
    st.data(),
)
def test_any_palette_with_alpha_matches_png8(entries, data):
    n = len(entries)
    w, h = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8))
    indices = data.draw(st.lists(st.integers(0, n - 1), min_size=w * h, max_size=w * h))
    palette = [(r, g, 255 - g) for r, g, _ in entries]
    alpha = bytes(a for _, _, a in entries)
    im = palette_image(np.reshape(indices, (h, w)), palette, transparency=alpha)
    kmc, png = through(im, "KMC"), through(im, "PNG")
    assert kmc.mode == png.mode and kmc.info.keys() == png.info.keys()
    assert type(kmc.info["transparency"]) is type(png.info["transparency"])
    assert np.array_equal(rgba(kmc), rgba(png))


# ---------------------------------------------------------------- item 2


def test_white_black_palette_keeps_its_order_and_indices():
    im = palette_image([[0, 1], [1, 1]], [(255, 255, 255), (0, 0, 0)])
    out = through(im, "KMC")
    assert out.getpalette() == [255, 255, 255, 0, 0, 0]
    assert out.getpixel((0, 0)) == 0
    assert np.array_equal(np.asarray(out), np.asarray(im))


@given(
    st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=64),
    st.data(),
)
def test_palette_images_are_stored_index_for_index(palette, data):
    # Duplicate entries, unused ones and k > 16 (where the default coder may
    # reorder a palette of its own making) included.
    n = len(palette)
    w, h = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    indices = data.draw(st.lists(st.integers(0, n - 1), min_size=w * h, max_size=w * h))
    im = palette_image(np.reshape(indices, (h, w)), palette)
    out = through(im, "KMC")
    assert np.array_equal(np.asarray(out), np.asarray(im))
    assert out.getpalette() == im.getpalette()  # unused entries included, as in PNG-8


def test_many_colours_in_a_scrambled_order_are_not_reordered_by_default():
    # 200 colours in an order nothing would choose: brightness order, and
    # the coder's co-occurrence order (k > 16), would both change it.
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (200, 3))
    indices = np.repeat(np.arange(200, dtype=np.uint8), 8).reshape(40, 40)
    im = palette_image(indices, palette)
    out = through(im, "KMC")
    assert np.array_equal(np.asarray(out), indices)
    assert out.getpalette() == im.getpalette()
    # optimize=True may reorder; the pixels stay exactly the same.
    optimized = through(im, "KMC", optimize=True)
    assert np.array_equal(np.asarray(optimized.convert("RGB")), np.asarray(im.convert("RGB")))


def test_a_palette_image_with_more_colours_than_clusters_is_clustered():
    im = palette_image([[0, 1, 2, 3]], PALETTE)
    out = through(im, "KMC", clusters=2)
    assert len(out.getpalette()) == 6


def test_a_palette_longer_than_clusters_keeps_what_it_can():
    palette = [(i, 255 - i, 7) for i in range(256)]
    # the highest index used is below clusters: indices stay, the palette is cut after it
    out = through(palette_image([[0, 9], [2, 9]], palette), "KMC", clusters=16)
    assert np.array_equal(np.asarray(out), [[0, 9], [2, 9]])
    assert out.getpalette() == [v for entry in palette[:10] for v in entry]
    # it is not: the used entries close up, in their own order
    out = through(palette_image([[0, 9], [200, 9]], palette), "KMC", clusters=4)
    assert np.array_equal(np.asarray(out), [[0, 1], [2, 1]])
    assert out.getpalette() == [0, 255, 7, 9, 246, 7, 200, 55, 7]


def test_gray_levels_keep_ascending_order(tmp_path):
    # An L image's "palette" is its gray levels, in ascending order: the
    # default save does not reorder it either (k > 16 here).
    rng = np.random.default_rng(2)
    levels = rng.permutation(256)[:60]
    im = Image.fromarray(levels[rng.integers(0, 60, (30, 30))].astype(np.uint8), "L")
    im.save(tmp_path / "g.kmc")
    npz.kmc_to_npz(tmp_path / "g.kmc", tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as arrays:
        palette = arrays["array2"].ravel()
    assert palette.tolist() == sorted(levels.tolist())


def test_an_exact_palette_reaches_any_quality_its_invisible_colours_included():
    # Entry 2 is transparent but red: a colour nobody sees is no error.
    im = palette_image(INDICES, PALETTE, transparency=2)
    out = through(im, "KMC", quality=(60, 100))
    assert np.array_equal(np.asarray(out), INDICES) and np.array_equal(rgba(out), rgba(im))


def test_options_made_without_info_still_honour_the_images_transparency():
    from pil_kmc import encoder

    im = palette_image(INDICES, PALETTE, transparency=2)
    result, channels = encoder.quantize_image(im, encoder.save_options({}))
    assert channels == 4 and result.user_order
    assert result.palette[:, 3].tolist() == [255, 255, 0, 255]


def test_the_npz_layout_keeps_the_palette_and_alpha_too():
    im = palette_image(INDICES, PALETTE, transparency=b"\xff\x80\x00\xff")
    out = through(im, "KMCNPZ")
    assert out.info["transparency"] == b"\xff\x80\x00\xff"
    assert np.array_equal(np.asarray(out), INDICES) and np.array_equal(rgba(out), rgba(im))


@pytest.mark.parametrize(
    "mode, value",
    [("P", 1), ("P", b"\x00\x80"), ("L", 255), ("RGB", (200, 10, 10)), ("1", 255)],
)
def test_transparency_on_save_is_honoured_as_png_does(mode, value):
    im = palette_image(INDICES, PALETTE)
    if mode != "P":
        im = im.convert(mode)
    kmc, png = through(im, "KMC", transparency=value), through(im, "PNG", transparency=value)
    assert "transparency" in png.info and (rgba(png)[..., 3] == 0).any()
    assert np.array_equal(visible(kmc), visible(png))
    if mode == "P":  # index for index, invisible colours included
        assert np.array_equal(rgba(kmc), rgba(png))


def test_transparency_none_on_save_drops_the_images_own_as_png_does():
    im = palette_image(INDICES, PALETTE)
    im.info["transparency"] = 1
    kmc, png = through(im, "KMC", transparency=None), through(im, "PNG", transparency=None)
    assert "transparency" not in kmc.info and "transparency" not in png.info
    assert np.array_equal(rgba(kmc), rgba(png))
    # a gray image: its own transparency makes it GA, None keeps it G
    gray = im.convert("L")
    gray.info["transparency"] = int(np.asarray(gray)[0, 0])
    assert through(gray, "KMC").mode == "LA"
    assert through(gray, "KMC", transparency=None).mode == "L"
    assert "transparency" not in through(gray, "PNG", transparency=None).info


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_passed_for_a_mode_that_cannot_use_it_is_refused_as_png_does(mode):
    im = Image.new(mode, (3, 2), "white")  # opaque
    for fmt in ("PNG", "KMC"):
        with pytest.raises(OSError, match="cannot use transparency for this mode"):
            im.save(io.BytesIO(), fmt, transparency=3)
    im.info["transparency"] = 3  # probably stale, and ignored by both
    assert (rgba(through(im, "KMC"))[..., 3] == 255).all()


@pytest.mark.parametrize(
    "mode, value", [("P", (1, 2, 3)), ("L", b"\x00"), ("RGB", 5), ("P", "red")]
)
def test_transparency_of_the_wrong_kind_is_a_value_error(mode, value):
    im = palette_image(INDICES, PALETTE).convert(mode)
    with pytest.raises(ValueError, match="transparency"):
        through(im, "KMC", transparency=value)


# ---------------------------------------------------------------- item 4

EXIF = Image.Exif()
EXIF[0x0112] = 6
METADATA = {
    "icc_profile": b"not really a profile",
    "exif": EXIF.tobytes(),
    "xmp": b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>',
    "dpi": (300, 300),
}
# What a save keeps from the image's info when the parameter is not given
# (the README's metadata table): as PNG, except that text is kept.
KEPT_BY_DEFAULT = {"icc_profile": True, "exif": False, "xmp": False, "dpi": False}


@pytest.mark.parametrize("key", sorted(METADATA))
def test_metadata_kept_by_default_exactly_where_png_keeps_it(key):
    im = Image.new("RGB", (3, 2), "teal")
    im.info[key] = METADATA[key]
    kept = key in through(im, "KMC").info
    assert kept == KEPT_BY_DEFAULT[key] == (key in through(im, "PNG").info)
    # and every one of them is written when passed
    assert key in through(Image.new("RGB", (3, 2)), "KMC", **{key: METADATA[key]}).info


def test_text_survives_a_re_save():
    first = through(Image.new("L", (2, 2)), "KMC", text={"Title": "Été", "Author": "me"})
    again = through(first, "KMC")
    assert again.info["Title"] == "Été" and again.info["Author"] == "me"
    assert "Title" not in through(first, "KMC", text={}).info
    # PNG's text chunks open into info the same way, and carry over too.
    png = through(Image.new("L", (2, 2)), "PNG", pnginfo=_pnginfo("Comment", "from png"))
    assert through(png, "KMC").info["Comment"] == "from png"


@given(
    st.dictionaries(
        # keywords that name other metadata open as that metadata, not as text
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=20)
        .filter(lambda k: k not in metadata.RESERVED_KEYWORDS | {"compression"}),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
        max_size=5,
    )
)
def test_any_text_survives_a_save_and_two_re_saves(text):
    first = through(Image.new("L", (2, 1)), "KMC", text=text)
    again = through(through(first, "KMC"), "KMC")
    assert {k: again.info[k] for k in text} == text


def _pnginfo(key, value):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_a_text_chunk_cannot_pose_as_transparency_or_a_profile(mode):
    im = Image.new(mode, (2, 2))
    im.info["icc_profile"] = "not bytes"  # as a tEXt chunk of that name opens
    kmc = through(im, "KMC", text={"transparency": "9", "icc_profile": "x"})
    assert kmc.info.get("transparency") != "9"
    rgba(kmc)  # converts
    assert "icc_profile" not in through(kmc, "KMC").info  # and a re-save does not fail on it


def test_other_info_strings_that_are_not_text_stay_out():
    im = Image.new("L", (2, 2))
    im.info.update({"compression": "tiff_lzw", "x" * 80: "too long a keyword", "n": 3})
    assert {"compression", "x" * 80, "n"}.isdisjoint(through(im, "KMC").info)


# ---------------------------------------------------------------- item 6


def photo() -> Image.Image:
    y, x = np.mgrid[0:24, 0:32]
    a = np.stack([x * 8, y * 10, (x + y) * 4], axis=2) % 256
    return Image.fromarray(a.astype(np.uint8))


def save(im: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "KMC", **params)
    return buffer.getvalue()


def test_colors_is_clusters():
    assert save(photo(), colors=5) == save(photo(), clusters=5)
    assert save(photo(), colors=5, clusters=5) == save(photo(), clusters=5)
    with pytest.raises(ValueError, match="colors is another name for clusters"):
        save(photo(), colors=5, clusters=6)
    with pytest.raises(ValueError, match="clusters must be from 1 to 256"):
        save(photo(), colors=0)


def test_dither_takes_pillows_constants():
    assert save(photo(), clusters=6, dither=Image.Dither.FLOYDSTEINBERG) == save(
        photo(), clusters=6, dither=True
    )
    assert save(photo(), clusters=6, dither=Image.Dither.NONE) == save(photo(), clusters=6)
    with pytest.raises(ValueError, match="dither must be"):
        save(photo(), dither=Image.Dither.ORDERED)


@pytest.mark.parametrize("mode", ["I", "F"])
def test_unwritable_modes_raise_oserror_with_advice_that_works(mode):
    ramp = (np.arange(64 * 4).reshape(4, 64) * 1000 - 3000).astype(np.int32)
    im = Image.fromarray(ramp if mode == "I" else ramp.astype(np.float32) / 7)
    assert im.mode == mode
    with pytest.raises(OSError, match=f"^cannot write mode {mode} as KMC") as caught:
        save(im)
    # The message's own example, run as it is written:
    example = str(caught.value).split("e.g. ", 1)[1]
    scope = {"im": im}
    for statement in example.split("; "):
        exec(statement, scope)
    out = np.asarray(through(scope["im"], "KMC"))
    assert out.min() == 0 and out.max() == 255 and abs(out.mean() - 127.5) < 2


def test_sixteen_bit_gray_is_scaled_to_eight_bits():
    ramp = np.linspace(0, 65535, 256 * 4).round().astype(np.uint16).reshape(4, 256)
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    out = through(im, "KMC")
    assert out.mode == "L"
    expected = np.rint(ramp / 65535 * 255)
    assert np.array_equal(np.asarray(out), expected)
    assert abs(np.asarray(out).mean() - 127.5) < 0.5


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=64))
def test_any_sixteen_bit_values_scale_to_the_nearest_eight_bit_level(values):
    ramp = np.array([values], np.uint16)
    out = np.asarray(through(Image.fromarray(ramp), "KMC")).astype(np.int64)
    assert (np.abs(out * 65535 - ramp.astype(np.int64) * 255) <= 65535 // 2).all()


def test_opened_images_are_one_still_frame(tmp_path):
    path = tmp_path / "x.kmc"
    photo().save(path)
    with Image.open(path) as im:
        assert im.n_frames == 1 and im.is_animated is False
        im.seek(0)
        with pytest.raises(EOFError):
            im.seek(1)
    photo().save(tmp_path / "x.npz", clusters=4)
    with Image.open(tmp_path / "x.npz") as im:
        assert im.n_frames == 1 and im.is_animated is False
