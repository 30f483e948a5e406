"""The ``.kmc`` byte layout: signature, chunks, header, palette.

This module knows bytes and nothing else: no Pillow, no numpy. Every rule it
enforces is written down in ``spec/kmc.md``; the section names in comments
below refer to that document.

A file is the 8-byte signature followed by chunks. Each chunk is::

    length (u32 BE) | type (4 ASCII letters) | data (length bytes) | CRC-32 (u32 BE)

where the CRC covers type and data, exactly as in PNG.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

SIGNATURE = b"\x89KMC\r\n\x1a\n"

#: The newest format version this module reads and writes.
VERSION_MAJOR = 1
VERSION_MINOR = 2

#: Colour models, stored as their channel count.
GRAY, GRAY_ALPHA, RGB, RGBA = 1, 2, 3, 4
CHANNEL_NAMES = {GRAY: "G", GRAY_ALPHA: "GA", RGB: "RGB", RGBA: "RGBA"}

#: Compression methods of the index stream (spec: "Compression methods").
STORED, ZLIB, XZ, BZIP2, CONTEXT, STRIPS = 0, 1, 2, 3, 4, 5
COMPRESSION_NAMES = {
    STORED: "stored",
    ZLIB: "zlib",
    XZ: "xz",
    BZIP2: "bzip2",
    CONTEXT: "context",
    STRIPS: "strips",
}
#: The minor version that introduced each compression method.
COMPRESSION_SINCE = {STORED: 0, ZLIB: 0, XZ: 0, BZIP2: 0, CONTEXT: 1, STRIPS: 2}
#: Methods that code the index plane itself, not the packed rows (spec 5.3).
PLANE_METHODS = (CONTEXT, STRIPS)

#: Filter methods of the index plane (spec: "Filter methods").
FILTER_NONE = 0
FILTER_NAMES = {FILTER_NONE: "none"}

BIT_DEPTHS = (1, 2, 4, 8)
MAX_DIMENSION = 2**31 - 1
MAX_CHUNK_LENGTH = 2**31 - 1
MAX_CLUSTERS = 256

KHDR, KPAL, KIDX, KEND = b"KHDR", b"KPAL", b"KIDX", b"KEND"
_HEADER = struct.Struct(">BBIIBHBBB")
HEADER_LENGTH = _HEADER.size  # 16

# A chunk is never read in one allocation larger than this, so that a lying
# length field in a short file cannot make the reader allocate gigabytes.
_READ_BLOCK = 1 << 20


class FormatError(OSError):
    """A ``.kmc`` file breaks the specification (truncated, corrupt, or invalid)."""


@dataclass(frozen=True)
class Header:
    """The fields of the KHDR chunk."""

    width: int
    height: int
    channels: int
    k: int
    bit_depth: int
    filter_method: int = FILTER_NONE
    compression: int = ZLIB
    version: tuple[int, int] = (VERSION_MAJOR, 0)

    def __post_init__(self) -> None:
        problem = _header_problem(self)
        if problem:
            raise FormatError(problem)

    @property
    def row_bytes(self) -> int:
        """Bytes per row of the unfiltered, packed index plane."""
        return (self.width * self.bit_depth + 7) // 8

    @property
    def index_plane_bytes(self) -> int:
        """Size of the packed index plane that the index stream decompresses to."""
        return self.row_bytes * self.height

    def pack(self) -> bytes:
        """The 16 data bytes of the KHDR chunk."""
        return _HEADER.pack(
            *self.version,
            self.width,
            self.height,
            self.channels,
            self.k,
            self.bit_depth,
            self.filter_method,
            self.compression,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        """Parse KHDR data; raises :class:`FormatError` for any invalid field."""
        if len(data) != HEADER_LENGTH:
            raise FormatError(f"KHDR chunk must be {HEADER_LENGTH} bytes, not {len(data)}")
        major, minor, w, h, channels, k, depth, filt, comp = _HEADER.unpack(data)
        if major != VERSION_MAJOR:
            raise FormatError(
                f"unsupported .kmc major version {major} (this reader knows {VERSION_MAJOR})"
            )
        return cls(w, h, channels, k, depth, filt, comp, (major, minor))


def _header_problem(h: Header) -> str | None:
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        return f"invalid image size {h.width}x{h.height}"
    if h.channels not in CHANNEL_NAMES:
        return f"invalid colour model {h.channels} (channels must be 1 to 4)"
    if not 1 <= h.k <= MAX_CLUSTERS:
        return f"invalid palette size k={h.k} (must be 1 to {MAX_CLUSTERS})"
    if h.bit_depth not in BIT_DEPTHS:
        return f"invalid index bit depth {h.bit_depth}"
    if h.k > 1 << h.bit_depth:
        return f"k={h.k} does not fit in {h.bit_depth}-bit indices"
    if h.filter_method not in FILTER_NAMES:
        return f"unknown filter method {h.filter_method}; a newer pil_kmc may read this file"
    if h.compression not in COMPRESSION_NAMES:
        return f"unknown compression method {h.compression}; a newer pil_kmc may read this file"
    return None


def version_for(compression: int) -> tuple[int, int]:
    """The lowest version that defines ``compression``: the version a writer records."""
    return (VERSION_MAJOR, COMPRESSION_SINCE[compression])


def bit_depth_for(k: int) -> int:
    """The smallest index bit depth (1, 2, 4 or 8) that holds ``k`` palette entries."""
    return next(d for d in BIT_DEPTHS if k <= 1 << d)


def is_critical(chunk_type: bytes) -> bool:
    """Critical chunks start with an upper-case letter; readers must understand them."""
    return 65 <= chunk_type[0] <= 90


def chunk(chunk_type: bytes, data: bytes) -> bytes:
    """Serialise one chunk: length, type, data, CRC-32 of type and data."""
    if len(chunk_type) != 4 or not chunk_type.isalpha():
        raise ValueError(f"chunk type must be 4 ASCII letters, not {chunk_type!r}")
    if len(data) > MAX_CHUNK_LENGTH:
        raise ValueError("chunk data longer than 2**31 - 1 bytes")
    crc = zlib.crc32(data, zlib.crc32(chunk_type))
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)


def build(
    header: Header, palette: bytes, index_stream: bytes, ancillary: list[tuple[bytes, bytes]] = ()
) -> bytes:
    """A whole file: signature, KHDR, ancillary chunks, KPAL, KIDX (split as needed), KEND."""
    if len(palette) != header.k * header.channels:
        raise ValueError("palette length must be k * channels")
    parts = [SIGNATURE, chunk(KHDR, header.pack())]
    parts += [chunk(t, d) for t, d in ancillary]
    parts.append(chunk(KPAL, palette))
    step = MAX_CHUNK_LENGTH
    parts += [chunk(KIDX, index_stream[i : i + step]) for i in range(0, len(index_stream), step)]
    if not index_stream:
        parts.append(chunk(KIDX, b""))
    parts.append(chunk(KEND, b""))
    return b"".join(parts)


class TruncatedError(FormatError):
    """The file ended early; ``partial`` holds the bytes that were there."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


