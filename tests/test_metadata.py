"""Metadata chunks: ICC profile, EXIF, XMP, DPI and text survive a save and an open."""

from __future__ import annotations

import io
import zlib

import numpy as np
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
    "params, message",
    [
        ({"exif": b"garbage"}, "TIFF header"),
        ({"exif": b"Exif\0\0"}, "TIFF header"),
        ({"xmp": '<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'.encode("utf-16")}, "UTF-8"),
        ({"xmp": "\ud800"}, "UTF-8"),
        ({"text": {"a": "\ud800"}}, "UTF-8"),
        ({"text": {"Comment": "x" * layout.MAX_TEXT_CHUNK}}, "tEXt chunk holds"),
        ({"text": {f"k{i}": "v" for i in range(layout.MAX_ANCILLARY_CHUNKS + 1)}}, "at most"),
        ({"icc_profile": bytes(metadata.MAX_ICC_BYTES + 1)}, "icc_profile of"),
    ],
)
def test_a_save_never_writes_metadata_that_its_reader_rejects(params, message):
    buffer = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        Image.new("RGB", (2, 2)).save(buffer, "KMC", **params)
    assert buffer.getvalue() == b""


def test_text_from_info_that_no_chunk_can_hold_is_dropped_with_a_warning():
    # a PNG's 600 kB of Latin-1 text is 1.2 MB of UTF-8, past a tEXt chunk's 1 MiB
    im = Image.new("RGB", (2, 2))
    im.info.update(Comment="\xe9" * 600_000, Title="kept")
    with pytest.warns(UserWarning, match="info\\['Comment'\\] not written"):
        out = round_trip(im)
    out.load()
    assert "Comment" not in out.info and out.info["Title"] == "kept"


def test_text_from_info_past_the_files_bounds_is_dropped_with_a_warning():
    im = Image.new("L", (2, 2))
    im.info.update({f"k{i}": "v" for i in range(layout.MAX_ANCILLARY_CHUNKS + 10)})
    with pytest.warns(UserWarning, match="at most 4096 metadata chunks"):
        out = round_trip(im)
    assert len(out.text) == layout.MAX_ANCILLARY_CHUNKS


def _profile(space: bytes) -> bytes:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + space + srgb[20:]


@pytest.mark.parametrize(
    "mode, space, kept",
    [
        ("RGB", b"RGB ", True),
        ("CMYK", b"CMYK", False),  # the pixels are stored as RGB
        ("LAB", b"Lab ", False),
        ("L", b"GRAY", True),
        ("L", b"RGB ", False),
        ("RGB", b"GRAY", False),
    ],
)
def test_an_info_profile_is_kept_only_for_the_colour_space_stored(mode, space, kept):
    im = Image.new(mode, (2, 2))
    im.info["icc_profile"] = _profile(space)
    assert ("icc_profile" in round_trip(im).info) == kept
    # one passed as an argument is the caller's to choose
    assert round_trip(im, icc_profile=_profile(space)).info["icc_profile"] == _profile(space)


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


def png_with(*chunks: tuple[bytes, bytes]) -> Image.Image:
    """A PNG whose extra chunks Pillow's own reader turns into ``info``."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "teal").save(buffer, "PNG")
    data = buffer.getvalue()
    extra = b"".join(
        len(d).to_bytes(4, "big") + t + d + zlib.crc32(t + d).to_bytes(4, "big") for t, d in chunks
    )
    return Image.open(io.BytesIO(data[:33] + extra + data[33:]))


@pytest.mark.parametrize("text", [b"72", b"300", b"x"])
def test_a_png_text_chunk_named_dpi_is_not_taken_for_dpi(text):
    # Issue 15 item 11: tEXt dpi=72 became dpi (7.01, 2.01); dpi=300 made the save raise.
    im = png_with((b"tEXt", b"dpi\0" + text))
    assert im.info["dpi"] == text.decode()  # Pillow's PNG reader puts it there
    assert "dpi" not in round_trip(im).info


def test_a_png_phys_of_zero_does_not_break_the_save():
    im = png_with((b"pHYs", bytes(8) + b"\1"))
    assert im.info["dpi"] == (0, 0)
    assert "dpi" not in round_trip(im).info
    with pytest.raises(ValueError, match="dpi out of range"):
        round_trip(Image.new("RGB", (2, 2)), dpi=(0, 0))
    with pytest.raises(ValueError, match="pair of numbers"):
        round_trip(Image.new("RGB", (2, 2)), dpi="72")


def test_text_never_overwrites_another_info_key():
    # Issue 15 item 11: tEXt icc_profile, exif or transparency replaced those keys.
    exif = Image.Exif()
    exif[0x0112] = 6
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    text = {"icc_profile": "x", "exif": "y", "transparency": "0", "dpi": "1", "Title": "t"}
    im = round_trip(Image.new("RGB", (3, 2)), icc_profile=profile, exif=exif, text=text)
    assert im.info["icc_profile"] == profile
    assert im.getexif()[0x0112] == 6
    assert "transparency" not in im.info and im.info["Title"] == "t"
    assert im.text == text
    im.convert("RGBA")


@pytest.mark.parametrize(
    "chunks, message",
    [
        ([(metadata.EXIF, b"Exif\0\0MM\0*")], "TIFF header"),
        ([(metadata.EXIF, b"garbage")], "TIFF header"),
        ([(metadata.XMP, b"<x>\xff</x>")], "xMPp chunk is not UTF-8"),
        ([(metadata.PHYS, bytes(8) + b"\1")], "at least 1 pixel"),
        ([(metadata.PHYS, b"\0\0\0\1" + bytes(4) + b"\1")], "at least 1 pixel"),
        ([(metadata.TEXT, b"k\0a"), (metadata.TEXT, b"k\0b")], "appears twice"),
        ([(metadata.TEXT, b"\xff\0a")], "UTF-8"),
        ([(metadata.TEXT, b"\0a")], "1 to 79"),
        ([(metadata.TEXT, b"k" * 80 + b"\0a")], "1 to 79"),
    ],
)
def test_section_6a_rules_are_a_readers_duties(chunks, message):
    # Issue 15 item 12: malformed eXIf and xMPp, repeated keywords and pHYs 0 were accepted.
    with pytest.raises(FormatError, match=message):
        metadata.from_chunks(chunks)


def test_valid_exif_xmp_and_text_pass():
    info = metadata.from_chunks(
        [
            (metadata.EXIF, b"II*\0" + bytes(4)),
            (metadata.XMP, "<é/>".encode()),
            (metadata.TEXT, "clé\0valeur".encode()),
        ]
    )
    assert info == {"exif": b"Exif\0\0II*\0" + bytes(4), "xmp": "<é/>".encode(), "clé": "valeur"}


def test_the_profile_follows_the_stored_colour_model_not_the_images_mode():
    # An L image remapped to an RGB palette is stored as RGB.
    im = Image.new("L", (2, 2), 100)
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    im.info["icc_profile"] = _profile(b"RGB ")
    assert round_trip(im, palette=palette).info["icc_profile"] == _profile(b"RGB ")
    im.info["icc_profile"] = _profile(b"GRAY")
    assert "icc_profile" not in round_trip(im, palette=palette).info


def test_an_info_profile_too_large_to_store_takes_no_other_chunk_with_it():
    im = Image.new("RGB", (2, 2))
    im.info["icc_profile"] = _profile(b"CMYK") + bytes(metadata.MAX_ICC_BYTES)
    im.info["Title"] = "kept"
    with pytest.warns(UserWarning, match="icc_profile"):
        out = round_trip(im)
    assert out.info["Title"] == "kept" and "icc_profile" not in out.info
