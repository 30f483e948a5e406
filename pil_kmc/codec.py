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
# context bits (lc = 4), which suit index planes better than xz's defaults.
_XZ_PRESETS = {False: 6, True: 9 | lzma.PRESET_EXTREME}
_XZ_OPTIONS = {"lc": 4, "lp": 0, "pb": 0}
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
    out = np.empty((height, width), np.uint8)  # every pixel is written when the code is OK
    code = _kmc.unpack_rows(data, width, height, bit_depth, k, out)
    if code == _kmc.INDEX_K:
        raise FormatError(f"index data refers to a palette entry at or above k={k}")
    if code != _kmc.OK:  # never for the arguments checked above; the plane is not returned
        raise FormatError(f"packed rows could not be unpacked (code {code})")
    return out


def compress(data: bytes, method: int, *, extreme: bool = False, strips: int = 1) -> bytes:
    """Compress the packed index plane with a layout compression method.

    ``extreme`` trades encoding time for size where the method has such a
    setting; decoders need not know whether it was used.
    xz input is cut into ``strips`` equal strips, more if needed to keep
    each within :data:`XZ_STRIP`, compressed in parallel threads (lzma
    releases the GIL) into concatenated xz streams: the strips depend only
    on the data and the arguments, never on the machine, so the output is
    the same everywhere.
    """
    return b"".join(_in_threads(_pieces(data, method, extreme, strips)))


