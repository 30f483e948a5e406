"""kmc decode: every target keeps the metadata it can hold and never drops alpha silently."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageCms

import pil_kmc  # noqa: F401
from pil_kmc import cli

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


@pytest.fixture
def tagged(tmp_path):
    """A .kmc with an ICC profile, EXIF orientation 6 and GPS, XMP and 300 dpi."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    a = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "tagged.kmc"
    Image.fromarray(a).save(path, clusters=16, icc_profile=ICC, exif=exif, xmp=XMP, dpi=(300, 300))
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tiff"])
def test_decode_carries_orientation_icc_xmp_and_dpi(tagged, tmp_path, ext):
    out = tmp_path / f"out{ext}"
    assert cli.main(["decode", str(tagged), str(out)]) == cli.OK
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == ICC
        exif = im.getexif()
        assert exif.get(0x0112) == 6 and exif.get_ifd(0x8825)
        xmp = im.info.get("xmp")
        assert xmp and (xmp.encode() if isinstance(xmp, str) else xmp) == XMP
        if ext != ".webp":  # WebP has no resolution field
            assert [round(v) for v in im.info["dpi"]] == [300, 300]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".gif", ".bmp", ".tiff", ".ico"])
def test_decode_to_any_pillow_format(tagged, tmp_path, ext):
    out = tmp_path / f"x{ext}"
    assert cli.main(["decode", str(tagged), str(out)]) == cli.OK
    # Pillow's TIFF reader applies the orientation as it loads.
    assert Image.open(out).size == ((30, 40) if ext == ".tiff" else (40, 30))


def test_webp_output_is_lossless(tagged, tmp_path):
    out = tmp_path / "x.webp"
    assert cli.main(["decode", str(tagged), str(out)]) == cli.OK
    expected = np.asarray(Image.open(tagged).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected)


def rgba_kmc(tmp_path, partial: bool):
    """Noise with alpha 0 or 255, and optionally a corner of alpha 100."""
    a = np.random.default_rng(2).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    a[..., 3] = np.where(a[..., 3] > 128, 255, 0)
    if partial:
        a[:5, :5, 3] = 100
    path = tmp_path / ("partial.kmc" if partial else "binary.kmc")
    Image.fromarray(a).save(path, clusters=32)
    return path


def visible(im: Image.Image) -> np.ndarray:
    """RGBA pixels with the colour of fully transparent ones zeroed (it is invisible)."""
    a = np.asarray(im.convert("RGBA")).copy()
    a[a[..., 3] == 0] = 0
    return a


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff", ".ico", ".gif"])
def test_alpha_survives_in_formats_that_hold_it(tmp_path, ext):
    for partial in (False, True):
        if partial and ext == ".gif":
            continue
        src = rgba_kmc(tmp_path, partial)
        out = tmp_path / f"{src.stem}{ext}"
        assert cli.main(["decode", str(src), str(out)]) == cli.OK
        assert np.array_equal(visible(Image.open(out)), visible(Image.open(src)))


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".gif"])
def test_alpha_is_not_dropped_silently(tmp_path, capsys, ext):
    src = rgba_kmc(tmp_path, partial=True)
    out = tmp_path / f"x{ext}"
    assert cli.main(["decode", str(src), str(out)]) == cli.USAGE
    err = capsys.readouterr().err
    assert "cannot hold this image's transparency" in err
    assert "write PNG or WebP, or give --background COLOUR" in err
    assert not out.exists()


def test_background_flattens_transparency(tmp_path):
    src = rgba_kmc(tmp_path, partial=True)
    out = tmp_path / "flat.png"
    assert cli.main(["decode", str(src), str(out), "--background", "#00ff00"]) == cli.OK
    flat = np.asarray(Image.open(out).convert("RGB")).astype(int)
    rgba = np.asarray(Image.open(src).convert("RGBA")).astype(int)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + np.array([0, 255, 0]) * (1 - alpha)
    assert Image.open(out).mode == "RGB" and np.abs(flat - expected).max() <= 1
    assert cli.main(["decode", str(src), str(tmp_path / "flat.jpg"), "--background", "white"]) == 0


def test_opaque_rgba_goes_to_jpeg(tmp_path):
    kmc = tmp_path / "a.kmc"
    Image.new("RGBA", (4, 4), (9, 9, 9, 255)).save(kmc)
    assert cli.main(["decode", str(kmc), str(tmp_path / "a.jpg")]) == cli.OK


def test_decode_refuses_before_reading(tmp_path, capsys):
    missing = str(tmp_path / "missing.kmc")
    assert cli.main(["decode", missing, str(tmp_path / "x.unknown")]) == cli.USAGE
    assert "unknown image extension '.unknown'" in capsys.readouterr().err
    assert cli.main(["decode", missing, missing]) == cli.USAGE
    assert "is the input itself" in capsys.readouterr().err


def test_decoding_into_a_read_only_folder_is_one_line(tagged, tmp_path, monkeypatch, capsys):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)  # what a read-only folder does
    out = tmp_path / "x.png"
    assert cli.main(["decode", str(tagged), str(out)]) == cli.FAILED
    assert capsys.readouterr().err == f"kmc: {out}: cannot write: Permission denied\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_decoding_into_a_really_read_only_folder(tagged, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert cli.main(["decode", str(tagged), str(folder / "x.png")]) == cli.FAILED
    finally:
        folder.chmod(0o755)
    assert capsys.readouterr().err.endswith(": cannot write: Permission denied\n")


def test_decoding_into_a_missing_folder_is_one_line(tagged, tmp_path, capsys):
    out = tmp_path / "missing" / "x.png"
    assert cli.main(["decode", str(tagged), str(out)]) == cli.FAILED
    expected = f"kmc: {out}: cannot write: folder {out.parent} does not exist\n"
    assert capsys.readouterr().err == expected
