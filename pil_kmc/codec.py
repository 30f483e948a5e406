"""The index stream: index plane <-> packed rows <-> compressed bytes.

An index plane is a ``(height, width)`` array of palette indices. It is
stored as rows of ``bit_depth``-bit indices, most significant bits first and
each row padded to a whole byte (PNG's packing), then compressed by one of the
methods named in :mod:`pil_kmc.layout`. Decompression is always bounded by the
size the header declares, so a hostile stream cannot expand without limit.
The ``context`` method codes the plane itself, without packing: see
:mod:`pil_kmc.context`.
"""

from __future__ import annotations

import bz2
import lzma
import zlib

import numpy as np

from . import _kmc, context, layout
from .layout import FormatError, Header
from .parallel import in_threads as _in_threads

# xz without an integrity check: every chunk already carries a CRC-32. Indices
# are single bytes, so no position bits (lp = pb = 0) and the most literal
# context bits (lc = 4): about 2% smaller than xz's defaults on index planes.
_XZ_PRESETS = {False: 6, True: 9 | lzma.PRESET_EXTREME}
_XZ_OPTIONS = {"lc": 4, "lp": 0, "pb": 0}
# For large images: a hash-chain match finder in xz's fast mode (greedy, not
# optimal, parsing). On a 9.4 MP photo at k = 256, a third of the time of the
# normal mode with the same match finder for 14% more bytes (still 0.86x PNG-8);
# at k = 16 both faster and smaller.
_XZ_FAST = {"preset": 6, "mf": lzma.MF_HC4, "nice_len": 32, "mode": lzma.MODE_FAST}
XZ_STRIP = 6 << 20


