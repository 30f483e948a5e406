"""One palette for many images, and saving with a given palette (``palette=``)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImagePalette

import pil_kmc
from pil_kmc import palettes

from .reference.distance import squared_distances

ROOT = Path(__file__).resolve().parent.parent
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def pixels(channels: int, max_side: int = 12):
    """A (h, w, channels) uint8 array whose every value hypothesis draws (and shrinks)."""
    shape = st.tuples(st.integers(1, max_side), st.integers(1, max_side), st.just(channels))
    return shape.flatmap(lambda s: hnp.arrays(np.uint8, s))


def given_palettes(channels: int, max_n: int = 256):
    n = st.integers(1, max_n)
    return n.flatmap(lambda n: hnp.arrays(np.uint8, (n, channels)))


def to_image(a: np.ndarray) -> Image.Image:
    c = a.shape[2]
    return Image.fromarray(a[:, :, 0] if c == 1 else a, MODES[c])


def save(im: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "KMC", **params)
    return buffer.getvalue()


def stored(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The KPAL (k, C) and the index plane of a .kmc file."""
    from pil_kmc import codec, layout

    kmc = layout.read(io.BytesIO(data))
    h = kmc.header
    palette = np.frombuffer(kmc.palette, np.uint8).reshape(h.k, h.channels)
    return palette, codec.decode(kmc.index.stream, h)


def photo(w: int = 64, h: int = 48, shift: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + shift) % 256, y * 5, (x * y + shift) % 256], axis=2).astype(np.uint8)


# --- a shared palette ----------------------------------------------------------------


