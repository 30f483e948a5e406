"""Metadata <-> ancillary chunks: ICC profile, EXIF, XMP, DPI and text.

===========  =======================================================  ==================
chunk        data                                                     Pillow ``info`` key
===========  =======================================================  ==================
``iCCP``     the ICC profile, zlib-compressed                         ``icc_profile``
``eXIf``     EXIF as in PNG: the TIFF header onwards, no "Exif" tag   ``exif``
``xMPp``     the XMP packet, UTF-8                                    ``xmp``
``pHYs``     x and y pixels per metre (u32 each), unit byte 1         ``dpi``
``tEXt``     keyword (1-79 bytes UTF-8), NUL, text (UTF-8)            the keyword
===========  =======================================================  ==================

Save parameters follow Pillow's PNG plugin: ``icc_profile`` defaults to
the image's own ``info``; ``exif`` (bytes or :class:`PIL.Image.Exif`),
``xmp`` and ``dpi`` are written only when passed. ``text`` (a dict) defaults
to the image's text, the ``str`` entries of its ``info`` (where tEXt chunks,
and PNG's text chunks, open), so that text survives a re-save; PNG would
need ``pnginfo=`` for that. A chunk that is malformed is reported as a
broken file, as any other chunk would be.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

from .layout import FormatError

ICCP, EXIF, XMP, PHYS, TEXT = b"iCCP", b"eXIf", b"xMPp", b"pHYs", b"tEXt"
_ONCE = (ICCP, EXIF, XMP, PHYS)
_INCH = 0.0254
# str entries of info that are not text: other metadata, and other plugins' fields.
_NOT_TEXT = frozenset(
    {"icc_profile", "exif", "xmp", "XML:com.adobe.xmp", "dpi", "transparency", "compression"}
)
# An ICC profile is small; never inflate one past this (a zlib bomb guard).
MAX_ICC_BYTES = 16 << 20


def to_chunks(params: Mapping[str, Any], info: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """Ancillary chunks for save ``params``; ICC profile and text default to the image's ``info``.

    Raises :class:`ValueError` for a save parameter of the wrong kind; an
    ``info`` value of the wrong kind (say a text chunk of another format
    named ``dpi``) is dropped instead, as it is not the caller's argument.
    """
    chunks = []
    # The ICC profile defaults to the image's own (a real one: a tEXt chunk could
    # pose as it); EXIF, XMP and DPI are written only when passed, as PNG does.
    for key, make in (("icc_profile", _icc), ("exif", _exif), ("xmp", _xmp), ("dpi", _dpi)):
        if key in params:
            if params[key]:
                chunks.append(make(params[key]))
        elif key == "icc_profile" and isinstance(info.get(key), bytes) and info[key]:
            chunks.append(make(info[key]))
    if "text" in params:
        text = params["text"] or {}
        if not isinstance(text, Mapping):
            raise ValueError("text must be a dict of keyword to string")
    else:
        text = info_text(info)
    keywords = set()
    for key, value in text.items():
        keyword = str(key).encode()
        if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
            raise ValueError(f"text keyword must be 1 to 79 bytes without NUL: {key!r}")
        if keyword in keywords:
            raise ValueError(f"text keyword {key!r} given twice")
        keywords.add(keyword)
        chunks.append((TEXT, keyword + b"\0" + str(value).encode()))
    return chunks


def info_text(info: Mapping[str, Any]) -> dict[str, str]:
    """The text of an image's ``info``: its ``str`` entries whose keys fit a tEXt keyword."""
    return {
        key: value
        for key, value in info.items()
        if isinstance(key, str)
        and isinstance(value, str)
        and key not in _NOT_TEXT
        and 1 <= len(key.encode()) <= 79
        and "\0" not in key
    }


def _icc(value: Any) -> tuple[bytes, bytes]:
    return ICCP, zlib.compress(_bytes("icc_profile", value), 9)


