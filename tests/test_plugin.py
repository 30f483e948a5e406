"""The Pillow plugin: registration, open, load, save, modes and options."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile

import pil_kmc  # noqa: F401  (registers the formats)

from .strategies import colours_of, images

OPENED_MODE = {1: "L", 2: "LA", 3: "P", 4: "P"}


def save(im: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "KMC", **params)
    return buffer.getvalue()


def reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def distinct(a: np.ndarray) -> int:
    return len(np.unique(a.reshape(-1, a.shape[2]), axis=0))


def test_format_is_registered():
    assert Image.registered_extensions()[".kmc"] == "KMC"
    assert Image.MIME["KMC"] == "image/x-kmc"
    assert "KMC" in Image.SAVE and "KMC" in Image.OPEN


def test_import_does_not_load_numpy_or_scipy():
    pillow = "import sys, PIL.Image, PIL.ImageFile; print('numpy' in sys.modules)"
    own = subprocess.run([sys.executable, "-c", pillow], capture_output=True, text=True)
    if own.stdout.strip() == "True":
        pytest.skip("this Pillow imports numpy itself (Pillow 10.4 does)")
    code = "import sys, pil_kmc; print('numpy' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_open_and_decode_need_no_scipy(tmp_path):
    path = tmp_path / "x.kmc"
    Image.new("RGB", (4, 4), "red").save(path)
    code = (
        "import sys, pil_kmc; from PIL import Image; "
        f"Image.open({str(path)!r}).load(); print('scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_save_and_open_by_path(tmp_path):
    path = tmp_path / "photo.kmc"
    Image.new("RGB", (5, 3), (1, 2, 3)).save(path, clusters=16)
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("KMC", "P", (5, 3))
        assert im.convert("RGB").getpixel((4, 2)) == (1, 2, 3)


def test_open_is_lazy():
    data = save(Image.new("L", (8, 8), 7))
    broken = data[: data.index(b"KIDX") + 6]  # header intact, index data cut
    im = Image.open(io.BytesIO(broken))
    assert (im.mode, im.size) == ("L", (8, 8))
    with pytest.raises(OSError, match="truncated"):
        im.load()


@given(images(max_colours=24), st.data())
def test_at_most_k_colours_come_back_identical(im, data):
    want = colours_of(im)
    n = distinct(want)
    k = data.draw(st.integers(n, 256))
    out = reopen(save(im, clusters=k))
    assert out.mode == OPENED_MODE[want.shape[2]]
    assert np.array_equal(colours_of(out), want)


@given(images(), st.integers(1, 256))
def test_any_image_decodes_to_at_most_k_colours_and_resaves_losslessly(im, k):
    once = reopen(save(im, clusters=k))
    first = colours_of(once)
    assert distinct(first) <= k
    twice = reopen(save(once, clusters=k))
    assert np.array_equal(colours_of(twice), first)


@given(images(modes=("P",)))
def test_palette_images_are_lossless_by_default(im):
    assert np.array_equal(colours_of(reopen(save(im))), colours_of(im))


@given(images(), st.integers(1, 256), st.integers(0, 3))
def test_same_input_same_bytes(im, k, seed):
    assert save(im, clusters=k, seed=seed) == save(im.copy(), clusters=k, seed=seed)


@pytest.mark.parametrize("size", [(1, 1), (1, 37), (37, 1)])
@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "PA"])
def test_thin_images_round_trip(size, mode):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    out = reopen(save(im))
    assert out.size == size
    assert np.array_equal(colours_of(out), colours_of(im))


@pytest.mark.parametrize("mode", ["RGB", "L", "LA"])
def test_a_loaded_image_is_writable_like_any_other(mode):
    # The decoded plane becomes the image's memory (no copy): it must still
    # take pixel writes, through load()'s access object as through putpixel.
    source = Image.linear_gradient("L").resize((64, 48)).convert(mode)
    data = save(source, clusters=8)
    im = Image.open(io.BytesIO(data))
    access = im.load()
    assert not im.readonly
    first = im.getpixel((0, 0))
    other = im.getpixel((63, 47))
    access[0, 0] = other
    im.putpixel((1, 0), other)
    assert im.getpixel((0, 0)) == im.getpixel((1, 0)) == other
    again = reopen(data)  # another load of the same bytes is its own memory
    assert again.getpixel((0, 0)) == first != other
    assert again.convert("RGBA").getpixel((5, 5)) == im.convert("RGBA").getpixel((5, 5))


def test_rgba_opens_as_p_with_transparency_and_converts():
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 128)
    a[1, 1] = (0, 255, 0, 255)
    a[0, 1] = (9, 9, 9, 0)  # transparent: colour dropped
    out = reopen(save(Image.fromarray(a, "RGBA")))
    # As a PNG-8 with tRNS opens: an RGB palette and one alpha byte per entry.
    assert out.mode == "P" and out.palette.mode == "RGB"
    assert isinstance(out.info["transparency"], bytes)
    expected = a.copy()
    expected[0, 1] = 0
    assert np.array_equal(np.asarray(out.convert("RGBA")), expected)
    png = io.BytesIO()
    out.save(png, "PNG")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGBA")), expected)


def test_mode_1_opens_as_l():
    im = Image.new("1", (9, 2), 1)
    out = reopen(save(im))
    assert out.mode == "L" and out.getpixel((0, 0)) == 255


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "HSV", "LAB", "RGBX"])
def test_other_colour_modes_are_converted_to_rgb(mode):
    im = Image.new("RGB", (3, 3), (10, 120, 240)).convert(mode)
    out = reopen(save(im))
    assert out.mode == "P"
    assert out.convert("RGB").getpixel((1, 1)) == im.convert("RGB").getpixel((1, 1))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"clusters": 0}, "clusters must be from 1 to 256"),
        ({"clusters": -3}, "clusters must be from 1 to 256"),
        ({"clusters": 257}, "clusters must be from 1 to 256"),
        ({"clusters": 2.5}, "clusters must be an integer"),
        ({"clusters": "16"}, "clusters must be an integer"),
        ({"clusters": True}, "clusters must be an integer"),
        ({"seed": -1}, "seed"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1}, "tol"),
        ({"compression": "gzip"}, "compression must be one of"),
        ({"cluster": 16}, "did you mean 'clusters'"),
    ],
)
def test_bad_arguments_raise_value_error_and_leave_no_file(tmp_path, params, message):
    path = tmp_path / "out.kmc"
    with pytest.raises(ValueError, match=message):
        Image.new("RGB", (2, 2)).save(path, **params)
    assert not path.exists()


def test_other_formats_options_are_ignored():
    plain = save(Image.new("RGB", (2, 2)))
    assert save(Image.new("RGB", (2, 2)), progressive=True, lossless=True) == plain
    # however close to one of ours: AVIF's speed= is no misspelt seed=
    assert save(Image.new("RGB", (2, 2)), speed=6, method=6, kmin=3) == plain


def test_empty_image_is_refused():
    with pytest.raises(ValueError, match="empty"):
        save(Image.new("RGB", (0, 3)))


@pytest.mark.parametrize("compression", ["stored", "zlib", "xz", "bzip2"])
def test_every_compression_method_round_trips(compression):
    im = Image.radial_gradient("L").resize((40, 30))
    data = save(im, compression=compression)
    assert np.array_equal(np.asarray(reopen(data)), np.asarray(im))


def test_truncated_file_loads_partially_when_allowed(monkeypatch):
    im = Image.linear_gradient("L")
    data = save(im, compression="stored")
    cut = data[: data.index(b"KIDX") + 4 + 256 * 100]  # the first 100 rows
    with pytest.raises(OSError):
        reopen(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    out = np.asarray(reopen(cut))
    assert np.array_equal(out[:100], np.asarray(im)[:100])
    assert (out[100:] == out[100, 0]).all()  # the rest is palette entry 0


def test_clusters_reduce_a_photo_like_image():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = reopen(save(Image.fromarray(a), clusters=16))
    assert len(out.getcolors(256)) <= 16


def test_optimize_is_never_larger_than_the_default_and_decodes_the_same():
    rng = np.random.default_rng(8)
    im = Image.fromarray(rng.integers(0, 4, (50, 60, 3), dtype=np.uint8) * 60)
    default, optimized = save(im, clusters=16), save(im, clusters=16, optimize=True)
    assert len(optimized) <= len(default)
    # optimize may reorder the palette: the colours of every pixel stay, not their indices
    same = reopen(optimized).convert("RGB"), reopen(default).convert("RGB")
    assert np.array_equal(np.asarray(same[0]), np.asarray(same[1]))
    assert save(im, clusters=16, optimize=True) == optimized


def test_optimize_is_a_truth_value_as_pngs_jpegs_and_gifs_is():
    im = Image.new("RGB", (2, 2), "teal")
    assert save(im, optimize=1) == save(im, optimize=True)
    assert save(im, optimize=0) == save(im, optimize=None) == save(im)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"optimize": 2}, "optimize must be True or False"),
        ({"optimize": "yes"}, "optimize must be True or False"),
        ({"optimize": True, "compression": "zlib"}, "one or the other"),
    ],
)
def test_optimize_arguments_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        save(Image.new("RGB", (2, 2)), **params)


def test_animation_is_refused_with_a_clear_error(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    with pytest.raises(ValueError, match="single image, not 2 frames"):
        frames[0].save(tmp_path / "a.kmc", save_all=True, append_images=frames[1:])
    assert not (tmp_path / "a.kmc").exists()
    frames[0].save(tmp_path / "b.kmc", save_all=True)  # one frame is fine
    assert Image.open(tmp_path / "b.kmc").size == (4, 4)
    # append_images may be any iterable, as for PNG, GIF and WebP
    with pytest.raises(ValueError, match="single image, not 2 frames"):
        frames[0].save(tmp_path / "c.kmc", save_all=True, append_images=iter(frames[1:]))
    frames[0].save(tmp_path / "d.kmc", save_all=True, append_images=iter([]))
    assert Image.open(tmp_path / "d.kmc").size == (4, 4)


def photo() -> Image.Image:
    y, x = np.mgrid[0:48, 0:64]
    a = np.stack([x * 4, y * 5, (x + y) * 2], axis=2) % 256
    return Image.fromarray(a.astype(np.uint8))


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float)
    return 10 * np.log10(255**2 / np.mean(d * d))


def test_psnr_picks_the_smallest_k_reaching_the_maximum():
    im = photo()
    out = reopen(save(im, psnr=(20, 30)))
    k = len(out.getcolors(256))
    assert psnr(im, out) >= 30
    smaller = reopen(save(im, clusters=k - 1))
    assert psnr(im, smaller) < 30


def test_psnr_minimum_not_reached_is_a_distinct_error():
    from pil_kmc.encoder import QualityNotReached

    with pytest.raises(QualityNotReached, match="quality not reached.*dB PSNR"):
        save(photo(), clusters=2, psnr=(40, 50))


def test_quality_is_pngquants_scale_through_libimagequants_curve():
    from pil_kmc.encoder import allowed_mse

    im = photo()
    out = reopen(save(im, quality=(0, 50)))
    k = len(out.getcolors(256))
    error = 255**2 / 10 ** (psnr(im, out) / 10)
    assert 1 < k < 256 and error <= allowed_mse(50)
    smaller = reopen(save(im, clusters=k - 1))
    assert 255**2 / 10 ** (psnr(im, smaller) / 10) > allowed_mse(50)
    # Higher is better: a higher quality never takes fewer colours.
    assert len(reopen(save(im, quality=(0, 65))).getcolors(256)) > k
    assert len(reopen(save(im, quality=(0, 30))).getcolors(256)) < k


def test_quality_minimum_not_reached_is_a_distinct_error():
    from pil_kmc.encoder import QualityNotReached

    with pytest.raises(QualityNotReached, match="quality not reached.*below the minimum of 90"):
        save(photo(), clusters=2, quality=(90, 95))
    # One number n is pngquant's "n": at least 0.9 n, aiming at n.
    with pytest.raises(QualityNotReached, match="minimum of 85"):
        save(photo(), clusters=2, quality=95)


@pytest.mark.parametrize("quality", [(50, 40), (-1, 5), "high", (1, 2, 3), (0, 101)])
def test_bad_quality_is_a_value_error(quality):
    with pytest.raises(ValueError, match="quality must be"):
        save(photo(), quality=quality)
    with pytest.raises(ValueError, match="psnr must be"):
        save(photo(), psnr=quality)


def test_quality_and_psnr_together_are_refused():
    with pytest.raises(ValueError, match="one or the other"):
        save(photo(), quality=(60, 80), psnr=(30, 40))


def test_dither_changes_indices_but_not_the_palette_and_is_deterministic():
    im = photo()
    plain, dithered = save(im, clusters=8), save(im, clusters=8, dither=True)
    assert plain != dithered and dithered == save(im, clusters=8, dither=True)
    a, b = reopen(plain), reopen(dithered)
    assert a.palette.tobytes() == b.palette.tobytes()


def test_dither_works_with_alpha_and_keeps_transparent_pixels_transparent():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    a[:, :10, 3] = 0  # a transparent band
    a[:, 10:, 3] = 255
    im = Image.fromarray(a, "RGBA")
    plain, dithered = save(im, clusters=8), save(im, clusters=8, dither=True)
    assert plain != dithered and dithered == save(im, clusters=8, dither=True)
    out = np.asarray(reopen(dithered).convert("RGBA"))
    assert (out[:, :10, 3] == 0).all() and (out[:, 10:, 3] == 255).all()


def test_dither_takes_a_strength_as_pngquant_floyd():
    im = photo()
    none, half, full = (save(im, clusters=8, dither=s) for s in (0.0, 0.5, 1.0))
    assert none == save(im, clusters=8) and len({none, half, full}) == 3
    with pytest.raises(ValueError, match="dither"):
        save(im, clusters=8, dither=1.5)


def test_oklab_colorspace_is_deterministic_and_different():
    im = photo()
    ok = save(im, clusters=16, colorspace="oklab")
    assert ok == save(im, clusters=16, colorspace="oklab") != save(im, clusters=16)
    assert len(reopen(ok).getcolors(256)) <= 16
    with pytest.raises(ValueError, match="colorspace"):
        save(im, colorspace="lab")


def test_original_reconstruction_is_stored_losslessly_at_100_clusters(seed_dir):
    photo = Image.open(seed_dir / "PNG_reconstruction.png")
    # The original compressed.npz took 131,903 bytes; the target for
    # optimize is 105,000 (WebP lossless: 104,690).
    for params, limit in (({}, 131_903), ({"optimize": True}, 105_000)):
        data = save(photo, clusters=100, **params)
        out = reopen(data)
        assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(photo))
        assert len(data) <= limit


def a_kmc_file(compression: str = "xz") -> bytes:
    rng = np.random.default_rng(4)
    im = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    return save(im, clusters=20, compression=compression)


@pytest.mark.parametrize("compression", ["stored", "xz", "context"])
def test_verify_checks_every_crc_without_decoding(compression, monkeypatch):
    # Issue 15 item 8: a flipped byte in the index data passed verify().
    data = a_kmc_file(compression)
    from pil_kmc import codec

    def no_decoding(*args, **kwargs):
        raise AssertionError("verify() must not decode pixels")

    monkeypatch.setattr(codec, "decode", no_decoding)
    Image.open(io.BytesIO(data)).verify()
    kidx = data.index(b"KIDX")
    for offset in (kidx + 10, len(data) - 14, len(data) - 2):
        broken = bytearray(data)
        broken[offset] ^= 0x04
        im = Image.open(io.BytesIO(bytes(broken)))
        with pytest.raises(OSError):
            im.verify()
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(data[:-3])).verify()
    with pytest.raises(OSError, match="trailing data"):
        Image.open(io.BytesIO(data + b"x")).verify()


def test_verify_must_come_directly_after_open():
    im = Image.open(io.BytesIO(a_kmc_file()))
    im.verify()
    with pytest.raises(RuntimeError):
        im.verify()


@pytest.mark.parametrize("compression", ["zlib", "xz", "context"])
@pytest.mark.parametrize("step", [1, 7, 4096])
def test_incremental_parser_gives_the_same_image(compression, step):
    # Issue 15 item 9: ImageFile.Parser raised a bare AssertionError.
    data = a_kmc_file(compression)
    parser = ImageFile.Parser()
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
    im = parser.close()
    assert im.tobytes() == reopen(data).tobytes()
    assert im.getpalette() == reopen(data).getpalette()


def test_incremental_parser_of_a_broken_file_raises_a_clear_os_error():
    data = a_kmc_file()
    for broken in (data[:-20], data[:-100], data[:200] + bytes([data[200] ^ 1]) + data[201:]):
        parser = ImageFile.Parser()
        parser.feed(broken)
        with pytest.raises(OSError):
            parser.close()


def test_incremental_parser_raises_os_error_under_python_optimize(tmp_path):
    # Under python -O the AssertionError became an AttributeError.
    path = tmp_path / "a.kmc"
    path.write_bytes(a_kmc_file())
    script = (
        "import sys\nfrom PIL import Image, ImageFile\nimport pil_kmc\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "p = ImageFile.Parser(); p.feed(data); assert p.close().size == (30, 40)\n"
        "p = ImageFile.Parser(); p.feed(data[:-30])\n"
        "try:\n    p.close()\nexcept OSError:\n    print('OSError')\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, env=env
    )
    assert run.stdout.strip() == "OSError", run.stderr[-800:]
