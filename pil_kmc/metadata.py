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

    Raises :class:`ValueError` for a value of the wrong kind.
    """
    get = params.get  # EXIF, XMP and DPI: only when passed, as PNG does
    chunks = []
    if "icc_profile" in params:
        icc = params["icc_profile"]
    else:  # only a real profile: a tEXt chunk could have posed as one
        icc = info.get("icc_profile")
        icc = icc if isinstance(icc, bytes) else None
    if icc:
        chunks.append((ICCP, zlib.compress(_bytes("icc_profile", icc), 9)))
    exif = get("exif")
    if exif:
        if hasattr(exif, "tobytes"):  # PIL.Image.Exif
            exif = exif.tobytes()
        exif = _bytes("exif", exif)
        chunks.append((EXIF, exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    xmp = get("xmp")
    if xmp:
        chunks.append((XMP, xmp.encode() if isinstance(xmp, str) else _bytes("xmp", xmp)))
    dpi = get("dpi")
    if dpi:
        try:
            x, y = (round(float(v) / _INCH) for v in dpi)
        except (TypeError, ValueError):
            raise ValueError(f"dpi must be a pair of numbers, not {dpi!r}") from None
        if not (0 < x < 2**32 and 0 < y < 2**32):
            raise ValueError(f"dpi out of range: {dpi!r}")
        chunks.append((PHYS, struct.pack(">IIB", x, y, 1)))
    if "text" in params:
        text = params["text"] or {}
        if not isinstance(text, Mapping):
            raise ValueError("text must be a dict of keyword to string")
    else:
        text = info_text(info)
    for key, value in text.items():
        keyword = str(key).encode()
        if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
            raise ValueError(f"text keyword must be 1 to 79 bytes without NUL: {key!r}")
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


def _bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


def from_chunks(chunks: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Pillow ``info`` entries from ancillary chunks; unknown ones are skipped."""
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
            info["exif"] = b"Exif\0\0" + data
        elif kind == XMP:
            info["xmp"] = data
        elif kind == PHYS:
            if len(data) != 9 or data[8] != 1:
                raise FormatError("pHYs chunk must be 9 bytes with unit 1 (metre)")
            x, y, _ = struct.unpack(">IIB", data)
            info["dpi"] = (x * _INCH, y * _INCH)
        elif kind == TEXT:
            keyword, sep, text = data.partition(b"\0")
            if not sep or not 1 <= len(keyword) <= 79:
                raise FormatError("tEXt chunk needs a 1 to 79 byte keyword and a NUL")
            try:
                info[keyword.decode()] = text.decode()
            except UnicodeDecodeError:
                raise FormatError("tEXt chunk is not UTF-8") from None
    return info


def _inflate(data: bytes) -> bytes:
    engine = zlib.decompressobj()
    try:
        out = engine.decompress(data, MAX_ICC_BYTES + 1)
    except zlib.error as e:
        raise FormatError(f"corrupt iCCP chunk: {e}") from None
    if not engine.eof or len(out) > MAX_ICC_BYTES or engine.unused_data:
        raise FormatError("iCCP chunk is truncated, too large or has trailing data")
    return out