def _read_exact(fp: IO[bytes], size: int, what: str) -> bytes:
    """Read ``size`` bytes in bounded blocks, or raise a truncation error."""
    if size <= _READ_BLOCK:
        data = fp.read(size)
    else:
        blocks = []
        remaining = size
        while remaining:
            block = fp.read(min(remaining, _READ_BLOCK))
            if not block:
                break
            blocks.append(block)
            remaining -= len(block)
        data = b"".join(blocks)
    if len(data) != size:
        raise TruncatedError(f"file is truncated in {what}", data)
    return data


def read_chunk(fp: IO[bytes]) -> tuple[bytes, bytes]:
    """Read one chunk and check its length, type and CRC; returns (type, data)."""
    head = fp.read(8)
    if len(head) != 8:
        raise TruncatedError("file is truncated at a chunk header")
    length, chunk_type = struct.unpack(">I4s", head)
    if not chunk_type.isalpha():
        raise FormatError(f"invalid chunk type {chunk_type!r}")
    name = chunk_type.decode("ascii")
    if length > MAX_CHUNK_LENGTH:
        raise FormatError(f"{name} chunk length {length} exceeds 2**31 - 1")
    data = _read_exact(fp, length, f"the {name} chunk")
    crc = fp.read(4)
    if len(crc) != 4:
        raise TruncatedError(f"file is truncated in the {name} chunk's CRC", data)
    if struct.unpack(">I", crc)[0] != zlib.crc32(data, zlib.crc32(chunk_type)):
        raise FormatError(f"CRC mismatch in the {name} chunk: the file is corrupt")
    return chunk_type, data


@dataclass
class Head:
    """What a reader learns before the index data: header, palette, metadata."""

    header: Header
    palette: bytes
    ancillary: list[tuple[bytes, bytes]]
    index_offset: int  # file offset of the first KIDX chunk


def read_head(fp: IO[bytes]) -> Head:
    """Read the signature and every chunk up to (not including) the first KIDX.

    Raises :class:`SyntaxError` if the signature is wrong (not a ``.kmc``
    file at all) and :class:`FormatError` if it is a broken one.
    """
    if fp.read(len(SIGNATURE)) != SIGNATURE:
        raise SyntaxError("not a KMC file")
    chunk_type, data = read_chunk(fp)
    if chunk_type != KHDR:
        raise FormatError("the first chunk must be KHDR")
    header = Header.unpack(data)
    palette = None
    ancillary: list[tuple[bytes, bytes]] = []
    while True:
        offset = fp.tell()
        next_type = fp.read(8)[4:]
        fp.seek(offset)
        if next_type == KIDX:
            break
        chunk_type, data = read_chunk(fp)
        if chunk_type == KPAL:
            if palette is not None:
                raise FormatError("duplicate KPAL chunk")
            if len(data) != header.k * header.channels:
                raise FormatError(
                    f"KPAL holds {len(data)} bytes, expected k * channels = "
                    f"{header.k * header.channels}"
                )
            palette = data
        elif is_critical(chunk_type):
            raise FormatError(_misplaced(chunk_type))
        else:
            ancillary.append((chunk_type, data))
    if palette is None:
        raise FormatError("missing KPAL chunk before KIDX")
    return Head(header, palette, ancillary, offset)


def _misplaced(chunk_type: bytes) -> str:
    name = chunk_type.decode("ascii")
    if chunk_type in (KHDR, KPAL, KIDX, KEND):
        return f"misplaced or duplicate {name} chunk"
    return f"unknown critical chunk {name}; a newer pil_kmc may read this file"


def iter_index_stream(fp: IO[bytes]) -> Iterator[bytes]:
    """Yield the data of consecutive KIDX chunks, then check the file's end.

    ``fp`` must be positioned at the first KIDX chunk. After the last KIDX
    come only ancillary chunks and KEND, and nothing after KEND.
    """
    chunk_type, data = read_chunk(fp)
    if chunk_type != KIDX:
        raise FormatError("expected a KIDX chunk")
    yield data
    while True:
        chunk_type, data = read_chunk(fp)
        if chunk_type == KIDX:
            yield data
            continue
        break
    while chunk_type != KEND:
        if is_critical(chunk_type):
            raise FormatError(_misplaced(chunk_type))
        chunk_type, data = read_chunk(fp)
    if data:
        raise FormatError("KEND chunk must be empty")
    if fp.read(1):
        raise FormatError("trailing data after the KEND chunk")
