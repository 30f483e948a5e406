"""Compression method 6 (``tables``): the compiled coder against spec section 5.7.

The reference is a plain-Python reader and writer transcribed from the spec
alone (tests/reference/tables6.py), sharing no code with csrc/tables6.c.
Both directions are checked: the compiled writer's streams through the
reference reader, the reference writer's (with options that reach what
the compiled writer never writes) through the compiled reader, and every
mutated stream must get the same verdict from both readers.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import _kmc, context, layout, parallel
from pil_kmc.layout import FormatError

from .reference import tables6 as reference
from .strategies import examples
from .test_context import planes

ROOT = Path(__file__).resolve().parent.parent


def _strip_tables_bytes(stream: bytes, height: int) -> list[int]:
    """H of every strip: how many bytes of tables of its own each one carries."""
    rows, tables = struct.unpack(">2I", stream[:8])
    strips = -(-height // rows)
    lengths = struct.unpack(f">{strips}I", stream[8 : 8 + 4 * strips])
    at, heads = 8 + 4 * strips + tables, []
    for n in lengths:
        heads.append(int.from_bytes(stream[at : at + 4], "big"))
        at += n
    return heads


def _blocks(seed: int, shape=(600, 300), k: int = 30, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k, (-(-shape[0] // 20), -(-shape[1] // 25)))
    plane = np.kron(coarse, np.ones((20, 25), np.int64))[: shape[0], : shape[1]]
    plane[rng.random(shape) < noise] = 3
    return np.ascontiguousarray(plane, dtype=np.uint8)


@settings(max_examples=examples(30))
@given(planes())
def test_the_compiled_writer_is_read_back_by_the_spec_transcription(plane):
    indices, k = plane
    h, w = indices.shape
    stream = context.encode_tables(indices, k)
    assert np.array_equal(context.decode_tables(stream, w, h, k), indices)
    assert reference.decode(stream, w, h, k) == indices.tolist()


@settings(max_examples=examples(30))
@given(
    planes(max_side=60, max_pixels=1500),
    st.booleans(),
    st.sampled_from(["each", "one", "pairs"]),
    st.integers(5, 10),
    st.sampled_from(["writer", "anywhere", "never"]),
    st.sampled_from(["writer", "always"]),
)
def test_the_compiled_reader_reads_every_valid_choice_of_a_writer(
    plane, own, groups, precision, runs, literals
):
    indices, k = plane
    h, w = indices.shape
    stream = reference.encode(
        indices.tolist(),
        k,
        h,
        own_tables=own,
        groups=groups,
        precision=precision,
        runs=runs,
        literals=literals,
    )
    assert np.array_equal(context.decode_tables(stream, w, h, k), indices)


@settings(max_examples=examples(60))
@given(planes(max_side=40, max_pixels=600), st.data())
def test_both_readers_give_every_mutated_stream_the_same_verdict(plane, data):
    indices, k = plane
    h, w = indices.shape
    stream = bytearray(context.encode_tables(indices, k))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] ^= 1 << data.draw(st.integers(0, 7))
    stream = bytes(
        stream[: data.draw(st.integers(0, len(stream)))] if data.draw(st.booleans()) else stream
    )
    try:
        expected = reference.decode(stream, w, h, k)
    except reference.StreamError:
        with pytest.raises(FormatError):
            context.decode_tables(stream, w, h, k)
    else:
        assert context.decode_tables(stream, w, h, k).tolist() == expected


def test_strips_carry_their_own_tables_where_they_pay():
    # Three strips of different content: flat blocks, noise, and blocks with noise.
    plane = _blocks(4)
    rng = np.random.default_rng(5)
    plane[256:512] = rng.integers(0, 30, (256, 300))
    stream = context.encode_tables(plane, 30, rows=256)
    heads = _strip_tables_bytes(stream, 600)
    assert len(heads) == 3 and any(heads)
    assert np.array_equal(context.decode_tables(stream, 300, 600, 30), plane)
    assert reference.decode(stream, 300, 600, 30) == plane.tolist()
    own = reference.encode(plane.tolist(), 30, 256, own_tables=True)
    assert all(_strip_tables_bytes(own, 600))
    assert np.array_equal(context.decode_tables(own, 300, 600, 30), plane)


def test_the_writer_is_deterministic_and_uses_the_writers_strips():
    plane = _blocks(7, shape=(1100, 1000), k=200, noise=0.3)
    first = context.encode_tables(plane, 200)
    assert first == context.encode_tables(plane, 200)
    assert struct.unpack(">I", first[:4])[0] == context.strip_rows(1000, 1100)


def test_strips_smaller_than_the_minimum_are_refused():
    indices = np.zeros((4, 10), np.uint8)
    with pytest.raises(ValueError):
        context.encode_tables(indices, 1, rows=2)
    stream = reference.encode(indices.tolist(), 1, 4)
    bad = struct.pack(">I", 2) + stream[4:8] + stream[8:12] * 2 + stream[12:]
    with pytest.raises(FormatError, match="strip table"):
        context.decode_tables(bad, 10, 4, 1)


@pytest.fixture(scope="module")
def sample():
    plane = _blocks(3, shape=(40, 50), k=50, noise=0.2)
    return plane, context.encode_tables(plane, 50)


def _with_tables(stream: bytes, edit) -> bytes:
    """The stream with its image tables' bytes edited (and G kept)."""
    tables = struct.unpack(">I", stream[4:8])[0]
    at = 8 + 4  # one strip
    image = bytearray(stream[at : at + tables])
    edit(image)
    return stream[:at] + bytes(image) + stream[at + tables :]


