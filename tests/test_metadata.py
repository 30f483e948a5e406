"""Metadata chunks: ICC profile, EXIF, XMP, DPI and text survive a save and an open."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image, ImageCms

import pil_kmc  # noqa: F401
from pil_kmc import layout, metadata
from pil_kmc.layout import FormatError


def round_trip(im: Image.Image, **params) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, "KMC", **params)
    buffer.seek(0)
    return Image.open(buffer)


def test_icc_exif_xmp_dpi_and_text_survive():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    exif[0x010F] = "pil_kmc camera"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    out = round_trip(
        Image.new("RGB", (4, 3), "teal"),
        icc_profile=icc,
        exif=exif,
        xmp=xmp,
        dpi=(300, 150),
        text={"Title": "Été"},
    )
    assert out.info["icc_profile"] == icc
    assert out.getexif()[0x0112] == 6 and out.getexif()[0x010F] == "pil_kmc camera"
    assert out.info["xmp"] == xmp
    assert [round(v) for v in out.info["dpi"]] == [300, 150]
    assert out.info["Title"] == "Été"


def test_icc_profile_defaults_to_the_images_own_info_dpi_does_not():
    # As Pillow's PNG plugin: see tests/test_pillow_habits.py for the whole table.
    im = Image.new("L", (2, 2))
    im.info["icc_profile"] = b"not really a profile"
    im.info["dpi"] = (72, 72)
    out = round_trip(im)
    assert out.info["icc_profile"] == b"not really a profile"
    assert "dpi" not in out.info


def test_explicit_empty_value_drops_the_images_metadata():
    im = Image.new("L", (2, 2))
    im.info["icc_profile"] = b"profile"
    assert "icc_profile" not in round_trip(im, icc_profile=None).info


def test_exif_with_its_app1_prefix_is_stored_without_it():
    chunks = metadata.to_chunks({"exif": b"Exif\0\0MM\0*rest"}, {})
    assert chunks == [(metadata.EXIF, b"MM\0*rest")]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"icc_profile": "text"}, "icc_profile must be bytes"),
        ({"dpi": "high"}, "dpi must be a pair"),
        ({"dpi": (0, 72)}, "dpi out of range"),
        ({"text": ["a"]}, "text must be a dict"),
        ({"text": {"": "x"}}, "keyword"),
    ],
)
def test_bad_metadata_arguments_are_value_errors(params, message):
    with pytest.raises(ValueError, match=message):
        metadata.to_chunks(params, {})


@pytest.mark.parametrize(
    "chunks, message",
    [
        ([(metadata.PHYS, b"\0" * 8)], "pHYs"),
        ([(metadata.TEXT, b"no separator")], "tEXt"),
        ([(metadata.TEXT, b"k\0\xff")], "UTF-8"),
        ([(metadata.ICCP, b"junk")], "iCCP"),
        ([(metadata.XMP, b"a"), (metadata.XMP, b"b")], "duplicate xMPp"),
    ],
)
def test_malformed_metadata_chunks_are_format_errors(chunks, message):
    with pytest.raises(FormatError, match=message):
        metadata.from_chunks(chunks)


def test_icc_bomb_is_refused():
    bomb = zlib.compress(bytes(metadata.MAX_ICC_BYTES + 10))
    with pytest.raises(FormatError, match="too large"):
        metadata.from_chunks([(metadata.ICCP, bomb)])


def test_metadata_chunks_are_ancillary():
    for kind in (metadata.ICCP, metadata.EXIF, metadata.XMP, metadata.PHYS, metadata.TEXT):
        assert not layout.is_critical(kind)
