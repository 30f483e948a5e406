"""The ``.kmc`` byte layout: signature, chunks, header, palette.

This module knows bytes and nothing else: no Pillow, no numpy. Every rule it
enforces is written down in ``spec/kmc.md``; the section names in comments
below refer to that document.

A file is the 8-byte signature followed by chunks. Each chunk is::

    length (u32 BE) | type (4 ASCII letters) | data (length bytes) | CRC-32 (u32 BE)

where the CRC covers type and data, exactly as in PNG.

The container has one reader and one writer: :func:`read` parses a file
into a :class:`KmcFile` (header, palette, metadata chunks and, at once or
later through :meth:`KmcFile.read_index`, the index data), and
:func:`build` writes one. A :class:`Header` records the lowest version that
defines its compression method unless told otherwise (section 8).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import IO

SIGNATURE = b"\x89KMC\r\n\x1a\n"

#: The newest format version this module reads and writes.
VERSION_MAJOR = 1
VERSION_MINOR = 3

#: Colour models, stored as their channel count.
GRAY, GRAY_ALPHA, RGB, RGBA = 1, 2, 3, 4
CHANNEL_NAMES = {GRAY: "G", GRAY_ALPHA: "GA", RGB: "RGB", RGBA: "RGBA"}

#: Compression methods of the index stream (spec: "Compression methods").
STORED, ZLIB, XZ, BZIP2, CONTEXT, STRIPS, TABLES = 0, 1, 2, 3, 4, 5, 6
COMPRESSION_NAMES = {
    STORED: "stored",
    ZLIB: "zlib",
    XZ: "xz",
    BZIP2: "bzip2",
    CONTEXT: "context",
    STRIPS: "strips",
    TABLES: "tables",
}
#: The minor version that introduced each compression method.
COMPRESSION_SINCE = {STORED: 0, ZLIB: 0, XZ: 0, BZIP2: 0, CONTEXT: 1, STRIPS: 2, TABLES: 3}
#: Methods that code the index plane itself, not the packed rows (spec 5.3).
PLANE_METHODS = (CONTEXT, STRIPS, TABLES)

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
    #: Defaults to the lowest version defining the methods used (section 8).
    version: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.version is None and self.compression in COMPRESSION_SINCE:
            object.__setattr__(self, "version", version_for(self.compression))
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
    # Section 9, duty 3: a file may use only what its version defines (section 8).
    if h.version[0] == VERSION_MAJOR and h.version[1] < COMPRESSION_SINCE[h.compression]:
        since = f"{VERSION_MAJOR}.{COMPRESSION_SINCE[h.compression]}"
        return (
            f"version {h.version[0]}.{h.version[1]} file uses compression method "
            f"{h.compression} ({COMPRESSION_NAMES[h.compression]}), defined since {since}"
        )
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
    """The file ended early (section 9, duty 4)."""


# Section 6a chunks, whose data a reader keeps; every other ancillary chunk
# is checked and dropped (section 8), so it costs no memory.
TEXT = b"tEXt"
KNOWN_ANCILLARY = frozenset((b"iCCP", b"eXIf", b"xMPp", b"pHYs", TEXT))
# Section 10: bounds on kept ancillary data, after Pillow's PNG reader
# (MAX_TEXT_CHUNK, MAX_TEXT_MEMORY).
MAX_TEXT_CHUNK = 1 << 20
MAX_ANCILLARY_BYTES = 64 << 20
MAX_ANCILLARY_CHUNKS = 4096
# Unknown ancillary chunk types a reader lists (for ``kmc info``): the first ones.
MAX_SKIPPED_TYPES = 64


@dataclass(frozen=True)
class IndexData:
    """What follows the palette: the index stream and the chunks after it."""

    stream: bytes | bytearray  # the data of the consecutive KIDX chunks, joined
    ancillary: list[tuple[bytes, bytes]]  # section 6a chunks after the index data
    truncated: bool = False  # the file ended early (only when read with ``partial``)


@dataclass(frozen=True)
class KmcFile:
    """A parsed container: header, palette, metadata and (once read) the index data."""

    header: Header
    palette: bytes
    ancillary: list[tuple[bytes, bytes]]  # section 6a chunks before the index data
    skipped: list[bytes]  # the first MAX_SKIPPED_TYPES types of unknown ancillary chunks
    index_offset: int  # file offset of the first KIDX chunk
    index: IndexData | None = None

    def read_index(self, fp: IO[bytes], *, partial: bool = False) -> IndexData:
        """Read from the first KIDX chunk (``fp`` positioned there) to the end of the file.

        With ``partial`` (Pillow's ``LOAD_TRUNCATED_IMAGES``), a file that
        ends early gives the index bytes read so far, never bytes of a later
        chunk, and ``truncated`` set; other errors are raised as always.
        """
        reader = _Chunks(fp, kept_bytes=sum(len(d) for _, d in self.ancillary))
        reader.kept_chunks = len(self.ancillary)
        stored = self.header.compression == STORED
        return reader.index_data(partial, self.header.index_plane_bytes if stored else None)


class _Chunks:
    """A cursor over a file's chunks that enforces sections 2, 9 and 10 as it goes."""

    def __init__(self, fp: IO[bytes], kept_bytes: int = 0) -> None:
        self.fp = fp
        self.kept_bytes = kept_bytes
        self.kept_chunks = 0

    def next_head(self) -> tuple[int, bytes]:
        """The next chunk's length and type, checked (section 9, duty 4)."""
        head = self.fp.read(8)
        if len(head) != 8:
            raise TruncatedError("file is truncated at a chunk header")
        length, chunk_type = _CHUNK_HEAD.unpack(head)
        if not chunk_type.isalpha():
            raise FormatError(f"invalid chunk type {chunk_type!r}")
        if length > MAX_CHUNK_LENGTH:
            raise FormatError(f"{chunk_type.decode()} chunk length {length} exceeds 2**31 - 1")
        return length, chunk_type

    def data(self, length: int, chunk_type: bytes, keep: bool = True, got=None) -> bytes:
        """The chunk's data (in bounded blocks) after checking its CRC.

        Without ``keep`` the data is checked block by block and dropped. A
        file that ends early raises :class:`TruncatedError`; the bytes read
        so far are appended to the list ``got`` first when one is given.
        """
        if length <= _READ_BLOCK:  # the common case: data and CRC in one read
            block = self.fp.read(length + 4)
            if len(block) == length + 4:
                data = block[:length]
                if int.from_bytes(block[length:], "big") != zlib.crc32(
                    data, zlib.crc32(chunk_type)
                ):
                    raise FormatError(
                        f"CRC mismatch in the {chunk_type.decode()} chunk: the file is corrupt"
                    )
                return data if keep else b""
            if got is not None:
                got.append(block[:length])
            where = "chunk" if len(block) < length else "chunk's CRC"
            raise TruncatedError(f"file is truncated in the {chunk_type.decode()} {where}")
        name = chunk_type.decode()
        crc = zlib.crc32(chunk_type)
        blocks = []
        remaining = length
        while remaining:
            block = self.fp.read(min(remaining, _READ_BLOCK))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
            if keep:
                blocks.append(block)
        data = b"".join(blocks)
        if remaining:
            if got is not None:
                got.append(data)
            raise TruncatedError(f"file is truncated in the {name} chunk")
        stored = self.fp.read(4)
        if len(stored) != 4:
            if got is not None:
                got.append(data)
            raise TruncatedError(f"file is truncated in the {name} chunk's CRC")
        if int.from_bytes(stored, "big") != crc:
            raise FormatError(f"CRC mismatch in the {name} chunk: the file is corrupt")
        return data

    def ancillary(self, length: int, chunk_type: bytes, kept: list, skipped: list | None) -> None:
        """An ancillary chunk: a section 6a one is kept within section 10's bounds."""
        if chunk_type not in KNOWN_ANCILLARY:
            self.data(length, chunk_type, keep=False)
            # Each type once, and only the first few: a flood of chunks costs no memory.
            listed = skipped is not None and len(skipped) < MAX_SKIPPED_TYPES
            if listed and chunk_type not in skipped:
                skipped.append(chunk_type)
            return
        name = chunk_type.decode()
        if chunk_type == TEXT and length > MAX_TEXT_CHUNK:
            raise FormatError(f"{name} chunk of {length} bytes exceeds {MAX_TEXT_CHUNK} bytes")
        self.kept_bytes += length
        self.kept_chunks += 1
        if self.kept_bytes > MAX_ANCILLARY_BYTES:
            raise FormatError(f"ancillary chunks exceed {MAX_ANCILLARY_BYTES} bytes in all")
        if self.kept_chunks > MAX_ANCILLARY_CHUNKS:
            raise FormatError(f"more than {MAX_ANCILLARY_CHUNKS} metadata chunks")
        kept.append((chunk_type, self.data(length, chunk_type)))

    def index_data(self, partial: bool, most: int | None = None) -> IndexData:
        """Section 2's ``KIDX+ ancillary* KEND``, then the end of the file.

        With ``most``, index data longer than that is refused as soon as it
        is read (the stored method's exact size), so a long one costs no
        memory.
        """
        stream = bytearray()
        got: list[bytes] = []
        kept: list[tuple[bytes, bytes]] = []
        in_index = True
        try:
            length, chunk_type = self.next_head()
            if chunk_type != KIDX:
                raise FormatError("expected a KIDX chunk")
            while True:
                if chunk_type == KIDX and in_index:
                    if most is not None and len(stream) + length > most:
                        raise FormatError(
                            "the stored index stream holds more data than the header declares"
                        )
                    # One growing buffer, not a list of parts joined at the end,
                    # so that index data in many chunks is not held twice.
                    stream += self.data(length, chunk_type, got=got)
                elif chunk_type == KEND:
                    if length:
                        raise FormatError("KEND chunk must be empty")
                    self.data(0, chunk_type)
                    break
                elif is_critical(chunk_type):
                    raise FormatError(_misplaced(chunk_type))
                else:
                    in_index = False
                    self.ancillary(length, chunk_type, kept, None)
                length, chunk_type = self.next_head()
        except TruncatedError:
            if not partial:
                raise
            stream += b"".join(got)
            return IndexData(stream, kept, truncated=True)
        if self.fp.read(1):
            raise FormatError("trailing data after the KEND chunk")
        return IndexData(stream, kept)


_CHUNK_HEAD = struct.Struct(">I4s")


def read(fp: IO[bytes], *, index: bool = True, partial: bool = False) -> KmcFile:
    """Read a ``.kmc`` file: signature, chunks, and with ``index`` the index data.

    Without ``index`` it stops at the first KIDX chunk (``index_offset``),
    which :meth:`KmcFile.read_index` reads later. Raises :class:`SyntaxError`
    if the signature is wrong (not a ``.kmc`` file at all) and
    :class:`FormatError` (an ``OSError``) if it is a broken one (section 9).
    """
    if fp.read(len(SIGNATURE)) != SIGNATURE:
        raise SyntaxError("not a KMC file")
    chunks = _Chunks(fp)
    length, chunk_type = chunks.next_head()
    if chunk_type != KHDR:
        raise FormatError("the first chunk must be KHDR")
    if length != HEADER_LENGTH:
        raise FormatError(f"KHDR chunk must be {HEADER_LENGTH} bytes, not {length}")
    header = Header.unpack(chunks.data(length, chunk_type))
    palette = None
    ancillary: list[tuple[bytes, bytes]] = []
    skipped: list[bytes] = []
    while True:
        offset = fp.tell()
        length, chunk_type = chunks.next_head()
        if chunk_type == KIDX:
            break
        if chunk_type == KPAL:
            if palette is not None:
                raise FormatError("duplicate KPAL chunk")
            if length != header.k * header.channels:
                raise FormatError(
                    f"KPAL holds {length} bytes, expected k * channels = "
                    f"{header.k * header.channels}"
                )
            palette = chunks.data(length, chunk_type)
        elif chunk_type == KEND:
            raise FormatError("missing KIDX chunk: KEND comes before any index data")
        elif is_critical(chunk_type):
            raise FormatError(_misplaced(chunk_type))
        else:
            chunks.ancillary(length, chunk_type, ancillary, skipped)
    if palette is None:
        raise FormatError("missing KPAL chunk before KIDX")
    kmc = KmcFile(header, palette, ancillary, skipped, offset)
    if not index:
        return kmc
    fp.seek(offset)
    return replace(kmc, index=kmc.read_index(fp, partial=partial))


def _misplaced(chunk_type: bytes) -> str:
    name = chunk_type.decode("ascii")
    if chunk_type in (KHDR, KPAL, KIDX, KEND):
        return f"misplaced or duplicate {name} chunk"
    return f"unknown critical chunk {name}; a newer pil_kmc may read this file"
