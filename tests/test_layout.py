"""The byte layout (spec/kmc.md): signature, chunks, header, reader's duties."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pil_kmc import layout
from pil_kmc.layout import FormatError, Header


def a_file(**fields) -> bytes:
    header = Header(**{"width": 3, "height": 2, "channels": 3, "k": 2, "bit_depth": 1, **fields})
    palette = bytes(range(header.k * header.channels))
    return layout.build(header, palette, b"stream")


def read_all(data: bytes):
    kmc = layout.read(io.BytesIO(data))
    return kmc, kmc.index.stream


def chunks_of(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], len(layout.SIGNATURE)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def rebuild(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return layout.SIGNATURE + b"".join(layout.chunk(t, d) for t, d in chunks)


def test_signature_is_png_style():
    assert layout.SIGNATURE == b"\x89KMC\r\n\x1a\n"


def test_chunk_is_length_type_data_crc():
    c = layout.chunk(b"KEND", b"")
    assert c == b"\0\0\0\0KEND" + struct.pack(">I", zlib.crc32(b"KEND"))


def test_file_is_signature_then_khdr_kpal_kidx_kend():
    assert [t for t, _ in chunks_of(a_file())] == [b"KHDR", b"KPAL", b"KIDX", b"KEND"]


@given(
    st.integers(1, layout.MAX_DIMENSION),
    st.integers(1, layout.MAX_DIMENSION),
    st.sampled_from([1, 2, 3, 4]),
    st.integers(1, 256),
    st.sampled_from(list(layout.COMPRESSION_NAMES)),
)
def test_header_round_trips(w, h, c, k, comp):
    header = Header(w, h, c, k, layout.bit_depth_for(k), compression=comp)
    data = header.pack()
    assert len(data) == layout.HEADER_LENGTH == 16
    assert Header.unpack(data) == header


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"width": 0}, "size"),
        ({"height": 0}, "size"),
        ({"channels": 0}, "colour model"),
        ({"channels": 5}, "colour model"),
        ({"k": 0}, "palette size"),
        ({"k": 257, "bit_depth": 8}, "palette size"),
        ({"k": 3, "bit_depth": 1}, "does not fit"),
        ({"bit_depth": 3}, "bit depth"),
        ({"filter_method": 9}, "filter method"),
        ({"compression": 99}, "compression method"),
    ],
)
def test_invalid_header_fields_are_rejected(fields, message):
    with pytest.raises(FormatError, match=message):
        Header(**{"width": 3, "height": 2, "channels": 3, "k": 2, "bit_depth": 1, **fields})


def test_bit_depth_is_the_smallest_that_fits():
    ks = (1, 2, 3, 4, 5, 16, 17, 256)
    assert [layout.bit_depth_for(k) for k in ks] == [1, 1, 2, 2, 4, 4, 8, 8]


def test_reader_returns_header_palette_and_stream():
    head, stream = read_all(a_file())
    assert (head.header.width, head.header.height, head.header.k) == (3, 2, 2)
    assert head.palette == bytes(range(6))
    assert stream == b"stream"


def test_wrong_signature_is_not_this_format():
    with pytest.raises(SyntaxError):
        read_all(b"\x89PNG\r\n\x1a\n" + a_file()[8:])


def test_newer_major_version_is_refused_and_minor_accepted():
    chunks = chunks_of(a_file())
    newer_minor = rebuild([(b"KHDR", b"\x01\x07" + chunks[0][1][2:])] + chunks[1:])
    assert read_all(newer_minor)[0].header.version == (1, 7)
    newer_major = rebuild([(b"KHDR", b"\x02\x00" + chunks[0][1][2:])] + chunks[1:])
    with pytest.raises(FormatError, match="major version 2"):
        read_all(newer_major)


def test_crc_mismatch_is_detected():
    data = bytearray(a_file())
    data[-20] ^= 1  # inside the KIDX data
    with pytest.raises(FormatError, match="CRC"):
        read_all(bytes(data))


def test_unknown_ancillary_chunks_are_skipped_and_critical_ones_refused():
    chunks = chunks_of(a_file())
    ancillary, late = [(b"zzZz", b"anything")], [(b"qqQq", b"")]
    extra = rebuild(chunks[:1] + ancillary + chunks[1:3] + late + chunks[3:])
    head, stream = read_all(extra)
    assert head.skipped == [b"zzZz"] and head.ancillary == [] and stream == b"stream"
    critical = rebuild(chunks[:1] + [(b"ZZzz", b"")] + chunks[1:])
    with pytest.raises(FormatError, match="unknown critical chunk ZZzz"):
        read_all(critical)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c[1:], "first chunk must be KHDR"),
        (lambda c: [c[0], c[2], c[3]], "missing KPAL"),
        (lambda c: [c[0], c[1], c[1], c[2], c[3]], "duplicate KPAL"),
        (lambda c: [c[0], (b"KPAL", b"\0"), c[2], c[3]], "KPAL holds 1 bytes"),
        (lambda c: c[:3], "truncated"),
        (lambda c: c[:3] + [(b"KEND", b"x")], "KEND chunk must be empty"),
        (lambda c: [c[0], c[1], c[2], (b"aaaa", b""), c[2], c[3]], "misplaced or duplicate KIDX"),
        (lambda c: [c[0], (b"KHDR", b"\0"), c[1], c[2], c[3]], "misplaced or duplicate KHDR"),
        (lambda c: [c[0], c[1], c[3]], "missing KIDX chunk"),
        (lambda c: [c[0], c[1], (b"kIDX", c[2][1]), c[3]], "missing KIDX chunk"),
    ],
)
def test_structural_errors_are_reported(edit, message):
    with pytest.raises(FormatError, match=message):
        read_all(rebuild(edit(chunks_of(a_file()))))


def test_consecutive_kidx_chunks_are_concatenated():
    c = chunks_of(a_file())
    split = rebuild([c[0], c[1], (b"KIDX", b"str"), (b"KIDX", b"eam"), c[3]])
    assert read_all(split)[1] == b"stream"


def test_trailing_data_is_refused():
    with pytest.raises(FormatError, match="trailing data"):
        read_all(a_file() + b"\0")


def test_lying_length_does_not_allocate_it():
    # A 2 GiB length in a 40-byte file must fail as truncated, quickly.
    data = a_file()
    kidx = data.index(b"KIDX") - 4
    broken = data[:kidx] + struct.pack(">I", 2**31 - 1) + data[kidx + 4 :]
    with pytest.raises(layout.TruncatedError):
        read_all(broken)


def test_length_above_limit_is_refused():
    data = a_file()
    kidx = data.index(b"KIDX") - 4
    broken = data[:kidx] + struct.pack(">I", 2**31) + data[kidx + 4 :]
    with pytest.raises(FormatError, match="exceeds"):
        read_all(broken)


def test_chunk_type_must_be_letters():
    with pytest.raises(ValueError):
        layout.chunk(b"K1DX", b"")


def test_one_reader_reads_the_whole_container():
    # Issue 17 item 1: layout.read is the one reader (plugin, npz, CLI, scripts).
    chunks = chunks_of(a_file())
    text, late = (b"tEXt", b"k\0v"), (b"tEXt", b"after\0x")
    data = rebuild(chunks[:1] + [text, (b"zzZz", b"?")] + chunks[1:3] + [late] + chunks[3:])
    kmc = layout.read(io.BytesIO(data))
    assert kmc.ancillary == [text] and kmc.skipped == [b"zzZz"]
    assert kmc.index == layout.IndexData(b"stream", [late])
    head = layout.read(io.BytesIO(data), index=False)
    assert head.index is None and data[head.index_offset + 4 : head.index_offset + 8] == b"KIDX"
    fp = io.BytesIO(data)
    fp.seek(head.index_offset)
    assert head.read_index(fp) == kmc.index


def test_the_writer_records_the_version_of_the_method_used():
    # Issue 17 item 1: no default of 1.0 that lets a 1.0 file carry method 4.
    for method, since in layout.COMPRESSION_SINCE.items():
        header = Header(3, 2, 3, 2, 1, compression=method)
        assert header.version == (1, since)
        assert layout.read(io.BytesIO(layout.build(header, bytes(6), b"x"))).header == header
    with pytest.raises(FormatError, match="defined since 1.1"):
        Header(3, 2, 3, 2, 1, compression=layout.CONTEXT, version=(1, 0))


def test_partial_reading_keeps_only_index_bytes():
    chunks = chunks_of(a_file())
    data = rebuild(chunks[:3] + [(b"zzZz", b"0123456789")] + chunks[3:])
    for cut, stream in [(data.index(b"zzZz") + 6, b"stream"), (data.index(b"stream") + 3, b"str")]:
        kmc = layout.read(io.BytesIO(data[:cut]), partial=True)
        assert kmc.index.truncated and kmc.index.stream == stream
        with pytest.raises(layout.TruncatedError):
            layout.read(io.BytesIO(data[:cut]))


def test_a_broken_chunk_is_an_error_even_when_partial():
    data = bytearray(a_file())
    data[data.index(b"stream")] ^= 1
    with pytest.raises(FormatError, match="CRC"):
        layout.read(io.BytesIO(bytes(data)), partial=True)


def test_chunk_lengths_are_checked_by_what_follows_them():
    # Spec section 2: the length is not under the CRC; a changed length is
    # caught as a CRC mismatch, a bad chunk type or a truncation
    # (docs/format-notes.md).
    data = a_file()
    kidx = data.index(b"KIDX") - 4
    for delta in (-3, -1, 1, 2, 5):
        length = int.from_bytes(data[kidx : kidx + 4], "big") + delta
        broken = data[:kidx] + length.to_bytes(4, "big") + data[kidx + 4 :]
        with pytest.raises(FormatError):
            read_all(broken)