def test_broken_tables_are_refused(sample):
    plane, stream = sample
    h, w = plane.shape

    def first_context_sums_over_128(image: bytearray) -> None:
        # Context 0 used, f0 = gamma(129 + 1) takes 15 bits: larger than 128 in all.
        image[0] = 0b1_0000000
        image[1] = 0b10000010
        image[2] |= 0

    for edit in (first_context_sums_over_128,):
        with pytest.raises(FormatError, match="tables"):
            context.decode_tables(_with_tables(stream, edit), w, h, 50)
    longer = stream[:4] + struct.pack(">I", struct.unpack(">I", stream[4:8])[0] + 1)
    longer += stream[8:12] + stream[12:] + b"\0"  # a whole byte left over at the tables' end
    with pytest.raises(FormatError):
        context.decode_tables(longer, w, h, 50)


def test_a_stream_with_a_state_out_of_range_is_refused(sample):
    plane, stream = sample
    h, w = plane.shape
    tables = struct.unpack(">I", stream[4:8])[0]
    strip = 12 + tables
    head = int.from_bytes(stream[strip : strip + 4], "big")
    state = strip + 4 + head
    for x in (0, (1 << 31) - 1, 1 << 63):
        bad = stream[:state] + x.to_bytes(8, "big") + stream[state + 8 :]
        with pytest.raises(FormatError, match="state"):
            context.decode_tables(bad, w, h, 50)


def test_truncated_and_extra_data_are_refused_and_partial_keeps_whole_rows(sample):
    plane, stream = sample
    h, w = plane.shape
    for end in (0, 7, 12, 40, len(stream) // 2, len(stream) - 4):
        with pytest.raises(FormatError, match="truncated"):
            context.decode_tables(stream[:end], w, h, 50)
    with pytest.raises(FormatError, match="more data"):
        context.decode_tables(stream + b"\0\0\0\0", w, h, 50)
    out = context.decode_tables(stream[: len(stream) * 3 // 4], w, h, 50, partial=True)
    whole = (out == plane).all(axis=1)
    first_bad = int(np.argmin(whole))
    assert 0 < first_bad < h and whole[:first_bad].all() and (out[first_bad:] == 0).all()
    assert not context.decode_tables(stream[:20], w, h, 50, partial=True).any()


def test_the_encoder_refuses_an_index_at_or_above_k():
    with pytest.raises(ValueError):
        context.encode_tables(np.array([[3]], np.uint8), 3)


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 256), st.binary(max_size=400))
def test_arbitrary_streams_decode_or_raise_format_error(w, h, k, stream):
    try:
        out = context.decode_tables(stream, w, h, k)
    except FormatError:
        return
    assert out.shape == (h, w) and int(out.max()) < k


def test_files_of_method_6_say_version_1_3_and_older_readers_refuse_them(monkeypatch):
    buffer = io.BytesIO()
    Image.new("P", (9, 7)).save(buffer, "KMC", compression="tables")
    header = layout.read(io.BytesIO(buffer.getvalue()), index=False).header
    assert header.version == (1, 3) and header.compression == layout.TABLES
    # A 1.2 reader knows methods 0 to 5 only: it names the id it does not know.
    monkeypatch.setattr(
        layout, "COMPRESSION_NAMES", {m: n for m, n in layout.COMPRESSION_NAMES.items() if m < 6}
    )
    with pytest.raises(OSError, match="unknown compression method 6"):
        Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    "path", sorted((ROOT / "fixtures").glob("*-tables*.kmc")), ids=lambda p: p.stem
)
def test_fixture_streams_decode_the_same_compiled_and_by_reference(path):
    data = path.read_bytes()
    kmc = layout.read(io.BytesIO(data))
    header, stream = kmc.header, kmc.index.stream
    w, h, k = header.width, header.height, header.k
    plane = context.decode_tables(stream, w, h, k)
    assert reference.decode(stream, w, h, k) == plane.tolist()
    if not path.stem.endswith("reference"):  # the compiled writer's: still the same bytes
        rows = struct.unpack(">I", stream[:4])[0]
        assert context.encode_tables(plane, k, rows=rows) == stream


def test_the_bytes_do_not_depend_on_the_threads():
    plane = _blocks(9, shape=(1200, 300), k=60, noise=0.2)  # 5 strips of 256 rows
    many = context.encode_tables(plane, 60, rows=256)
    parallel.limit(1)
    try:
        assert context.encode_tables(plane, 60, rows=256) == many
    finally:
        parallel.limit(None)
    assert np.array_equal(context.decode_tables(many, 300, 1200, 60), plane)


def test_counts_that_no_plane_gives_are_refused():
    counts = np.zeros(_kmc.TABLES_COUNTS, np.uint64)
    counts[0] = 10
    literal = counts.copy()
    literal[512 * 6 + 3 * 256 + 0] = 5  # a literal d = 0 under L = 3: that pixel is L
    huge = counts.copy()
    huge[:2] = 1 << 63  # sums that wrap
    for bad in (literal, huge):
        with pytest.raises(ValueError):
            _kmc.tables_image(bad.tobytes(), 5)
    assert _kmc.tables_image(counts.tobytes(), 5)


def test_a_cut_strip_whose_declared_length_breaks_the_rules_is_refused():
    plane = _blocks(10, shape=(600, 300), k=30, noise=0.1)
    stream = bytearray(context.encode_tables(plane, 30, rows=256))
    tables = struct.unpack(">I", stream[4:8])[0]
    first = struct.unpack(">I", stream[8:12])[0]
    second = 8 + 4 * 3 + tables + first  # where strip 1's data starts
    declared = struct.unpack(">I", stream[12:16])[0]
    stream[second : second + 4] = struct.pack(">I", declared)  # H past the strip's end
    cut = bytes(stream[: second + 40])
    with pytest.raises(FormatError, match="strip table"):
        context.decode_tables(cut, 300, 600, 30, partial=True)