def pack_rows(indices: np.ndarray, bit_depth: int) -> bytes:
    """Pack a ``(h, w)`` uint8 index plane into rows of ``bit_depth``-bit fields."""
    indices = np.ascontiguousarray(indices, dtype=np.uint8)
    if bit_depth == 8:
        return indices.tobytes()
    h, w = indices.shape
    per_byte = 8 // bit_depth
    padded_w = -(-w // per_byte) * per_byte
    if padded_w != w:
        indices = np.pad(indices, ((0, 0), (0, padded_w - w)))
    fields = indices.reshape(h, padded_w // per_byte, per_byte)
    shifts = np.arange(8 - bit_depth, -1, -bit_depth, dtype=np.uint8)
    packed = np.bitwise_or.reduce(fields << shifts, axis=2)
    return packed.astype(np.uint8).tobytes()


def unpack_rows(data: bytes, width: int, height: int, bit_depth: int, k: int = 256) -> np.ndarray:
    """Inverse of :func:`pack_rows`; ``data`` must be exactly the packed size.

    Raises :class:`FormatError` if an index is at or above ``k``. Compiled:
    one pass, no temporaries, whatever the shape.
    """
    out = bytearray(width * height)
    if _kmc.unpack_rows(data, width, height, bit_depth, k, out) == _kmc.INDEX_K:
        raise FormatError(f"index data refers to a palette entry at or above k={k}")
    return np.frombuffer(out, np.uint8).reshape(height, width)


def compress(
    data: bytes, method: int, *, extreme: bool = False, fast: bool = False, strips: int = 1
) -> bytes:
    """Compress the packed index plane with a layout compression method.

    ``extreme`` trades encoding time for size, ``fast`` size for time, where
    the method has such settings; decoders need not know which was used.
    xz input is cut into ``strips`` equal strips, more if needed to keep
    each within :data:`XZ_STRIP`, compressed in parallel threads (lzma
    releases the GIL) into concatenated xz streams: the strips depend only
    on the data and the arguments, never on the machine, so the output is
    the same everywhere.
    """
    return b"".join(_in_threads(_pieces(data, method, extreme, fast, strips)))


def _pieces(data: bytes, method: int, extreme: bool, fast: bool, strips: int) -> list:
    """The work of :func:`compress` as calls whose results, joined, are the stream."""
    if method == layout.STORED:
        return [lambda: data]
    if method == layout.ZLIB:
        return [lambda: zlib.compress(data, 9)]
    if method == layout.BZIP2:
        return [lambda: bz2.compress(data, 9)]
    if method != layout.XZ:
        raise ValueError(f"unknown compression method {method}")
    options = _XZ_FAST if fast else {"preset": _XZ_PRESETS[extreme]}
    count = max(1, strips, -(-len(data) // XZ_STRIP))
    step = max(1, -(-len(data) // count))
    # A dictionary larger than the strip finds no more matches; sized to
    # the strip, it costs less to set up (about a sixth of the time at
    # 512 x 512) and less memory to decode.
    dictionary = max(1 << 12, 1 << (step - 1).bit_length())
    filters = [{"id": lzma.FILTER_LZMA2, **options, **_XZ_OPTIONS, "dict_size": dictionary}]

    def one(strip: bytes) -> bytes:
        return lzma.compress(strip, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)

    strips_of_data = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return [lambda strip=strip: one(strip) for strip in strips_of_data]


def _engine(method: int):
    if method == layout.ZLIB:
        return zlib.decompressobj()
    if method == layout.XZ:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if method == layout.BZIP2:
        return bz2.BZ2Decompressor()
    raise FormatError(f"unknown compression method {method}")


def _xz_streams(data: bytes) -> list[tuple[int, int, int]] | None:
    """(start, end, uncompressed size) of each concatenated xz stream, or None.

    Walks back from the end of ``data`` through each stream's footer and
    index (xz file format 1.0.4, sections 2.1.2 and 4); stream padding is
    not allowed here, as the sequential decoder does not allow it either. Any inconsistency
    gives None, and the caller decodes sequentially, which is the authority
    on whether the data is valid; this only finds where to split the work.
    """
    streams = []
    end = len(data)
    try:
        while end > 0:
            footer = data[end - 12 : end]
            if len(footer) != 12 or footer[10:] != b"YZ":
                return None
            index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
            index = data[end - 12 - index_size : end - 12]
            if len(index) != index_size or index[0] != 0:
                return None
            pos, (records, pos) = 1, _vli(index, 1)
            blocks = uncompressed = 0
            for _ in range(records):
                unpadded, pos = _vli(index, pos)
                size, pos = _vli(index, pos)
                blocks += -(-unpadded // 4) * 4
                uncompressed += size
            start = end - 12 - index_size - blocks - 12
            if start < 0 or data[start : start + 6] != b"\xfd7zXZ\x00":
                return None
            streams.append((start, end, uncompressed))
            end = start
    except IndexError:
        return None
    return streams[::-1]


def _vli(buffer: bytes, pos: int) -> tuple[int, int]:
    """An xz variable-length integer at ``pos``: (value, position after it)."""
    value = 0
    for i in range(9):
        byte = buffer[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise IndexError("xz integer too long")


def _xz_parallel(data: bytes, size: int) -> bytes | None:
    """Several xz streams decoded in parallel threads, or None to decode sequentially."""
    streams = _xz_streams(data)
    if not streams or len(streams) < 2 or sum(s[2] for s in streams) != size:
        return None

    def one(stream: tuple[int, int, int]) -> bytes | None:
        start, end, expected = stream
        engine = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = engine.decompress(data[start:end], expected + 1)
        except lzma.LZMAError:
            return None
        ok = engine.eof and not engine.unused_data and len(out) == expected
        return out if ok else None

    parts = _in_threads([lambda stream=stream: one(stream) for stream in streams])
    return None if any(p is None for p in parts) else b"".join(parts)


def decompress(
    data: bytes, method: int, size: int, *, partial: bool = False, threads: bool = True
) -> bytes:
    """Decompress exactly ``size`` bytes, never producing more than ``size + 1``.

    Raises :class:`FormatError` if the stream is corrupt, ends early, holds
    more than ``size`` bytes or has bytes after its end. xz data may be
    several concatenated streams, which ``threads`` decodes in parallel when
    their boundaries can be read (with the same result as in sequence). With
    ``partial``, a stream that ends early returns what it produced instead
    (for ``ImageFile.LOAD_TRUNCATED_IMAGES``).
    """
    name = layout.COMPRESSION_NAMES.get(method, str(method))
    if method == layout.XZ and threads and not partial and len(data) > XZ_STRIP // 64:
        joined = _xz_parallel(data, size)
        if joined is not None:
            return joined
    if method == layout.STORED:
        out, finished, leftover = data[: size + 1], len(data) >= size, data[size:]
    else:
        parts: list[bytes] = []
        produced, rest = 0, data
        while True:
            engine = _engine(method)
            try:
                part = engine.decompress(rest, size + 1 - produced)
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
                if partial:
                    return b"".join(parts)
                raise FormatError(f"corrupt {name} index stream: {e}") from None
            parts.append(part)
            produced += len(part)
            finished = engine.eof
            leftover = engine.unused_data if finished else b""
            if method == layout.ZLIB and not finished and engine.unconsumed_tail:
                leftover = engine.unconsumed_tail
            # Another xz stream may follow, as long as data is still owed.
            if method == layout.XZ and finished and leftover and produced < size:
                rest = leftover
                continue
            break
        out = b"".join(parts)
    if len(out) > size or (finished and leftover):
        raise FormatError(f"the {name} index stream holds more data than the header declares")
    if len(out) < size or not finished:
        if partial:
            return out
        raise FormatError(f"the {name} index stream is truncated ({len(out)} of {size} bytes)")
    return out


def encode(indices: np.ndarray, header: Header) -> bytes:
    """The index stream (KIDX data) for an index plane, as ``header`` describes it."""
    if indices.shape != (header.height, header.width):
        raise ValueError("index plane shape does not match the header")
    if header.compression == layout.CONTEXT:
        return context.encode(indices, header.k)
    if header.compression == layout.STRIPS:
        return context.encode_strips(indices, header.k)
    return compress(pack_rows(indices, header.bit_depth), header.compression)


def decode(stream: bytes, header: Header, *, partial: bool = False) -> np.ndarray:
    """The index plane of an index stream; checks that every index is below k.

    With ``partial``, missing rows at the end are filled with index 0.
    """
    if header.compression == layout.CONTEXT:
        return context.decode(stream, header.width, header.height, header.k, partial=partial)
    if header.compression == layout.STRIPS:
        return context.decode_strips(
            stream, header.width, header.height, header.k, partial=partial
        )
    size = header.index_plane_bytes
    data = decompress(stream, header.compression, size, partial=partial)
    if len(data) < size:
        data = data + bytes(size - len(data))
    return unpack_rows(data, header.width, header.height, header.bit_depth, header.k)
