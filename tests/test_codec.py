"""The index stream: packing, compression methods, bounded decompression."""

from __future__ import annotations

import lzma
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pil_kmc import codec, layout
from pil_kmc.layout import FormatError, Header

# The methods that compress the packed rows (the others code the plane itself).
PACKED_METHODS = (layout.STORED, layout.ZLIB, layout.XZ, layout.BZIP2)


@st.composite
def planes(draw):
    depth = draw(st.sampled_from(layout.BIT_DEPTHS))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    k = draw(st.integers(1, 1 << depth))
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, (h, w), dtype=np.uint8), depth, k


@given(planes())
def test_pack_rows_round_trips(plane):
    indices, depth, _ = plane
    h, w = indices.shape
    packed = codec.pack_rows(indices, depth)
    assert len(packed) == h * ((w * depth + 7) // 8)
    assert np.array_equal(codec.unpack_rows(packed, w, h, depth), indices)


def test_packing_is_msb_first_and_rows_are_padded():
    plane = np.array([[1, 0, 1], [0, 1, 1]], dtype=np.uint8)
    assert codec.pack_rows(plane, 1) == bytes([0b10100000, 0b01100000])
    assert codec.pack_rows(np.array([[3, 1]], np.uint8), 2) == bytes([0b11010000])


@given(planes(), st.sampled_from(list(layout.COMPRESSION_NAMES)))
def test_encode_decode_round_trips(plane, compression):
    indices, depth, k = plane
    h, w = indices.shape
    header = Header(w, h, 3, k, depth, compression=compression)
    assert np.array_equal(codec.decode(codec.encode(indices, header), header), indices)


def header(**kw):
    return Header(**{"width": 4, "height": 4, "channels": 3, "k": 5, "bit_depth": 8, **kw})


@pytest.mark.parametrize("method", PACKED_METHODS)
def test_stream_longer_than_declared_is_refused(method):
    big = codec.compress(bytes(17), method)
    with pytest.raises(FormatError, match="more data"):
        codec.decode(big, header(compression=method))


@pytest.mark.parametrize("method", PACKED_METHODS)
def test_stream_shorter_than_declared_is_refused(method):
    short = codec.compress(bytes(15), method)
    with pytest.raises(FormatError, match="truncated"):
        codec.decode(short, header(compression=method))


@pytest.mark.parametrize("method", [layout.ZLIB, layout.XZ, layout.BZIP2])
def test_truncated_stream_is_refused_or_partially_decoded(method):
    stream = codec.compress(bytes(range(5)) * 3 + b"\0", method)[:-3]
    with pytest.raises(FormatError):
        codec.decode(stream, header(compression=method))
    partial = codec.decode(stream, header(compression=method), partial=True)
    assert partial.shape == (4, 4)


def test_bomb_expands_only_to_the_bound():
    bomb = zlib.compress(bytes(200_000_000), 9)  # 200 MB of zeros in ~200 kB
    with pytest.raises(FormatError, match="more data"):
        codec.decode(bomb, header(compression=layout.ZLIB))


def test_bytes_after_the_compressed_stream_are_refused():
    stream = codec.compress(bytes(16), layout.ZLIB) + b"junk"
    with pytest.raises(FormatError, match="more data"):
        codec.decode(stream, header(compression=layout.ZLIB))


@pytest.mark.parametrize("method", [layout.ZLIB, layout.XZ, layout.BZIP2])
def test_corrupt_stream_is_a_format_error(method):
    with pytest.raises(FormatError, match="corrupt"):
        codec.decode(b"\xff" * 64, header(compression=method))


def test_index_at_or_above_k_is_refused():
    stream = codec.compress(bytes([0] * 15 + [5]), layout.STORED)
    with pytest.raises(FormatError, match="at or above k=5"):
        codec.decode(stream, header(compression=layout.STORED))


def test_long_xz_input_becomes_concatenated_streams_that_decode(monkeypatch):
    monkeypatch.setattr(codec, "XZ_STRIP", 1000)
    data = bytes(np.random.default_rng(9).integers(0, 4, 3500, dtype=np.uint8))
    stream = codec.compress(data, layout.XZ)
    assert stream.count(b"\xfd7zXZ\x00") == 4  # four equal strips, four xz streams
    assert codec.decompress(stream, layout.XZ, len(data)) == data
    with pytest.raises(FormatError, match="more data"):
        codec.decompress(stream + codec.compress(b"x", layout.XZ), layout.XZ, len(data))
    with pytest.raises(FormatError, match="truncated"):
        codec.decompress(stream, layout.XZ, len(data) + 1)


XZ_MAGIC = b"\xfd7zXZ\x00"


def xz_streams(stream: bytes) -> list[bytes]:
    """The concatenated xz streams of ``stream``, split where each stream header's magic starts."""
    starts = [i for i in range(len(stream)) if stream.startswith(XZ_MAGIC, i)]
    return [stream[a:b] for a, b in zip(starts, [*starts[1:], len(stream)], strict=True)]


def xz_decompress(blob: bytes, size: int, threads: bool) -> bytes:
    """``codec.decompress`` of xz data, by the parallel path when it applies or in sequence."""
    if threads:
        return codec.decompress(blob, layout.XZ, size)
    # The parallel decoder's "cannot" answer: the reader then decodes in sequence.
    original, codec._xz_parallel = codec._xz_parallel, lambda *args: None
    try:
        return codec.decompress(blob, layout.XZ, size)
    finally:
        codec._xz_parallel = original


def xz_dictionary_sizes(stream: bytes) -> list[int]:
    """The LZMA2 dictionary size of each xz stream, from its block header (xz spec 3.1)."""
    sizes = []
    for one in xz_streams(stream):
        block = one[12:]  # after the 12-byte stream header
        assert block[2] == 0x21 and block[3] == 1  # one filter, LZMA2, one property byte
        bits = block[4]
        sizes.append((2 | (bits & 1)) << (bits // 2 + 11))
    return sizes


@pytest.mark.parametrize(("length", "dictionary"), [(1, 4096), (5000, 8192), (70_000, 1 << 17)])
def test_xz_dictionary_is_sized_to_the_strip(length, dictionary):
    # Smaller than xz's default 8 MiB, so decoders allocate less; no fewer matches.
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    for options in ({}, {"extreme": True}):
        stream = codec.compress(data, layout.XZ, **options)
        assert xz_dictionary_sizes(stream) == [dictionary]
        assert codec.decompress(stream, layout.XZ, length) == data


def test_empty_input_compresses_to_a_valid_stream():
    for method in PACKED_METHODS:
        assert codec.decompress(codec.compress(b"", method), method, 0) == b""


def test_xz_strips_each_get_their_own_dictionary(monkeypatch):
    monkeypatch.setattr(codec, "XZ_STRIP", 5000)
    stream = codec.compress(bytes(12000), layout.XZ)
    assert xz_dictionary_sizes(stream) == [4096] * 3  # strips of 4,000 bytes


def test_xz_strips_argument_sets_the_least_number_of_streams(monkeypatch):
    data = bytes(np.random.default_rng(11).integers(0, 4, 9000, dtype=np.uint8))
    assert len(xz_streams(codec.compress(data, layout.XZ))) == 1
    two = codec.compress(data, layout.XZ, strips=2)
    assert [len(lzma.decompress(one)) for one in xz_streams(two)] == [4500, 4500]
    assert xz_dictionary_sizes(two) == [8192, 8192]
    assert codec.decompress(two, layout.XZ, len(data)) == data
    assert codec.compress(data, layout.XZ, strips=2) == two  # the same bytes every time
    monkeypatch.setattr(codec, "XZ_STRIP", 2000)  # the strip limit can ask for more
    assert len(xz_streams(codec.compress(data, layout.XZ, strips=2))) == 5


def test_parallel_xz_decoding_agrees_with_sequential_on_every_byte_flip(monkeypatch):
    monkeypatch.setattr(codec, "XZ_STRIP", 640)  # several streams, parallel path taken
    data = bytes(np.random.default_rng(10).integers(0, 3, 2000, dtype=np.uint8))
    stream = codec.compress(data, layout.XZ)
    assert len(xz_streams(stream)) == 4
    assert codec.decompress(stream, layout.XZ, len(data)) == data

    def outcome(blob, threads):
        try:
            return xz_decompress(blob, len(data), threads)
        except FormatError:
            return "error"

    for i in range(0, len(stream), 3):
        flipped = bytearray(stream)
        flipped[i] ^= 0x10
        assert outcome(bytes(flipped), True) == outcome(bytes(flipped), False), i


def test_xz_stream_padding_is_refused():
    padded = codec.compress(b"ab", layout.XZ) + bytes(4) + codec.compress(b"cd", layout.XZ)
    with pytest.raises(FormatError):
        codec.decompress(padded, layout.XZ, 4)