def _exif(value: Any) -> tuple[bytes, bytes]:
    if hasattr(value, "tobytes"):  # PIL.Image.Exif
        value = value.tobytes()
    exif = _bytes("exif", value)
    return EXIF, exif[6:] if exif.startswith(b"Exif\0\0") else exif


def _xmp(value: Any) -> tuple[bytes, bytes]:
    return XMP, value.encode() if isinstance(value, str) else _bytes("xmp", value)


def _dpi(value: Any) -> tuple[bytes, bytes]:
    """pHYs for a (x, y) dpi pair; section 6a: at least 1 pixel per metre each."""
    try:
        if isinstance(value, (str, bytes)) or len(value) != 2:
            raise TypeError
        x, y = (round(float(v) / _INCH) for v in value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"dpi must be a pair of numbers, not {value!r}") from None
    if not (0 < x < 2**32 and 0 < y < 2**32):
        raise ValueError(f"dpi out of range: {value!r}")
    return PHYS, struct.pack(">IIB", x, y, 1)


def _bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


# Section 6a: keywords that never enter ``info``, since they name a key that
# another chunk sets or that Pillow interprets; they stay in ``im.text``.
RESERVED_KEYWORDS = frozenset(
    ("icc_profile", "exif", "xmp", "dpi", "transparency", "background", "gamma", "aspect")
)
_TIFF_HEADERS = (b"II*\0", b"MM\0*")


def from_chunks(chunks: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Pillow ``info`` entries from section 6a chunks, checking every rule of 6a.

    Unknown chunk types are skipped; a malformed or repeated chunk raises
    :class:`FormatError` (section 9, duty 9).
    """
    info: dict[str, Any] = {}
    seen = set()
    for kind, data in chunks:
        if kind in _ONCE:
            if kind in seen:
                raise FormatError(f"duplicate {kind.decode()} chunk")
            seen.add(kind)
        if kind == ICCP:
            info["icc_profile"] = _inflate(data)
        elif kind == EXIF:
            if not data.startswith(_TIFF_HEADERS):
                raise FormatError("eXIf chunk must start with a TIFF header (II*\\0 or MM\\0*)")
            info["exif"] = b"Exif\0\0" + data
        elif kind == XMP:
            _utf8(data, "xMPp chunk")
            info["xmp"] = data
        elif kind == PHYS:
            if len(data) != 9 or data[8] != 1:
                raise FormatError("pHYs chunk must be 9 bytes with unit 1 (metre)")
            x, y, _ = struct.unpack(">IIB", data)
            if not (x and y):
                raise FormatError("pHYs chunk must give at least 1 pixel per metre")
            info["dpi"] = (x * _INCH, y * _INCH)
    for keyword, value in text_of(chunks).items():
        if keyword not in RESERVED_KEYWORDS:
            info[keyword] = value
    return info


def text_of(chunks: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Every ``tEXt`` entry, keyword to text; a repeated keyword is a :class:`FormatError`."""
    text: dict[str, str] = {}
    for kind, data in chunks:
        if kind != TEXT:
            continue
        keyword, sep, value = data.partition(b"\0")
        if not sep or not 1 <= len(keyword) <= 79:
            raise FormatError("tEXt chunk needs a 1 to 79 byte keyword and a NUL")
        key = _utf8(keyword, "tEXt chunk")
        if key in text:
            raise FormatError(f"tEXt keyword {key!r} appears twice")
        text[key] = _utf8(value, "tEXt chunk")
    return text


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not UTF-8") from None


def _inflate(data: bytes) -> bytes:
    engine = zlib.decompressobj()
    try:
        out = engine.decompress(data, MAX_ICC_BYTES + 1)
    except zlib.error as e:
        raise FormatError(f"corrupt iCCP chunk: {e}") from None
    if not engine.eof or len(out) > MAX_ICC_BYTES or engine.unused_data:
        raise FormatError("iCCP chunk is truncated, too large or has trailing data")
    return out
