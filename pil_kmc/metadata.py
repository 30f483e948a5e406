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

A save never writes a chunk that a reader would reject (section 6a and
section 10's bounds): a save parameter that would make one raises
:class:`ValueError`, and a value taken from the image's ``info`` is dropped
with a warning, so that a re-save of another format's image still works.
An ICC profile from ``info`` whose colour space is not the stored one (a
CMYK or Lab profile on pixels that are stored as RGB) is left out without
one: it describes pixels that are not stored (see :func:`profile_space`).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Mapping
from typing import Any

from .layout import (
    MAX_ANCILLARY_BYTES,
    MAX_ANCILLARY_CHUNKS,
    MAX_TEXT_CHUNK,
    FormatError,
)

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

    Raises :class:`ValueError` for a save parameter of the wrong kind, or one
    that a reader would reject (section 6a) or that passes section 10's
    bounds. An ``info`` value of the wrong kind (say a text chunk of another
    format named ``dpi``) is dropped instead, as it is not the caller's
    argument; so is one a reader would reject, with a warning. An ``iCCP``
    chunk from ``info`` comes first, so that the encoder can leave it out if
    it describes other pixels than those stored (:func:`profile_space`).
    """
    chunks = []
    # The ICC profile defaults to the image's own (a real one: a tEXt chunk could
    # pose as it); EXIF, XMP and DPI are written only when passed, as PNG does.
    for key, make in (("icc_profile", _icc), ("exif", _exif), ("xmp", _xmp), ("dpi", _dpi)):
        if key in params:
            if params[key]:
                chunks.append(make(params[key]))
        elif key == "icc_profile" and isinstance(info.get(key), bytes) and info[key]:
            try:
                chunks.append(make(info[key]))
            except ValueError as e:
                _dropped(key, e)
    if "text" in params:
        text = params["text"] or {}
        if not isinstance(text, Mapping):
            raise ValueError("text must be a dict of keyword to string")
        given = True
    else:
        text, given = info_text(info), False
    keywords = set()
    count, size = len(chunks), sum(len(data) for _, data in chunks)
    for key, value in text.items():
        keyword = _utf8_bytes("text keyword", str(key))
        if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
            raise ValueError(f"text keyword must be 1 to 79 bytes without NUL: {key!r}")
        if keyword in keywords:
            raise ValueError(f"text keyword {key!r} given twice")
        keywords.add(keyword)
        try:
            chunk = _text(keyword, value)
            count, size = count + 1, size + len(chunk[1])
            if count > MAX_ANCILLARY_CHUNKS or size > MAX_ANCILLARY_BYTES:
                raise ValueError(
                    f"a file holds at most {MAX_ANCILLARY_CHUNKS} metadata chunks and "
                    f"{MAX_ANCILLARY_BYTES} bytes of them"
                )
        except ValueError as e:
            if given:
                raise
            _dropped(key, e)
            continue
        chunks.append(chunk)
    return chunks


def _dropped(key: str, reason: ValueError) -> None:
    warnings.warn(f"info[{key!r}] not written to the KMC file: {reason}", stacklevel=6)


def profile_space(profile: Any) -> bytes | None:
    """The data colour space of an ICC profile (header bytes 16-19: ``b"RGB "``,
    ``b"GRAY"``, ``b"CMYK"``...), or None for anything without a profile's header."""
    if not isinstance(profile, bytes) or len(profile) < 128 or profile[36:40] != b"acsp":
        return None
    return profile[16:20]


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
    profile = _bytes("icc_profile", value)
    if len(profile) > MAX_ICC_BYTES:
        raise ValueError(f"icc_profile of {len(profile)} bytes; at most {MAX_ICC_BYTES}")
    return ICCP, zlib.compress(profile, 9)


def _exif(value: Any) -> tuple[bytes, bytes]:
    if hasattr(value, "tobytes"):  # PIL.Image.Exif
        value = value.tobytes()
    exif = _bytes("exif", value)
    exif = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    if not exif.startswith(_TIFF_HEADERS):
        raise ValueError(
            "exif must start with a TIFF header (II*\\0 or MM\\0*), after any Exif\\0\\0"
        )
    return EXIF, exif


def _xmp(value: Any) -> tuple[bytes, bytes]:
    data = _utf8_bytes("xmp", value) if isinstance(value, str) else _bytes("xmp", value)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("xmp must be UTF-8") from None
    return XMP, data


def _text(keyword: bytes, value: Any) -> tuple[bytes, bytes]:
    data = keyword + b"\0" + _utf8_bytes(f"text {keyword.decode()!r}", str(value))
    if len(data) > MAX_TEXT_CHUNK:
        raise ValueError(
            f"text {keyword.decode()!r} is {len(data)} bytes; a tEXt chunk holds {MAX_TEXT_CHUNK}"
        )
    return TEXT, data


def _utf8_bytes(name: str, value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} cannot be encoded as UTF-8") from None


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


def from_chunks(
    chunks: list[tuple[bytes, bytes]], text: dict[str, str] | None = None
) -> dict[str, Any]:
    """Pillow ``info`` entries from section 6a chunks, checking every rule of 6a.

    Unknown chunk types are skipped; a malformed or repeated chunk raises
    :class:`FormatError` (section 9, duty 9). ``text``, if given, is
    :func:`text_of` these chunks, already decoded (so it is not decoded twice).
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
    for keyword, value in (text_of(chunks) if text is None else text).items():
        if keyword not in RESERVED_KEYWORDS:
            info[keyword] = value
    return info


def check_after(before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]]) -> None:
    """Section 9: the 6a chunks after the index data obey 6a's rules, counting those before.

    ``before`` were checked when the file was opened; only their types and
    text keywords are looked at again, so their data is not decoded twice.
    """
    if not after:
        return
    from_chunks(after)
    once = {kind for kind, _ in before if kind in _ONCE}
    keywords = {data.partition(b"\0")[0] for kind, data in before if kind == TEXT}
    for kind, data in after:
        if kind in once:
            raise FormatError(f"duplicate {kind.decode()} chunk")
        keyword = data.partition(b"\0")[0] if kind == TEXT else None
        if keyword in keywords:
            raise FormatError(f"tEXt keyword {keyword.decode()!r} appears twice")


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
