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

Save parameters follow Pillow's PNG and WebP plugins: ``icc_profile``,
``exif`` (bytes or :class:`PIL.Image.Exif`), ``xmp``, ``dpi`` and ``text``
(a dict), each defaulting to the image's own ``info``. A chunk that is
malformed is reported as a broken file, as any other chunk would be.
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
# An ICC profile is small; never inflate one past this (a zlib bomb guard).
MAX_ICC_BYTES = 16 << 20


def to_chunks(params: Mapping[str, Any], info: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """Ancillary chunks for save ``params``, falling back on the image's ``info``.

    Raises :class:`ValueError` for a value of the wrong kind.
    """

    def get(key):
        return params[key] if key in params else info.get(key)

    chunks = []
    icc = get("icc_profile")
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
    text = params.get("text") or {}
    if not isinstance(text, Mapping):
        raise ValueError("text must be a dict of keyword to string")
    for key, value in text.items():
        keyword = str(key).encode()
        if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
            raise ValueError(f"text keyword must be 1 to 79 bytes without NUL: {key!r}")
        chunks.append((TEXT, keyword + b"\0" + str(value).encode()))
    return chunks


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