def _pieces(data: bytes, method: int, extreme: bool, strips: int) -> list:
    """The work of :func:`compress` as calls whose results, joined, are the stream."""
    if method == layout.STORED:
        return [lambda: data]
    if method == layout.ZLIB:
        return [lambda: zlib.compress(data, 9)]
    if method == layout.BZIP2:
        return [lambda: bz2.compress(data, 9)]
    if method != layout.XZ:
        raise ValueError(f"unknown compression method {method}")
    options = {"preset": _XZ_PRESETS[extreme]}
    # Never more streams than a reader takes (section 9): xz_max_blocks.
    count = min(max(1, strips, -(-len(data) // XZ_STRIP)), xz_max_blocks(len(data)))
    step = max(1, -(-len(data) // count))
    # A dictionary larger than the strip finds no more matches; sized to
    # the strip, it costs less to set up and less memory to decode.
    dictionary = max(1 << 12, 1 << (step - 1).bit_length())
    filters = [{"id": lzma.FILTER_LZMA2, **options, **_XZ_OPTIONS, "dict_size": dictionary}]

    def one(strip: bytes) -> bytes:
        return lzma.compress(strip, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)

    strips_of_data = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return [lambda strip=strip: one(strip) for strip in strips_of_data]


# Section 10: the xz decoder may use at most this much memory beyond the
# plane size. It admits any dictionary up to 64 MiB (xz -9) plus liblzma's
# own tables, so a header cannot make the reader reserve gigabytes.
XZ_MEMLIMIT_BASE = 65 << 20
# Parallel xz decoding keeps the sum of its decoders' dictionaries under this.
_XZ_PARALLEL_MEMORY = 256 << 20
_LZMA2 = 0x21


def xz_memlimit(size: int) -> int:
    """The xz decoder memory limit for a plane of ``size`` bytes (section 10)."""
    return XZ_MEMLIMIT_BASE + size


def xz_max_blocks(size: int) -> int:
    """The most xz blocks (so streams) a reader takes for a plane of ``size`` bytes (section 9).

    Each stream costs its own decoder and each block a look at its header, a
    few microseconds: one-byte streams would cost far more than their pixels.
    Writers make one block per stream and a stream per :data:`XZ_STRIP`.
    """
    return 16 + size // 65536


def _too_many_xz(size: int) -> FormatError:
    return FormatError(
        f"more than {xz_max_blocks(size)} xz blocks or streams for a plane of {size} bytes"
    )


def _engine(method: int, size: int):
    if method == layout.ZLIB:
        return zlib.decompressobj()
    if method == layout.XZ:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=xz_memlimit(size))
    if method == layout.BZIP2:
        return bz2.BZ2Decompressor()
    raise FormatError(f"unknown compression method {method}")


def _xz_block_problem(data: bytes, pos: int, empty_ok: bool = False) -> str | None:
    """Why the xz block header at ``pos`` breaks section 9 (duty 6), if it does.

    The first byte 0 is the index indicator: a stream without blocks, which
    is empty. Otherwise the filter flags must name LZMA2 alone (xz file
    format 1.0.4, section 3.1). Data too short to tell is left to the decoder.
    """
    if pos >= len(data):
        return None
    if data[pos] == 0:
        if empty_ok:  # the one stream of an empty plane (no file has one)
            return None
        return "empty xz stream (every xz stream must hold at least one byte)"
    if pos + 1 >= len(data):
        return None
    flags = data[pos + 1]
    try:
        at = pos + 2
        if flags & 0x40:
            _, at = _vli(data, at)
        if flags & 0x80:
            _, at = _vli(data, at)
        filter_id, _ = _vli(data, at)
    except IndexError:
        return None
    if flags & 0x03 or filter_id != _LZMA2:
        return "xz filter chain other than LZMA2 alone"
    return None


def _xz_dictionary(data: bytes, pos: int) -> int:
    """The LZMA2 dictionary size named by the block header at ``pos`` (0 if unreadable).

    Only for sizing the thread pool; the decoder's memory limit is the rule.
    """
    try:
        flags, at = data[pos + 1], pos + 2
        if flags & 0x40:
            _, at = _vli(data, at)
        if flags & 0x80:
            _, at = _vli(data, at)
        _, at = _vli(data, at)  # the filter id
        _, at = _vli(data, at)  # its properties' size
        props = data[at]
    except IndexError:
        return 0
    return 0xFFFFFFFF if props >= 40 else (2 | (props & 1)) << (props // 2 + 11)


def _xz_streams(data: bytes, size: int) -> list[tuple[int, int, int, int]] | None:
    """(start, end, uncompressed size, largest dictionary) of each xz stream, or None.

    Walks back from the end of ``data`` through each stream's footer and
    index (xz file format 1.0.4, sections 2.1.2 and 4), and checks every
    block's header (:func:`_xz_block_problem`), raising :class:`FormatError`
    on a broken rule, such as more blocks than :func:`xz_max_blocks` allows
    for a plane of ``size`` bytes. Stream padding is not allowed. Valid concatenated
    streams always walk; any inconsistency gives None, and the caller
    decodes sequentially, which is the authority on whether data is valid.
    """
    streams = []
    end, blocks_seen, most = len(data), 0, xz_max_blocks(size)
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
            blocks_seen += max(1, records)
            if blocks_seen > most:
                raise _too_many_xz(size)
            blocks = []
            uncompressed = 0
            for _ in range(records):
                unpadded, pos = _vli(index, pos)
                held, pos = _vli(index, pos)
                blocks.append(-(-unpadded // 4) * 4)
                uncompressed += held
            start = end - 12 - index_size - sum(blocks) - 12
            if start < 0 or data[start : start + 6] != b"\xfd7zXZ\x00":
                return None
            at, dictionary = start + 12, 0
            for padded in blocks or [0]:
                problem = _xz_block_problem(data, at, size == 0)
                if problem:
                    raise FormatError(problem)
                dictionary = max(dictionary, _xz_dictionary(data, at) if padded else 0)
                at += padded
            streams.append((start, end, uncompressed, dictionary))
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


def _xz_parallel(data: bytes, streams: list[tuple[int, ...]], size: int) -> bytes | None:
    """Several xz streams decoded in parallel threads, or None to decode sequentially.

    Accepts exactly what :func:`_xz_sequential` accepts: the same memory
    limit per decoder, and on any doubt None, so the sequential decoder gives
    the verdict. Threads are capped so that the dictionaries they decode at
    once fit in :data:`_XZ_PARALLEL_MEMORY`.
    """
    limit = xz_memlimit(size)

    def one(stream: tuple[int, ...]) -> bytes | None:
        start, end, expected, _ = stream
        engine = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=limit)
        try:
            out = engine.decompress(data[start:end], expected + 1)
        except (lzma.LZMAError, MemoryError):
            return None
        ok = engine.eof and not engine.unused_data and len(out) == expected
        return out if ok else None

    largest = max(s[3] for s in streams) or limit
    most = max(1, _XZ_PARALLEL_MEMORY // largest)
    parts = _in_threads([lambda s=s: one(s) for s in streams], most=most)
    return None if any(p is None for p in parts) else b"".join(parts)


def _xz_sequential(data: bytes, size: int, partial: bool) -> bytes:
    """Concatenated xz streams in order; the authority on what is valid (section 9).

    Each stream gets its own decoder, fed in windows that grow from a few
    hundred bytes, so that one large stream costs linear time (a decoder's
    leftover input is copied once, and is at most one window); streams past
    :func:`xz_max_blocks` are refused before their decoder is made.
    """
    view = memoryview(data)
    parts: list[bytes] = []
    produced = pos = count = 0
    limit, most = xz_memlimit(size), xz_max_blocks(size)
    while True:
        count += 1
        if count > most:
            raise _too_many_xz(size)
        is_stream = data[pos : pos + 6] == b"\xfd7zXZ\x00"
        problem = is_stream and _xz_block_problem(data, pos + 12, size == 0)
        if problem:
            raise FormatError(problem)
        engine = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=limit)
        window, got = 256, 0
        try:
            while not engine.eof:
                chunk = b""
                if engine.needs_input:
                    chunk = view[pos : pos + window]
                    pos += len(chunk)
                    window = min(2 * window, 1 << 20)
                    if not chunk:
                        break
                out = engine.decompress(chunk, size + 1 - produced)
                produced += len(out)
                got += len(out)
                parts.append(out)
                if produced > size:
                    raise FormatError(
                        "the xz index stream holds more data than the header declares"
                    )
                if not out and not chunk:
                    break  # no progress possible
        except (lzma.LZMAError, MemoryError) as e:
            # Even with ``partial``: an early end makes a stream stop, never fail.
            raise FormatError(f"corrupt xz index stream: {e or 'out of memory'}") from None
        if not engine.eof:
            if partial:
                return b"".join(parts)
            raise FormatError(f"the xz index stream is truncated ({produced} of {size} bytes)")
        pos -= len(engine.unused_data)
        if not got and size:
            raise FormatError("empty xz stream (every xz stream must hold at least one byte)")
        if pos >= len(data):
            break
        if produced >= size:
            raise FormatError("the xz index stream holds more data than the header declares")
    if produced < size and not partial:
        raise FormatError(f"the xz index stream is truncated ({produced} of {size} bytes)")
    return b"".join(parts)


def decompress(
    data: bytes | bytearray, method: int, size: int, *, partial: bool = False
) -> bytes | bytearray:
    """Decompress exactly ``size`` bytes, never producing more than ``size + 1``.

    Raises :class:`FormatError` if the stream is corrupt, ends early, holds
    more than ``size`` bytes or has bytes after its end (section 9, duty 6).
    xz data may be several concatenated streams, decoded in parallel when
    their boundaries can be read, with the same verdict as in sequence. With
    ``partial``, a stream that ends early returns what it produced instead
    (for ``ImageFile.LOAD_TRUNCATED_IMAGES``); corrupt data is still an
    error, as an early end alone never makes a decoder fail (section 9).
    """
    name = layout.COMPRESSION_NAMES.get(method, str(method))
    if method == layout.XZ:
        # Even with ``partial``: whole streams that end the data (all of them,
        # or the first few) walk, and are held to the same rules.
        streams = _xz_streams(data, size)
        if streams and size and any(s[2] == 0 for s in streams):
            raise FormatError("empty xz stream (every xz stream must hold at least one byte)")
        # Threads pay only for long streams; many short ones go in sequence.
        parallel = streams and 1 < len(streams) <= size // (XZ_STRIP >> 8)
        if parallel and sum(s[2] for s in streams) == size:
            joined = _xz_parallel(data, streams, size)
            if joined is not None:
                return joined
        out = _xz_sequential(data, size, partial)
        finished, leftover = len(out) >= size, b""
    elif method == layout.STORED:
        out = data if len(data) <= size else data[: size + 1]  # no copy of a right-sized plane
        finished, leftover = len(data) >= size, data[size:]
    else:
        engine = _engine(method, size)
        try:
            out = engine.decompress(data, size + 1)
        except (zlib.error, OSError, EOFError, ValueError, MemoryError) as e:
            # Even with ``partial``: an early end makes a stream stop, never fail.
            raise FormatError(f"corrupt {name} index stream: {e}") from None
        finished = engine.eof
        leftover = engine.unused_data if finished else b""
        if method == layout.ZLIB and not finished and engine.unconsumed_tail:
            leftover = engine.unconsumed_tail
        if finished and leftover and len(out) <= size:
            # Section 9, duty 6: one zlib or bzip2 stream, nothing after it.
            raise FormatError(
                f"the {name} index stream holds more data than the header declares "
                "(bytes after the end of its one stream)"
            )
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
    if header.compression == layout.TABLES:
        return context.encode_tables(indices, header.k)
    return compress(pack_rows(indices, header.bit_depth), header.compression)


def decode(stream: bytes | bytearray, header: Header, *, partial: bool = False) -> np.ndarray:
    """The index plane of an index stream; checks that every index is below k.

    With ``partial``, missing rows at the end are filled with index 0.
    """
    if header.compression == layout.CONTEXT:
        return context.decode(stream, header.width, header.height, header.k, partial=partial)
    if header.compression == layout.STRIPS:
        return context.decode_strips(stream, header.width, header.height, header.k, partial=partial)
    if header.compression == layout.TABLES:
        return context.decode_tables(stream, header.width, header.height, header.k, partial=partial)
    size = header.index_plane_bytes
    data = decompress(stream, header.compression, size, partial=partial)
    if len(data) < size:
        data = data + bytes(size - len(data))
    _check_padding(data, header)
    return unpack_rows(data, header.width, header.height, header.bit_depth, header.k)


def _check_padding(data: bytes, header: Header) -> None:
    """Section 9, duty 7: the bits that pad each row to a byte must be zero."""
    pad = 8 * header.row_bytes - header.width * header.bit_depth
    if pad:
        last = np.frombuffer(data, np.uint8)[header.row_bytes - 1 :: header.row_bytes]
        if np.any(last & ((1 << pad) - 1)):
            raise FormatError("non-zero padding bits at the end of an index row")
