"""Compression methods 4 (``context``) and 5 (``strips``): the compiled coders.

Method 6 (``tables``) has its own module, tests/test_tables.py; the tests
here that every strips method must pass take it too.

Each is checked against a reference that shares no code with it: method 4
against the numpy implementation it replaced (tests/reference/context4.py),
method 5 against a plain-Python transcription of spec section 5.6
(tests/reference/strips5.py).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import codec, context, layout
from pil_kmc.layout import FormatError

from .reference import context4 as reference4
from .reference import strips5 as reference5
from .strategies import examples

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "rocket.jpg"
FIXTURES = ROOT / "fixtures"


@st.composite
def planes(draw, max_side: int = 300, max_pixels: int = 20_000):
    """Index planes of every k and shape: 1xN, Nx1, one index, noise, flat areas with edges."""
    k = draw(st.integers(1, 256))
    shape = draw(
        st.one_of(
            st.tuples(st.just(1), st.integers(1, max_side)),
            st.tuples(st.integers(1, max_side), st.just(1)),
            st.tuples(st.integers(1, max_side), st.integers(1, max_side)).filter(
                lambda s: s[0] * s[1] <= max_pixels
            ),
        )
    )
    block = draw(st.integers(1, 12))
    small = (-(-shape[0] // block), -(-shape[1] // block))
    tile = draw(hnp.arrays(np.uint8, small, elements=st.integers(0, k - 1)))
    plane = np.kron(tile, np.ones((block, block), np.uint8))[: shape[0], : shape[1]]
    return np.ascontiguousarray(plane), k


@settings(max_examples=examples(40))
@given(planes(max_side=120, max_pixels=6000))
def test_context_is_byte_identical_to_the_numpy_reference(plane):
    indices, k = plane
    h, w = indices.shape
    stream = context.encode(indices, k)
    assert stream == reference4.encode(indices, k)
    assert np.array_equal(context.decode(stream, w, h, k), indices)
    assert np.array_equal(reference4.decode(stream, w, h, k), indices)


@settings(max_examples=examples(30))
@given(planes())
def test_strips_is_byte_identical_to_the_spec_transcription(plane):
    indices, k = plane
    h, w = indices.shape
    stream = context.encode_strips(indices, k)
    assert stream == reference5.encode(indices.tolist(), k, context.strip_rows(w, h))
    assert np.array_equal(context.decode_strips(stream, w, h, k), indices)
    assert reference5.decode(stream, w, h, k) == indices.tolist()


def test_several_strips_agree_with_the_transcription():
    rng = np.random.default_rng(4)
    indices = np.kron(rng.integers(0, 30, (30, 12)), np.ones((20, 25), np.int64)).astype(np.uint8)
    indices[rng.random(indices.shape) < 0.05] = 3
    h, w = indices.shape  # 600 x 300: strips of 256, 256 and 88 rows
    stream = context.encode_strips(indices, 30, rows=256)
    assert stream == reference5.encode(indices.tolist(), 30, 256)
    assert int.from_bytes(stream[:4], "big") == 256
    assert np.array_equal(context.decode_strips(stream, w, h, 30), indices)


def test_writer_strips_are_a_power_of_two_of_about_a_megapixel():
    assert context.strip_rows(512, 512) == 256  # two cores: two strips
    assert context.strip_rows(511, 256) == 256  # too small for two strips of 65,536 pixels
    assert context.strip_rows(1024, 1024) == 512
    assert context.strip_rows(3072, 3072) == 3072 // 8
    assert context.strip_rows(1, 10_000_000) == 10_000_000 // 8
    assert context.strip_rows(10_000_000, 1) == 1


def test_strips_smaller_than_the_minimum_are_refused():
    indices = np.zeros((4, 10), np.uint8)
    with pytest.raises(ValueError):
        context.encode_strips(indices, 1, rows=2)
    stream = reference5.encode(indices.tolist(), 1, 2)  # 20-pixel strips break the rule
    with pytest.raises(FormatError, match="strip table"):
        context.decode_strips(stream, 10, 4, 1)


@pytest.mark.parametrize(
    "path",
    sorted(FIXTURES.glob("*-context*.kmc")) + sorted(FIXTURES.glob("*-strips*.kmc")),
    ids=lambda p: p.stem,
)
def test_fixture_streams_decode_the_same_compiled_and_by_reference(path):
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        header = layout.read(io.BytesIO(data), index=False).header
        im.load()
    stream = _index_stream(data)
    plane = codec.decode(stream, header)
    w, h, k = header.width, header.height, header.k
    if header.compression == layout.CONTEXT:
        assert np.array_equal(reference4.decode(stream, w, h, k), plane)
        assert reference4.encode(plane, k) == context.encode(plane, k) == stream
    else:
        rows = int.from_bytes(stream[:4], "big")
        assert reference5.decode(stream, w, h, k) == plane.tolist()
        assert context.encode_strips(plane, k, rows=rows) == stream
        assert reference5.encode(plane.tolist(), k, rows) == stream


def _index_stream(data: bytes) -> bytes:
    return layout.read(io.BytesIO(data)).index.stream


@pytest.fixture(scope="module", params=["context", "strips"])
def sample(request):
    rng = np.random.default_rng(3)
    indices = np.kron(rng.integers(0, 50, (8, 10)), np.ones((4, 4), np.int64)).astype(np.uint8)
    indices[rng.random(indices.shape) < 0.2] = 7
    coder = context.encode if request.param == "context" else context.encode_strips
    decoder = context.decode if request.param == "context" else context.decode_strips
    return indices, coder(indices, 50), decoder


def test_truncated_stream_is_refused(sample):
    indices, stream, decode = sample
    h, w = indices.shape
    for end in (0, 3, 4, 9, len(stream) // 2, len(stream) - 2):
        with pytest.raises(FormatError, match="truncated"):
            decode(stream[:end], w, h, 50)


def test_truncated_stream_decodes_the_completed_rows_with_partial(sample):
    indices, stream, decode = sample
    h, w = indices.shape
    out = decode(stream[: len(stream) * 2 // 3], w, h, 50, partial=True)
    whole = (out == indices).all(axis=1)
    done = np.flatnonzero(whole & (np.arange(h) < h - 1))
    assert len(done) > 0 and whole[: done[-1] + 1].all()
    assert (out[~whole] == 0).all()


@pytest.mark.parametrize(
    "encode, decode",
    [
        (context.encode_strips, context.decode_strips),
        (context.encode_tables, context.decode_tables),
    ],
    ids=["strips", "tables"],
)
def test_a_cut_strips_stream_is_zero_after_the_cut_whatever_memory_it_gets(encode, decode):
    # The strips decoders write into memory that is not zeroed first: every
    # pixel they do not decode must still come back as index 0.
    rng = np.random.default_rng(6)
    indices = rng.integers(1, 50, (600, 300)).astype(np.uint8)  # no index 0 anywhere
    stream = encode(indices, 50, rows=256)
    cut = stream[: len(stream) // 2]  # ends inside the second of three strips
    for _ in range(3):
        junk = np.full(indices.shape, 255, np.uint8)  # a freed block for the allocator to reuse
        del junk
        out = decode(cut, 300, 600, 50, partial=True)
        assert np.array_equal(out[:256], indices[:256])
        whole = (out == indices).all(axis=1)
        assert (out[~whole] == 0).all() and (out[512:] == 0).all()


def test_extra_words_are_refused(sample):
    indices, stream, decode = sample
    with pytest.raises(FormatError, match="more data"):
        decode(stream + b"\0\0", indices.shape[1], indices.shape[0], 50)


def test_odd_length_and_low_states_are_refused(sample):
    indices, stream, decode = sample
    h, w = indices.shape
    with pytest.raises(FormatError):
        decode(stream + b"\0", w, h, 50)
    low = bytes(4) + stream[4:] if decode is context.decode else stream[:8] + bytes(4) + stream[12:]
    with pytest.raises(FormatError, match="below|strip table"):
        decode(low, w, h, 50)


def test_changed_words_are_detected(sample):
    indices, stream, decode = sample
    h, w = indices.shape
    positions = range(12, len(stream), 7)
    changed = 0
    for pos in positions:
        edited = bytearray(stream)
        edited[pos] ^= 0x10
        try:
            out = decode(bytes(edited), w, h, 50)
        except FormatError:
            changed += 1
        else:
            changed += not np.array_equal(out, indices)
    assert changed == len(positions)


@pytest.mark.parametrize("method", ["context", "strips"])
def test_index_at_or_above_k_is_refused(method):
    indices = np.array([[0, 99, 120, 127]], np.uint8)  # 7 literal bits for k = 128 or 100
    encode = context.encode if method == "context" else context.encode_strips
    decode = context.decode if method == "context" else context.decode_strips
    stream = encode(indices, 128)
    with pytest.raises(FormatError, match="at or above k=100"):
        decode(stream, 4, 1, 100)


def test_encoders_refuse_an_index_at_or_above_k():
    with pytest.raises(ValueError):
        context.encode(np.array([[3]], np.uint8), 3)
    with pytest.raises(ValueError):
        context.encode_strips(np.array([[3]], np.uint8), 3)


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 256),
    st.binary(max_size=300),
    st.sampled_from(["context", "strips"]),
)
def test_arbitrary_streams_decode_or_raise_format_error(w, h, k, stream, method):
    decode = context.decode if method == "context" else context.decode_strips
    try:
        out = decode(stream, w, h, k)
    except FormatError:
        return
    assert out.shape == (h, w) and int(out.max()) < k


def test_files_record_the_version_of_their_method():
    im = Image.new("P", (9, 7))
    for compression, version in [("context", (1, 1)), ("strips", (1, 2)), ("xz", (1, 0))]:
        buffer = io.BytesIO()
        im.save(buffer, "KMC", compression=compression)
        header = layout.read(io.BytesIO(buffer.getvalue()), index=False).header
        assert header.version == version
        assert layout.COMPRESSION_NAMES[header.compression] == compression


def test_both_beat_xz_and_bzip2_on_a_photograph():
    with Image.open(EXAMPLE) as im:
        small = im.convert("RGB").reduce(4)
    buffer = io.BytesIO()
    small.save(buffer, "KMC", clusters=64)
    indices = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    others = [
        len(codec.compress(codec.pack_rows(indices, 8), m)) for m in (layout.XZ, layout.BZIP2)
    ]
    assert len(context.encode(indices, 64)) < 0.95 * min(others)
    assert len(context.encode_strips(indices, 64)) < len(context.encode(indices, 64))


def test_threads_decode_different_images_at_once():
    rng = np.random.default_rng(6)
    planes = [rng.integers(0, 20, (200, 300), dtype=np.uint8) for _ in range(4)]
    streams = [context.encode_strips(p, 20) for p in planes]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = context.decode_strips(streams[i], 300, 200, 20)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], planes[i]) for i in range(4))


@pytest.mark.parametrize("method", ["context", "strips", "tables"])
def test_truncated_files_load_their_complete_rows_with_load_truncated_images(method, monkeypatch):
    from PIL import ImageFile

    rng = np.random.default_rng(8)
    blocks = np.kron(rng.integers(0, 200, (10, 12, 3)), np.ones((6, 6, 1), np.int64))
    im = Image.fromarray(blocks.astype(np.uint8))
    buffer = io.BytesIO()
    im.save(buffer, "KMC", clusters=40, compression=method)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as whole:
        expected = np.asarray(whole)
    cut = data[: len(data) - 12 - 24]  # no KEND, and the index stream's last 24 bytes lost
    with pytest.raises(OSError):
        Image.open(io.BytesIO(cut)).load()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with Image.open(io.BytesIO(cut)) as partial:
        rows = np.asarray(partial)
    complete = (rows == expected).all(axis=1)
    first_bad = int(np.argmin(complete)) if not complete.all() else len(rows)
    assert 0 < first_bad < len(rows)
    assert (rows[first_bad:] == 0).all()