def test_shared_palette_is_exported_without_importing_numpy_at_import():
    code = (
        "import sys, pil_kmc; assert 'numpy' not in sys.modules; "
        "f = pil_kmc.shared_palette; assert 'numpy' in sys.modules; print(f.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert out.stdout.strip() == "pil_kmc.palettes"
    with pytest.raises(AttributeError):
        pil_kmc.no_such_thing  # noqa: B018


def test_every_image_saved_with_a_shared_palette_carries_the_same_kpal(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(photo(40 + 8 * i, 30, 37 * i)).save(path)
        paths.append(path)
    palette = pil_kmc.shared_palette(paths, clusters=24)
    assert palette.dtype == np.uint8 and palette.shape == (24, 3)
    kpals = [stored(save(Image.open(p), palette=palette))[0] for p in paths]
    for kpal in kpals:
        assert np.array_equal(kpal, palette)


@given(st.lists(pixels(3), min_size=1, max_size=4), st.integers(1, 40), st.randoms())
def test_shared_palette_does_not_depend_on_the_order_of_the_images(arrays, k, random):
    images = [to_image(a) for a in arrays]
    shuffled = list(images)
    random.shuffle(shuffled)
    assert np.array_equal(pil_kmc.shared_palette(images, k), pil_kmc.shared_palette(shuffled, k))


@given(st.lists(pixels(3), min_size=1, max_size=4), st.integers(1, 60))
def test_merged_histograms_cluster_as_the_concatenated_pixels(arrays, k):
    # Histograms merge by adding counts, so the palette is the one of all pixels in one image.
    one_row = np.concatenate([a.reshape(1, -1, 3) for a in arrays], axis=1)
    merged = palettes.merge_histograms(palettes.image_histogram(to_image(a)) for a in arrays)
    whole = palettes.image_histogram(to_image(one_row))
    assert np.array_equal(merged.keys, whole.keys)
    assert np.array_equal(merged.counts, whole.counts)
    assert np.array_equal(
        pil_kmc.shared_palette([to_image(a) for a in arrays], k),
        pil_kmc.shared_palette([to_image(one_row)], k),
    )


def test_a_mixed_collection_gets_the_widest_colour_model():
    gray = Image.fromarray(photo()[:, :, 0], "L")
    rgb = Image.fromarray(photo(shift=9))
    rgba = Image.fromarray(np.dstack([photo(), np.full((48, 64), 128, np.uint8)]), "RGBA")
    assert pil_kmc.shared_palette([gray], 8).shape[1] == 1
    assert pil_kmc.shared_palette([gray, rgb], 8).shape[1] == 3
    palette = pil_kmc.shared_palette([gray, rgb, rgba], 8)
    assert palette.shape[1] == 4
    for im in (gray, rgb, rgba):
        assert np.array_equal(stored(save(im, palette=palette))[0], palette)


def test_few_colours_in_all_give_those_colours_and_lossless_files():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((3, 5, 3), 200, np.uint8)
    b[0, 0] = (1, 2, 3)
    palette = pil_kmc.shared_palette([to_image(a), to_image(b)], 256)
    assert len(palette) == 3
    for x in (a, b):
        with Image.open(io.BytesIO(save(to_image(x), palette=palette))) as kmc:
            assert np.array_equal(np.asarray(kmc.convert("RGB")), x)


def test_shared_palette_takes_paths_and_rejects_bad_options(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(photo()).save(path)
    assert np.array_equal(pil_kmc.shared_palette([str(path)], 5), pil_kmc.shared_palette([path], 5))
    with pytest.raises(ValueError, match="clusters"):
        pil_kmc.shared_palette([path], 0)
    with pytest.raises(ValueError, match="no histograms"):
        pil_kmc.shared_palette([], 5)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OSError):
        pil_kmc.shared_palette([path, tmp_path / "bad.png"], 5)


# --- saving with a given palette --------------------------------------------------------


@given(st.integers(1, 4).flatmap(lambda c: st.tuples(pixels(c), given_palettes(c))))
def test_every_pixel_goes_to_its_nearest_entry_and_the_palette_is_stored_as_given(case):
    a, palette = case
    kpal, indices = stored(save(to_image(a), palette=palette))
    assert np.array_equal(kpal, palette)  # every entry, in order, even unused or repeated
    colours = a.reshape(-1, a.shape[2]).copy()
    if a.shape[2] in (2, 4):
        colours[colours[:, -1] == 0] = 0  # transparent pixels lose their colour on saving
    d = squared_distances(colours, palette)
    chosen = d[np.arange(len(colours)), indices.ravel()]
    visible = colours[:, -1] > 0 if a.shape[2] in (2, 4) else np.ones(len(colours), bool)
    clear = np.flatnonzero(palette[:, -1] == 0) if a.shape[2] in (2, 4) else []
    if len(clear):
        assert (indices.ravel()[~visible] == clear[0]).all()
        assert np.array_equal(chosen[visible], d.min(axis=1)[visible])
    else:
        assert np.array_equal(chosen, d.min(axis=1))
        # ties go to the lower index
        assert (indices.ravel() == d.argmin(axis=1)).all()


@given(pixels(3), given_palettes(3, max_n=40))
def test_colours_in_the_palette_come_back_exactly(a, palette):
    full = np.vstack([palette, a.reshape(-1, 3)])[:256]
    a = full[np.arange(a.shape[0] * a.shape[1]).reshape(a.shape[:2]) % len(full)]
    with Image.open(io.BytesIO(save(to_image(a), palette=full))) as kmc:
        assert np.array_equal(np.asarray(kmc.convert("RGB")), a)


def test_a_p_image_an_imagepalette_and_an_array_give_the_same_file():
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    p = Image.fromarray(rng.integers(0, 40, (3, 3), dtype=np.uint8), "P")
    p.putpalette(palette.tobytes())
    im = Image.fromarray(photo())
    expected = save(im, palette=palette)
    assert save(im, palette=p) == expected
    assert save(im, palette=ImagePalette.ImagePalette("RGB", palette.tobytes())) == expected
    assert save(im, palette=palette.tobytes()) == expected  # GIF's palette= form
    with pytest.raises(ValueError, match="dtype uint8"):  # lists are int64: no guessing
        save(im, palette=palette.tolist())


def test_an_opened_kmc_remaps_to_its_own_kpal_and_bytes():
    im = Image.fromarray(photo())
    first = save(im, clusters=20)
    with Image.open(io.BytesIO(first)) as kmc:
        again = save(im, palette=kmc)
    assert np.array_equal(stored(again)[0], stored(first)[0])
    with Image.open(io.BytesIO(again)) as kmc:
        assert save(im, palette=kmc) == again


def test_a_p_image_with_transparency_gives_an_rgba_palette():
    p = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    p.putpalette(bytes([10, 20, 30, 40, 50, 60, 70, 80, 90]))
    p.info["transparency"] = 1
    assert palettes.as_palette(p).tolist() == [[10, 20, 30, 255], [0, 0, 0, 0], [70, 80, 90, 255]]


def test_an_rgb_image_with_more_than_256_colours_is_no_palette():
    with pytest.raises(ValueError, match="4096 colours"):
        palettes.as_palette(Image.fromarray(photo(64, 64)))


def test_gray_and_opaque_images_widen_to_the_palette():
    palette = np.array([[0, 0, 0, 255], [255, 255, 255, 255], [0, 0, 0, 0]], np.uint8)
    gray = Image.fromarray(np.array([[0, 100, 200]], np.uint8), "L")
    kpal, indices = stored(save(gray, palette=palette))
    assert np.array_equal(kpal, palette) and indices.tolist() == [[0, 0, 1]]
    rgb = Image.fromarray(np.array([[[250, 250, 250]]], np.uint8))
    assert stored(save(rgb, palette=palette[:, :3]))[1].tolist() == [[1]]
    assert stored(save(gray, palette=palette[:, :3]))[0].shape == (3, 3)


@pytest.mark.parametrize(
    "palette, message",
    [
        (np.zeros((4, 5), np.uint8), "1 to 4 channels"),
        (np.zeros((4, 0), np.uint8), "1 to 4 channels"),
        (np.zeros((0, 3), np.uint8), "1 to 256 entries, not 0"),
        (np.zeros((257, 3), np.uint8), "1 to 256 entries, not 257"),
        (np.zeros((4, 3), np.float64), "dtype uint8, not float64"),
        (np.zeros((4, 3), np.int64), "dtype uint8, not int64"),
        (np.zeros((4, 3), np.uint16), "dtype uint8, not uint16"),
        (np.zeros(12, np.uint8), "2-d"),
        ("red", "uint8 array"),
        (ImagePalette.ImagePalette("RGB", bytes(8)), "not a multiple of 3"),
        (bytes(8), "RGB triplets, not 8 bytes"),
        (b"", "1 to 256 entries, not 0"),
    ],
)
def test_bad_palettes_raise_a_clear_value_error_before_writing(tmp_path, palette, message):
    out = tmp_path / "out.kmc"
    with pytest.raises(ValueError, match=message):
        Image.fromarray(photo()).save(out, palette=palette)
    assert not out.exists()


def test_a_palette_that_cannot_hold_the_image_is_refused():
    rgba = Image.fromarray(np.zeros((2, 2, 4), np.uint8), "RGBA")
    with pytest.raises(ValueError, match="needs alpha"):
        save(rgba, palette=np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="needs RGB"):
        save(Image.fromarray(photo()), palette=np.zeros((2, 1), np.uint8))


def test_quality_and_a_palette_do_not_go_together():
    with pytest.raises(ValueError, match="quality"):
        save(Image.fromarray(photo()), palette=np.zeros((2, 3), np.uint8), quality=30)


def test_dither_diffuses_the_error_over_the_given_palette():
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    gray = np.full((16, 16, 3), 128, np.uint8)
    plain = stored(save(to_image(gray), palette=palette))[1]
    dithered = stored(save(to_image(gray), palette=palette, dither=True))[1]
    assert np.unique(plain).size == 1  # one nearest colour for a flat image
    assert 0.3 < dithered.mean() < 0.7  # about half white, half black
    # With alpha too: an opaque gray over an opaque black-and-white palette.
    rgba = np.array([[0, 0, 0, 255], [255, 255, 255, 255]], np.uint8)
    with_alpha = stored(save(to_image(gray).convert("RGBA"), palette=rgba, dither=True))[1]
    assert 0.3 < with_alpha.mean() < 0.7


def test_the_npz_layout_takes_a_palette_too():
    palette = pil_kmc.shared_palette([Image.fromarray(photo())], 8)
    buffer = io.BytesIO()
    Image.fromarray(photo()).save(buffer, "KMCNPZ", palette=palette)
    buffer.seek(0)
    from pil_kmc import npz

    assert np.array_equal(npz.read(buffer).palette, palette)


def test_an_opened_gray_kmc_gives_its_kpal_in_order_unused_entries_included(tmp_path):
    levels = np.array([[0], [85], [170], [255]], np.uint8)
    gray = Image.fromarray(np.zeros((2, 3), np.uint8), "L")
    first = save(gray, palette=levels)  # only entry 0 is used
    with Image.open(io.BytesIO(first)) as kmc:
        assert kmc.mode == "L"
        assert palettes.as_palette(kmc).tolist() == levels.tolist()
        again = save(Image.fromarray(np.full((1, 1), 250, np.uint8), "L"), palette=kmc)
    assert stored(again)[1].tolist() == [[3]]  # 250 goes to 255, not to the only used 0


def test_shared_palette_refuses_what_is_not_a_collection_of_images(tmp_path):
    with pytest.raises(ValueError, match="not one image"):
        palettes.shared_palette(str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="a Pillow image, a path or bytes"):
        palettes.shared_palette([5])
    with pytest.raises(ValueError, match="empty image"):
        palettes.shared_palette([Image.new("RGB", (0, 0))])


def test_a_palette_image_of_a_mode_without_a_fixed_range_is_a_value_error():
    with pytest.raises(ValueError, match="palette image: cannot write mode I"):
        palettes.as_palette(Image.new("I", (2, 2)))


def test_shared_palette_merges_as_it_goes_to_the_same_palette():
    # Merged a few histograms at a time: the same palette as one merge of all.
    images = [Image.fromarray(photo(16, 16) // (i + 1)) for i in range(20)]
    whole = palettes.merge_histograms(palettes.image_histogram(im) for im in images)
    assert np.array_equal(
        palettes.shared_palette(images, 16), palettes.palette_from_histogram(whole, 16)
    )


def test_ties_go_to_the_lower_index_in_oklab_with_many_entries_too():
    # Above VQ_UP_TO entries a k-d tree ranks Oklab colours; it may answer
    # with either of two equal entries.
    rng = np.random.default_rng(12)
    half = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    palette = np.vstack([half, half])  # every entry twice
    im = Image.fromarray(half[rng.integers(0, 100, (40, 40))])
    _, indices = stored(save(im, palette=palette, colorspace="oklab"))
    assert indices.max() < 100


def test_distributed_inputs_are_paths_or_bytes():
    from pil_kmc import distributed

    with pytest.raises(ValueError, match="paths or encoded bytes"):
        distributed.merged_histogram([Image.new("RGB", (2, 2))])
