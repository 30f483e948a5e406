"""Hostile and broken input: only Pillow's conventional exceptions, never a crash.

Every malformed file must end in ``UnidentifiedImageError`` (not this format),
``OSError`` (broken or truncated data) or ``DecompressionBombError``. The
bounded hypothesis runs here keep CI fast; ``python3 bench/fuzz.py`` runs the
long campaign on demand.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile

import pil_kmc  # noqa: F401
from pil_kmc import codec, layout
from pil_kmc.layout import FormatError

from .test_codec import xz_decompress
from .test_layout import chunks_of

ALLOWED = (OSError, ValueError, Image.DecompressionBombError)


def small_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    files = []
    for mode, k, compression in [
        ("RGB", 5, "xz"),
        ("L", 2, "zlib"),
        ("RGBA", 20, "bzip2"),
        ("LA", 3, "stored"),
        ("RGB", 12, "context"),
    ]:
        a = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
        im = Image.fromarray(a).convert(mode)
        buffer = io.BytesIO()
        im.save(buffer, "KMC", clusters=k, compression=compression)
        files.append(buffer.getvalue())
    return files


FILES = small_files()
IDS = ["rgb-xz", "gray-zlib", "rgba-bzip2", "ga-stored", "rgb-context"]


def open_and_load(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
        im.load()
    return im


@pytest.mark.parametrize("data", FILES, ids=IDS)
def test_truncation_at_every_offset_is_an_error(data):
    for end in range(len(data)):
        with pytest.raises(ALLOWED):
            open_and_load(data[:end])


@pytest.mark.parametrize("data", FILES, ids=IDS)
def test_every_single_bit_flip_is_detected(data):
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ALLOWED):
            open_and_load(bytes(flipped))


@given(
    st.sampled_from(FILES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_random_byte_edits_raise_only_conventional_errors(data, edits):
    mutated = bytearray(data)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    with contextlib.suppress(ALLOWED):
        open_and_load(bytes(mutated))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_the_signature_raise_only_conventional_errors(tail):
    with contextlib.suppress(ALLOWED):
        open_and_load(layout.SIGNATURE + tail)


def kmc_with_header(width: int, height: int, k: int = 2, depth: int = 1) -> bytes:
    khdr = struct.pack(">BBIIBHBBB", 1, 0, width, height, 3, k, depth, 0, 1)
    return layout.SIGNATURE + layout.chunk(b"KHDR", khdr) + layout.chunk(b"KPAL", bytes(3 * k))


def test_huge_dimensions_are_a_decompression_bomb_before_any_data():
    data = kmc_with_header(2**31 - 1, 2**31 - 1) + layout.chunk(b"KIDX", b"")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_declared_size_caps_a_compression_bomb():
    bomb = zlib.compress(bytes(50_000_000), 9)
    data = kmc_with_header(100, 100) + layout.chunk(b"KIDX", bomb) + layout.chunk(b"KEND", b"")
    with pytest.raises(OSError, match="more data than the header declares"):
        open_and_load(data)


@pytest.mark.parametrize(
    "width, height, k, depth, message",
    [
        (0, 5, 2, 1, "invalid image size"),
        (5, 0, 2, 1, "invalid image size"),
        (5, 5, 0, 1, "invalid palette size"),
        (5, 5, 257, 8, "invalid palette size"),
    ],
)
def test_impossible_header_values_are_reported(width, height, k, depth, message):
    data = kmc_with_header(width, height, k, depth)
    with pytest.raises(OSError, match=message):
        Image.open(io.BytesIO(data))


def test_unknown_version_is_reported():
    data = bytearray(FILES[0])
    data[16] = 2  # major version
    # Recompute the KHDR CRC so that only the version is wrong.
    khdr = bytes(data[12:32])
    data[32:36] = struct.pack(">I", zlib.crc32(khdr))
    with pytest.raises(OSError, match="major version 2"):
        Image.open(io.BytesIO(bytes(data)))


def test_wrong_magic_is_unidentified():
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89KMX" + FILES[0][4:]))


# ---------------------------------------------------------------------------
# Issue 15, round two: every bound holds for every shape, method and chunk.


def xz(data: bytes, **filter_options) -> bytes:
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 4096, **filter_options}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)


def with_dictionary(stream: bytes, props: int) -> bytes:
    """An xz stream whose block header names another LZMA2 dictionary size."""
    block = bytearray(stream[12:24])
    assert block[2:4] == b"\x21\x01"  # the LZMA2 filter, one property byte
    block[4] = props
    block[8:12] = zlib.crc32(bytes(block[:8])).to_bytes(4, "little")
    return stream[:12] + bytes(block) + stream[24:]


def kmc_file(
    stream: bytes,
    width: int = 8,
    height: int = 8,
    compression: int = layout.XZ,
    k: int = 256,
    depth: int = 8,
    before=(),
    after=(),
) -> bytes:
    """A file around an index stream, with chunks before KPAL and after the KIDX chunk."""
    header = layout.Header(width, height, 3, k, depth, compression=compression)
    return (
        layout.SIGNATURE
        + layout.chunk(b"KHDR", header.pack())
        + b"".join(layout.chunk(t, d) for t, d in before)
        + layout.chunk(b"KPAL", bytes(3 * k))
        + layout.chunk(b"KIDX", stream)
        + b"".join(layout.chunk(t, d) for t, d in after)
        + layout.chunk(b"KEND", b"")
    )


def test_xz_dictionary_beyond_the_memory_limit_is_refused_not_allocated():
    # Item 1: the header of a 162-byte stream names a 4 GiB dictionary (and
    # one of 1.5 GiB, which liblzma would otherwise reserve and succeed with).
    for props in (40, 39):
        data = kmc_file(with_dictionary(xz(bytes(64)), props))
        with pytest.raises(OSError, match="Memory usage limit|memory"):
            open_and_load(data)
    assert open_and_load(kmc_file(xz(bytes(64)))).getpixel((0, 0)) == 0


def test_xz_memory_limit_admits_xz_presets_and_grows_with_the_plane():
    plain = kmc_file(lzma.compress(bytes(64), preset=9))  # 64 MiB dictionary, CRC-64
    assert open_and_load(plain).size == (8, 8)
    assert codec.xz_memlimit(10**8) - codec.xz_memlimit(0) == 10**8


def test_memory_error_never_escapes_under_an_address_space_limit(tmp_path):
    # Item 1 as reported: under a memory limit, loading raised MemoryError.
    path = tmp_path / "bomb.kmc"
    path.write_bytes(kmc_file(with_dictionary(xz(bytes(64)), 40)))
    script = (
        "import resource, sys\n"
        "from PIL import Image\n"
        "import pil_kmc, numpy\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "try:\n"
        f"    Image.open({str(path)!r}).load()\n"
        "except OSError as e:\n"
        "    print('OSError', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env["OPENBLAS_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.startswith("OSError")


def test_many_empty_xz_streams_are_refused_at_the_first():
    # Item 2: 50,000 empty streams (1.6 MB) took seconds, quadratic in their number.
    empty = xz(b"")
    data = kmc_file(xz(bytes(64)) + empty * 50_000)
    start = time.perf_counter()
    with pytest.raises(OSError, match="empty xz stream"):
        open_and_load(data)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(OSError, match="empty xz stream"):
        open_and_load(kmc_file(empty * 50_000 + xz(bytes(64))))


def test_more_xz_streams_than_the_plane_warrants_are_refused():
    # Each stream costs a decoder of its own, microseconds: a valid file of
    # one-byte streams took 5 s for a 1 MP plane. Section 9 lets a reader
    # refuse more than 16 + size // 65536 blocks or streams, which no writer
    # exceeds (one block per stream, a stream per 6 MiB).
    for size in (100, 3 * 65536 + 5):
        most = codec.xz_max_blocks(size)
        cuts = np.linspace(0, size, most + 1).astype(int)
        plane = bytes(np.arange(size, dtype=np.uint8))
        pieces = [xz(plane[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        assert codec.decompress(b"".join(pieces), layout.XZ, size) == plane
        one_more = [xz(plane[:1]), xz(plane[1 : cuts[1]]), *pieces[1:]]
        for partial in (False, True):
            with pytest.raises(FormatError, match=f"more than {most} xz blocks or streams"):
                codec.decompress(b"".join(one_more), layout.XZ, size, partial=partial)


def one_stream_of_blocks(stream: bytes, copies: int) -> bytes:
    """An xz stream holding ``copies`` of the one block of ``stream`` (check type none)."""

    def vli(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    footer = stream[-12:]
    index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
    block = stream[12 : -12 - index_size]
    index = stream[-12 - index_size : -12]
    records, at = index[1], 2  # one record, a one-byte count
    unpadded, at = codec._vli(index, at)
    uncompressed, _ = codec._vli(index, at)
    assert records == 1 and len(block) == -(-unpadded // 4) * 4
    body = b"\x00" + vli(copies) + (vli(unpadded) + vli(uncompressed)) * copies
    body += bytes(-len(body) % 4)
    body += zlib.crc32(body).to_bytes(4, "little")
    backward = (len(body) // 4 - 1).to_bytes(4, "little")
    tail = backward + stream[-4:-2]
    return (
        stream[:12] + block * copies + body + zlib.crc32(tail).to_bytes(4, "little") + tail + b"YZ"
    )


def test_more_xz_blocks_than_the_plane_warrants_are_refused():
    size = 100
    most = codec.xz_max_blocks(size)
    plane = bytes([7] * (most - 1)) + bytes(size - most + 1)
    ok = one_stream_of_blocks(xz(bytes([7])), most - 1) + xz(plane[most - 1 :])
    assert codec.decompress(ok, layout.XZ, size) == plane
    over = one_stream_of_blocks(xz(bytes([7])), most) + xz(bytes(size - most))
    for partial in (False, True):
        with pytest.raises(FormatError, match=f"more than {most} xz blocks or streams"):
            codec.decompress(over, layout.XZ, size, partial=partial)


def test_the_writer_never_cuts_more_xz_streams_than_a_reader_takes():
    plane = bytes(range(100))
    many = codec.compress(plane, layout.XZ, strips=1000)
    assert codec.decompress(many, layout.XZ, len(plane)) == plane
    assert many.count(b"\xfd7zXZ\x00") <= codec.xz_max_blocks(len(plane))


@pytest.mark.parametrize("threads", [True, False])
def test_an_empty_stream_after_the_plane_is_refused_on_every_path(threads):
    # Item 3: accepted at 1024 x 1024 (parallel path), refused at 64 x 64.
    plane = bytes(np.random.default_rng(3).integers(0, 4, 1 << 20, dtype=np.uint8))
    two = codec.compress(plane, layout.XZ, strips=2)
    assert xz_decompress(two, len(plane), threads) == plane
    with pytest.raises(FormatError, match="empty xz stream"):
        xz_decompress(two + xz(b""), len(plane), threads)
    data = kmc_file(two + xz(b""), 1024, 1024)
    with pytest.raises(OSError, match="empty xz stream"):
        open_and_load(data)


@given(st.lists(st.integers(0, 40), min_size=2, max_size=5), st.data())
def test_sequential_and_parallel_xz_agree_on_any_concatenation(lengths, data):
    # Item 3: whatever the streams, both paths give the same verdict and bytes.
    pieces = [data.draw(st.binary(min_size=n, max_size=n)) for n in lengths]
    stream = b"".join(xz(p) for p in pieces)
    size = data.draw(st.sampled_from([sum(lengths), sum(lengths) + 1, max(sum(lengths) - 1, 0)]))

    def outcome(threads):
        try:
            return xz_decompress(stream, size, threads)
        except FormatError as e:
            return str(e)

    with _patched(codec, "XZ_STRIP", 256):
        assert outcome(True) == outcome(False)


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def test_xz_filter_chains_other_than_lzma2_alone_are_refused():
    # Item 12: section 5.3 names the LZMA2 filter; a delta or BCJ chain was accepted.
    for first in ({"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_X86}):
        filters = [first, {"id": lzma.FILTER_LZMA2}]
        stream = lzma.compress(bytes(64), format=lzma.FORMAT_XZ, filters=filters)
        with pytest.raises(OSError, match="filter chain"):
            open_and_load(kmc_file(stream))
        with pytest.raises(FormatError, match="filter chain"):
            xz_decompress(stream, 64, False)


def test_two_bzip2_or_zlib_streams_are_refused():
    # Item 12: one stream only, for bzip2 as for zlib.
    half = bytes(32)
    for method, compress in ((layout.BZIP2, bz2.compress), (layout.ZLIB, zlib.compress)):
        data = kmc_file(compress(half) + compress(half), compression=method)
        with pytest.raises(OSError, match="bytes after the end of its one stream"):
            open_and_load(data)


def test_non_zero_padding_bits_are_refused():
    # Item 12: 3 pixels of 2 bits leave 2 padding bits per row; they must be zero.
    rows = bytes([0b00011000, 0b00011000])
    good = kmc_file(rows, 3, 2, layout.STORED, 4, 2)
    assert open_and_load(good).getpixel((2, 0)) == 2
    bad = kmc_file(bytes([0b00011001, 0b00011000]), 3, 2, layout.STORED, 4, 2)
    with pytest.raises(OSError, match="padding bits"):
        open_and_load(bad)


def test_a_version_1_0_file_using_method_4_is_refused():
    # Item 12: a file may use only what its version defines.
    context_file = FILES[4]
    khdr = bytearray(context_file[16:32])
    assert khdr[:2] == b"\x01\x01" and khdr[15] == layout.CONTEXT
    khdr[1] = 0
    older = context_file[:8] + layout.chunk(b"KHDR", bytes(khdr)) + context_file[36:]
    with pytest.raises(OSError, match="version 1.0 file uses compression method 4"):
        Image.open(io.BytesIO(older))


def test_npz_lzma_member_is_an_os_error_not_lzma_error():
    # Item 4: a ZIP_LZMA member with one byte corrupted leaked _lzma.LZMAError.
    arrays = {
        "array1": np.zeros((12, 1), np.uint8),
        "array2": np.zeros((2, 3), np.uint8),
        "array3": np.array([3, 4, 3], np.int64),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_LZMA) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array)
            zf.writestr(name + ".npy", member.getvalue())
    data = bytearray(buffer.getvalue())
    for offset in range(40, 120):
        broken = bytearray(data)
        broken[offset] ^= 0xFF
        with pytest.raises(OSError):
            open_and_load(bytes(broken))


def test_one_huge_text_chunk_is_refused_before_it_is_read():
    # Item 5: one 300 MB tEXt cost 876 MB RSS; tEXt is capped at 1 MiB, as in PNG.
    big = b"k\0" + bytes(layout.MAX_TEXT_CHUNK)
    with pytest.raises(OSError, match="exceeds"):
        Image.open(io.BytesIO(kmc_file(xz(bytes(64)), before=[(b"tEXt", big)])))
    assert layout.MAX_TEXT_CHUNK == 1 << 20 and layout.MAX_ANCILLARY_BYTES == 64 << 20


def test_text_in_all_is_capped(monkeypatch):
    monkeypatch.setattr(layout, "MAX_ANCILLARY_BYTES", 3 << 20)
    chunks = [(b"tEXt", b"k%d\0" % i + bytes(1000 << 10)) for i in range(4)]
    with pytest.raises(OSError, match="ancillary chunks exceed"):
        Image.open(io.BytesIO(kmc_file(xz(bytes(64)), before=chunks)))


def test_a_flood_of_text_chunks_is_refused_quickly():
    # Item 5: a million tEXt chunks took 4.6 s; past 4,096 the file is refused.
    flood = [(b"tEXt", b"k%d\0" % i) for i in range(layout.MAX_ANCILLARY_CHUNKS + 1)]
    data = kmc_file(xz(bytes(64)), before=flood)
    with pytest.raises(OSError, match="more than 4096 metadata chunks"):
        Image.open(io.BytesIO(data))
    assert len(Image.open(io.BytesIO(kmc_file(xz(bytes(64)), before=flood[1:]))).text) == 4096


def test_unknown_ancillary_chunks_are_checked_but_never_kept():
    # Item 5: a 40 MB unknown chunk is read in blocks; memory stays far below it.
    data = kmc_file(xz(bytes(64)), before=[(b"zzZz", bytes(40 << 20))])
    tracemalloc.start()
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_metadata_is_decoded_once():
    # Text went into info, into im.text and, at load, through the 6a checks
    # again: over four times its size at the peak.
    text = [(b"tEXt", b"k%d\0" % i + bytes((1 << 20) - 8)) for i in range(16)]
    data = kmc_file(b"\0" * 64, compression=layout.STORED, k=2, before=text)
    tracemalloc.start()
    try:
        Image.open(io.BytesIO(data)).load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * (16 << 20)


def test_unknown_chunk_types_are_listed_once_and_only_the_first_few():
    # Each unknown type is listed once, and only the first few types.
    many = [(b"zz" + bytes([65 + i // 26, 65 + i % 26]), b"") for i in range(200)]
    kmc = layout.read(io.BytesIO(kmc_file(xz(bytes(64)), before=many + many)), index=False)
    assert kmc.skipped == [t for t, _ in many[: layout.MAX_SKIPPED_TYPES]]


def test_stored_index_data_longer_than_the_plane_is_refused_before_it_is_read():
    head = kmc_file(b"\0" * 64, compression=layout.STORED, k=2)
    head = head[: head.index(b"KEND") - 4]
    fp = io.BytesIO(head + layout.chunk(b"KIDX", bytes(8 << 20)) + layout.chunk(b"KEND", b""))
    with pytest.raises(OSError, match="holds more data than the header declares"):
        Image.open(fp).load()
    assert fp.tell() < len(head) + 100  # the long chunk's data was never read


def test_truncated_load_never_glues_a_later_chunk_onto_the_index_data(monkeypatch):
    # Item 7: a cut inside a chunk after KIDX glued its bytes onto the index stream.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    plane = bytes(range(64))
    data = kmc_file(xz(plane), after=[(b"zzZz", bytes(100))])
    cut = data[: data.index(b"zzZz") + 50]
    im = open_and_load(cut)
    assert im.tobytes() == plane
    cut_in_text = kmc_file(xz(plane), after=[(b"tEXt", b"a\0" + bytes(100))])
    im = open_and_load(cut_in_text[: cut_in_text.index(b"tEXt") + 40])
    assert im.tobytes() == plane


def _corrupt(stream: bytes, method: int) -> bytes:
    if method == layout.ZLIB:
        return stream[:2] + bytes([stream[2] | 0x06]) + stream[3:]  # block type 3: invalid
    if method == layout.XZ:
        return with_dictionary(stream, 40)  # a 4 GiB dictionary
    return stream[:20] + bytes([stream[20] ^ 0xFF]) + stream[21:]  # bzip2 block data


@pytest.mark.parametrize("method", [layout.ZLIB, layout.BZIP2, layout.XZ])
def test_corrupt_data_is_an_error_even_when_truncated_files_load(monkeypatch, method):
    # Section 9: an early end makes a stream stop, never fail, so only the
    # file's end is waived. The index data is whole and behind a valid CRC;
    # only KEND is missing.
    plane = bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8))
    stream = {layout.ZLIB: zlib.compress, layout.BZIP2: bz2.compress, layout.XZ: xz}[method](plane)
    data = kmc_file(_corrupt(stream, method), 64, 64, compression=method)
    without_kend = data[: -len(layout.chunk(b"KEND", b""))]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for broken in (data, without_kend):
        with pytest.raises(OSError, match="corrupt"):
            open_and_load(broken)
    assert open_and_load(kmc_file(stream, 64, 64, compression=method)).tobytes() == plane


def test_a_whole_strip_that_runs_out_of_words_is_an_error_even_when_truncated_files_load(
    monkeypatch,
):
    # Section 5.6: of a strip the end of the file cut, the rows completed are
    # kept; a strip whose bytes are all there but too few is corrupt.
    rng = np.random.default_rng(4)
    indices = rng.integers(0, 200, (512, 256)).astype(np.uint8)
    stream = codec.context.encode_strips(indices, 256, rows=256)
    (rows, first, second) = struct.unpack(">3I", stream[:12])
    half = first // 2 // 2 * 2
    body = stream[12 : 12 + half] + stream[12 + first :]
    short = struct.pack(">3I", rows, half, second) + body
    data = kmc_file(short, 256, 512, compression=layout.STRIPS)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for broken in (data, data[: -len(layout.chunk(b"KEND", b""))]):
        with pytest.raises(OSError, match="truncated"):
            open_and_load(broken)


def test_known_chunks_after_the_index_data_obey_the_same_rules():
    # Item 12: a duplicate or broken iCCP after KIDX was ignored entirely.
    icc = (b"iCCP", zlib.compress(b"profile"))
    assert open_and_load(kmc_file(xz(bytes(64)), after=[icc])).size == (8, 8)
    for before, after, message in [
        ([icc], [icc], "duplicate iCCP"),
        ([], [(b"iCCP", b"junk")], "corrupt iCCP"),
        ([], [(b"tEXt", b"no separator")], "tEXt chunk needs"),
    ]:
        with pytest.raises(OSError, match=message):
            open_and_load(kmc_file(xz(bytes(64)), before=before, after=after))


@given(
    st.sampled_from(FILES),
    st.lists(st.tuples(st.integers(0, 10), st.binary(max_size=40)), min_size=1, max_size=3),
    st.booleans(),
)
def test_any_chunk_data_behind_valid_crcs_raises_only_conventional_errors(data, edits, truncated):
    # The structure-aware fuzzer's property, bounded: framing and CRCs stay
    # valid, so every check past the CRC is reached.
    chunks = chunks_of(data)
    for index, body in edits:
        kind = chunks[index % len(chunks)][0]
        chunks[index % len(chunks)] = (kind, body)
    mutated = layout.SIGNATURE + b"".join(layout.chunk(t, d) for t, d in chunks)
    with _patched(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated):
        with contextlib.suppress(ALLOWED):
            open_and_load(mutated)
        with contextlib.suppress(ALLOWED):
            Image.open(io.BytesIO(mutated)).verify()


@given(st.sampled_from(FILES), st.lists(st.integers(1, 400), max_size=6))
def test_the_incremental_parser_gives_the_same_image_for_any_pieces(data, cuts):
    parser = ImageFile.Parser()
    at = 0
    for cut in sorted(cuts):
        parser.feed(data[at:cut])
        at = max(at, cut)
    parser.feed(data[at:])
    assert parser.close().tobytes() == open_and_load(data).tobytes()
